"""Sampling under observations against the closed forms of Gaussian(-mixture) posteriors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import (classifier_free_guidance, classifier_guidance, colorize, denoise, edit,
                      inpaint, pc_sample, posterior_mean, solve_inverse, super_resolve)
from samplers.observe import PIGDM_TRUST, _cg, guided_score
from samplers.operators import (BlockAverage, ChannelMean, FourierSampling, GaussianBlur,
                                LinearFunction, Mask, RandomProjection, check_linear)
from scorelab.metrics import sliced_wasserstein
from sde import VESDE, VPSDE, GaussianMixture, subVPSDE

IMAGE = (4, 4, 3)
OPERATORS = {
    "mask": lambda: Mask.create(np.random.default_rng(0).random(IMAGE) < 0.5),
    "channel_mean": lambda: ChannelMean.create(IMAGE),
    "block_average": lambda: BlockAverage.create(IMAGE, 2),
    "blur": lambda: GaussianBlur.create(IMAGE, 0.8),
    "projection": lambda: RandomProjection.create(IMAGE, 10, 0),
    "fourier": lambda: FourierSampling.create((8, 6, 2), 0.3, 1),
    "function": lambda: LinearFunction(lambda x: x[:, ::2] - x[:, 1::2], (6,)),
}


def image_mixture():
    """Three components on 4 x 4 x 3 images: separated means, unequal weights and spreads."""
    rng = np.random.default_rng(3)
    return GaussianMixture.create([1.0, 2.0, 1.5], rng.standard_normal((3,) + IMAGE),
                                  [0.3, 0.5, 0.4])


def joint_distance(y, x, exact_x, key=2):
    """Sliced W2 between the joint samples (y, x) and (y, exact_x): a method that ignored y would
    match the marginal of x but not the joint."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    return float(sliced_wasserstein(jnp.concatenate([flat(y), flat(x)], 1),
                                    jnp.concatenate([flat(y), flat(exact_x)], 1),
                                    jax.random.key(key), num_projections=256))


# ---- operators ----

@pytest.mark.parametrize("name", list(OPERATORS))
def test_adjoint_passes_the_dot_product_test_and_the_operator_is_linear(name, x64):
    op = OPERATORS[name]()
    x = jax.random.normal(jax.random.key(0), (3,) + op.in_shape)
    y = jax.random.normal(jax.random.key(1), (3,) + op.out_shape)
    np.testing.assert_allclose(jnp.vdot(op(x), y), jnp.vdot(x, op.adjoint(y)), rtol=1e-12)
    check_linear(op)
    u = jax.random.normal(jax.random.key(2), x.shape)
    np.testing.assert_allclose(op(2.0 * x - 3.0 * u), 2.0 * op(x) - 3.0 * op(u), atol=1e-12)


@pytest.mark.parametrize("name", ["mask", "channel_mean", "block_average", "fourier"])
def test_operators_with_a_pseudo_inverse_have_orthogonal_rows_of_one_norm(name, x64):
    op = OPERATORS[name]()
    a = op.matrix()
    rows = np.linalg.norm(np.asarray(a), axis=1) > 0  # a mask's unobserved entries read 0
    np.testing.assert_allclose(a[rows] @ a[rows].T, op.gram * np.eye(rows.sum()), atol=1e-12)
    x = jax.random.normal(jax.random.key(0), (2,) + op.in_shape)
    y = op(jax.random.normal(jax.random.key(1), x.shape))
    np.testing.assert_allclose(op(op.project(x, y)), y, atol=1e-12)


def test_fourier_sampling_keeps_each_frequency_once_and_the_mean(x64):
    op = FourierSampling.create((28, 28, 1), 0.25, 0)
    m = op.out_shape[0]
    assert op.out_shape[1] == 1 and 195 <= m <= 196  # 0.25 * 784 real numbers, whole frequencies
    kept = op.frequencies()
    assert kept[0, 0] and kept.sum() == m  # each partner implied, none counted twice
    np.testing.assert_array_equal(kept, np.roll(np.flip(kept, (0, 1)), 1, (0, 1)))  # Hermitian
    # centre-dense: the lowest frequencies are kept far more often than the highest
    low = np.hypot(*np.meshgrid(*(np.minimum(np.arange(28), 28 - np.arange(28)),) * 2)) < 5
    assert kept[low].mean() > 3 * kept[~low].mean()


def test_blur_keeps_constant_images():
    op = GaussianBlur.create((6, 5, 1), 1.5)
    np.testing.assert_allclose(op(jnp.full((1, 6, 5, 1), 0.7)), 0.7, rtol=1e-6)


# ---- the mixture oracle ----

def test_mixture_posterior_is_the_precision_form_and_the_evidence_weights(x64):
    rng = np.random.default_rng(0)
    gm = GaussianMixture(jnp.array([0.25, 0.75]), jnp.asarray(rng.standard_normal((2, 5))),
                         jnp.array([0.5, 1.2]))
    a, s = rng.standard_normal((3, 5)), 0.3
    y = rng.standard_normal((4, 3))
    post = gm.posterior(a, y, s)
    for k in range(2):
        prec = np.eye(5) / gm.stds[k] ** 2 + a.T @ a / s ** 2
        np.testing.assert_allclose(post.covs[0, k], np.linalg.inv(prec), rtol=1e-10, atol=1e-12)
        mean = np.linalg.solve(prec, (gm.means[k] / gm.stds[k] ** 2 + y @ a / s ** 2).T).T
        np.testing.assert_allclose(post.means[:, k], mean, rtol=1e-10)
    evidence = np.stack([jax.scipy.stats.multivariate_normal.logpdf(
        y, a @ gm.means[k], gm.stds[k] ** 2 * a @ a.T + s ** 2 * np.eye(3)) for k in range(2)], -1)
    np.testing.assert_allclose(post.weights, jax.nn.softmax(np.log(gm.weights) + evidence, -1),
                               rtol=1e-10)


# ---- denoising: exact start and Tweedie ----

@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_posterior_mean_is_the_closed_form_mean_pointwise(sde, mixture, x64):
    x0 = mixture.sample(jax.random.key(0), 64)
    s = jnp.linspace(0.05, 2.0, 64)  # one noise level per sample
    y = x0 + s[:, None] * jax.random.normal(jax.random.key(1), x0.shape)
    mean, nfe = jax.jit(lambda y: posterior_mean(sde, mixture.score_fn(sde), y, s))(y)
    exact = mixture.posterior(jnp.eye(2), y, s).mean
    np.testing.assert_allclose(mean, exact, rtol=1e-7, atol=1e-8)
    assert int(nfe) == 1
    zero, _ = posterior_mean(sde, mixture.score_fn(sde), y, 0.0)
    np.testing.assert_array_equal(zero, y)


@pytest.mark.parametrize("sde", [VPSDE(N=300), VESDE(N=300)], ids=["vp", "ve"])
def test_denoised_draws_follow_the_exact_posterior_jointly_with_y(sde, mixture):
    n, s = 4000, 0.5
    x0 = mixture.sample(jax.random.key(0), n)
    y = x0 + s * jax.random.normal(jax.random.key(1), x0.shape)
    x, nfe = jax.jit(lambda y: denoise(sde, mixture.score_fn(sde), y, s, jax.random.key(2)))(y)
    post = mixture.posterior(jnp.eye(2), y, s)
    exact, exact2 = post.sample(jax.random.key(3)), post.sample(jax.random.key(4))
    floor = joint_distance(y, exact2, exact)
    assert joint_distance(y, x, exact) < floor + 0.03
    # a method that ignored y (prior draws) is far off in the joint, though not in the marginal
    assert joint_distance(y, mixture.sample(jax.random.key(5), n), exact) > floor + 0.2
    t_star = float(sde.time_of_sigma(jnp.float32(s)))
    assert int(nfe) == int(np.ceil(sde.N * t_star)) + 1


def test_denoise_with_zero_noise_returns_y_and_per_sample_levels_are_independent(mixture):
    sde, y = VPSDE(N=200), mixture.sample(jax.random.key(0), 4)
    s = jnp.array([0.0, 0.3, 0.0, 1.0])
    x, _ = denoise(sde, mixture.score_fn(sde), y, s, jax.random.key(1), num_steps=50)
    np.testing.assert_array_equal(x[::2], y[::2])
    assert not np.allclose(x[1::2], y[1::2])


# ---- inverse problems ----

def test_tweedie_guidance_is_exact_for_a_gaussian_prior():
    """With one Gaussian component, p(x0 | x_t) is Gaussian with Tweedie's mean and covariance,
    so the guided score is exact: the draws' errors from the posterior mean have mean 0 and the
    posterior covariance (4000 draws: 4 standard errors)."""
    rng = np.random.default_rng(0)
    gauss = GaussianMixture.create([1.0], rng.standard_normal((1, 6)), [0.4])
    op, s, n = RandomProjection.create((6,), 3, 0), 0.2, 4000
    sde = VPSDE(N=300)
    x0 = gauss.sample(jax.random.key(1), n)
    y = op(x0) + s * jax.random.normal(jax.random.key(2), (n, 3))
    x, nfe = jax.jit(lambda y: solve_inverse(sde, gauss.score_fn(sde), y, op, s,
                                             jax.random.key(3), cg_steps=3))(y)
    post = gauss.posterior(op.matrix(), y, s)
    err, cov = x - post.mean, post.covs[0, 0]
    se = jnp.sqrt(jnp.diag(cov) / n)
    assert np.all(np.abs(err.mean(0)) < 4 * se)
    se_cov = float(jnp.max(jnp.diag(cov))) * np.sqrt(2 / n)
    np.testing.assert_allclose(jnp.cov(err.T), cov, atol=4 * se_cov)
    assert int(nfe) == 301 * (3 + 2)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_tweedie_guided_score_is_the_exact_conditional_score_of_a_gaussian(sde, x64):
    """For data N(mu, s0^2 I) and y = A x0 + s n, x_t given y is N(m mu_y, m^2 C_y + std^2 I)
    with the posterior's mean mu_y and covariance C_y: the guided score must be its score, point
    by point (with as many CG steps as observations). PiGDM's r^2 I is exact only for s0 = 1."""
    rng = np.random.default_rng(1)
    mu, s0 = 2 + rng.standard_normal(4), 0.3
    gauss = GaussianMixture(jnp.ones(1), jnp.asarray(mu[None]), jnp.full(1, s0))
    op, s = RandomProjection.create((4,), 2, 1), 0.2
    a = op.matrix().astype(jnp.float64)
    op = RandomProjection(a, (4,))
    y = jnp.asarray(rng.standard_normal((8, 2)))
    x, t = jnp.asarray(rng.standard_normal((8, 4))), jnp.linspace(0.02, 1.0, 8)
    post = gauss.posterior(a, y, s)
    m, std = sde.mean_coeff(t), sde.std(t)
    cov = m[:, None, None] ** 2 * post.covs[:, 0] + std[:, None, None] ** 2 * jnp.eye(4)
    exact = -jnp.linalg.solve(cov, (x - m[:, None] * post.means[:, 0])[..., None])[..., 0]
    tweedie, cost = guided_score(sde, gauss.score_fn(sde), y, op, jnp.full(8, s), cg_steps=2)
    np.testing.assert_allclose(jax.jit(tweedie)(x, t), exact, rtol=1e-8, atol=1e-8)
    assert cost == 4
    pigdm, cost = guided_score(sde, gauss.score_fn(sde), y, op, jnp.full(8, s), method="pigdm")
    assert float(jnp.max(jnp.abs(jax.jit(pigdm)(x, t) - exact))) > 0.1 and cost == 2


@pytest.mark.parametrize("s0", [0.3, 1.0, 5.0])
def test_pigdm_moves_the_mean_as_tweedie_would_up_to_its_trust_region(s0, x64):
    """For data N(mu, s0^2 I), Cov[x0 | x_t] = c I with c = (1 / s0^2 + 1 / sigma^2)^-1, and
    PiGDM's guidance moves E[x0 | x_t] by c A^T v, v = (s^2 I + r^2 A A^T)^-1 (y - A E[x0 | x_t]).
    Its cap K r^2 |A^T v| (K = PIGDM_TRUST = 10) binds only where c > K r^2 (here for s0 = 5 at
    large t): the guided score must be score + m / std^2 min(c, K r^2) A^T v, exactly."""
    rng = np.random.default_rng(2)
    sde, s = VPSDE(), 0.2
    gauss = GaussianMixture(jnp.ones(1), jnp.asarray(rng.standard_normal((1, 5))), jnp.full(1, s0))
    a = RandomProjection.create((5,), 3, 0).matrix().astype(jnp.float64)
    op = RandomProjection(a, (5,))
    y = jnp.asarray(rng.standard_normal((8, 3)))
    x, t = jnp.asarray(rng.standard_normal((8, 5))), jnp.linspace(0.05, 1.0, 8)
    m, std = sde.mean_coeff(t), sde.std(t)
    sigma2 = (std / m) ** 2
    r2, c = sigma2 / (1 + sigma2), 1 / (1 / s0 ** 2 + 1 / sigma2)
    score = gauss.score_fn(sde)(x, t)
    x0 = (x + std[:, None] ** 2 * score) / m[:, None]
    gram = a @ a.T
    v = jnp.stack([jnp.linalg.solve(s ** 2 * jnp.eye(3) + r2[i] * gram, y[i] - a @ x0[i])
                   for i in range(8)])
    expected = score + (m / std ** 2 * jnp.minimum(c, PIGDM_TRUST * r2))[:, None] * (v @ a)
    assert (s0 < 5) == bool(jnp.all(c <= PIGDM_TRUST * r2))  # the cap binds for s0 = 5 only
    pigdm, _ = guided_score(sde, gauss.score_fn(sde), y, op, jnp.full(8, s), method="pigdm",
                            cg_steps=3)
    np.testing.assert_allclose(jax.jit(pigdm)(x, t), expected, rtol=1e-7, atol=1e-9)


def test_truncated_cg_solves_positive_definite_systems_and_stops_at_low_curvature(x64):
    """Per sample: an SPD system is solved in as many steps as unknowns; a direction of negative
    curvature, or of curvature below the floor, stops that sample where it is (here at v = 0)
    instead of dividing by it."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((6, 6))
    spd = q @ q.T + 0.5 * np.eye(6)
    indefinite = np.diag([1.0, -3.0, 1.0, 1.0, 1.0, 1.0])
    flat = np.diag([0.1] * 6)  # positive, below a floor of 0.5 |p|^2
    ms = jnp.asarray(np.stack([spd, indefinite, flat]))
    b = jnp.asarray(np.stack([rng.standard_normal(6), [1.0, 1, 0, 0, 0, 0], np.ones(6)]))
    matvec = lambda p: jnp.einsum("bij,bj->bi", ms, p)
    v = _cg(matvec, b, 6, lambda p: 0.5 * jnp.sum(p * p, -1) * jnp.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(v[0], np.linalg.solve(spd, b[0]), rtol=1e-8)
    np.testing.assert_array_equal(v[1:], 0.0)
    np.testing.assert_allclose(_cg(matvec, b, 6)[2], b[2] / 0.1, rtol=1e-12)  # no floor


def test_inpainting_keeps_observed_entries_and_approaches_the_exact_conditional(mixture):
    """Observe the first coordinate of the 2-D mixture exactly; the second is drawn from its
    exact conditional (a two-component mixture in one dimension)."""
    sde, n = VPSDE(N=200), 4000
    x0 = mixture.sample(jax.random.key(0), n)
    mask = jnp.array([True, False])
    x, nfe = jax.jit(lambda y: inpaint(sde, mixture.score_fn(sde), y, mask, jax.random.key(1)))(x0)
    np.testing.assert_array_equal(x[:, 0], x0[:, 0])
    post = mixture.posterior(jnp.array([[1.0, 0.0]]), x0[:, :1], 0.0)
    exact, exact2 = post.sample(jax.random.key(2)), post.sample(jax.random.key(3))
    floor = joint_distance(x0[:, :1], exact2, exact)
    assert joint_distance(x0[:, :1], x, exact) < floor + 0.05
    same, _ = jax.jit(lambda y: solve_inverse(sde, mixture.score_fn(sde), y, Mask.create(mask),
                                              0.0, jax.random.key(1)))(x0 * mask)
    np.testing.assert_array_equal(same, x)
    assert int(nfe) == 201 * 6


def test_noise_free_image_constraints_hold_to_rounding():
    gm, sde = image_mixture(), VESDE(N=20)
    x0 = gm.sample(jax.random.key(0), 3)
    gray = jnp.mean(x0, -1, keepdims=True)
    x, _ = colorize(sde, gm.score_fn(sde), gray, jax.random.key(1))
    assert x.shape == x0.shape
    np.testing.assert_allclose(jnp.mean(x, -1, keepdims=True), gray, atol=1e-6)
    low = BlockAverage.create(IMAGE, 2)(x0)
    x, _ = super_resolve(sde, gm.score_fn(sde), low, jax.random.key(1), factor=2)
    assert x.shape == x0.shape
    np.testing.assert_allclose(BlockAverage.create(IMAGE, 2)(x), low, atol=1e-6)
    mask = jax.random.bernoulli(jax.random.key(2), 0.3, x0.shape)  # one mask per sample
    for method in ("tweedie", "pigdm", "projection", "ddrm"):
        x, _ = inpaint(sde, gm.score_fn(sde), x0, mask, jax.random.key(3), method=method)
        np.testing.assert_array_equal(jnp.where(mask, x, 0.0), jnp.where(mask, x0, 0.0))
        assert bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize("method", ["tweedie", "ddrm"])
def test_fourier_reconstruction_is_closer_to_the_exact_posterior_mean_than_zero_filling(method):
    gm, sde, n = image_mixture(), VPSDE(N=100), 128
    op = FourierSampling.create(IMAGE, 0.3, 0)
    x0 = gm.sample(jax.random.key(0), n)
    y = op(x0) + 0.05 * jax.random.normal(jax.random.key(1), (n,) + op.out_shape)
    x, nfe = jax.jit(lambda y: solve_inverse(sde, gm.score_fn(sde), y, op, 0.05,
                                             jax.random.key(2), method=method))(y)
    assert int(nfe) == 101 * (6 if method == "tweedie" else 1)
    mean = gm.posterior(op.matrix(), y.reshape(n, -1), 0.05).mean
    rms = lambda a: float(jnp.sqrt(jnp.mean(jnp.square(a - x0))))
    # an exact draw's error is sqrt(2) times the posterior mean's, on average; DDRM is not an
    # exact sampler (its eta = 0.85 DDIM steps, bench/bench_observe.py), but beats zero-filling
    zero_filled = rms(op.adjoint(y))
    assert rms(mean) < 0.6 * zero_filled
    assert rms(x) < (1.6 * rms(mean) if method == "tweedie" else 0.9 * zero_filled)


@pytest.mark.parametrize("method, cost", [("tweedie", 3 + 2), ("pigdm", 2), ("projection", 1),
                                          ("ddrm", 1)])
def test_solve_inverse_counts_the_cost_its_docstring_states(method, cost, mixture):
    """nfe = cost per score call x (num_steps predictor calls + num_steps n_corrector_steps
    corrector calls + the final Tweedie step)."""
    sde, op = VPSDE(N=50), Mask.create(jnp.array([True, False]))
    y = op(mixture.sample(jax.random.key(0), 4))
    for corrector, calls in (("none", 5 + 1), ("langevin", 5 + 5 * 2 + 1)):
        _, nfe = solve_inverse(sde, mixture.score_fn(sde), y, op, 0.1, jax.random.key(1),
                               method=method, num_steps=5, cg_steps=3, corrector=corrector,
                               n_corrector_steps=2)
        assert int(nfe) == cost * calls, (method, corrector)


def test_ddrm_refuses_a_predictor_it_would_not_use(mixture):
    """DDRM's step is its predictor: another predictor would be silently dropped."""
    sde, op = VPSDE(N=50), Mask.create(jnp.array([True, False]))
    y, score = op(mixture.sample(jax.random.key(0), 2)), mixture.score_fn(sde)
    with pytest.raises(ValueError, match="predictor='euler_maruyama' cannot be used with "
                                         "method='ddrm'.*leave predictor at its default "
                                         "'reverse_diffusion'"):
        solve_inverse(sde, score, y, op, 0.1, jax.random.key(1), method="ddrm",
                      predictor="euler_maruyama")
    with pytest.raises(ValueError, match="predictor='ancestral' cannot be used"):
        inpaint(sde, score, y, jnp.array([True, False]), jax.random.key(1), method="ddrm",
                predictor="ancestral")
    run = lambda **kw: solve_inverse(sde, score, y, op, 0.1, jax.random.key(1), method="ddrm",
                                     num_steps=5, **kw)[0]
    default, named = run(), run(predictor="reverse_diffusion")
    np.testing.assert_array_equal(named, default)


# ---- SDEdit and guidance ----

def test_editing_exact_samples_keeps_the_data_distribution_and_small_edits_stay_close(mixture):
    sde, n = VPSDE(N=500), 4000
    x0 = mixture.sample(jax.random.key(0), n)
    x, nfe = edit(sde, mixture.score_fn(sde), x0, jax.random.key(1), t_start=0.6)
    fresh = mixture.sample(jax.random.key(2), n)
    floor = float(sliced_wasserstein(fresh, mixture.sample(jax.random.key(3), n),
                                     jax.random.key(4)))
    assert float(sliced_wasserstein(x, fresh, jax.random.key(4))) < floor + 0.03
    assert int(nfe) == 301
    near, _ = edit(sde, mixture.score_fn(sde), x0, jax.random.key(1), t_start=0.01)
    assert float(jnp.sqrt(jnp.mean(jnp.square(near - x0)))) < 0.1


def test_classifier_guidance_with_the_component_posterior_is_the_component_score(mixture, x64):
    sde, k = VESDE(), 1
    x = 3 * jax.random.normal(jax.random.key(0), (16, 2))
    t = jnp.linspace(0.05, 1.0, 16)
    log_prob = lambda x, t: jnp.log(mixture.responsibilities(x, sde, t)[:, k])
    guided = classifier_guidance(mixture.score_fn(sde), log_prob)
    component = GaussianMixture(jnp.ones(1), mixture.means[k:k + 1], mixture.stds[k:k + 1])
    np.testing.assert_allclose(guided(x, t), component.score(x, t, sde), rtol=1e-9, atol=1e-12)
    cond, uncond = component.score_fn(sde), mixture.score_fn(sde)
    np.testing.assert_allclose(classifier_free_guidance(cond, uncond, 1.0)(x, t), cond(x, t))
    np.testing.assert_allclose(classifier_free_guidance(cond, uncond, 0.0)(x, t), uncond(x, t))
    two = classifier_free_guidance(cond, uncond, 2.0)(x, t)
    np.testing.assert_allclose(two, 2 * cond(x, t) - uncond(x, t), rtol=1e-12, atol=1e-12)


def test_classifier_guided_samples_come_from_the_chosen_component(mixture):
    sde, k = VPSDE(N=300), 0  # component 0 is the lighter one
    log_prob = lambda x, t: jnp.log(mixture.responsibilities(x, sde, t)[:, k])
    score = classifier_guidance(mixture.score_fn(sde), log_prob)
    x, _ = pc_sample(sde, score, (1000, 2), jax.random.key(0), corrector="none")
    assert float(jnp.mean(jnp.argmax(mixture.responsibilities(x), -1) == k)) > 0.99
