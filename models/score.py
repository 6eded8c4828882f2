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

Networks trained by Song et al.'s `score_sde` code follow that code's own conventions, which
`make_score_sde_fn` reproduces (`models/score_sde.py` loads such checkpoints).
"""
from typing import Any, Callable

import jax.numpy as jnp

from sde import checks
from sde.base import SDE, Batch, Times, batch_mul
from sde.ve import VESDE
from sde.vp import subVPSDE

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


def make_score_sde_fn(apply_fn: Callable, sde: SDE, *, continuous: bool, centered: bool,
                      scale_by_sigma: bool, fourier: bool):
    """`score_fn(params, x, t)` of a network trained by `score_sde`: its `get_score_fn`.

    The network is fed x (2 x - 1 when the data are not `centered`, i.e. x in [0, 1]) and a
    label c, and its output becomes the score as `score_sde` does it:
        VP, sub-VP:     c = 999 t (continuous, and sub-VP always) or the unrounded (N - 1) t
                        (discrete VP); score = -out / std, the std of the SDE or, for discrete
                        VP, of the chain at index floor((N - 1) t) (`sde.time_index`).
        VE:             c = sigma(t) (continuous) or the rounded (N - 1)(T - t), an index into
                        the noise levels in decreasing order (discrete); score = out.
    With `scale_by_sigma` (VE) the output is first divided by the noise level of c. A network
    with `fourier` embeddings is fed log c (its Gaussian Fourier features take log sigma).
    x and the score are in the data space of `centered`; the std of the VP SDE is the stable
    sqrt(-expm1(.)), not score_sde's float32 sqrt(1 - exp(.)).
    """
    ve = isinstance(sde, VESDE)
    if scale_by_sigma and not ve:
        raise ValueError(f"scale_by_sigma divides by a VE noise level; got the "
                         f"{type(sde).__name__} (score_sde's VP models use scale_by_sigma=False)")
    if fourier and not continuous:
        raise ValueError("Fourier embeddings take log sigma(t) of continuous time: fourier=True "
                         "needs continuous=True (as score_sde asserts)")
    if ve and continuous and not fourier:
        raise ValueError("a continuous VE model is fed sigma(t); score_sde only pairs that with "
                         "Fourier embeddings (fourier=True)")

    def score_fn(params: Any, x: Batch, t: Times) -> Batch:
        if ve and continuous:
            label = sigma = sde.std(t)
        elif ve:
            label = jnp.round((sde.T - t) * (sde.N - 1))
            sigma = sde.discrete_marginal(sde.N - 1 - label.astype(jnp.int32))[1]
        elif continuous or isinstance(sde, subVPSDE):
            label, std = t * 999.0, sde.std(t)
        else:
            label, std = t * (sde.N - 1), _std(sde, t, continuous=False)
        out = apply_fn(params, x if centered else 2.0 * x - 1.0,
                       jnp.log(label) if fourier else label)
        if scale_by_sigma:
            out = batch_mul(1.0 / sigma, out)
        return out if ve else batch_mul(-1.0 / std, out)

    return score_fn


def bind(score_fn: Callable, params: Any) -> Callable[[Batch, Times], Batch]:
    """`score_fn(x, t)` with the parameters fixed (e.g. the EMA parameters): what samplers take."""
    return lambda x, t: score_fn(params, x, t)
