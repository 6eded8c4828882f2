"""Likelihoods through the probability-flow ODE against exact mixture log-densities."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import bits_per_dim, log_likelihood, log_likelihood_probes, ode_sample
from sde import VESDE, VPSDE, GaussianMixture


def test_exact_divergence_matches_mixture_log_density(sde, mixture):
    x = mixture.sample(jax.random.key(0), 64)
    eps = 1e-5
    logp, z, nfe = log_likelihood(sde, mixture.score_fn(sde), x, jax.random.key(1),
                                  divergence="exact", eps=eps)
    assert logp.shape == (64,) and z.shape == x.shape and int(nfe) > 10
    exact = mixture.log_prob(x, sde, jnp.full((64,), eps))
    # log p_eps(x) = log p_T(z) + int div: with the true p_T of the mixture in place of the
    # Gaussian prior, only the ODE solver's error is left.
    true_prior = mixture.log_prob(z, sde, jnp.full((64,), sde.T))
    np.testing.assert_allclose(logp - sde.prior_logp(z) + true_prior, exact, atol=5e-3)
    # The prior's own mismatch is O(|mu| / prior_std): 0.07 nats at most for VE, sigma_max = 50.
    np.testing.assert_allclose(logp, exact, atol=0.08)


def test_worst_sample_step_control_meets_the_tolerance_for_every_sample(mixture):
    """Shared steps with the worst-sample norm: each sample agrees with its own solve. The
    step control measures the path x_t (rtol = atol = 1e-5); log p, integrated along it,
    follows to well under a thousandth of a nat."""
    sde = VPSDE()
    x = mixture.sample(jax.random.key(0), 32)
    score = mixture.score_fn(sde)
    shared, z_shared, _ = log_likelihood(sde, score, x, jax.random.key(1), divergence="exact",
                                         step_control="worst_sample")
    own, z_own, _ = log_likelihood(sde, score, x, jax.random.key(1), divergence="exact",
                                   step_control="per_sample")
    np.testing.assert_allclose(z_shared, z_own, atol=2e-4)
    np.testing.assert_allclose(shared, own, atol=1e-3)


@pytest.mark.parametrize("divergence", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(mixture, divergence):
    """The average of Hutchinson estimates over probes equals the exact-trace result; the
    probes of one call share a trajectory, and num_probes averages them."""
    sde, x = VPSDE(), mixture.sample(jax.random.key(0), 4)
    score = mixture.score_fn(sde)
    exact, _, _ = log_likelihood(sde, score, x, jax.random.key(0), divergence="exact")
    kwargs = dict(divergence=divergence, rtol=1e-4, atol=1e-4, num_probes=256)
    est, _, _ = log_likelihood_probes(sde, score, x, jax.random.key(1), **kwargs)
    assert est.shape == (4, 256)
    se = est.std(1) / np.sqrt(256)
    assert bool(jnp.all(est.std(1) > 1e-3))  # it is a random estimate...
    assert bool(jnp.all(jnp.abs(est.mean(1) - exact) < 4 * se + 2e-3))  # ...of the right value
    mean, _, _ = log_likelihood(sde, score, x, jax.random.key(1), **kwargs)
    np.testing.assert_allclose(mean, est.mean(1), rtol=1e-6)


def test_latent_round_trip(mixture):
    """Encoding with the ODE (log_likelihood's z) and decoding with ode_sample(z=...) returns x."""
    sde = VESDE(sigma_max=50.0)
    x = mixture.sample(jax.random.key(0), 16)
    score = mixture.score_fn(sde)
    _, z, _ = log_likelihood(sde, score, x, jax.random.key(1), eps=1e-3, rtol=1e-7, atol=1e-7)
    back, _ = ode_sample(sde, score, x.shape, jax.random.key(2), z=z, eps=1e-3, rtol=1e-7,
                         atol=1e-7)
    np.testing.assert_allclose(back, x, atol=2e-3)


def test_per_sample_result_does_not_depend_on_batch(mixture):
    """Each sample has its own step sizes: alone or in a batch, the same log-density."""
    sde = VPSDE()
    x = mixture.sample(jax.random.key(0), 8)
    score = mixture.score_fn(sde)
    batch, _, _ = log_likelihood(sde, score, x, jax.random.key(1), divergence="exact",
                                 step_control="per_sample")
    alone, _, _ = log_likelihood(sde, score, x[3:4], jax.random.key(1), divergence="exact",
                                 step_control="per_sample")
    np.testing.assert_allclose(alone[0], batch[3], rtol=2e-5)  # float32 reduction order only


def test_bits_per_dim_of_quantised_mixture():
    """For 8-bit data from a smooth density p on [-1, 1]^D, -log2 P(bin) / D is close to
    -(log p(centre) + D log 2) / (D log 2) + 8; the helper dequantises raw integers itself."""
    mix = GaussianMixture.create([0.5, 0.5], [[-0.4, 0.2, 0.0], [0.3, -0.3, 0.1]], [0.25, 0.3])
    sde = VPSDE()
    y = jnp.clip(mix.sample(jax.random.key(0), 64), -0.999, 0.999)
    images = jnp.floor((y + 1) / 2 * 256).astype(jnp.uint8)
    centres = (images.astype(jnp.float32) + 0.5) / 256 * 2 - 1
    expected = -(mix.log_prob(centres) + 3 * np.log(2)) / (3 * np.log(2)) + 8
    bpd, nfe = bits_per_dim(sde, mix.score_fn(sde), images, jax.random.key(1),
                            divergence="exact")
    assert bpd.shape == (64,) and int(nfe) > 0
    np.testing.assert_allclose(bpd, expected, atol=0.02)
    assert float(bpd.mean()) > 0


def test_bits_per_dim_refuses_float_or_out_of_range_data():
    sde, score = VPSDE(), lambda x, t: -x
    with pytest.raises(TypeError, match="images must be an integer array"):
        bits_per_dim(sde, score, jnp.zeros((2, 3)), jax.random.key(0))
    with pytest.raises(ValueError, match=r"images must lie in \[0, 255\]"):
        bits_per_dim(sde, score, jnp.full((2, 3), 300, jnp.int32), jax.random.key(0))


def test_log_likelihood_under_jit(mixture):
    sde = VPSDE()
    x = mixture.sample(jax.random.key(0), 8)
    f = jax.jit(lambda s, x, k: log_likelihood(s, mixture.score_fn(s), x, k))
    a, za, na = f(sde, x, jax.random.key(1))
    b, zb, nb = f(sde, x, jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(za, zb)
    assert a.dtype == jnp.float32 and na.shape == () and int(na) == int(nb)
