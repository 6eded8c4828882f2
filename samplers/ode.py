"""Probability-flow ODE sampling (Song et al. 2021, sec. 4.3, eq. 13): diffrax's Runge-Kutta
solvers, adaptive or on a fixed grid, and the few-step exponential integrators of
`samplers.fewstep`."""
import jax
import jax.numpy as jnp

from samplers import grids
from samplers.common import check_sampler_args, tweedie_denoise
from samplers.fewstep import FEW_STEP_SOLVERS, few_step_solve
from samplers.integrate import ODE_SOLVERS, STEP_CONTROLS, check_ode_solver, solve_ode
from sde import checks
from sde.base import SDE, Batch, ScoreFn


def ode_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, solver="dopri5", rtol=1e-5, atol=1e-5,
               num_steps=None, eps=1e-3, z=None, denoise=False, step_control="rms",
               time_grid="uniform") -> tuple[Batch, jax.Array]:
    """Integrates dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 from T down to eps; returns (x, nfe).

    Solvers: diffrax's (`samplers.ODE_SOLVERS`), adaptive (PI step control; `step_control` as
    in `samplers.integrate.solve_ode`) when `num_steps` is None, by default Dormand and
    Prince's 5(4) pair (the pair of Song et al.'s RK45; on a trained network Tsit5 took 1.7x
    its NFE at the same tolerances, bench/bench_score_sde.py); and the few-step solvers
    (`samplers.FEW_STEP_SOLVERS`: "ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_3m_pc", "edm_heun"),
    which need `num_steps`. Fixed steps are placed by `time_grid` (`samplers.grids`). `z`
    (shape `shape`) replaces the prior draw: decoding a latent from `log_likelihood` gives the
    data point back.
    """
    if solver in FEW_STEP_SOLVERS:
        checks.check_int("num_steps", num_steps, low=1, allow_none=True)
        checks.check_choice("step_control", step_control, STEP_CONTROLS)
        if num_steps is None:
            raise ValueError(f"solver {solver!r} takes fixed steps (one score evaluation each"
                             f"{', two for Heun' if solver == 'edm_heun' else ''}): give "
                             f"num_steps")
    elif solver in ODE_SOLVERS:
        check_ode_solver(solver, num_steps, rtol, atol, step_control)
    else:
        checks.check_choice("solver", solver, list(ODE_SOLVERS) + list(FEW_STEP_SOLVERS))
    grids.check_time_grid(time_grid, num_steps)
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=denoise)
    if z is None:
        x = sde.prior_sampling(key, shape)
    else:
        checks.check_batch("z", z)
        if tuple(z.shape) != shape:
            raise ValueError(f"z must have shape {shape} (the `shape` argument), got {z.shape}")
        x = z
    ts = None if num_steps is None else grids.time_grid(sde, num_steps, eps, time_grid)
    if solver in FEW_STEP_SOLVERS:
        x, nfe = few_step_solve(sde, score_fn, x, ts, solver)
    else:
        reverse = sde.reverse(score_fn, probability_flow=True)

        def vf(t, x, args):
            return reverse.sde(x, jnp.full((x.shape[0],), t, x.dtype))[0]
        x, nfe = solve_ode(vf, x, sde.T, eps, solver=solver, ts=ts, rtol=rtol, atol=atol,
                           step_control=step_control)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe
