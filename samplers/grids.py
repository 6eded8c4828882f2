"""Time grids for fixed-step solves: where a budget of steps is spent between T and eps.

Every grid is a decreasing array of num_steps + 1 times from exactly T to exactly eps:
  "uniform": equal steps in t (Song et al.'s samplers);
  "karras":  EDM's spacing, sigma_i^(1/rho) equally spaced with rho = 7 (Karras et al. 2022,
             eq. 5), in the noise level sigma = std / m of `SDE.sigma`: small steps at low noise,
             where samples take their detail;
  "logsnr":  equal steps in log(m / std) = -log sigma (the grid DPM-Solver is analysed on).
The last two depend on the SDE only through sigma(T) and sigma(eps), so VP, sub-VP and VE with
the same noise range share them. A grid may also be given as its times: a 1-D array of
num_steps + 1 strictly decreasing times from T to eps (checked where its values are known, i.e.
unless it is traced).
"""
import jax
import jax.numpy as jnp
import numpy as np

from sde import checks
from sde.base import SDE

TIME_GRIDS = ("uniform", "karras", "logsnr")
KARRAS_RHO = 7.0


def check_time_grid(time_grid, num_steps):
    """A grid name, or an array of num_steps + 1 times; grids other than "uniform" need a fixed
    number of steps."""
    if _is_times(time_grid):
        if num_steps is None:
            raise ValueError("time_grid is an array of times, but num_steps is None: give "
                             "num_steps = len(time_grid) - 1")
        if np.shape(time_grid) != (num_steps + 1,):
            raise ValueError(f"time_grid as times must have shape (num_steps + 1,) = "
                             f"({num_steps + 1},), got {np.shape(time_grid)}")
        return
    checks.check_choice("time_grid", time_grid, TIME_GRIDS)
    if num_steps is None and time_grid != "uniform":
        raise ValueError(f"time_grid={time_grid!r} places fixed steps, but num_steps is None "
                         f"(an adaptive solve chooses its own steps): give num_steps")


def time_grid(sde: SDE, num_steps: int, eps: float, kind: str = "uniform"):
    """`num_steps + 1` decreasing times from sde.T to eps, spaced as `kind` says (or `kind`
    itself, checked, when it is an array of times)."""
    check_time_grid(kind, num_steps)
    checks.check_int("num_steps", num_steps, low=1)
    if _is_times(kind):
        return _checked_times(sde, jnp.asarray(kind), eps)
    if kind == "uniform":
        return jnp.linspace(sde.T, eps, num_steps + 1)
    ends = sde.sigma(jnp.asarray([sde.T, eps], jnp.float32))
    u = jnp.linspace(0.0, 1.0, num_steps + 1)
    if kind == "karras":
        lo, hi = ends ** (1 / KARRAS_RHO)
        sigmas = (lo + u * (hi - lo)) ** KARRAS_RHO
    else:
        lo, hi = jnp.log(ends)
        sigmas = jnp.exp(lo + u * (hi - lo))
    ts = sde.time_of_sigma(sigmas)
    return ts.at[0].set(sde.T).at[-1].set(eps)


def _is_times(time_grid) -> bool:
    return isinstance(time_grid, (np.ndarray, jax.Array, list, tuple))


def _checked_times(sde: SDE, times, eps: float):
    """`times` if they decrease strictly from sde.T to eps (not checked when traced)."""
    try:
        values = np.asarray(times, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return times
    if not np.isfinite(values).all() or (np.diff(values) >= 0).any():
        raise ValueError(f"time_grid as times must decrease strictly, got "
                         f"{np.array2string(values, precision=6)}")
    if not (np.isclose(values[0], sde.T, rtol=1e-5, atol=0)
            and np.isclose(values[-1], eps, rtol=1e-5, atol=0)):
        raise ValueError(f"time_grid as times must run from sde.T = {sde.T} to eps = {eps}, "
                         f"got {values[0]:.6g} ... {values[-1]:.6g}")
    return times
