"""Samplers and likelihoods for any `sde.SDE` and any `score_fn(x, t)` (docs/api.md)."""
from samplers.likelihood import bits_per_dim, log_likelihood
from samplers.ode import ode_sample
from samplers.pc import CORRECTORS, PREDICTORS, pc_sample
from samplers.sde import sde_sample
from samplers.integrate import ODE_SOLVERS, SDE_SOLVERS

__all__ = ["pc_sample", "sde_sample", "ode_sample", "log_likelihood", "bits_per_dim",
           "PREDICTORS", "CORRECTORS", "ODE_SOLVERS", "SDE_SOLVERS"]
