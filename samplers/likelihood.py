"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2).

Along an ODE trajectory dx/dt = f~(x, t), d log p_t(x_t) / dt = -div f~(x_t, t) (the
instantaneous change of variables, Chen et al. 2018), so
    log p_eps(x) = log p_T(x_T) + int_eps^T div f~(x_t, t) dt.
Both x_t and the integral are solved together, forward from eps to T, by diffrax, per sample.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from samplers.common import check_sampler_args
from samplers.integrate import check_ode_solver, solve_ode
from sde import checks
from sde.base import SDE, Batch, ScoreFn, Times

DIVERGENCES = ("exact", "rademacher", "gaussian")


def drift_and_divergence(drift, x: Batch, t: Times, v: Batch, method: str) -> tuple[Batch, Times]:
    """(drift(x, t), per-sample div drift), exactly or by Hutchinson's estimator.

    Samples do not interact, so the Jacobian is block-diagonal over the batch and one
    Jacobian-vector product with tangent v gives every sample's J v at once. "exact" sums
    e_d^T J e_d over the D basis vectors (D products); Hutchinson uses v^T J v with
    E[v v^T] = I (Skilling 1989, Hutchinson 1990).
    """
    fx, jvp = jax.linearize(lambda y: drift(y, t), x)
    axes = tuple(range(1, x.ndim))
    if method == "exact":
        d = math.prod(x.shape[1:])
        basis = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype).reshape((d, 1) + x.shape[1:]),
                                 (d,) + x.shape)
        return fx, jnp.sum(jnp.sum(jax.vmap(jvp)(basis) * basis, axis=0), axis=axes)
    return fx, jnp.sum(jvp(v) * v, axis=axes)


def log_likelihood(sde: SDE, score_fn: ScoreFn, x: Batch, key, *, divergence="rademacher",
                   rtol=1e-5, atol=1e-5, eps=1e-5, solver="tsit5",
                   step_control="batch") -> tuple[Times, Batch, jax.Array]:
    """log p_eps(x) in nats per sample; returns (logp (batch,), z = x_T, nfe).

    `divergence`: "exact", or Hutchinson with "rademacher" or "gaussian" probes drawn from `key`
    (one probe per sample, held fixed along the trajectory, which makes the estimate of log p
    unbiased). `step_control` as in `ode_sample`. nfe counts evaluations of the ODE's vector
    field (each one evaluation of score_fn, linearised for the divergence).
    """
    checks.check_choice("divergence", divergence, DIVERGENCES)
    check_ode_solver(solver, None, rtol, atol, step_control)
    checks.check_batch("x", x)
    check_sampler_args(sde, score_fn, tuple(x.shape), key, eps=eps, denoise=False)
    if divergence == "gaussian":
        v = jax.random.normal(key, x.shape, x.dtype)
    else:
        v = jax.random.rademacher(key, x.shape, x.dtype)
    reverse = sde.reverse(score_fn, probability_flow=True)
    drift = lambda x, t: reverse.sde(x, t)[0]

    def vf(t, state, v):
        x = state[0]
        t = jnp.full((x.shape[0],), t, x.dtype)
        return drift_and_divergence(drift, x, t, v, divergence)

    (z, delta), nfe = solve_ode(vf, (x, jnp.zeros(x.shape[:1], x.dtype)), eps, sde.T,
                                solver=solver, rtol=rtol, atol=atol, step_control=step_control,
                                args=v)
    return sde.prior_logp(z) + delta, z, nfe


def bits_per_dim(sde: SDE, score_fn: ScoreFn, images, key, *, data_range=(-1.0, 1.0),
                 num_bits: int = 8, **likelihood_kwargs) -> tuple[Times, jax.Array]:
    """Negative log-likelihood of integer images in bits per dimension; returns (bpd, nfe).

    This helper owns dequantisation: `images` are integers in [0, 2^num_bits); it adds uniform
    noise u ~ U[0, 1)^D, maps y = lo + (hi - lo) (images + u) / 2^num_bits into the model's
    `data_range` = (lo, hi), and returns
        bpd = -(log p(y) + D log(hi - lo)) / (D log 2) + num_bits,
    the variational bound -E_u log2 P(images) / D of Ho et al. / Song et al. (the "offset" of 7
    in Song et al.'s code is num_bits - log2(hi - lo) = 8 - 1 for data in [-1, 1]). Other keyword
    arguments go to `log_likelihood`.
    """
    checks.check_int("num_bits", num_bits, low=1)
    if not hasattr(images, "dtype") or not jnp.issubdtype(images.dtype, jnp.integer):
        raise TypeError(f"images must be an integer array of raw {num_bits}-bit values in "
                        f"[0, {2**num_bits - 1}] (dequantisation happens here), got "
                        f"{checks.describe(images)}")
    if not isinstance(images, jax.core.Tracer):
        lo_v, hi_v = int(np.min(images)), int(np.max(images))
        if lo_v < 0 or hi_v >= 2**num_bits:
            raise ValueError(f"images must lie in [0, {2**num_bits - 1}], got values in "
                             f"[{lo_v}, {hi_v}]")
    lo, hi = data_range
    checks.check_number("data_range[1] - data_range[0]", hi - lo, low=0.0, low_open=True)
    k_u, k_ll = jax.random.split(key)
    u = (images.astype(jnp.float32) + jax.random.uniform(k_u, images.shape)) / 2**num_bits
    logp, _, nfe = log_likelihood(sde, score_fn, lo + (hi - lo) * u, k_ll, **likelihood_kwargs)
    d = math.prod(images.shape[1:])
    return -(logp + d * math.log(hi - lo)) / (d * math.log(2)) + num_bits, nfe
