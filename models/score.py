"""From a network's output to the score: the one place where parameterisations are settled.

A network is any `apply_fn(params, x, time_input, **kwargs) -> array like x`. Its output `out`
becomes a score grad_x log p_t(x) according to `parameterization`:
    "noise":        out predicts z in x_t = m x_0 + std z (DDPM, Ho et al. 2020): score = -out / std
    "scaled_score": out predicts std * score (NCSN++'s output divided by sigma): score = out / std
    "score":        out is the score itself
and the network is conditioned on `time_input`:
    "time":    t * 999 for a continuous-time model (DDPM's step index at N = 1000), or the chain
               index i = t (N - 1) / T of a discrete-time model
    "log_std": log std(t), what Gaussian Fourier features of NCSN++ expect.
For discrete-time models (`continuous=False`) the std is the discrete chain's std_i (DDPM's
sqrt(1 - alpha_bar_i), SMLD's sigma_i), matching `sde.discrete_dsm_loss`.
"""
from typing import Any, Callable

import jax.numpy as jnp

from sde import checks
from sde.base import SDE, Batch, Times, batch_mul

PARAMETERIZATIONS = ("noise", "scaled_score", "score")
TIME_INPUTS = ("time", "log_std")


def make_score_fn(apply_fn: Callable, sde: SDE, *, parameterization: str = "noise",
                  time_input: str = "time", continuous: bool = True, **apply_kwargs):
    """Returns `score_fn(params, x, t)`: the form the losses take.

    `apply_kwargs` (e.g. `labels=...` for a class-conditional network) go to every call.
    """
    checks.check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    checks.check_choice("time_input", time_input, TIME_INPUTS)
    if not isinstance(continuous, bool):
        raise TypeError(f"continuous must be a bool, got {continuous!r}")

    def score_fn(params: Any, x: Batch, t: Times) -> Batch:
        out = apply_fn(params, x, time_conditioning(sde, t, time_input=time_input,
                                                    continuous=continuous), **apply_kwargs)
        if parameterization == "noise":
            return batch_mul(-1.0 / _std(sde, t, continuous), out)
        if parameterization == "scaled_score":
            return batch_mul(1.0 / _std(sde, t, continuous), out)
        return out

    return score_fn


def time_conditioning(sde: SDE, t: Times, *, time_input: str = "time",
                      continuous: bool = True) -> Times:
    """What a network is fed for time t (see the module docstring): t * 999 or the chain index
    for "time", log std(t) (of the discrete chain when not `continuous`) for "log_std"."""
    if time_input == "log_std":
        return jnp.log(_std(sde, t, continuous))
    return t * 999.0 if continuous else sde.time_index(t).astype(t.dtype)


def _std(sde: SDE, t: Times, continuous: bool) -> Times:
    """The perturbation std at t: the SDE's, or the discrete chain's std_i."""
    return sde.std(t) if continuous else sde.discrete_marginal(sde.time_index(t))[1]


def bind(score_fn: Callable, params: Any) -> Callable[[Batch, Times], Batch]:
    """`score_fn(x, t)` with the parameters fixed (e.g. the EMA parameters): what samplers take."""
    return lambda x, t: score_fn(params, x, t)
