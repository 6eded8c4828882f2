"""A score network for windows of a multivariate series, with attention along time and across
features as CSDI's (Tashiro et al. 2021, sec. 4.2)."""
import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from models.layers import sinusoidal_embedding


class SeriesNet(nn.Module):
    """x (batch, steps, features), time_input (batch,) -> (batch, steps, features).

    Each cell is a vector of `channels`: its noised value, its given value and its mask (the
    `conditional_cells` input of models/mlp.py), plus embeddings of its step in the window and
    of its feature. Each of `depth` residual blocks adds the diffusion time's embedding, then
    attends along time (each feature's steps), across features (each step's features) and
    applies a position-wise MLP, with pre-layer-norms. The last layer starts at zero. No mask
    (None) is the empty one, the unconditional score.
    """
    channels: int = 64
    depth: int = 3
    heads: int = 4
    embed_dim: int = 64
    conditional_cells: bool = False

    @nn.compact
    def __call__(self, x: Float[Array, "b l f"], time_input: Float[Array, "b"],
                 train: bool = False, given_values: Float[Array, "b l f"] | None = None,
                 given_mask: Float[Array, "b l f"] | None = None) -> Float[Array, "b l f"]:
        if x.ndim != 3:
            raise ValueError(f"SeriesNet takes x of shape (batch, steps, features), got shape "
                             f"{x.shape}")
        if given_mask is not None and not self.conditional_cells:
            raise ValueError("given_mask needs a network built with conditional_cells=True")
        b, steps, features = x.shape
        c = self.channels
        mask = (jnp.zeros(x.shape, bool) if given_mask is None
                else jnp.broadcast_to(given_mask, x.shape).astype(bool))
        values = jnp.zeros_like(x) if given_values is None else given_values.astype(x.dtype)
        cells = jnp.stack([jnp.where(mask, 0, x), jnp.where(mask, values, 0),
                           mask.astype(x.dtype)], axis=-1)
        h = nn.Dense(c)(cells)
        step = sinusoidal_embedding(jnp.arange(steps, dtype=jnp.float32), c)
        h = h + nn.Dense(c)(step).astype(x.dtype)[None, :, None]
        h = h + nn.Embed(features, c)(jnp.arange(features)).astype(x.dtype)[None, None]
        emb = sinusoidal_embedding(time_input, self.embed_dim)
        emb = nn.Dense(c)(nn.silu(nn.Dense(c)(emb))).astype(x.dtype)[:, None, None]

        def attend(h, axis):  # self-attention along `axis` (1: time, 2: features)
            moved = jnp.moveaxis(h, axis, -2)
            lead = moved.shape[:-2]
            flat = moved.reshape(-1, *moved.shape[-2:])
            out = nn.MultiHeadDotProductAttention(num_heads=self.heads)(flat, flat)
            return jnp.moveaxis(out.reshape(*lead, *out.shape[-2:]), -2, axis)

        for _ in range(self.depth):
            h = h + emb
            h = h + attend(nn.LayerNorm()(h), 1)
            if features > 1:
                h = h + attend(nn.LayerNorm()(h), 2)
            h = h + nn.Dense(c)(nn.silu(nn.Dense(2 * c)(nn.LayerNorm()(h))))
        out = nn.Dense(1, kernel_init=nn.initializers.zeros)(nn.silu(nn.LayerNorm()(h)))
        return out[..., 0]
