"""Variance-preserving SDEs: VP (DDPM's continuous limit) and sub-VP (Song et al. 2021, sec. 3.4).

Both share beta(t) = beta_min + t (beta_max - beta_min) and the drift -beta(t) x / 2, so
m(t) = exp(-B(t) / 2) with B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2.
Their discrete chains use DDPM's betas beta_i = beta_min / N + i (beta_max - beta_min) / (N (N - 1))
(1e-4 .. 0.02 for the defaults) and alpha_bar_i = prod_{j <= i} (1 - beta_j).
"""
import jax.numpy as jnp
import numpy as np

from sde import checks
from sde.base import SDE, register_sde


class _BetaSchedule(SDE):
    """Linear beta(t) and DDPM's discrete betas, shared by VP and sub-VP."""

    beta_min: float
    beta_max: float
    N: int

    def __post_init__(self):
        super().__post_init__()
        checks.check_parameter("beta_min", self.beta_min, low=0.0, low_open=True)
        checks.check_parameter("beta_max", self.beta_max, low=0.0, low_open=True)
        lo, hi = checks.concrete_array(self.beta_min), checks.concrete_array(self.beta_max)
        if lo is not None and hi is not None and np.any(lo > hi):
            raise ValueError(f"beta_min must be <= beta_max, got beta_min={self.beta_min!r} > "
                             f"beta_max={self.beta_max!r}")
        if hi is not None and np.any(hi >= self.N):
            raise ValueError(f"beta_max / N must be < 1 for DDPM's discrete betas, got "
                             f"beta_max={self.beta_max!r} with N={self.N}")

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _log_mean_coeff(self, t):
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def mean_coeff(self, t):
        return jnp.exp(self._log_mean_coeff(t))

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def _time_of_integral(self, b):
        """The t >= 0 with B(t) = beta_min t + (beta_max - beta_min) t^2 / 2 = b, written as
        2 b / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) b)) to stay exact when
        beta_max = beta_min."""
        root = jnp.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * b)
        return jnp.clip(2 * b / (self.beta_min + root), 0.0, self.T)

    @property
    def prior_std(self):
        return 1.0

    def discrete_betas(self):
        """DDPM's betas, shape (N,)."""
        return jnp.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

    def _discrete(self, i):
        """(beta_i, log alpha_bar_i, log alpha_bar_{i-1}) with alpha_bar_{-1} = 1."""
        log_alpha_bar = jnp.cumsum(jnp.log1p(-self.discrete_betas()))
        prev = jnp.where(i == 0, 0.0, log_alpha_bar[jnp.maximum(i - 1, 0)])
        return self.discrete_betas()[i], log_alpha_bar[i], prev


@register_sde
class VPSDE(_BetaSchedule):
    """dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw; std(t)^2 = 1 - m(t)^2; prior N(0, I).

    Its discrete chain is DDPM's: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    def std(self, t):
        return jnp.sqrt(-jnp.expm1(2 * self._log_mean_coeff(t)))

    def g2(self, t):
        return self.beta(t)

    def sigma(self, t):
        """sqrt(exp(B(t)) - 1)."""
        return jnp.sqrt(jnp.expm1(-2 * self._log_mean_coeff(t)))

    def time_of_sigma(self, sigma):
        return self._time_of_integral(jnp.log1p(jnp.square(sigma)))

    def discrete_marginal(self, i):
        _, log_ab, _ = self._discrete(i)
        return jnp.exp(0.5 * log_ab), jnp.sqrt(-jnp.expm1(log_ab))

    def discrete_transition(self, i):
        beta, _, _ = self._discrete(i)
        return jnp.sqrt(1 - beta), jnp.sqrt(beta)

    def ancestral_std(self, i):
        """sqrt(beta_i): DDPM's sigma_t^2 = beta_t (Ho et al. 2020, Alg. 2 and sec. 3.2, used for
        its CIFAR-10 results) and Song et al.'s VP ancestral sampler (eq. 47)."""
        return jnp.sqrt(self.discrete_betas()[i])


@register_sde
class subVPSDE(_BetaSchedule):
    """dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw; std(t) = 1 - m(t)^2.

    Its discrete chain keeps DDPM's betas and alpha_bar with std_i = 1 - alpha_bar_i, which gives
    x_i = sqrt(1 - beta_i) x_{i-1} + G_i z with G_i^2 = beta_i (1 - alpha_bar_{i-1} alpha_bar_i),
    the discrete counterpart of g(t)^2 = beta(t) (1 - m(t)^4).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000

    def std(self, t):
        return -jnp.expm1(2 * self._log_mean_coeff(t))

    def g2(self, t):
        return self.beta(t) * -jnp.expm1(4 * self._log_mean_coeff(t))

    def sigma(self, t):
        """(1 - m^2) / m = 2 sinh(B(t) / 2)."""
        return 2 * jnp.sinh(-self._log_mean_coeff(t))

    def time_of_sigma(self, sigma):
        return self._time_of_integral(2 * jnp.arcsinh(sigma / 2))

    def discrete_marginal(self, i):
        _, log_ab, _ = self._discrete(i)
        return jnp.exp(0.5 * log_ab), -jnp.expm1(log_ab)

    def discrete_transition(self, i):
        beta, log_ab, log_ab_prev = self._discrete(i)
        return jnp.sqrt(1 - beta), jnp.sqrt(beta * -jnp.expm1(log_ab + log_ab_prev))
