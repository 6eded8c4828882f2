"""The variance-exploding SDE: NCSN / SMLD's continuous limit (Song et al. 2021, sec. 3.4)."""
import jax.numpy as jnp
import numpy as np

from sde import checks
from sde.base import SDE, register_sde


@register_sde
class VESDE(SDE):
    """dx = sqrt(d sigma^2(t) / dt) dw with sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    m(t) = 1, std(t) = sigma(t), g(t)^2 = 2 sigma(t)^2 log(sigma_max / sigma_min); prior
    N(0, sigma_max^2 I). The discrete chain is SMLD's: geometric sigma_i = sigma(i / (N - 1)) and
    x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z with sigma_{-1} = 0 (the base-class default).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    N: int = 1000

    def __post_init__(self):
        super().__post_init__()
        checks.check_parameter("sigma_min", self.sigma_min, low=0.0, low_open=True)
        checks.check_parameter("sigma_max", self.sigma_max, low=0.0, low_open=True)
        lo, hi = checks.concrete_array(self.sigma_min), checks.concrete_array(self.sigma_max)
        if lo is not None and hi is not None and np.any(lo >= hi):
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={self.sigma_min!r} "
                             f">= sigma_max={self.sigma_max!r}")

    def _log_ratio(self):
        return jnp.log(self.sigma_max / self.sigma_min)

    def mean_coeff(self, t):
        return jnp.ones_like(t)

    def std(self, t):
        return self.sigma_min * jnp.exp(t * self._log_ratio())

    def drift_coeff(self, t):
        return jnp.zeros_like(t)

    def sigma(self, t):
        return self.std(t)

    def time_of_sigma(self, sigma):
        return jnp.clip(jnp.log(sigma / self.sigma_min) / self._log_ratio(), 0.0, self.T)

    def g2(self, t):
        return 2 * jnp.square(self.std(t)) * self._log_ratio()

    @property
    def prior_std(self):
        return self.sigma_max
