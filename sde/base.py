"""Linear SDEs dx = f(t) x dt + g(t) dw, their discretizations and reverse-time counterparts.

Every SDE of Song et al. (ICLR 2021) has a drift linear in x, so its perturbation kernel is Gaussian:
    p_0t(x_t | x_0) = N(m(t) x_0, std(t)^2 I),   m(t) = exp(int_0^t f(s) ds),
with d m/dt = f m and d std^2/dt = 2 f std^2 + g^2 (the moment equations). A subclass states
m(t), std(t), f(t), g(t)^2 and the prior's std in closed form; everything else (the public members,
the reverse-time SDE, the probability-flow ODE and the discrete Markov chain behind DDPM / SMLD and
ancestral sampling) is derived here, once.

Subclasses are frozen dataclasses registered as JAX pytrees with `register_sde`: their numeric
parameters are pytree data (changing them does not recompile; the SDE can be an argument of a
jitted function) and `N`, which fixes array shapes, is static.
"""
import abc
import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from sde import checks

Batch = Float[Array, "batch *data"]
Times = Float[Array, "batch"]
ScoreFn = Callable[[Batch, Times], Batch]


def batch_mul(c: Float[Array, "batch"], x: Batch) -> Batch:
    """c[i] * x[i] for a per-sample coefficient c of shape (batch,)."""
    return c.reshape(c.shape + (1,) * (x.ndim - 1)) * x


def register_sde(cls):
    """Makes `cls` a frozen dataclass pytree: field `N` is static, every other field is data."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    data = [f.name for f in dataclasses.fields(cls) if f.name != "N"]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=["N"])


class SDE(abc.ABC):
    """dx = f(t) x dt + g(t) dw on [0, T], with a Gaussian prior N(0, prior_std^2 I) at T.

    Subclasses define `mean_coeff`, `std`, `drift_coeff`, `g2` and `prior_std`; they may override
    `discrete_marginal`, `discrete_transition` and `ancestral_std` where the paper's discrete
    model is not the exact transition of the continuous SDE (DDPM's betas are the example).
    """

    N: int
    T: float = 1.0

    def __post_init__(self):
        checks.check_int("N", self.N, low=2)

    # ---- closed forms a subclass provides; t has shape (batch,) ----

    @abc.abstractmethod
    def mean_coeff(self, t: Times) -> Times:
        """m(t) = exp(int_0^t f(s) ds): the mean of x_t given x_0 is m(t) x_0."""

    @abc.abstractmethod
    def std(self, t: Times) -> Times:
        """Standard deviation of x_t given x_0."""

    @abc.abstractmethod
    def drift_coeff(self, t: Times) -> Times:
        """f(t): the drift is f(t) x."""

    @abc.abstractmethod
    def g2(self, t: Times) -> Times:
        """g(t)^2, the squared diffusion coefficient."""

    @property
    @abc.abstractmethod
    def prior_std(self):
        """p_T is approximated by N(0, prior_std^2 I)."""

    # ---- the noise level sigma(t) = std(t) / m(t): x_t / m(t) = x_0 + sigma(t) z ----

    def sigma(self, t: Times) -> Times:
        """std(t) / m(t), increasing in t: the noise level of x_t / m(t) (EDM's sigma). Time
        grids and the few-step solvers work in sigma, where every linear SDE's probability-flow
        ODE is the same one, d(x / m) / d sigma = (x / m - E[x_0 | x_t]) / sigma."""
        return self.std(t) / self.mean_coeff(t)

    def time_of_sigma(self, sigma: Times) -> Times:
        """The time t with sigma(t) = sigma, clipped to [0, T]; the inverse of `sigma`.

        Default: 60 bisections of [0, T] (sigma is increasing); the SDEs here override it with
        their closed forms.
        """
        def halve(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) / 2
            above = self.sigma(mid) >= sigma
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)
        sigma = jnp.asarray(sigma)
        lo, hi = jax.lax.fori_loop(0, 60, halve, (jnp.zeros_like(sigma),
                                                  jnp.full_like(sigma, self.T)))
        return (lo + hi) / 2

    # ---- the public members (docs/api.md) ----

    def sde(self, x: Batch, t: Times) -> tuple[Batch, Times]:
        """(f(t) x, g(t)) of the forward SDE dx = f(t) x dt + g(t) dw."""
        return batch_mul(self.drift_coeff(t), x), jnp.sqrt(self.g2(t))

    def marginal_prob(self, x: Batch, t: Times) -> tuple[Batch, Times]:
        """(m(t) x, std(t)): the perturbation kernel p_0t(x_t | x_0 = x) = N(mean, std^2 I)."""
        return batch_mul(self.mean_coeff(t), x), self.std(t)

    def prior_sampling(self, key, shape, dtype=jnp.float32) -> Batch:
        """A draw of `shape` from N(0, prior_std^2 I)."""
        return self.prior_std * jax.random.normal(key, shape, dtype)

    def prior_logp(self, z: Batch) -> Times:
        """log N(z; 0, prior_std^2 I) in nats, per sample: shape (batch,)."""
        d = math.prod(z.shape[1:])
        var = jnp.square(self.prior_std)
        sq = jnp.sum(jnp.square(z).reshape(z.shape[0], -1), axis=-1)
        return -0.5 * d * jnp.log(2 * jnp.pi * var) - 0.5 * sq / var

    def discretize(self, x: Batch, t: Times) -> tuple[Batch, Times]:
        """(f, G) with x_{i+1} = x_i + f + G z: one step of the discrete chain (see below)."""
        r, g = self.discrete_transition(self.time_index(t))
        return batch_mul(r - 1, x), g

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE dx = [f - g^2 score] dt + g dw_bar (Song et al. eq. 6), or the
        probability-flow ODE dx = [f - g^2 score / 2] dt (eq. 13) when `probability_flow`."""
        if not isinstance(probability_flow, bool):
            raise TypeError(f"probability_flow must be a bool, got {probability_flow!r}")
        return ReverseSDE(self, score_fn, probability_flow)

    # ---- the discrete Markov chain x_i = r_i x_{i-1} + G_i z, i = 0 .. N-1, x_{-1} = x_0 data ----

    def time_index(self, t: Times) -> Int[Array, "batch"]:
        """The chain index i = floor(t (N - 1) / T) of continuous time t, as in Song et al.'s code.

        The 1e-4 slack absorbs float rounding of grid times such as linspace(T, 0, N) without
        moving linspace(T, eps, N) for eps >= 1e-3 (whose fractional parts stay below 1 - 1e-3).
        """
        i = jnp.floor(t * (self.N - 1) / self.T + 1e-4)
        return jnp.clip(i, 0, self.N - 1).astype(jnp.int32)

    def discrete_marginal(self, i: Int[Array, "batch"]) -> tuple[Times, Times]:
        """(m_i, std_i) of the chain: x_i given the data is N(m_i x_0, std_i^2 I).

        Default: the continuous marginal at t_i = i T / (N - 1), which for VE gives SMLD's
        geometric noise levels exactly.
        """
        t = i * (self.T / (self.N - 1))
        return self.mean_coeff(t), self.std(t)

    def discrete_transition(self, i: Int[Array, "batch"]) -> tuple[Times, Times]:
        """(r_i, G_i) with x_i = r_i x_{i-1} + G_i z.

        Default: the exact Gaussian transition between consecutive chain marginals,
        r_i = m_i / m_{i-1}, G_i^2 = std_i^2 - r_i^2 std_{i-1}^2, with m_{-1} = 1, std_{-1} = 0.
        """
        m, s = self.discrete_marginal(i)
        m_prev, s_prev = self._previous_marginal(i)
        r = m / m_prev
        return r, jnp.sqrt(jnp.maximum(jnp.square(s) - jnp.square(r * s_prev), 0.0))

    def ancestral_std(self, i: Int[Array, "batch"]) -> Times:
        """Noise std of ancestral sampling's step i -> i-1.

        Default: the std of the exact posterior q(x_{i-1} | x_i, x_0),
        sqrt(std_{i-1}^2 G_i^2 / std_i^2) (for VE: Song et al. eq. 47, SMLD's ancestral sampler).
        """
        _, g = self.discrete_transition(i)
        _, s = self.discrete_marginal(i)
        _, s_prev = self._previous_marginal(i)
        return s_prev * g / s

    def _previous_marginal(self, i):
        m_prev, s_prev = self.discrete_marginal(jnp.maximum(i - 1, 0))
        first = i == 0
        return jnp.where(first, 1.0, m_prev), jnp.where(first, 0.0, s_prev)

    def replace(self, **changes) -> "SDE":
        """A copy with some fields changed (e.g. `sde.replace(N=100)` for a coarser chain)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
    """dx = [f(x, t) - c g(t)^2 score(x, t)] dt + g_rev(t) dw_bar, run from T down to 0.

    c = 1 and g_rev = g for the reverse-time SDE; c = 1/2 and g_rev = 0 for the probability-flow
    ODE. `discretize` is the reverse of the forward chain step: x_{i-1} = x_i - f_rev + G_rev z
    (Song et al. eq. 46, the "reverse diffusion" predictor).
    """

    forward: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    @property
    def T(self):
        return self.forward.T

    @property
    def N(self):
        return self.forward.N

    @property
    def _c(self):
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: Batch, t: Times) -> tuple[Batch, Times]:
        drift, g = self.forward.sde(x, t)
        drift = drift - batch_mul(self._c * jnp.square(g), self.score_fn(x, t))
        return drift, jnp.zeros_like(g) if self.probability_flow else g

    def discretize(self, x: Batch, t: Times) -> tuple[Batch, Times]:
        f, g = self.forward.discretize(x, t)
        f = f - batch_mul(self._c * jnp.square(g), self.score_fn(x, t))
        return f, jnp.zeros_like(g) if self.probability_flow else g
