"""A residual MLP score network for low-dimensional data (toy sets, tests, benchmarks)."""
import flax.linen as nn
from jaxtyping import Array, Float

from models.layers import sinusoidal_embedding


class MLP(nn.Module):
    """x (batch, d), time_input (batch,) -> (batch, d).

    The sinusoidal embedding of `time_input` (Vaswani et al. / DDPM) passes through a small MLP
    and is added to every hidden layer; hidden layers are residual (x + Dense(SiLU(x))). The last
    layer starts at zero, so an untrained net predicts zero noise / zero score.
    """

    hidden: int = 128
    depth: int = 3
    embed_dim: int = 64

    @nn.compact
    def __call__(self, x: Float[Array, "b d"], time_input: Float[Array, "b"],
                 train: bool = False) -> Float[Array, "b d"]:
        if x.ndim != 2:
            raise ValueError(f"MLP takes x of shape (batch, dim), got shape {x.shape}: flatten "
                             f"images or use the U-Net (model.name='ncsnpp')")
        emb = sinusoidal_embedding(time_input, self.embed_dim)
        emb = nn.Dense(self.hidden)(nn.silu(nn.Dense(self.hidden)(emb))).astype(x.dtype)
        h = nn.Dense(self.hidden)(x)
        for _ in range(self.depth):
            h = h + nn.Dense(self.hidden)(nn.silu(h + emb))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(nn.silu(h))
