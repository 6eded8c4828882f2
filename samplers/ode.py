"""Probability-flow ODE sampling with diffrax (Song et al. 2021, sec. 4.3, eq. 13)."""
import diffrax
import jax
import jax.numpy as jnp

from samplers.common import check_sampler_args, tweedie_denoise
from samplers.integrate import ODE_SOLVERS, solve
from sde import checks
from sde.base import SDE, Batch, ScoreFn

STEP_CONTROLS = ("batch", "per_sample")


def check_ode_solver(solver, num_steps, rtol, atol, step_control):
    """Solver name, and either a fixed step count or tolerances for an adaptive solver."""
    checks.check_choice("solver", solver, list(ODE_SOLVERS))
    checks.check_int("num_steps", num_steps, low=1, allow_none=True)
    checks.check_choice("step_control", step_control, STEP_CONTROLS)
    if num_steps is None:
        if not ODE_SOLVERS[solver].adaptive:
            adaptive = sorted(k for k, v in ODE_SOLVERS.items() if v.adaptive)
            raise ValueError(f"solver {solver!r} has no error estimate for adaptive steps: give "
                             f"num_steps, or use one of {adaptive}")
        checks.check_number("rtol", rtol, low=0.0, low_open=True)
        checks.check_number("atol", atol, low=0.0, low_open=True)


def worst_sample_rms(error) -> jax.Array:
    """The largest per-sample RMS of a pytree of (batch, ...) leaves: with this norm a shared
    step is accepted only when every sample meets rtol / atol on its own."""
    leaves = jax.tree_util.tree_leaves(error)
    sq = sum(jnp.sum(jnp.square(a).reshape(a.shape[0], -1), axis=-1) for a in leaves)
    return jnp.sqrt(jnp.max(sq) / sum(a[0].size for a in leaves))


def integrate(vf, y0, t0, t1, *, solver, num_steps=None, rtol=None, atol=None,
              step_control="batch", args=None):
    """Solves dy/dt = vf(t, y, args) for a batch (leading axis of y0 and args); (y1, nfe).

    vf takes the whole batch and a scalar t. Fixed steps when `num_steps` is given. Adaptive
    `step_control`:
      "batch":      one step size for the batch, accepted only if every sample's own RMS error
                    meets the tolerances (the reference code's RK45 averaged the error over the
                    batch, so one poorly resolved sample could hide among good ones);
      "per_sample": a vmap of the solve: each sample has its own step sizes and its result does
                    not depend on the rest of the batch. All lanes step until the slowest is
                    done, so the NFE (the maximum over samples) and the bookkeeping are higher.
    """
    method = ODE_SOLVERS[solver]
    if num_steps is not None or step_control == "batch":
        norm = None if num_steps is not None else worst_sample_rms
        return solve(diffrax.ODETerm(vf), method, y0, t0, t1, num_steps=num_steps, rtol=rtol,
                     atol=atol, args=args, norm=norm)

    def one(y, a):  # one sample, presented to vf as a batch of one
        batch1 = lambda tree: jax.tree_util.tree_map(lambda v: v[None], tree)
        vf1 = lambda t, y, a: jax.tree_util.tree_map(lambda v: v[0], vf(t, batch1(y), batch1(a)))
        return solve(diffrax.ODETerm(vf1), method, y, t0, t1, rtol=rtol, atol=atol, args=a)
    y1, nfe = jax.vmap(one)(y0, args)
    return y1, jnp.max(nfe)


def ode_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, solver="tsit5", rtol=1e-5, atol=1e-5,
               num_steps=None, eps=1e-3, z=None, denoise=False,
               step_control="batch") -> tuple[Batch, jax.Array]:
    """Integrates dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 from T down to eps; returns (x, nfe).

    Adaptive (PI step control, see `integrate` for `step_control`) when `num_steps` is None,
    else `num_steps` equal steps. `z` (shape `shape`) replaces the prior draw: decoding a latent
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
    x, nfe = integrate(vf, x, sde.T, eps, solver=solver, num_steps=num_steps, rtol=rtol,
                       atol=atol, step_control=step_control)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe
