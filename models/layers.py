"""Building blocks of the DDPM++ / NCSN++ U-Nets (Song et al., ICLR 2021, Sec. 4.4 and App. H).

Images are NHWC: `(batch, height, width, channels)`. A time embedding is `(batch, embed_dim)`.
Every learned layer starts from DDPM's variance-scaling init ("fan_avg", uniform, `default_init`);
the last layer of each residual branch can start near zero (`init_scale=0`) so that every block
begins as the identity on its skip path (as in DDPM and NCSN++).

Resampling comes in three kinds: nearest-neighbour / 2x2 average ("naive", DDPM), the same
followed by a 3x3 conv (`with_conv=True`), and FIR resampling with a separable low-pass kernel
(`fir=True`, StyleGAN2's upfirdn2d, which NCSN++ adopts), written here with one depthwise
`jax.lax.conv_general_dilated`.
"""
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

Images = Float[Array, "b h w c"]
Embedding = Float[Array, "b e"]
Act = Callable[[Array], Array]

FIR_KERNEL = (1, 3, 3, 1)


# ---- time embeddings ----

def sinusoidal_embedding(t: Float[Array, "b"], dim: int, *,
                         max_positions: float = 10000.0) -> Float[Array, "b {dim}"]:
    """Transformer / DDPM positional embedding of a (batch,) array: (batch,) -> (batch, dim).

    With half = dim // 2 and frequencies w_k = max_positions^(-k / (half - 1)), k < half,
    emb(t) = [sin(t w_0), ..., sin(t w_{half-1}), cos(t w_0), ..., cos(t w_{half-1})],
    padded with one zero column when dim is odd. DDPM feeds it the step index t in [0, 999].
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"sinusoidal_embedding: dim must be an integer >= 2, got {dim!r}")
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"sinusoidal_embedding: t must have shape (batch,), got shape {t.shape}")
    half = dim // 2
    # max(.., 1): with a single frequency (dim 2 or 3) it is w_0 = 1.
    freqs = jnp.exp(-math.log(max_positions) * jnp.arange(half) / max(half - 1, 1))
    args = t[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020), NCSN++'s noise-level embedding.

    (batch,) -> (batch, 2 * embedding_size): [sin(2 pi t W), cos(2 pi t W)] with frequencies
    W ~ N(0, scale^2), drawn once at init. NCSN++ feeds it t = log sigma; a large `scale` (16)
    lets the embedding resolve small changes of the noise level.

    The frequencies are stored as the param "W" (so a checkpoint of `variables["params"]` carries
    them and training code that keeps only "params" works) and used through `stop_gradient`:
    their gradient is exactly zero, so SGD, Adam and EMA leave them at their init. Mask them out
    of any decoupled weight decay, which would otherwise shrink them.
    """

    embedding_size: int = 256
    scale: float = 1.0

    @nn.compact
    def __call__(self, t: Float[Array, "b"]) -> Float[Array, "b e2"]:
        w = self.param("W", nn.initializers.normal(stddev=self.scale), (self.embedding_size,))
        proj = 2.0 * jnp.pi * t[:, None] * jax.lax.stop_gradient(w)[None, :]
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


# ---- init, convolutions, normalisation ----

def time_embedding(time_input: Float[Array, "b"], nf: int, embedding_type: str,
                   fourier_scale: float) -> Float[Array, "b 4nf"]:
    """The U-Nets' time embedding, (b,) -> (b, 4 nf): sinusoidal with nf dims ("positional")
    or Gaussian Fourier features with 2 nf dims ("fourier"), then Dense(4 nf), SiLU,
    Dense(4 nf). Call it inside a compact module: its layers belong to that module."""
    if embedding_type == "fourier":
        temb = GaussianFourierProjection(embedding_size=nf, scale=fourier_scale)(time_input)
    else:
        temb = sinusoidal_embedding(time_input, nf)
    temb = dense(4 * nf)(temb)  # built first: its parameters are Dense_0
    return dense(4 * nf)(nn.silu(temb))


def default_init(scale: float = 1.0) -> Callable:
    """DDPM's init: variance scaling with fan_avg and a uniform law, variance scale / fan_avg.

    `scale=0` gives a near-zero init (1e-10): the last conv of a residual branch starts as
    (almost) nothing, so the block starts as its skip connection.
    """
    scale = 1e-10 if scale == 0 else scale
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def conv(features: int, *, kernel_size: int = 3, stride: int = 1, init_scale: float = 1.0,
         use_bias: bool = True, padding: str = "SAME") -> nn.Conv:
    """A square conv with DDPM's init and zero bias: (b, h, w, c) -> (b, h/stride, w/stride, f).

    With stride 2 and "SAME" padding an even input is padded by (0, 1), as in DDPM.
    """
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride),
                   padding=padding, use_bias=use_bias, kernel_init=default_init(init_scale),
                   bias_init=nn.initializers.zeros)


def dense(features: int, *, init_scale: float = 1.0) -> nn.Dense:
    """A Dense layer (also a 1x1 conv, DDPM's "NIN") with DDPM's init and zero bias."""
    return nn.Dense(features, kernel_init=default_init(init_scale),
                    bias_init=nn.initializers.zeros)


def num_groups(channels: int, groups: int | None = None) -> int:
    """GroupNorm groups: min(channels // 4, 32) as in NCSN++ (or `groups`, e.g. DDPM's fixed 32),
    lowered to a divisor of channels.

    For the paper's widths (multiples of 128) this is 32; the fallback keeps odd widths usable.
    """
    groups = max(1, min(channels // 4, 32)) if groups is None else min(groups, channels)
    while channels % groups:
        groups -= 1
    return groups


def group_norm(x: Images, groups: int | None = None) -> Images:
    """GroupNorm (Wu & He 2018) over the channels of x with `num_groups(channels, groups)`."""
    return nn.GroupNorm(num_groups=num_groups(x.shape[-1], groups), epsilon=1e-6)(x)


def skip_sum(x: Array, h: Array, skip_rescale: bool) -> Array:
    """x + h, divided by sqrt(2) when `skip_rescale` (NCSN++: keeps the variance of the sum)."""
    return (x + h) / math.sqrt(2.0) if skip_rescale else x + h


# ---- parameter-free resampling ----

def naive_upsample(x: Images, factor: int = 2) -> Images:
    """Nearest-neighbour upsampling: (b, h, w, c) -> (b, factor h, factor w, c)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample(x: Images, factor: int = 2) -> Images:
    """Average pooling over factor x factor blocks: (b, h, w, c) -> (b, h/factor, w/factor, c)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def fir_kernel_2d(fir_kernel: Sequence[float]) -> np.ndarray:
    """The separable 2-D kernel k k^T / sum(k k^T) of a 1-D FIR kernel k, e.g. (1, 3, 3, 1).

    Normalised to sum 1, so filtering a constant image leaves it unchanged (away from borders).
    """
    k = np.asarray(fir_kernel, dtype=np.float64)
    if k.ndim != 1 or k.size == 0 or not np.all(np.isfinite(k)) or k.sum() <= 0:
        raise ValueError(f"fir_kernel must be a non-empty 1-D sequence of finite numbers with a "
                         f"positive sum, e.g. (1, 3, 3, 1), got {fir_kernel!r}")
    k2 = np.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(x: Images, kernel: np.ndarray, *, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> Images:
    """StyleGAN2's upfirdn2d per channel: zero-insert (up), pad, convolve with kernel, decimate.

    (b, h, w, c) -> (b, (h up + pad0 + pad1 - kh) // down + 1, same for w, c). Zero insertion
    is `lhs_dilation` (the trailing up - 1 zeros are added to the right padding) and decimation
    is the stride, so the whole thing is one depthwise convolution.
    """
    c = x.shape[-1]
    # conv_general_dilated correlates; flipping makes it a true convolution (asymmetric kernels).
    k = jnp.asarray(kernel[::-1, ::-1], dtype=x.dtype)
    k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
    padding = [(pad[0], pad[1] + up - 1)] * 2
    return jax.lax.conv_general_dilated(
        x, k, window_strides=(down, down), padding=padding, lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def fir_upsample(x: Images, fir_kernel: Sequence[float] = FIR_KERNEL, factor: int = 2) -> Images:
    """FIR upsampling (StyleGAN2): (b, h, w, c) -> (b, factor h, factor w, c).

    The kernel is scaled by factor^2 because zero insertion leaves 1 / factor^2 of the mass.
    """
    k = fir_kernel_2d(fir_kernel) * factor ** 2
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def fir_downsample(x: Images, fir_kernel: Sequence[float] = FIR_KERNEL,
                   factor: int = 2) -> Images:
    """FIR downsampling (StyleGAN2): low-pass filter then keep every factor-th pixel.

    (b, h, w, c) -> (b, h/factor, w/factor, c); borders are zero-padded.
    """
    k = fir_kernel_2d(fir_kernel)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def fir_blur_for_strided_conv(x: Images, fir_kernel: Sequence[float] = FIR_KERNEL,
                              factor: int = 2, conv_size: int = 3) -> Images:
    """The low-pass filter that precedes a stride-`factor` VALID conv (StyleGAN2's downsample conv).

    (b, h, w, c) -> (b, h + pad - kh + 1, ...), padded so that the strided conv gives h / factor.
    """
    k = fir_kernel_2d(fir_kernel)
    p = (k.shape[0] - factor) + (conv_size - 1)
    return upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))


# ---- resampling modules ----

class Upsample(nn.Module):
    """2x upsampling: (b, h, w, c) -> (b, 2h, 2w, out_ch or c).

    Nearest-neighbour (DDPM) or FIR (`fir=True`, NCSN++). `with_conv` adds a 3x3 conv: after
    nearest-neighbour upsampling, or, with FIR, StyleGAN2's fused upsampling conv (a stride-2
    transposed conv, then the FIR filter). Without the conv the channels cannot change.
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: Sequence[float] = FIR_KERNEL

    @nn.compact
    def __call__(self, x: Images) -> Images:
        out_ch = self.out_ch or x.shape[-1]
        if not self.with_conv and out_ch != x.shape[-1]:
            raise ValueError(f"Upsample: out_ch={out_ch} differs from the {x.shape[-1]} input "
                             f"channels, which needs with_conv=True")
        if self.fir and self.with_conv:
            return FIRUpsampleConv(out_ch, self.fir_kernel)(x)
        h = fir_upsample(x, self.fir_kernel) if self.fir else naive_upsample(x)
        return conv(out_ch)(h) if self.with_conv else h


class FIRUpsampleConv(nn.Module):
    """StyleGAN2's fused 2x upsampling conv: (b, h, w, c) -> (b, 2h, 2w, features).

    A stride-2 transposed 3x3 conv (the input dilated by 2 and padded by 2 on each side:
    2h + 1 pixels), the FIR filter scaled by 4, which trims it to 2h, then the bias (after the
    filter, so the borders keep the full bias).
    """

    features: int
    fir_kernel: Sequence[float] = FIR_KERNEL

    @nn.compact
    def __call__(self, x: Images) -> Images:
        w = self.param("kernel", default_init(), (3, 3, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        h = jax.lax.conv_general_dilated(x, w.astype(x.dtype), (1, 1), [(2, 2), (2, 2)],
                                         lhs_dilation=(2, 2),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        k = fir_kernel_2d(self.fir_kernel) * 4
        p = k.shape[0] - 4  # (taps - factor) - (conv size - 1)
        return upfirdn2d(h, k, pad=((p + 1) // 2 + 1, p // 2 + 1)) + b.astype(x.dtype)


class Downsample(nn.Module):
    """2x downsampling: (b, h, w, c) -> (b, h/2, w/2, out_ch or c).

    Without conv: 2x2 average pooling (DDPM) or FIR filter and decimation (`fir=True`).
    With conv: a stride-2 3x3 conv (DDPM), preceded by the FIR low-pass filter when `fir=True`
    (StyleGAN2's downsampling conv, so the strided conv does not alias).
    """

    out_ch: int | None = None
    with_conv: bool = False
    fir: bool = False
    fir_kernel: Sequence[float] = FIR_KERNEL

    @nn.compact
    def __call__(self, x: Images) -> Images:
        out_ch = self.out_ch or x.shape[-1]
        if not self.with_conv:
            if out_ch != x.shape[-1]:
                raise ValueError(f"Downsample: out_ch={out_ch} differs from the {x.shape[-1]} "
                                 f"input channels, which needs with_conv=True")
            return fir_downsample(x, self.fir_kernel) if self.fir else naive_downsample(x)
        if self.fir:
            x = fir_blur_for_strided_conv(x, self.fir_kernel)
            return conv(out_ch, stride=2, padding="VALID")(x)
        return conv(out_ch, stride=2)(x)


# ---- residual and attention blocks ----

def add_time_embedding(h: Images, temb: Embedding | None, act: Act) -> Images:
    """h + Dense(act(temb)) broadcast over positions: DDPM's conditioning of a residual block."""
    if temb is None:
        return h
    return h + dense(h.shape[-1])(act(temb))[:, None, None, :]


class ResnetBlockDDPM(nn.Module):
    """DDPM's residual block (Ho et al. 2020), as in DDPM++: (b, h, w, c) -> (b, h, w, out_ch).

    h = conv(act(GN(x))) + Dense(act(temb)); h = conv(dropout(act(GN(h)))), the last conv at
    `init_scale`; the skip is x, or a 1x1 ("NIN", or 3x3 with `conv_shortcut`) conv of x when
    the channels change; output skip + h, over sqrt(2) when `skip_rescale`.
    """

    out_ch: int | None = None
    conv_shortcut: bool = False
    dropout: float = 0.1
    skip_rescale: bool = True
    init_scale: float = 0.0
    groups: int | None = None  # GroupNorm groups (`num_groups`)
    act: Act = nn.silu

    @nn.compact
    def __call__(self, x: Images, temb: Embedding | None = None, *,
                 train: bool = False) -> Images:
        out_ch = self.out_ch or x.shape[-1]
        h = conv(out_ch)(self.act(group_norm(x, self.groups)))
        h = add_time_embedding(h, temb, self.act)
        h = self.act(group_norm(h, self.groups))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv(out_ch, init_scale=self.init_scale)(h)
        if x.shape[-1] != out_ch:
            x = conv(out_ch, kernel_size=3 if self.conv_shortcut else 1)(x)
        return skip_sum(x, h, self.skip_rescale)


class ResnetBlockBigGAN(nn.Module):
    """BigGAN's residual block (Brock et al. 2019) as used by NCSN++ / DDPM++.

    (b, h, w, c) -> (b, h', w', out_ch) with h' = 2h (`up`), h / 2 (`down`) or h. Both paths
    are resampled right after the first GN + act (nearest / average pooling, or FIR with
    `fir=True`), so the block itself moves between resolutions; the skip path gets a 1x1 conv
    when the channels change or the block resamples. Otherwise as `ResnetBlockDDPM`.
    """

    out_ch: int | None = None
    up: bool = False
    down: bool = False
    dropout: float = 0.1
    fir: bool = False
    fir_kernel: Sequence[float] = FIR_KERNEL
    skip_rescale: bool = True
    init_scale: float = 0.0
    groups: int | None = None  # GroupNorm groups (`num_groups`)
    act: Act = nn.silu

    def resample(self, x: Images) -> Images:
        if self.up:
            return fir_upsample(x, self.fir_kernel) if self.fir else naive_upsample(x)
        if self.down:
            return fir_downsample(x, self.fir_kernel) if self.fir else naive_downsample(x)
        return x

    @nn.compact
    def __call__(self, x: Images, temb: Embedding | None = None, *,
                 train: bool = False) -> Images:
        if self.up and self.down:
            raise ValueError("ResnetBlockBigGAN: up and down cannot both be True")
        out_ch = self.out_ch or x.shape[-1]
        h = self.resample(self.act(group_norm(x, self.groups)))
        x = self.resample(x)
        h = add_time_embedding(conv(out_ch)(h), temb, self.act)
        h = self.act(group_norm(h, self.groups))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv(out_ch, init_scale=self.init_scale)(h)
        if x.shape[-1] != out_ch or self.up or self.down:
            x = conv(out_ch, kernel_size=1)(x)
        return skip_sum(x, h, self.skip_rescale)


class AttnBlock(nn.Module):
    """Single-head self-attention over the h * w positions (DDPM): (b, h, w, c) -> same.

    q, k, v are 1x1 projections of GN(x); out = softmax(q k^T / sqrt(c)) v, projected by a 1x1
    layer at `init_scale` (near zero: the block starts as the identity) and added to x, over
    sqrt(2) when `skip_rescale`.
    """

    skip_rescale: bool = True
    init_scale: float = 0.0
    groups: int | None = None  # GroupNorm groups (`num_groups`)

    @nn.compact
    def __call__(self, x: Images) -> Images:
        b, height, width, c = x.shape
        h = group_norm(x, self.groups).reshape(b, height * width, c)
        q, k, v = dense(c)(h), dense(c)(h), dense(c)(h)
        weights = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k) / math.sqrt(c), axis=-1)
        h = dense(c, init_scale=self.init_scale)(jnp.einsum("bij,bjc->bic", weights, v))
        return skip_sum(x, h.reshape(x.shape), self.skip_rescale)


class Combine(nn.Module):
    """Merges an image-pyramid level into features (NCSN++'s "input_skip"): 1x1 conv, then combine.

    pyramid (b, h, w, c_in), features (b, h, w, c) -> (b, h, w, c) for `method="sum"`,
    (b, h, w, 2c) for `method="cat"`.
    """

    method: str = "sum"

    @nn.compact
    def __call__(self, pyramid: Images, features: Images) -> Images:
        h = conv(features.shape[-1], kernel_size=1)(pyramid)
        if self.method == "sum":
            return h + features
        if self.method == "cat":
            return jnp.concatenate([h, features], axis=-1)
        raise ValueError(f"Combine: method must be 'sum' or 'cat', got {self.method!r}")
