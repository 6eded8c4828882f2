"""A noise-conditional image classifier: logits of p_t(y | x_t), for classifier guidance.

The U-Net's downsampling half (Dhariwal & Nichol 2021 use the same encoder as their score
network) ends in group norm, SiLU, global average pooling and a dense layer. It is trained by
`sde.noisy_classifier_loss` on data perturbed by the run's SDE, and conditioned on time the
same way as the score network (`models.score.time_conditioning`).
"""
from collections.abc import Sequence

import flax.linen as nn
from jaxtyping import Array, Float

from models import layers
from models.unet import EMBEDDING_TYPES


class NoisyClassifier(nn.Module):
    """x_t (batch, H, W, C), time_input (batch,) -> logits (batch, num_classes).

    `num_res_blocks` BigGAN residual blocks at each of the levels `ch_mult` (channels nf * mult),
    a downsampling residual block between levels. Call as `model.apply(variables, x,
    time_input, train=False, rngs={"dropout": key})`.
    """

    num_classes: int = 10
    nf: int = 32
    ch_mult: Sequence[int] = (1, 2)
    num_res_blocks: int = 1
    dropout: float = 0.1
    embedding_type: str = "positional"
    fourier_scale: float = 16.0

    @nn.compact
    def __call__(self, x: Float[Array, "b h w c"], time_input: Float[Array, "b"], *,
                 train: bool = False) -> Float[Array, "b k"]:
        if x.ndim != 4:
            raise ValueError(f"NoisyClassifier: x must have shape (batch, height, width, "
                             f"channels), got shape {tuple(x.shape)}")
        if self.embedding_type not in EMBEDDING_TYPES:
            raise ValueError(f"NoisyClassifier: embedding_type must be one of "
                             f"{list(EMBEDDING_TYPES)}, got {self.embedding_type!r}")
        if x.shape[1] % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(f"NoisyClassifier: {len(self.ch_mult)} levels halve the image "
                             f"{len(self.ch_mult) - 1} times; height {x.shape[1]} does not "
                             f"divide by {2 ** (len(self.ch_mult) - 1)}")
        temb = layers.time_embedding(time_input, self.nf, self.embedding_type,
                                     self.fourier_scale).astype(x.dtype)
        block = lambda ch, **kw: layers.ResnetBlockBigGAN(out_ch=ch, dropout=self.dropout, **kw)
        h = layers.conv(self.nf)(x)
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = block(self.nf * mult)(h, temb, train=train)
            if level < len(self.ch_mult) - 1:
                h = block(h.shape[-1], down=True)(h, temb, train=train)
        h = nn.silu(layers.group_norm(h)).mean(axis=(1, 2))
        return layers.dense(self.num_classes)(h)
