"""Diffrax glue: solver tables with their evaluation counts, fixed and adaptive solves, the
batched ODE solve that `ode_sample` and `log_likelihood` share, and a Brownian path that
reverse-mode differentiation can go through.

Diffrax's `sol.stats` counts steps, not vector-field evaluations, so each solver's table entry
says how many evaluations one step makes and how many the first step adds (first-same-as-last
Runge-Kutta methods evaluate f(t0, y0) once up front). tests/test_samplers.py checks every entry
against a host-side counter, so the NFE we report is the number of evaluations the solve made.
"""
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from optimistix import rms_norm

from sde import checks


class Solver(NamedTuple):
    make: type
    evals_per_step: int
    initial_evals: int
    adaptive: bool = False  # has an embedded error estimate for step-size control
    levy_area: type = diffrax.BrownianIncrement  # what an SDE solver needs from the Brownian path


ODE_SOLVERS = {
    "euler": Solver(diffrax.Euler, 1, 0),
    "midpoint": Solver(diffrax.Midpoint, 2, 0),
    "heun": Solver(diffrax.Heun, 2, 0, adaptive=True),
    "bosh3": Solver(diffrax.Bosh3, 3, 1, adaptive=True),
    "tsit5": Solver(diffrax.Tsit5, 6, 1, adaptive=True),
    "dopri5": Solver(diffrax.Dopri5, 6, 1, adaptive=True),
    "dopri8": Solver(diffrax.Dopri8, 13, 1, adaptive=True),
}

# The reverse-time SDE has additive noise (g depends on t only), so Ito and Stratonovich agree and
# the additive-noise methods SRA1 and ShARK (strong order 1.5) apply.
SDE_SOLVERS = {
    "euler_maruyama": Solver(diffrax.Euler, 1, 0),
    "heun": Solver(diffrax.Heun, 2, 0),
    "sea": Solver(diffrax.SEA, 1, 0, levy_area=diffrax.SpaceTimeLevyArea),
    "sra1": Solver(diffrax.SRA1, 2, 0, levy_area=diffrax.SpaceTimeLevyArea),
    "shark": Solver(diffrax.ShARK, 2, 0, levy_area=diffrax.SpaceTimeLevyArea),
}

# Adaptive solves start from this fraction of the interval and let the controller adapt; an
# explicit dt0 keeps diffrax from spending evaluations on choosing one.
_INITIAL_STEP_FRACTION = 1 / 64
MAX_STEPS = 4096


def solve(terms, solver: Solver, y0, t0: float, t1: float, *, ts=None, rtol=None,
          atol=None, adjoint=None, args=None, norm=None):
    """Integrates `terms` from t0 to t1 (either direction); returns (y(t1), nfe).

    Steps from grid point to grid point of `ts` (from t0 to t1, diffrax `StepTo`) when given,
    otherwise adaptive PI step-size control with tolerances rtol, atol and the error `norm`
    (diffrax's RMS norm by default).
    """
    if ts is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4,
                                           norm=rms_norm if norm is None else norm)
        dt0, max_steps = (t1 - t0) * _INITIAL_STEP_FRACTION, MAX_STEPS
    else:
        controller = diffrax.StepTo(ts=ts)
        dt0, max_steps = None, ts.shape[0] - 1
    sol = diffrax.diffeqsolve(
        terms, solver.make(), t0, t1, dt0, y0, args, stepsize_controller=controller,
        saveat=diffrax.SaveAt(t1=True), max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=False)
    nfe = (solver.evals_per_step * sol.stats["num_steps"] + solver.initial_evals).astype(jnp.int32)
    # A failed solve (max_steps reached) raises diffrax's own error. Diffrax's throw=True
    # would pass the whole solution through the check's host callback, which gathers a batch
    # sharded over several devices onto one; the check rides on the NFE instead, and the
    # solution depends on it (by adding zero) so the check runs whenever the samples are used.
    nfe = sol.result.error_if(nfe, sol.result != diffrax.RESULTS.successful)
    y1 = jax.tree_util.tree_map(lambda a: a[0] + jnp.zeros((), a.dtype) * nfe, sol.ys)
    return y1, nfe


class StepBrownianPath(diffrax.AbstractBrownianPath):
    """Independent Brownian increments (and space-time Levy areas) for the intervals of a fixed
    grid: the increment over [t0, t1] is a pure function of (key, t0, t1).

    It draws exactly what `diffrax.UnsafeBrownianPath` draws, which it evaluates. Diffrax
    refuses that class by name for reverse-mode adjoints, because its increments are not a
    consistent Brownian motion under step refinement; on a fixed grid queried once per
    interval they are, and being a pure function of the times, the solve differentiates with
    `RecursiveCheckpointAdjoint` like any other.
    """

    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type = eqx.field(static=True)
    key: jax.Array

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        path = diffrax.UnsafeBrownianPath(self.shape, self.key, levy_area=self.levy_area)
        return path.evaluate(t0, t1, left, use_levy)


STEP_CONTROLS = ("rms", "worst_sample", "per_sample")


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


def solve_ode(vf, y0, t0, t1, *, solver, ts=None, rtol=None, atol=None,
              step_control="rms", args=None, error_of=None):
    """Solves dy/dt = vf(t, y, args) for a batch (leading axis of y0 and args); (y1, nfe).

    vf takes the whole batch and a scalar t. Fixed steps on the grid `ts` when given.
    `error_of(y)` picks the part of the state whose error the step control measures (all of
    it by default). Adaptive `step_control`:
      "rms":          one step size for the batch; the error is the RMS over every sample and
                      component (diffrax's default norm, and scipy's in Song et al.'s RK45);
      "worst_sample": one step size, accepted only if every sample's own RMS error meets the
                      tolerances, so no poorly resolved sample hides among good ones (about
                      1.8x the NFE of "rms" at the same tolerances: bench/bench_fewstep.py);
      "per_sample":   a vmap of the solve: each sample has its own step sizes and its result
                      does not depend on the rest of the batch. All lanes step until the
                      slowest is done, so the NFE (the maximum over samples) and the
                      bookkeeping are higher.
    """
    method = ODE_SOLVERS[solver]
    norm = worst_sample_rms if step_control == "worst_sample" else rms_norm
    if error_of is not None:
        norm = lambda error, norm=norm: norm(error_of(error))
    if ts is not None or step_control != "per_sample":
        return solve(diffrax.ODETerm(vf), method, y0, t0, t1, ts=ts, rtol=rtol,
                     atol=atol, args=args, norm=norm)

    def one(y, a):  # one sample, presented to vf as a batch of one
        batch1 = lambda tree: jax.tree_util.tree_map(lambda v: v[None], tree)
        vf1 = lambda t, y, a: jax.tree_util.tree_map(lambda v: v[0], vf(t, batch1(y), batch1(a)))
        return solve(diffrax.ODETerm(vf1), method, y, t0, t1, rtol=rtol, atol=atol, args=a,
                     norm=norm)
    y1, nfe = jax.vmap(one)(y0, args)
    return y1, jnp.max(nfe)
