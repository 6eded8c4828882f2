"""NCSN++ and DDPM++: the U-Nets of Song et al., "Score-Based Generative Modeling through SDEs"
(ICLR 2021, Sec. 4.4 and App. H), one Flax linen module whose attributes select the variant.

Starting from DDPM's U-Net, the paper's improvements are: BigGAN residual blocks that resample
inside the block (`resblock_type="biggan"`), skip connections rescaled by 1/sqrt(2)
(`skip_rescale`), FIR anti-aliased resampling (`fir`, StyleGAN2), progressive growing of the input
and output as image pyramids (`progressive_input`, `progressive`, StyleGAN2's input/output
skips and residual pyramids), more residual blocks per resolution, and, for the VE SDE, Gaussian
Fourier features of log sigma as the noise-level embedding (`embedding_type="fourier"`).

The network maps (x, time_input) to an array shaped like x. It does not know the SDE: the
caller maps t to `time_input` (t * 999 for "positional", log std(t) for "fourier") and turns the
output into a score (`models/score.py`; NCSN++ for the VE SDE divides by std: "scaled_score";
DDPM++ for the VP SDE predicts the noise: "noise"). Data are expected centred, in [-1, 1].
"""
import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from models import layers
from models.layers import Images, conv, group_norm, skip_sum
from sde.checks import describe

RESBLOCK_TYPES = ("biggan", "ddpm")
# "blocks": every residual and attention block's activations are recomputed in the backward
# pass instead of kept (flax's remat, i.e. jax.checkpoint): the same gradients, less memory.
REMAT = ("none", "blocks")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
PROGRESSIVE_COMBINE = ("sum", "cat")
EMBEDDING_TYPES = ("positional", "fourier")


class NCSNpp(nn.Module):
    """DDPM++ / NCSN++ U-Net: x (b, h, w, c), time_input (b,) -> (b, h, w, c), same dtype as x.

    Levels i = 0 .. len(ch_mult) - 1 run at resolution h / 2^i with nf * ch_mult[i] channels;
    each has `num_res_blocks` residual blocks on the way down and `num_res_blocks + 1` on the way
    up (each taking one skip connection), with self-attention wherever the feature height is in
    `attn_resolutions`, and a middle of block, attention, block at the lowest resolution.

    The time embedding (sinusoidal of `time_input` with nf dims, or Gaussian Fourier features of
    it with 2 nf dims and frequencies of std `fourier_scale`) goes through Dense(4 nf), SiLU,
    Dense(4 nf); with `num_classes` a learned class embedding is added to it. Every residual
    block adds Dense(SiLU(embedding)) to its features.

    With `conditional=False` the network ignores time_input (no embedding; score_sde's
    `model.conditional`). GroupNorm uses min(channels / 4, 32) groups (NCSN++), or
    `norm_groups` groups when set (DDPM's U-Net: 32).

    Call as `model.apply(variables, x, time_input, labels=None, train=False,
    rngs={"dropout": key})`; dropout is active only with `train=True`. `resamp_with_conv`
    applies to "ddpm" blocks (a separate Upsample / Downsample between levels); "biggan" blocks
    resample inside the block. The defaults are DDPM++ cont. for CIFAR-10; presets (dicts of
    these attributes): `ddpmpp_config()`, `ncsnpp_config()`.
    """

    nf: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    fir: bool = False
    fir_kernel: Sequence[float] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "none"
    progressive_combine: str = "sum"
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    conditional: bool = True
    norm_groups: int | None = None
    num_classes: int | None = None
    remat: str = "none"  # REMAT; set by the run (model.remat), not part of the architecture

    @nn.compact
    def __call__(self, x: Images, time_input: Float[Array, "b"], *,
                 labels: Int[Array, "b"] | None = None, train: bool = False) -> Images:
        validate_attributes(self)
        validate_inputs(self, x, time_input, labels)
        # The embedding is computed at time_input's precision, then everything runs in x's
        # dtype: bfloat16 x and parameters give bfloat16 compute (see scorelab.build).
        temb = self.embed(time_input, labels).astype(x.dtype) if self.conditional else None
        skips = self.encode(x, temb, train)
        h = self.middle(skips[-1], temb, train)
        return self.decode(h, skips, x.shape[-1], temb, train).astype(x.dtype)

    # ---- pieces of the forward pass ----

    def embed(self, time_input: Float[Array, "b"], labels) -> Float[Array, "b e"]:
        """Time (and class) embedding: (b,) -> (b, 4 nf)."""
        temb = layers.time_embedding(time_input, self.nf, self.embedding_type,
                                     self.fourier_scale)
        if self.num_classes is not None:
            temb = temb + nn.Embed(self.num_classes, 4 * self.nf)(labels)
        return temb

    def encode(self, x: Images, temb, train: bool) -> list[Images]:
        """The downsampling half; returns every output the decoder takes as a skip connection."""
        skips = [conv(self.nf)(x)]
        pyramid = x
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = self.run(self.resblock(self.nf * mult), skips[-1], temb, train)
                skips.append(self.maybe_attend(h))
            if level == len(self.ch_mult) - 1:
                break
            if self.resblock_type == "ddpm":
                h = self.resample(layers.Downsample, with_conv=self.resamp_with_conv)(skips[-1])
            else:
                h = self.run(self.resblock(skips[-1].shape[-1], down=True), skips[-1], temb, train)
            h, pyramid = self.merge_input_pyramid(h, pyramid)
            skips.append(h)
        return skips

    def merge_input_pyramid(self, h: Images, pyramid: Images) -> tuple[Images, Images]:
        """Progressive input (StyleGAN2): the image, downsampled alongside, feeds every level.

        "input_skip": the FIR-downsampled image is combined (1x1 conv, sum or cat) into h.
        "residual": a downsampling conv of the running pyramid is added to h, and the sum is
        the pyramid for the next level.
        """
        if self.progressive_input == "input_skip":
            pyramid = self.resample(layers.Downsample, with_conv=False)(pyramid)
            return layers.Combine(method=self.progressive_combine)(pyramid, h), pyramid
        if self.progressive_input == "residual":
            pyramid = self.resample(layers.Downsample, with_conv=True,
                                    out_ch=h.shape[-1])(pyramid)
            pyramid = skip_sum(pyramid, h, self.skip_rescale)
            return pyramid, pyramid
        return h, pyramid

    def middle(self, h: Images, temb, train: bool) -> Images:
        """Block, attention, block at the lowest resolution."""
        h = self.run(self.resblock(h.shape[-1]), h, temb, train)
        h = self.attend(h)
        return self.run(self.resblock(h.shape[-1]), h, temb, train)

    def decode(self, h: Images, skips: list[Images], out_channels: int, temb,
               train: bool) -> Images:
        """The upsampling half, consuming `skips` from the end; returns the network output."""
        pyramid = None
        for level in reversed(range(len(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = self.run(self.resblock(self.nf * self.ch_mult[level]), h, temb, train)
            h = self.maybe_attend(h)
            h, pyramid = self.grow_output_pyramid(h, pyramid, out_channels)
            if level == 0:
                break
            if self.resblock_type == "ddpm":
                h = self.resample(layers.Upsample, with_conv=self.resamp_with_conv)(h)
            else:
                h = self.run(self.resblock(h.shape[-1], up=True), h, temb, train)
        if self.progressive == "output_skip":
            return pyramid
        return conv(out_channels, init_scale=self.init_scale)(nn.silu(self.norm(h)))

    def grow_output_pyramid(self, h: Images, pyramid: Images | None,
                            out_channels: int) -> tuple[Images, Images | None]:
        """Progressive output (StyleGAN2); `pyramid` is None at the lowest resolution.

        "output_skip": every level emits an image (GN, SiLU, 3x3 conv) added to the FIR-
        upsampled image of the level below; the last one is the output.
        "residual": the pyramid is a feature map, upsampled by a conv and added to h, and the
        sum replaces h.
        """
        if self.progressive == "output_skip":
            out = conv(out_channels, init_scale=self.init_scale)(nn.silu(self.norm(h)))
            if pyramid is None:
                return h, out
            return h, self.resample(layers.Upsample, with_conv=False)(pyramid) + out
        if self.progressive == "residual":
            if pyramid is None:
                return h, conv(h.shape[-1])(nn.silu(self.norm(h)))
            pyramid = self.resample(layers.Upsample, with_conv=True, out_ch=h.shape[-1])(pyramid)
            pyramid = skip_sum(pyramid, h, self.skip_rescale)
            return pyramid, pyramid
        return h, pyramid

    # ---- module factories ----

    def resblock(self, out_ch: int, *, up: bool = False, down: bool = False) -> nn.Module:
        common = dict(out_ch=out_ch, dropout=self.dropout, skip_rescale=self.skip_rescale,
                      init_scale=self.init_scale, groups=self.norm_groups)
        if self.resblock_type == "ddpm":
            return layers.ResnetBlockDDPM(**common)
        return layers.ResnetBlockBigGAN(**common, up=up, down=down, fir=self.fir,
                                        fir_kernel=tuple(self.fir_kernel))

    def resample(self, cls, *, with_conv: bool, out_ch: int | None = None) -> nn.Module:
        return cls(out_ch=out_ch, with_conv=with_conv, fir=self.fir,
                   fir_kernel=tuple(self.fir_kernel))

    def norm(self, h: Images) -> Images:
        return group_norm(h, self.norm_groups)

    def attend(self, h: Images) -> Images:
        block = layers.AttnBlock(skip_rescale=self.skip_rescale, init_scale=self.init_scale,
                                 groups=self.norm_groups)
        return nn.remat(lambda m, h: m(h))(block, h) if self.remat == "blocks" else block(h)

    def run(self, block: nn.Module, h: Images, temb, train: bool) -> Images:
        """A residual block on h, rematerialised with `remat="blocks"`. The block is made
        outside the remat, so its parameters keep their names either way."""
        if self.remat == "blocks":
            return nn.remat(lambda m, h, temb: m(h, temb, train=train))(block, h, temb)
        return block(h, temb, train=train)

    def maybe_attend(self, h: Images) -> Images:
        return self.attend(h) if h.shape[1] in self.attn_resolutions else h


# ---- validation: runs at the start of every call, so a bad model fails at `init` ----

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_int(name: str, value, low: int):
    if not _is_int(value):
        raise TypeError(f"NCSNpp.{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"NCSNpp.{name} must be an integer >= {low}, got {value!r}")


def _check_int_tuple(name: str, value, *, allow_empty: bool):
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise TypeError(f"NCSNpp.{name} must be a tuple of positive integers, got {value!r}")
    if (not value and not allow_empty) or any(v < 1 for v in value):
        what = "a tuple of positive integers" + ("" if allow_empty else ", not empty")
        raise ValueError(f"NCSNpp.{name} must be {what}, got {value!r}")


def _check_choice(name: str, value, allowed: Sequence[str]):
    if not isinstance(value, str):
        raise TypeError(f"NCSNpp.{name} must be a string, one of {list(allowed)}, got {value!r}")
    if value not in allowed:
        raise ValueError(f"NCSNpp.{name} must be one of {list(allowed)}, got {value!r}")


def _check_real(name: str, value, *, low: float, low_open: bool, high: float = math.inf):
    if not _is_real(value):
        raise TypeError(f"NCSNpp.{name} must be a real number, got {value!r}")
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value < high
    if not ok:
        left = "(" if low_open else "["
        right = "inf)" if high == math.inf else f"{high})"
        raise ValueError(f"NCSNpp.{name} must be a finite number in {left}{low}, {right}, "
                         f"got {value!r}")


def _check_bool(name: str, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"NCSNpp.{name} must be True or False, got {value!r}")


def validate_attributes(model: NCSNpp):
    """Types and ranges of every attribute; the image-dependent checks are in validate_inputs."""
    _check_int("nf", model.nf, 1)
    _check_int_tuple("ch_mult", model.ch_mult, allow_empty=False)
    _check_int("num_res_blocks", model.num_res_blocks, 1)
    _check_int_tuple("attn_resolutions", model.attn_resolutions, allow_empty=True)
    _check_real("dropout", model.dropout, low=0.0, low_open=False, high=1.0)
    for name in ("resamp_with_conv", "fir", "skip_rescale", "conditional"):
        _check_bool(name, getattr(model, name))
    if not isinstance(model.fir_kernel, (tuple, list)) or not all(
            _is_real(v) for v in model.fir_kernel):
        raise TypeError(f"NCSNpp.fir_kernel must be a tuple of numbers, e.g. (1, 3, 3, 1), "
                        f"got {model.fir_kernel!r}")
    try:
        layers.fir_kernel_2d(model.fir_kernel)
    except ValueError as err:
        raise ValueError(f"NCSNpp.{err}") from None
    _check_choice("resblock_type", model.resblock_type, RESBLOCK_TYPES)
    _check_choice("remat", model.remat, REMAT)
    _check_choice("progressive", model.progressive, PROGRESSIVE)
    _check_choice("progressive_input", model.progressive_input, PROGRESSIVE_INPUT)
    _check_choice("progressive_combine", model.progressive_combine, PROGRESSIVE_COMBINE)
    _check_choice("embedding_type", model.embedding_type, EMBEDDING_TYPES)
    _check_real("fourier_scale", model.fourier_scale, low=0.0, low_open=True)
    _check_real("init_scale", model.init_scale, low=0.0, low_open=False)
    if model.norm_groups is not None:
        _check_int("norm_groups", model.norm_groups, 1)
    if model.num_classes is not None:
        _check_int("num_classes", model.num_classes, 1)


def validate_inputs(model: NCSNpp, x, time_input, labels):
    """Shapes of x, time_input and labels against the attributes (static: fine under jit)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype") or not jnp.issubdtype(
            x.dtype, jnp.floating):
        raise TypeError(f"NCSNpp: x must be a floating array of shape (batch, height, width, "
                        f"channels), got {describe(x)}")
    if x.ndim != 4:
        raise ValueError(f"NCSNpp: x must have shape (batch, height, width, channels) (NHWC), "
                         f"got shape {tuple(x.shape)}")
    batch, height, width, _ = x.shape
    if not hasattr(time_input, "shape") or tuple(time_input.shape) != (batch,):
        raise ValueError(f"NCSNpp: time_input must have shape (batch,) = ({batch},), "
                         f"got {describe(time_input)}")
    _check_image_size(model, height, width)
    _check_attn_resolutions(model, height)
    _check_labels(model, labels, batch)


def _check_image_size(model: NCSNpp, height: int, width: int):
    levels = len(model.ch_mult)
    factor = 2 ** (levels - 1)
    for name, size in (("height", height), ("width", width)):
        if size % factor:
            raise ValueError(
                f"NCSNpp: image {name} {size} is not divisible by 2**{levels - 1} = {factor} "
                f"(len(ch_mult) = {levels} levels, ch_mult={tuple(model.ch_mult)}); choose an "
                f"image size that is a multiple of {factor} or fewer levels in ch_mult")


def _check_attn_resolutions(model: NCSNpp, height: int):
    visited = [height // 2 ** i for i in range(len(model.ch_mult))]
    missing = [r for r in model.attn_resolutions if r not in visited]
    if missing:
        raise ValueError(
            f"NCSNpp.attn_resolutions={tuple(model.attn_resolutions)} contains {missing}, which "
            f"the network never visits: with image height {height} and ch_mult="
            f"{tuple(model.ch_mult)} the feature heights are {visited}")


def _check_labels(model: NCSNpp, labels, batch: int):
    if model.num_classes is None:
        if labels is not None:
            raise ValueError("NCSNpp: labels were given but num_classes is None (an "
                             "unconditional model); set num_classes or pass labels=None")
        return
    if labels is None:
        raise ValueError(f"NCSNpp: num_classes={model.num_classes} (class-conditional) needs "
                         f"labels of shape (batch,) = ({batch},), got labels=None")
    if not hasattr(labels, "dtype") or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"NCSNpp: labels must be an integer array of shape ({batch},), "
                        f"got {describe(labels)}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"NCSNpp: labels must have shape (batch,) = ({batch},), "
                         f"got shape {tuple(labels.shape)}")


# ---- the paper's CIFAR-10 networks ----

def ddpmpp_config(**overrides) -> dict:
    """DDPM++ cont. (VP / sub-VP SDE) for 32x32 CIFAR-10 (Table 3): `NCSNpp(**ddpmpp_config())`.

    Every architecture attribute (all but `num_classes`, which the data decide) at the class
    defaults, which are this network: BigGAN blocks, 4 per resolution, no FIR, no progressive
    growing, positional embedding of t * 999; the output predicts the noise. "DDPM++ cont.
    (deep)" is `ddpmpp_config(num_res_blocks=8)`. Unknown names raise `ValueError`.
    """
    config = {f.name: f.default for f in dataclasses.fields(NCSNpp)
              if f.init and f.name not in ("parent", "name", "num_classes", "remat")}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown NCSNpp attribute(s) {unknown}; allowed: {sorted(config)}")
    return {**config, **overrides}


def ncsnpp_config(**overrides) -> dict:
    """NCSN++ cont. (VE SDE) for 32x32 CIFAR-10 (Table 3): `NCSNpp(**ncsnpp_config())`.

    As DDPM++ plus FIR resampling, a residual input pyramid and Gaussian Fourier features
    (scale 16) of log sigma; the output, divided by sigma by the caller, is the score.
    "NCSN++ cont. (deep)" is `ncsnpp_config(num_res_blocks=8)`. For 1024x1024 CelebA-HQ the
    paper's run used nf=16, ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1, dropout=0,
    progressive="output_skip" and progressive_input="input_skip".
    """
    return ddpmpp_config(**{**dict(fir=True, progressive_input="residual",
                                   embedding_type="fourier"), **overrides})
