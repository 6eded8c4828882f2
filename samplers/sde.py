"""Reverse-time SDE sampling with diffrax solvers (Song et al. 2021, eq. 6)."""
import diffrax
import jax
import jax.numpy as jnp
import lineax

from samplers import grids
from samplers.common import check_sampler_args, tweedie_denoise
from samplers.integrate import SDE_SOLVERS, StepBrownianPath, solve
from sde import checks
from sde.base import SDE, Batch, ScoreFn


def sde_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, solver="euler_maruyama",
               num_steps=1000, eps=1e-3, denoise=True,
               time_grid="uniform") -> tuple[Batch, jax.Array]:
    """Integrates dx = [f - g^2 score] dt + g dw_bar from t = T down to t = eps; returns (x, nfe).

    Diffrax's Brownian paths run forward in time, so the solve is in s = T - t:
    dx = -[f(x, T - s) - g^2 score(x, T - s)] ds + g(T - s) dw_s, s in [0, T - eps], on
    `num_steps` steps placed by `time_grid` (`samplers.grids`). The Brownian path has the full
    batch shape: every sample gets its own independent noise. Solvers: "euler_maruyama", "heun",
    "sea", "sra1", "shark" (the last three are additive-noise methods; SRA1 and ShARK are of
    strong order 1.5).

    Differentiable in reverse mode (`jax.grad` through the samples, e.g. with respect to the
    score's parameters): the fixed-step solve is checkpointed, and its Brownian increments are
    a pure function of the key and the step.
    """
    checks.check_choice("solver", solver, list(SDE_SOLVERS))
    checks.check_int("num_steps", num_steps, low=1)
    grids.check_time_grid(time_grid, num_steps)
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=denoise)
    k_prior, k_brownian = jax.random.split(key)
    x = sde.prior_sampling(k_prior, shape)
    reverse = sde.reverse(score_fn)
    times = lambda s: jnp.full((shape[0],), sde.T - s, x.dtype)

    def drift(s, x, args):
        return -reverse.sde(x, times(s))[0]

    def diffusion(s, x, args):
        g = jnp.sqrt(sde.g2(times(s)))
        return lineax.DiagonalLinearOperator(jnp.broadcast_to(g.reshape((-1,) + (1,) * (x.ndim - 1)),
                                                              x.shape))

    brownian = StepBrownianPath(jax.ShapeDtypeStruct(shape, x.dtype),
                                SDE_SOLVERS[solver].levy_area, k_brownian)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, brownian))
    s_grid = sde.T - grids.time_grid(sde, num_steps, eps, time_grid)
    x, nfe = solve(terms, SDE_SOLVERS[solver], x, 0.0, sde.T - eps, ts=s_grid)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe
