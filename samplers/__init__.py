"""Samplers and likelihoods for any `sde.SDE` and any `score_fn(x, t)` (docs/api.md)."""
from samplers import operators
from samplers.fewstep import FEW_STEP_SOLVERS
from samplers.grids import TIME_GRIDS, time_grid
from samplers.guidance import classifier_free_guidance, classifier_guidance
from samplers.integrate import ODE_SOLVERS, SDE_SOLVERS
from samplers.likelihood import bits_per_dim, log_likelihood, log_likelihood_probes
from samplers.observe import (METHODS as INVERSE_METHODS, colorize, denoise, edit, inpaint,
                              posterior_mean, smc_solve, solve_inverse, super_resolve)
from samplers.ode import ode_sample
from samplers.pc import CORRECTORS, PREDICTORS, pc_sample
from samplers.sde import sde_sample
from samplers.smc import smc_sample

__all__ = ["pc_sample", "sde_sample", "ode_sample", "log_likelihood", "log_likelihood_probes",
           "bits_per_dim", "time_grid", "classifier_guidance", "classifier_free_guidance",
           "inpaint", "colorize", "super_resolve", "edit", "denoise", "posterior_mean",
           "solve_inverse", "smc_solve", "smc_sample", "operators", "PREDICTORS", "CORRECTORS",
           "ODE_SOLVERS", "SDE_SOLVERS", "FEW_STEP_SOLVERS", "TIME_GRIDS", "INVERSE_METHODS"]
