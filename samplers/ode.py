"""Probability-flow ODE sampling with diffrax (Song et al. 2021, sec. 4.3, eq. 13)."""
import jax
import jax.numpy as jnp

from samplers.common import check_sampler_args, tweedie_denoise
from samplers.integrate import check_ode_solver, solve_ode
from sde import checks
from sde.base import SDE, Batch, ScoreFn


def ode_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, solver="tsit5", rtol=1e-5, atol=1e-5,
               num_steps=None, eps=1e-3, z=None, denoise=False,
               step_control="batch") -> tuple[Batch, jax.Array]:
    """Integrates dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 from T down to eps; returns (x, nfe).

    Adaptive (PI step control; `step_control` as in `samplers.integrate.solve_ode`) when
    `num_steps` is None, else `num_steps` equal steps. `z` (shape `shape`) replaces the prior draw: decoding a latent
    from `log_likelihood` gives the data point back. Solvers: `samplers.ODE_SOLVERS`.
    """
    check_ode_solver(solver, num_steps, rtol, atol, step_control)
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=denoise)
    if z is None:
        x = sde.prior_sampling(key, shape)
    else:
        checks.check_batch("z", z)
        if tuple(z.shape) != shape:
            raise ValueError(f"z must have shape {shape} (the `shape` argument), got {z.shape}")
        x = z
    reverse = sde.reverse(score_fn, probability_flow=True)

    def vf(t, x, args):
        return reverse.sde(x, jnp.full((x.shape[0],), t, x.dtype))[0]
    x, nfe = solve_ode(vf, x, sde.T, eps, solver=solver, num_steps=num_steps, rtol=rtol,
                       atol=atol, step_control=step_control)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe
