"""Denoising score matching (Vincent 2011) for linear SDEs, continuous and discrete time.

A loss takes `score_fn(params, x, t) -> score`: the conversion from a network's output (noise or
scaled score) to a score is settled before it reaches here (models/score.py), so one loss serves
every parameterisation. With x_t = m(t) x_0 + std(t) z, the regression target of the score is
-z / std(t), and the loss at time t is lambda(t) ||score(x_t, t) + z / std(t)||^2.
"""
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sde import checks
from sde.base import SDE, Batch, Times, batch_mul

ParamScoreFn = Callable[[Any, Batch, Times], Batch]

# Cells of the piecewise-constant proposal for importance sampling of t (see `_sample_time_is`).
_IS_CELLS = 1024
# How `target_cells` chooses the cells a conditional model learns to predict.
CELL_MASKS = ("random", "pattern", "mixed", "blocks")


def dsm_loss(sde: SDE, score_fn: ParamScoreFn, params, x0: Batch, key, *, eps: float = 1e-5,
             reduce_mean: bool = True, likelihood_weighting: bool = False,
             importance_sampling: bool = False, observed: Batch | None = None
             ) -> Float[Array, ""]:
    """Continuous-time DSM loss (Song et al. 2021, eq. 7), t ~ U(eps, T).

    lambda(t) = std(t)^2 by default, i.e. the per-sample loss ||std score + z||^2; with
    `likelihood_weighting`, lambda(t) = g(t)^2, which makes the loss an upper bound on the
    negative log-likelihood (Song et al. 2021b, "Maximum Likelihood Training of Score-Based
    Diffusion Models", thm. 1). `importance_sampling` (likelihood weighting only) draws t from a
    proposal q(t) proportional to g(t)^2 / std(t)^2 and reweights by lambda(t) / (q(t) (T - eps)):
    the same expected loss with far less variance. `reduce_mean` averages over data dimensions;
    otherwise they are summed and halved, as in Song et al.'s code. `observed` (bool, like x0)
    leaves the False entries out of the loss, for tables with missing cells (fill x0 there with
    any finite value). Returns the batch mean.
    """
    checks.check_number("eps", eps, low=0.0, high=sde.T, low_open=True, high_open=True)
    if importance_sampling and not likelihood_weighting:
        raise ValueError("importance_sampling=True needs likelihood_weighting=True: the proposal "
                         "q(t) ~ g(t)^2 / std(t)^2 is built for the likelihood weighting")
    k_t, k_z = jax.random.split(key)
    n = x0.shape[0]
    if importance_sampling:
        t, weight = _sample_time_is(sde, k_t, n, eps)
    else:
        t = jax.random.uniform(k_t, (n,), minval=eps, maxval=sde.T)
        weight = sde.g2(t) / jnp.square(sde.std(t)) if likelihood_weighting else jnp.ones_like(t)
    z = jax.random.normal(k_z, x0.shape, x0.dtype)
    mean, std = sde.marginal_prob(x0, t)
    score = score_fn(params, mean + batch_mul(std, z), t)
    return jnp.mean(weight * _reduce(batch_mul(std, score) + z, reduce_mean, observed))


def discrete_dsm_loss(sde: SDE, score_fn: ParamScoreFn, params, x0: Batch, key, *,
                      reduce_mean: bool = True, observed: Batch | None = None
                      ) -> Float[Array, ""]:
    """The discrete-time losses of DDPM (on `VPSDE(N)`) and NCSN/SMLD (on `VESDE(N)`).

    i ~ U{0, ..., N-1}; x_i = m_i x_0 + std_i z from the SDE's discrete chain; the score is
    queried at t_i = i T / (N - 1). The per-sample loss ||std_i score + z||^2 is DDPM's
    ||z - eps_theta(x_i, i)||^2 (Ho et al. 2020, eq. 14) when eps_theta = -std_i score, and
    SMLD's std_i^2 ||score + z / std_i||^2 (Song & Ermon 2019, eq. 2 with lambda = sigma^2).
    `observed` as in `dsm_loss`.
    """
    k_i, k_z = jax.random.split(key)
    i = jax.random.randint(k_i, (x0.shape[0],), 0, sde.N)
    m, std = sde.discrete_marginal(i)
    z = jax.random.normal(k_z, x0.shape, x0.dtype)
    xt = batch_mul(m, x0) + batch_mul(std, z)
    score = score_fn(params, xt, i * (sde.T / (sde.N - 1)))
    return jnp.mean(_reduce(batch_mul(std, score) + z, reduce_mean, observed))


def target_cells(key, observed: Batch, strategy: str = "random", columns=None,
                 unconditional: float = 0.0) -> Batch:
    """The observed cells a model conditioned on the others learns to predict in each row
    (bool, like `observed`); the rest of the row's observed cells are given. CSDI's strategies
    (Tashiro et al. 2021, sec. 4.1):
      "random"   a share r ~ U(0, 1) of the row's observed cells, round(r n_observed) of them
                 drawn without replacement, so every amount of missingness is trained;
      "pattern"  the observed cells that the previous row of the batch lacks (its missing
                 pattern: the data's own missingness, for data that have it);
      "mixed"    one of the two per row, with probability 1/2 each;
      "blocks"   for series rows (batch, steps, features): per row, with probability 1/2
                 "random", else one block of consecutive steps (length ~ U{1..steps}) on a
                 random half of the features (at least one), as gaps in sensor data look.
    `columns` (int, (d,)), for flat rows whose cells span several entries (a one-hot
    category): the cell of each entry; a cell's entries are chosen together.
    `unconditional`: the share of rows that predict all their observed cells, given none, so
    that the same network, given nothing, is also the unconditional score (as label dropout
    trains classifier-free guidance's).
    """
    checks.check_number("unconditional", unconditional, low=0.0, high=1.0)
    if unconditional:
        k_every, key = jax.random.split(key)
        chosen = target_cells(key, observed, strategy, columns)
        every = jax.random.bernoulli(k_every, unconditional, (observed.shape[0],)
                                     + (1,) * (observed.ndim - 1))
        return jnp.where(every, observed, chosen)
    checks.check_choice("strategy", strategy, CELL_MASKS)
    if columns is not None:
        columns = np.asarray(columns)
        first = np.searchsorted(columns, np.arange(columns.max() + 1))
        return target_cells(key, observed[:, first], strategy)[:, columns]
    k_share, k_order, k_mix = jax.random.split(key, 3)
    flat = observed.reshape(observed.shape[0], -1)
    share = jax.random.uniform(k_share, (flat.shape[0], 1))
    count = jnp.round(share * jnp.sum(flat, axis=-1, keepdims=True))
    order = jnp.where(flat, jax.random.uniform(k_order, flat.shape), 2.0)  # unobserved last
    chosen = jnp.argsort(jnp.argsort(order, axis=-1), axis=-1) < count
    pattern = flat & ~jnp.roll(flat, 1, axis=0)
    if strategy == "blocks":
        if observed.ndim != 3:
            raise ValueError(f"strategy='blocks' needs rows of (steps, features), got observed "
                             f"of shape {observed.shape}")
        rows, steps, features = observed.shape
        k_len, k_start, k_feat, k_one = jax.random.split(k_mix, 4)
        length = jax.random.randint(k_len, (rows, 1), 1, steps + 1)
        start = jnp.floor(jax.random.uniform(k_start, (rows, 1)) * (steps - length + 1))
        step = jnp.arange(steps)[None]
        span = (step >= start) & (step < start + length)
        which = jax.random.bernoulli(k_feat, 0.5, (rows, features)) | jax.nn.one_hot(
            jax.random.randint(k_one, (rows,), 0, features), features, dtype=bool)
        block = (span[:, :, None] & which[:, None, :]).reshape(rows, -1) & flat
        pick = jax.random.bernoulli(jax.random.fold_in(k_mix, 1), 0.5, (rows, 1))
        return jnp.where(pick, chosen, block).reshape(observed.shape)
    if strategy == "pattern":
        chosen = pattern
    elif strategy == "mixed":
        chosen = jnp.where(jax.random.bernoulli(k_mix, 0.5, (flat.shape[0], 1)), chosen, pattern)
    return chosen.reshape(observed.shape)


def noisy_classifier_loss(sde: SDE, logits_fn: Callable, params, x0: Batch, labels, key, *,
                          eps: float = 1e-5) -> Float[Array, ""]:
    """Cross-entropy of a noise-conditional classifier on perturbed data, t ~ U(eps, T).

    `logits_fn(params, x_t, t) -> (batch, classes)`. With x_t = m(t) x_0 + std(t) z, the
    minimiser over all functions is log p_t(y | x_t) up to a constant in y, so the gradient in
    x_t of the trained log-softmax is what `samplers.classifier_guidance` adds to the score
    (Song et al. 2021, sec. 5 and app. I). `labels` are integers (batch,). Returns the batch mean.
    """
    checks.check_number("eps", eps, low=0.0, high=sde.T, low_open=True, high_open=True)
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (x0.shape[0],), minval=eps, maxval=sde.T)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + batch_mul(std, jax.random.normal(k_z, x0.shape, x0.dtype))
    log_probs = jax.nn.log_softmax(logits_fn(params, xt, t).astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def _reduce(residual: Batch, reduce_mean: bool, observed: Batch | None = None) -> Times:
    """Per-sample mean (or half sum) of the squared residual, over the observed entries."""
    sq = jnp.square(residual).reshape(residual.shape[0], -1)
    if observed is None:
        return jnp.mean(sq, axis=-1) if reduce_mean else 0.5 * jnp.sum(sq, axis=-1)
    seen = observed.reshape(sq.shape)
    total = jnp.sum(jnp.where(seen, sq, 0.0), axis=-1)
    return total / jnp.maximum(jnp.sum(seen, axis=-1), 1) if reduce_mean else 0.5 * total


def _sample_time_is(sde: SDE, key, n: int, eps: float) -> tuple[Times, Times]:
    """t ~ q(t) proportional to w(t) = g(t)^2 / std(t)^2 on [eps, T], and the weight
    g(t)^2 / std(t)^2 / (q(t) (T - eps)) that keeps the likelihood-weighted loss unbiased.

    q is piecewise constant on log-spaced cells (w ~ 1/t near 0 for VP), with each cell's mass the
    trapezoid integral of w. The weight uses q's exact density, so the estimator is unbiased
    whatever the discretisation error of q; the cells only decide how much variance is left.
    """
    edges = eps * jnp.exp(jnp.linspace(0.0, math.log(sde.T / eps), _IS_CELLS + 1))
    w = sde.g2(edges) / jnp.square(sde.std(edges))
    width = jnp.diff(edges)
    mass = 0.5 * width * (w[1:] + w[:-1])
    cdf = jnp.cumsum(mass)
    # Inverse CDF: the cell holding u * total mass, then uniform within it.
    u = jax.random.uniform(key, (n,)) * cdf[-1]
    cell = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, _IS_CELLS - 1)
    t = edges[cell] + (u - (cdf[cell] - mass[cell])) / mass[cell] * width[cell]
    density = mass[cell] / (cdf[-1] * width[cell])
    weight = sde.g2(t) / jnp.square(sde.std(t)) / (density * (sde.T - eps))
    return t, weight
