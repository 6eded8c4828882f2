"""Isotropic Gaussian mixtures: a data distribution whose noised marginals are known exactly.

Under any linear SDE, x_t given x_0 is N(m(t) x_0, std(t)^2 I), so a mixture
sum_k w_k N(mu_k, s_k^2 I) stays a mixture sum_k w_k N(m mu_k, (m^2 s_k^2 + std^2) I) at every t.
That gives the exact score and log-density of p_t: the ground truth for samplers, likelihoods
and score-matching losses.
"""
import dataclasses
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
