"""Distances between two sample sets."""
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


def frechet_distance(feats_a, feats_b, *, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits of two
    feature sets (n, d) (Heusel et al. 2017). eps I is added to both covariances: dead ReLU
    units make them singular."""
    import numpy as np
    import scipy.linalg

    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.cov(a, rowvar=False) + eps * np.eye(a.shape[1])
    s_b = np.cov(b, rowvar=False) + eps * np.eye(b.shape[1])
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(root)))
