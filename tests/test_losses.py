"""Denoising score matching: stationary at the exact score, unbiased importance sampling, and
the discrete DDPM / SMLD losses against their closed-form expectations."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sde import VESDE, VPSDE, discrete_dsm_loss, dsm_loss


def _chunk_stats(loss_fn, key, chunks=20):
    """Mean and standard error of a Monte Carlo quantity over independent chunks."""
    vals = jax.vmap(loss_fn)(jax.random.split(key, chunks))
    return float(jnp.mean(vals)), float(jnp.std(vals) / np.sqrt(chunks))


def _perturbed_score(mixture, sde):
    exact = mixture.score_fn(sde)
    return lambda theta, x, t: exact(x, t) + theta * (0.5 * x + jnp.sin(x))


@pytest.mark.parametrize("weighting", [False, True])
def test_gradient_vanishes_at_exact_score(sde, mixture, weighting):
    """d/dtheta E[loss] = 0 at the exact score, for any weighting lambda(t)."""
    score = _perturbed_score(mixture, sde)
    x0 = mixture.sample(jax.random.key(1), 8000)
    loss = functools.partial(dsm_loss, sde, score, x0=x0, likelihood_weighting=weighting)
    grad = lambda theta: lambda k: jax.grad(lambda th: loss(th, key=k))(theta)
    g0, se0 = _chunk_stats(jax.jit(grad(0.0)), jax.random.key(2))
    g1, se1 = _chunk_stats(jax.jit(grad(0.3)), jax.random.key(2))
    assert abs(g0) < 4 * se0 + 1e-6, (g0, se0)
    assert g1 > 10 * se1 and g1 > 20 * abs(g0), (g1, se1, g0)


def test_importance_sampling_is_unbiased_and_reduces_variance(sde, mixture):
    score = _perturbed_score(mixture, sde)
    x0 = mixture.sample(jax.random.key(1), 4000)
    loss = lambda k, is_: dsm_loss(sde, score, 0.3, x0, k, likelihood_weighting=True,
                                   importance_sampling=is_)
    m_u, se_u = _chunk_stats(jax.jit(lambda k: loss(k, False)), jax.random.key(3), chunks=64)
    m_is, se_is = _chunk_stats(jax.jit(lambda k: loss(k, True)), jax.random.key(4), chunks=64)
    assert abs(m_u - m_is) < 4 * np.hypot(se_u, se_is), (m_u, se_u, m_is, se_is)
    if not isinstance(sde, VESDE):  # for VE, g^2 / std^2 is constant: q is uniform
        assert se_is < 0.5 * se_u, (se_is, se_u)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=50.0, N=100)])
def test_discrete_loss_matches_ddpm_and_smld_tables(sde):
    """Noise predictor eps_hat = c x_i on data x_0 = 1: E||z - c x_i||^2 / D =
    mean_i [1 - 2 c std_i + c^2 (m_i^2 + std_i^2)] with DDPM's / SMLD's tables in numpy."""
    c = 0.4
    if isinstance(sde, VPSDE):
        alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
        m, std = np.sqrt(alpha_bar), np.sqrt(1 - alpha_bar)
    else:
        m, std = np.ones(100), np.exp(np.linspace(np.log(0.01), np.log(50.0), 100))
    expected = np.mean(1 - 2 * c * std + c**2 * (m**2 + std**2))

    def score(params, x, t):  # the conversion a noise-predicting DDPM model gets: -eps_hat / std_i
        return -c * x / sde.discrete_marginal(sde.time_index(t))[1][:, None]
    x0 = jnp.ones((20000, 3))
    mean, se = _chunk_stats(jax.jit(lambda k: discrete_dsm_loss(sde, score, None, x0, k)),
                            jax.random.key(0))
    assert abs(mean - expected) < 4 * se, (mean, expected, se)


def test_reductions_and_jit():
    """D = 3 data dimensions, so that the mean over them (reduce_mean=True) and half their sum
    (reduce_mean=False, Song et al.'s code) differ: summed = mean * D / 2 = 1.5 * mean. Both are
    also rebuilt by hand from the documented recipe (t ~ U(eps, T), x_t = m x0 + std z, the
    per-sample loss ||std score + z||^2 reduced over the dimensions, then the batch mean)."""
    sde, d = VPSDE(), 3
    score = lambda theta, x, t: -theta * x  # not the exact score: the residual is not zero
    x0 = jax.random.normal(jax.random.key(1), (64, d)) + jnp.array([1.0, -2.0, 0.5])
    key = jax.random.key(5)
    mean = dsm_loss(sde, score, 0.3, x0, key)
    summed = dsm_loss(sde, score, 0.3, x0, key, reduce_mean=False)
    np.testing.assert_allclose(summed, mean * d / 2, rtol=1e-6)

    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (64,), minval=1e-5, maxval=sde.T)
    z = jax.random.normal(k_z, x0.shape)
    m, std = sde.mean_coeff(t)[:, None], sde.std(t)[:, None]
    sq = np.square(np.asarray(std * score(0.3, m * x0 + std * z, t) + z, np.float64))
    np.testing.assert_allclose(mean, sq.mean(), rtol=1e-5)  # mean over dims and batch
    np.testing.assert_allclose(summed, 0.5 * sq.sum(1).mean(), rtol=1e-5)  # half the sum

    jitted = jax.jit(dsm_loss, static_argnums=1)(sde, score, 0.3, x0, key)
    assert jitted.shape == () and jitted.dtype == jnp.float32
    np.testing.assert_allclose(jitted, mean, rtol=1e-6)
    np.testing.assert_array_equal(dsm_loss(sde, score, 0.3, x0, key), mean)


def test_loss_arguments_are_checked(mixture):
    sde, score = VPSDE(), _perturbed_score(mixture, VPSDE())
    x0, key = jnp.ones((4, 2)), jax.random.key(0)
    with pytest.raises(ValueError, match="eps"):
        dsm_loss(sde, score, 0.0, x0, key, eps=0.0)
    with pytest.raises(ValueError, match="importance_sampling"):
        dsm_loss(sde, score, 0.0, x0, key, importance_sampling=True)
