"""The sliced Wasserstein distance between two sample sets (the Frechet distance of features is
`scorelab.metrics.fid.frechet_distance`)."""
import jax
import jax.numpy as jnp


def sliced_wasserstein(x, y, key, *, num_projections: int = 256):
    """Sliced 2-Wasserstein distance between equal-size sample sets x, y of shape (n, *data).

    sqrt(E_theta W_2^2(theta^T x, theta^T y)) over random unit directions theta; in one dimension
    W_2 between empirical measures of equal size pairs sorted values (Rabin et al. 2011).
    """
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of samples and dimensions, got "
                         f"{x.shape} and {y.shape}")
    theta = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    px, py = jnp.sort(x @ theta, axis=0), jnp.sort(y @ theta, axis=0)
    return jnp.sqrt(jnp.mean(jnp.square(px - py)))

