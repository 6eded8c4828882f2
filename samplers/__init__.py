"""Samplers and likelihoods for any `sde.SDE` and any `score_fn(x, t)` (docs/api.md)."""
from samplers.fewstep import FEW_STEP_SOLVERS
from samplers.grids import TIME_GRIDS, time_grid
from samplers.integrate import ODE_SOLVERS, SDE_SOLVERS
from samplers.likelihood import bits_per_dim, log_likelihood, log_likelihood_probes
from samplers.ode import ode_sample
from samplers.pc import CORRECTORS, PREDICTORS, pc_sample
from samplers.sde import sde_sample

__all__ = ["pc_sample", "sde_sample", "ode_sample", "log_likelihood", "log_likelihood_probes",
           "bits_per_dim", "time_grid", "PREDICTORS", "CORRECTORS", "ODE_SOLVERS",
           "SDE_SOLVERS", "FEW_STEP_SOLVERS", "TIME_GRIDS"]
