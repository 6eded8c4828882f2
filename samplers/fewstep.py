"""Few-step solvers of the probability-flow ODE: DDIM, DPM-Solver++ (2M, 3M) and EDM's Heun.

In the variables y = x / m(t) and sigma = std(t) / m(t), the probability-flow ODE of every
linear SDE is the same one (Karras et al. 2022, eq. 4 with s = m),
    dy / dsigma = (y - D(y, sigma)) / sigma,   D = E[x_0 | x_t] = (x + std^2 score(x, t)) / m,
and in lambda = -log sigma its solution from lambda_i to lambda_{i+1} = lambda_i + h is exactly
    y_{i+1} = e^{-h} y_i + int_0^h e^{u - h} D du        (Lu et al. 2022, DPM-Solver++, eq. 9).
The exponential integrators approximate only the denoiser D inside that integral:
  "ddim":      D constant over the step, y_{i+1} = e^{-h} y_i + (1 - e^{-h}) D_i (DDIM with
               eta = 0; first order);
  "dpmpp_2m":  D linear through the last two evaluations (DPM-Solver++(2M); second order);
  "dpmpp_3m":  D quadratic through the last three, integrated exactly (third order);
  "dpmpp_3m_pc": 3M as a predictor, then a corrector: once D has been evaluated at the
               predicted y_{i+1} (which the next step needs anyway), y_{i+1} is recomputed
               with D cubic through that evaluation and the three before (an exponential
               Adams-Moulton step). UniPC's device (Zhao et al. 2023): the corrector costs no
               evaluation, and the last step is not corrected. Fourth order.
Multistep methods start with the lower orders (the first step is DDIM). "edm_heun" is EDM's
Algorithm 1 without churn: Heun's method on dy/dsigma, two evaluations per step.

Each step evaluates the score once (twice for Heun), so the NFE is counted in the loop.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers.common import tweedie_denoise
from sde.base import SDE, Batch, ScoreFn


class FewStepSolver(NamedTuple):
    order: int  # of accuracy: the error falls at least as h^order (tests/test_fewstep.py)
    evals_per_step: int  # score evaluations per step


FEW_STEP_SOLVERS = {
    "ddim": FewStepSolver(1, 1),
    "dpmpp_2m": FewStepSolver(2, 1),
    "dpmpp_3m": FewStepSolver(3, 1),
    "dpmpp_3m_pc": FewStepSolver(4, 1),
    "edm_heun": FewStepSolver(2, 2),
}

# How `_multistep` runs each multistep solver: its predictor's polynomial passes through the
# last `points` evaluations of D, and `correct` adds the corrector, one order more at no
# evaluation. The order of accuracy (FEW_STEP_SOLVERS, what the tests check) is points for
# the predictors alone and points + 1 with the corrector.
_MULTISTEP = {
    "ddim": dict(points=1, correct=False),
    "dpmpp_2m": dict(points=2, correct=False),
    "dpmpp_3m": dict(points=3, correct=False),
    "dpmpp_3m_pc": dict(points=3, correct=True),
}


def denoiser(sde: SDE, score_fn: ScoreFn):
    """D(y, t) = E[x_0 | x_t = m(t) y] for a scalar time t, from the score by Tweedie."""
    def d(y, t):
        return tweedie_denoise(sde, score_fn, sde.mean_coeff(jnp.full((1,), t, y.dtype)) * y, t)
    return d


def _scaled_moments(h):
    """J_k = int_0^h e^{v - h} (v / h)^k dv for k = 0 .. 3: by their series
    k! h sum_j (-h)^j / (k + 1 + j)! below h = 1 (the closed forms cancel to nothing in
    float32 for short steps), by J_k = 1 - k J_{k-1} / h above."""
    series = [math.factorial(k) * h * sum((-h) ** j / float(math.factorial(k + 1 + j))
                                          for j in range(12)) for k in range(4)]
    recursion = [-jnp.expm1(-h)]
    for k in range(1, 4):
        recursion.append(1 - k * recursion[-1] / h)
    return jnp.stack([jnp.where(h < 1, a, b) for a, b in zip(series, recursion)])


def _weights(nodes, count, h):
    """w with sum_j w_j D_j = int_0^h e^{v - h} P(v) dv, P the polynomial through the first
    `count` (1 .. 4) of the points (nodes_j h, D_j): a quadrature rule from the moments."""
    k = jnp.arange(4)
    used = k < count
    vandermonde = jnp.where(used[:, None] & used[None, :], nodes[None, :] ** k[:, None],
                            jnp.eye(4))
    return jnp.linalg.solve(vandermonde, jnp.where(used, _scaled_moments(h), 0.0))


def _predictor_weights(nodes, count, h):
    """The step's weights for D at v = 0, -h0, -h0 - h1 (nodes in units of h), with `count`
    evaluations: DDIM for one; Lu et al.'s 2M for two, which extrapolates D linearly with
    weight (1 - e^{-h}) instead of integrating the line exactly (the rule of DPM-Solver++ and
    of the peers' implementations); the quadratic integrated exactly for three (3M)."""
    i0 = -jnp.expm1(-h)
    r = 1 / (2 * jnp.where(count >= 2, -nodes[1], 1.0))  # h / (2 h0)
    lu_2m = jnp.stack([i0 * (1 + r), -i0 * r, 0.0, 0.0])
    return jnp.where(count == 1, jnp.stack([i0, 0.0, 0.0, 0.0]),
                     jnp.where(count == 2, lu_2m, _weights(nodes, count, h)))


class _History(NamedTuple):
    """The scan carry of `_multistep` entering step i: the state at grid point i as predicted
    by step i - 1, and what the corrector and the predictor need from before i."""
    y: Batch  # the predicted state at grid point i
    y_prev: Batch  # the (corrected) state at grid point i - 1
    d1: Batch  # the denoiser D at grid point i - 1 (zeros before the grid's start)
    d2: Batch  # D at i - 2
    d3: Batch  # D at i - 3: only the corrector's cubic reaches back this far
    nfe: jax.Array  # score evaluations so far


def _multistep(d, y, ts, sigmas, *, points: int, correct: bool):
    """DPM-Solver++ (data prediction) over the grid, its predictor's polynomial through the
    last `points` (1, 2 or 3) evaluations of D; with `correct`, each step is redone once D at
    its end is known (dpmpp_3m_pc); returns (y, nfe).

    With v = lambda - lambda_i, the step to lambda_{i+1} = lambda_i + h is
    y_{i+1} = e^{-h} y_i + sum_j w_j D_j, the w_j from `_predictor_weights`. The corrector
    integrates D cubic through D_{i+1} (evaluated at the predicted y_{i+1}, which the next
    step needs anyway) and the three evaluations before it, exactly: an exponential
    Adams-Moulton step at no extra evaluation. The last step is not corrected. The first
    steps use as many evaluations as exist (`min(points, i + 1)`).
    """
    lambdas = -jnp.log(sigmas)
    n = ts.shape[0] - 1
    at = lambda i: lambdas[jnp.clip(i, 0, n)]  # nodes before the grid get zero weight

    def step(past: _History, i):
        d0 = d(past.y, ts[i])
        y = past.y
        if correct:  # redo the step i - 1 -> i with D_i known
            hc = jnp.where(i >= 1, at(i) - at(i - 1), 1.0)
            nodes = jnp.stack([1.0, 0.0, (at(i - 2) - at(i - 1)) / hc,
                               (at(i - 3) - at(i - 1)) / hc])
            w = _weights(nodes, jnp.minimum(4, i + 1), hc)
            corrected = (jnp.exp(-hc) * past.y_prev + w[0] * d0 + w[1] * past.d1
                         + w[2] * past.d2 + w[3] * past.d3)
            y = jnp.where(i >= 1, corrected, y)
        h = at(i + 1) - at(i)  # predict i -> i + 1
        nodes = jnp.stack([0.0, (at(i - 1) - at(i)) / h, (at(i - 2) - at(i)) / h, 1.0])
        w = _predictor_weights(nodes, jnp.minimum(points, i + 1), h)
        y_next = jnp.exp(-h) * y + w[0] * d0 + w[1] * past.d1 + w[2] * past.d2
        return _History(y=y_next, y_prev=y, d1=d0, d2=past.d1, d3=past.d2,
                        nfe=past.nfe + 1), None

    zeros = jnp.zeros_like(y)
    start = _History(y=y, y_prev=zeros, d1=zeros, d2=zeros, d3=zeros, nfe=jnp.int32(0))
    end, _ = jax.lax.scan(step, start, jnp.arange(n))
    return end.y, end.nfe


def _edm_heun(d, y, ts, sigmas):
    def step(carry, i):
        y, nfe = carry
        ds = sigmas[i + 1] - sigmas[i]
        slope = (y - d(y, ts[i])) / sigmas[i]
        y_euler = y + ds * slope
        slope_end = (y_euler - d(y_euler, ts[i + 1])) / sigmas[i + 1]
        return (y + ds * (slope + slope_end) / 2, nfe + 2), None

    (y, nfe), _ = jax.lax.scan(step, (y, jnp.int32(0)), jnp.arange(ts.shape[0] - 1))
    return y, nfe


def few_step_solve(sde: SDE, score_fn: ScoreFn, x: Batch, ts, solver: str):
    """Solves the probability-flow ODE from x at ts[0] through the grid `ts` (decreasing);
    returns (x at ts[-1], nfe)."""
    d = denoiser(sde, score_fn)
    sigmas = sde.sigma(ts)
    m = sde.mean_coeff(ts)
    y = x / m[0]
    if solver == "edm_heun":
        y, nfe = _edm_heun(d, y, ts, sigmas)
    else:
        y, nfe = _multistep(d, y, ts, sigmas, **_MULTISTEP[solver])
    return y * m[-1], nfe
