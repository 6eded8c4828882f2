"""Probability-flow ODE sampling with diffrax (Song et al. 2021, sec. 4.3, eq. 13)."""
import diffrax
import jax
import jax.numpy as jnp

from samplers.common import check_sampler_args, tweedie_denoise
from samplers.integrate import ODE_SOLVERS, per_sample, solve
from sde import checks
from sde.base import SDE, Batch, ScoreFn


def check_ode_solver(solver, num_steps, rtol, atol):
    """Solver name, and either a fixed step count or tolerances for an adaptive solver."""
    checks.check_choice("solver", solver, list(ODE_SOLVERS))
    checks.check_int("num_steps", num_steps, low=1, allow_none=True)
    if num_steps is None:
        if not ODE_SOLVERS[solver].adaptive:
            adaptive = sorted(k for k, v in ODE_SOLVERS.items() if v.adaptive)
            raise ValueError(f"solver {solver!r} has no error estimate for adaptive steps: give "
                             f"num_steps, or use one of {adaptive}")
        checks.check_number("rtol", rtol, low=0.0, low_open=True)
        checks.check_number("atol", atol, low=0.0, low_open=True)


def integrate_per_sample(vf, y0, t0, t1, *, solver, rtol, atol, args=None):
    """Adaptive solve of `vf(t, y, args)` for every sample on its own step sizes: a vmap over the
    leading axis of `y0` and `args`, so `vf` sees one sample.

    Each sample's error is controlled on its own, and its result does not depend on the rest of
    the batch. Under vmap all lanes step until the slowest is done, so the network runs
    max-over-samples times: that maximum is the NFE returned.
    """
    def one(y, args):
        return solve(diffrax.ODETerm(vf), ODE_SOLVERS[solver], y, t0, t1, rtol=rtol, atol=atol,
                     args=args)
    y1, nfe = jax.vmap(one)(y0, args)
    return y1, jnp.max(nfe)


def ode_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, solver="tsit5", rtol=1e-5, atol=1e-5,
               num_steps=None, eps=1e-3, z=None, denoise=False) -> tuple[Batch, jax.Array]:
    """Integrates dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 from T down to eps; returns (x, nfe).

    Adaptive (PI step control, per sample) when `num_steps` is None, else `num_steps` equal steps
    on the whole batch. `z` (shape `shape`) replaces the prior draw: decoding a latent from
    `log_likelihood` gives the data point back. Solvers: see `samplers.integrate.ODE_SOLVERS`.
    """
    check_ode_solver(solver, num_steps, rtol, atol)
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=denoise)
    if z is None:
        x = sde.prior_sampling(key, shape)
    else:
        checks.check_batch("z", z)
        if tuple(z.shape) != shape:
            raise ValueError(f"z must have shape {shape} (the `shape` argument), got {z.shape}")
        x = z
    drift = lambda x, t: sde.reverse(score_fn, probability_flow=True).sde(x, t)[0]
    if num_steps is None:
        vf = lambda t, x, args: per_sample(drift)(x, t)
        x, nfe = integrate_per_sample(vf, x, sde.T, eps, solver=solver, rtol=rtol, atol=atol)
    else:
        vf = lambda t, x, args: drift(x, jnp.full((shape[0],), t, x.dtype))
        x, nfe = solve(diffrax.ODETerm(vf), ODE_SOLVERS[solver], x, sde.T, eps,
                       num_steps=num_steps)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe
