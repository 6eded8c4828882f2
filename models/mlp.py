"""A residual MLP score network for low-dimensional data (toy sets, tables, tests, benchmarks)."""
import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from models.layers import sinusoidal_embedding


class MLP(nn.Module):
    """x (batch, d), time_input (batch,) -> (batch, d).

    The sinusoidal embedding of `time_input` (Vaswani et al. / DDPM) passes through a small MLP
    and is added to every hidden layer; hidden layers are residual (x + Dense(SiLU(x))). The last
    layer starts at zero, so an untrained net predicts zero noise / zero score.

    With `conditional_cells` the network is conditioned on given cells, as CSDI (Tashiro et al.
    2021) conditions on observed values: its input is x where `given_mask` is 0, `given_values`
    where it is 1, and the mask itself (3 d features). Its output is then the score of the other
    cells given those; no mask (None) is the empty one, the unconditional score.
    """

    hidden: int = 128
    depth: int = 3
    embed_dim: int = 64
    dropout: float = 0.0  # in each residual branch, in training
    conditional_cells: bool = False

    @nn.compact
    def __call__(self, x: Float[Array, "b d"], time_input: Float[Array, "b"],
                 train: bool = False, given_values: Float[Array, "b d"] | None = None,
                 given_mask: Float[Array, "b d"] | None = None) -> Float[Array, "b d"]:
        if x.ndim == 3:  # series windows (batch, steps, features), flattened
            flat = lambda a: None if a is None else jnp.broadcast_to(a, x.shape).reshape(
                len(x), -1)
            out = self(flat(x), time_input, train, flat(given_values), flat(given_mask))
            return out.reshape(x.shape)
        if x.ndim != 2:
            raise ValueError(f"MLP takes x of shape (batch, dim) or (batch, steps, features), "
                             f"got shape {x.shape}: use the U-Net (model.name='ncsnpp') for "
                             f"images")
        h = x
        if self.conditional_cells:
            mask = (jnp.zeros(x.shape, bool) if given_mask is None
                    else jnp.broadcast_to(given_mask, x.shape).astype(bool))
            values = jnp.zeros_like(x) if given_values is None else given_values.astype(x.dtype)
            h = jnp.concatenate([jnp.where(mask, 0, x), jnp.where(mask, values, 0),
                                 mask.astype(x.dtype)], axis=-1)
        elif given_mask is not None:
            raise ValueError("given_mask needs a network built with conditional_cells=True")
        emb = sinusoidal_embedding(time_input, self.embed_dim)
        emb = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(emb))).astype(x.dtype)
        h = nn.Dense(self.hidden)(h)
        for _ in range(self.depth):
            branch = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h + emb))
            h = h + nn.Dense(self.hidden)(branch)
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(nn.silu(h))
