"""Isotropic Gaussian mixtures: a data distribution whose noised marginals are known exactly.

Under any linear SDE, x_t given x_0 is N(m(t) x_0, std(t)^2 I), so a mixture
sum_k w_k N(mu_k, s_k^2 I) stays a mixture sum_k w_k N(m mu_k, (m^2 s_k^2 + std^2) I) at every t.
That gives the exact score and log-density of p_t: the ground truth for samplers, likelihoods
and score-matching losses.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sde.base import SDE, Batch, Times


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights[k] N(means[k], stds[k]^2 I) over data of shape means.shape[1:]."""

    weights: Float[Array, "k"]
    means: Float[Array, "k *data"]
    stds: Float[Array, "k"]

    @classmethod
    def create(cls, weights, means, stds) -> "GaussianMixture":
        """Checks and normalises the parameters (weights need not sum to one)."""
        weights, means, stds = (jnp.asarray(a, jnp.float32) for a in (weights, means, stds))
        k = means.shape[0] if means.ndim >= 2 else -1
        if k < 1 or weights.shape != (k,) or stds.shape != (k,):
            raise ValueError(f"means must have shape (k, *data) with weights and stds of shape "
                             f"(k,), got {means.shape}, {weights.shape}, {stds.shape}")
        if not (bool(jnp.all(weights > 0)) and bool(jnp.all(stds > 0))):
            raise ValueError(f"weights and stds must be positive, got {weights} and {stds}")
        return cls(weights / jnp.sum(weights), means, stds)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    def sample(self, key, n: int) -> Batch:
        """n exact samples, shape (n, *data)."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
        noise = jax.random.normal(k_noise, (n,) + self.data_shape)
        return self.means[comp] + self.stds[comp].reshape((n,) + (1,) * len(self.data_shape)) * noise

    def _components(self, sde: SDE | None, t: Times | None):
        """Per-sample component means (batch, k, *data) and variances (batch, k) of p_t."""
        if sde is None:
            return self.means[None], jnp.square(self.stds)[None]
        m, s = sde.mean_coeff(t), sde.std(t)
        means = m.reshape((-1, 1) + (1,) * len(self.data_shape)) * self.means[None]
        var = jnp.square(m[:, None] * self.stds[None]) + jnp.square(s)[:, None]
        return means, var

    def _log_joint(self, x, sde, t):
        """log w_k + log N(x; mean_k, var_k I), shape (batch, k)."""
        means, var = self._components(sde, t)
        d = math.prod(self.data_shape)
        sq = jnp.sum(jnp.square(x[:, None] - means).reshape(x.shape[0], means.shape[1], -1), -1)
        return jnp.log(self.weights) - 0.5 * d * jnp.log(2 * jnp.pi * var) - 0.5 * sq / var

    def log_prob(self, x: Batch, sde: SDE | None = None, t: Times | None = None) -> Times:
        """log p_t(x) in nats, shape (batch,); the data density when `sde` is None."""
        return jax.nn.logsumexp(self._log_joint(x, sde, t), axis=-1)

    def responsibilities(self, x: Batch, sde: SDE | None = None, t: Times | None = None):
        """Posterior component probabilities p(k | x_t), shape (batch, k)."""
        return jax.nn.softmax(self._log_joint(x, sde, t), axis=-1)

    def score(self, x: Batch, t: Times, sde: SDE) -> Batch:
        """grad_x log p_t(x) = sum_k p(k | x) (m mu_k - x) / var_k."""
        means, var = self._components(sde, t)
        resp = self.responsibilities(x, sde, t)
        coeff = (resp / var).reshape(resp.shape + (1,) * len(self.data_shape))
        return jnp.sum(coeff * (means - x[:, None]), axis=1)

    def score_fn(self, sde: SDE):
        """The exact `score_fn(x, t)` of p_t under `sde` (docs/api.md)."""
        return lambda x, t: self.score(x, t, sde)

    @jax.jit
    def posterior(self, matrix, y, noise_std) -> "MixturePosterior":
        """The exact posterior of x_0 given y = A x_0 + noise_std n, n ~ N(0, I): a Gaussian
        mixture with full covariances, one per observation.

        `matrix` is A as (m, d) on flattened data, `y` is (batch, m), `noise_std` a scalar or
        (batch,), and noise_std = 0 is allowed when A has full row rank. With S_k = s_k^2 A A^T +
        noise_std^2 I and K_k = s_k^2 A^T S_k^-1 (the Kalman gain), component k has weight
        proportional to w_k N(y; A mu_k, S_k), mean mu_k + K_k (y - A mu_k) and covariance
        s_k^2 (I - K_k A), which is (I / s_k^2 + A^T A / noise_std^2)^-1 when noise_std > 0.
        """
        a = jnp.asarray(matrix, self.means.dtype)
        b, (m, d) = y.shape[0], a.shape
        mu = self.means.reshape(-1, d)                                        # (k, d)
        var_k = jnp.square(self.stds)                                         # (k,)
        noise_var = jnp.broadcast_to(jnp.square(jnp.asarray(noise_std, a.dtype)), (b,))
        s = (var_k[None, :, None, None] * (a @ a.T)
             + noise_var[:, None, None, None] * jnp.eye(m))                  # (b, k, m, m)
        resid = y[:, None, :] - mu @ a.T                                      # (b, k, m)
        chol = jnp.linalg.cholesky(s)
        white = jax.scipy.linalg.solve_triangular(chol, resid[..., None], lower=True)[..., 0]
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
        log_w = (jnp.log(self.weights) - 0.5 * (m * jnp.log(2 * jnp.pi) + log_det)
                 - 0.5 * jnp.sum(jnp.square(white), -1))
        gain = var_k[None, :, None, None] * jnp.swapaxes(
            jnp.linalg.solve(s, jnp.broadcast_to(a, s.shape[:2] + a.shape)), -1, -2)  # (b,k,d,m)
        means = mu[None] + jnp.einsum("bkdm,bkm->bkd", gain, resid)
        covs = var_k[None, :, None, None] * (jnp.eye(d) - gain @ a)
        return MixturePosterior(jax.nn.softmax(log_w, -1), means, covs, self.data_shape)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["weights", "means", "covs"],
                   meta_fields=["data_shape"])
@dataclasses.dataclass(frozen=True)
class MixturePosterior:
    """A Gaussian mixture per observation: weights (batch, k), means (batch, k, d) and
    covariances (batch, k, d, d) over flattened data of shape `data_shape`."""

    weights: Float[Array, "batch k"]
    means: Float[Array, "batch k d"]
    covs: Float[Array, "batch k d d"]
    data_shape: tuple[int, ...]

    @property
    def mean(self) -> Batch:
        """E[x_0 | y], shape (batch, *data)."""
        m = jnp.einsum("bk,bkd->bd", self.weights, self.means)
        return m.reshape((-1,) + self.data_shape)

    @jax.jit
    def sample(self, key) -> Batch:
        """One exact draw per observation, shape (batch, *data)."""
        k_comp, k_noise = jax.random.split(key)
        b, _, d = self.means.shape
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), axis=-1)   # (b,)
        pick = lambda a: jnp.take_along_axis(a, comp.reshape((b, 1) + (1,) * (a.ndim - 2)), 1)[:, 0]
        mean, cov = pick(self.means), pick(self.covs)
        vals, vecs = jnp.linalg.eigh(cov)  # covariances may be singular (noise-free observations)
        root = vecs * jnp.sqrt(jnp.maximum(vals, 0.0))[:, None, :]
        z = jax.random.normal(k_noise, (b, d), mean.dtype)
        return (mean + jnp.einsum("bij,bj->bi", root, z)).reshape((b,) + self.data_shape)
