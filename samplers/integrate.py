"""Diffrax glue: solver tables with their evaluation counts, fixed and adaptive solves.

Diffrax's `sol.stats` counts steps, not vector-field evaluations, so each solver's table entry
says how many evaluations one step makes and how many the first step adds (first-same-as-last
Runge-Kutta methods evaluate f(t0, y0) once up front). tests/test_samplers.py checks every entry
against a host-side counter, so the NFE we report is the number of evaluations the solve made.
"""
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp


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


def solve(terms, solver: Solver, y0, t0: float, t1: float, *, num_steps=None, rtol=None,
          atol=None, adjoint=None, args=None, norm=None):
    """Integrates `terms` from t0 to t1 (either direction); returns (y(t1), nfe).

    Fixed grid of `num_steps` equal steps when given (diffrax `StepTo`), otherwise adaptive
    PI step-size control with tolerances rtol, atol and the error `norm` (diffrax's RMS norm
    by default).
    """
    if num_steps is None:
        extra = {} if norm is None else {"norm": norm}
        controller = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4, **extra)
        dt0, max_steps = (t1 - t0) * _INITIAL_STEP_FRACTION, MAX_STEPS
    else:
        controller = diffrax.StepTo(ts=jnp.linspace(t0, t1, num_steps + 1))
        dt0, max_steps = None, num_steps
    sol = diffrax.diffeqsolve(
        terms, solver.make(), t0, t1, dt0, y0, args, stepsize_controller=controller,
        saveat=diffrax.SaveAt(t1=True), max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint)
    y1 = jax.tree_util.tree_map(lambda a: a[0], sol.ys)
    nfe = solver.evals_per_step * sol.stats["num_steps"] + solver.initial_evals
    return y1, nfe.astype(jnp.int32)
