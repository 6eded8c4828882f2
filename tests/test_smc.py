"""Sequential Monte Carlo under linear observations (samplers/smc.py): its pieces against closed
forms, and its draws converging to the exact posterior of a Gaussian mixture as particles grow."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import inpaint, solve_inverse
from samplers.observe import smc_solve
from samplers.operators import GaussianBlur, Mask, RandomProjection
from samplers.smc import _bridge, _GramSolver, _systematic, smc_sample
from sde import VESDE, VPSDE, subVPSDE
from tests.test_observe import joint_distance


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_bridge_is_the_gaussian_conditional_of_the_forward_process(sde, x64):
    """q(x_s | x_t, x0) from the joint law of (x_s, x_t) given x0: means m x0, variances std^2,
    covariance (m_t / m_s) std_s^2."""
    t, s = jnp.array([0.9, 0.5, 0.02]), jnp.array([0.7, 0.49, 0.001])
    x0, xt = jnp.array([[0.3], [-1.2], [2.0]]), jnp.array([[1.1], [0.4], [-0.5]])
    mean, var = _bridge(sde, xt, x0, t, s)
    m_t, std_t, m_s, std_s = sde.mean_coeff(t), sde.std(t), sde.mean_coeff(s), sde.std(s)
    cov = m_t / m_s * std_s ** 2
    np.testing.assert_allclose(mean[:, 0], m_s * x0[:, 0] + cov / std_t ** 2 *
                               (xt[:, 0] - m_t * x0[:, 0]), rtol=1e-10)
    np.testing.assert_allclose(var, std_s ** 2 - cov ** 2 / std_t ** 2, rtol=1e-10)


def test_systematic_resampling_keeps_each_particle_floor_or_ceil_of_k_w_times():
    k = 64
    log_w = jax.random.normal(jax.random.key(0), (50, k)) * 2.0
    picked = _systematic(jax.random.key(1), log_w)
    counts = jax.vmap(lambda p: jnp.bincount(p, length=k))(picked)
    expected = k * jax.nn.softmax(log_w, axis=-1)
    assert bool(jnp.all((counts >= jnp.floor(expected - 1e-4))
                        & (counts <= jnp.ceil(expected + 1e-4))))


@pytest.mark.parametrize("make", [lambda: Mask.create(np.array([1, 0, 1, 1, 0, 1], bool)),
                                  lambda: RandomProjection.create((6,), 3, 0),
                                  lambda: GaussianBlur.create((3, 2, 1), 0.7)],
                         ids=["mask", "projection", "blur"])
def test_gram_solver_inverts_c1_plus_c2_a_a_transpose_on_the_range(make, x64):
    op = make()
    a = np.asarray(op.matrix())
    keep = np.linalg.norm(a, axis=1) > 0  # a mask's unobserved entries are not in the range
    solver = _GramSolver.create(op, jnp.float64)
    c1, c2 = jnp.array([0.3, 0.0]), jnp.array([1.7, 2.5])
    r = jax.random.normal(jax.random.key(0), (2,) + op.out_shape, jnp.float64)
    got = solver.solve(c1, c2, r).reshape(2, -1)
    for i in range(2):
        m = c1[i] * np.eye(keep.sum()) + c2[i] * a[keep] @ a[keep].T
        want = np.linalg.solve(m, np.asarray(r).reshape(2, -1)[i, keep])
        np.testing.assert_allclose(got[i, keep], want, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(solver.quadratic(c1, c2, r)[i],
                                   want @ np.asarray(r).reshape(2, -1)[i, keep], rtol=1e-6)


# ---- convergence to the exact posterior of a mixture ----

@pytest.mark.parametrize("sde, op, noise_std", [
    (VPSDE(), Mask.create(np.arange(12) < 6), 0.0),
    (VESDE(), RandomProjection.create((12,), 4, 0), 0.2)],
    ids=["vp-mask-exact", "ve-projection-noisy"])
def test_particles_bring_draws_to_the_exact_posterior(sde, op, noise_std):
    """The 12-D five-component mixture (bench/bench_fewstep.py), 500 observations, 100 steps,
    the exact score: one particle (the proposal alone) lands 4-6 times the floor away (two exact
    draw sets, 0.049 and 0.063) with draws 4 times too far from the posterior mean; 32 particles
    are within 1.5 times the floor, at the exact spread (measured: 0.056 and 0.064, RMS ratios
    1.15 and 1.01)."""
    from bench.bench_fewstep import mixture_12d
    prior, n = mixture_12d(), 500
    keys = jax.random.split(jax.random.key(0), 6)
    x0 = prior.sample(keys[0], n)
    y = op(x0) + noise_std * jax.random.normal(keys[1], (n,) + op.out_shape)
    a = np.asarray(op.matrix())
    keep = np.linalg.norm(a, axis=1) > 0
    post = jax.jit(lambda y: prior.posterior(a[keep], y, noise_std))(y.reshape(n, -1)[:, keep])
    exact, floor_draws = post.sample(keys[2]), post.sample(keys[3])
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(x - post.mean), -1))))
    floor = joint_distance(y.reshape(n, -1), floor_draws, exact)
    run = jax.jit(lambda y, k: smc_solve(sde, prior.score_fn(sde), y, op, noise_std, keys[4],
                                         num_particles=k, num_steps=100), static_argnums=1)
    one, many = run(y, 1), run(y, 32)
    assert joint_distance(y.reshape(n, -1), one.x, exact) > 4 * floor
    assert rms(one.x) > 3 * rms(exact)
    assert joint_distance(y.reshape(n, -1), many.x, exact) < 1.5 * floor
    assert 0.85 < rms(many.x) / rms(exact) < 1.3
    assert many.ess.shape == (101, n) and float(many.ess.min()) > 0 and int(many.nfe) == 101
    if noise_std == 0:
        np.testing.assert_array_equal(many.x[:, :6], x0[:, :6])


def test_smc_through_inpaint_and_its_refusals(mixture):
    sde, y = VPSDE(N=25), mixture.sample(jax.random.key(0), 8)
    mask = jnp.array([False, True])
    x, nfe = inpaint(sde, mixture.score_fn(sde), y, mask, jax.random.key(1), method="smc",
                     num_particles=4)
    same = smc_solve(sde, mixture.score_fn(sde), y * mask, Mask.create(mask), 0.0,
                     jax.random.key(1), num_particles=4)
    np.testing.assert_array_equal(x, same.x)
    assert int(nfe) == 26 and bool(jnp.all(x[:, 1] == y[:, 1]))
    with pytest.raises(ValueError, match="method='smc' .* no predictor or corrector"):
        solve_inverse(sde, mixture.score_fn(sde), y, Mask.create(mask), 0.0, jax.random.key(1),
                      method="smc", corrector="langevin")
    with pytest.raises(ValueError, match="num_particles"):
        smc_solve(sde, mixture.score_fn(sde), y, Mask.create(mask), 0.0, jax.random.key(1),
                  num_particles=0)
    with pytest.raises(ValueError, match="particle_chunk"):
        smc_solve(sde, mixture.score_fn(sde), y, Mask.create(mask), 0.0, jax.random.key(1),
                  particle_chunk=0)


@pytest.mark.parametrize("chunk", [2, 3])
def test_particle_chunks_bound_the_score_batch_and_keep_the_draws(mixture, chunk):
    """5 particles of 8 rows, `chunk` at a time (3 leaves a remainder of 2): the mixture score's
    (particles, rows, components, 2) intermediates hold `chunk` particles, never all 5, and the
    draws are those of all particles at once."""
    sde, y = VPSDE(N=25), mixture.sample(jax.random.key(0), 8)
    op, c = Mask.create(jnp.array([False, True])), len(mixture.weights)
    run = lambda chunk: smc_solve(sde, mixture.score_fn(sde), op(y), op, 0.1, jax.random.key(1),
                                  num_particles=5, particle_chunk=chunk)
    program = lambda chunk: str(jax.make_jaxpr(lambda: run(chunk))())
    assert f"f32[5,8,{c},2]" in program(None)
    assert f"f32[5,8,{c},2]" not in program(chunk) and f"f32[{chunk},8,{c},2]" in program(chunk)
    whole, part = run(None), run(chunk)
    np.testing.assert_allclose(part.x, whole.x, atol=1e-5)
    np.testing.assert_allclose(part.ess, whole.ess, atol=1e-5)


def test_a_class_likelihood_of_the_tweedie_estimate_brings_draws_to_one_component(mixture):
    """Target: the 2-D mixture's lighter component (weight 0.3, mean (-2, 0), std 0.3), through
    log p(k = 0 | x0) of the clean mixture; the twist evaluates it at Tweedie's estimate, an
    approximation the weights correct. One particle is the unconditional model (30% in the
    component); 16 particles put every draw there with the component's mean, and the spread of
    the 200-step chain itself (0.95 of the component's: measured by weighting unconditional
    chain draws with p(k = 0 | x0))."""
    sde, n = VPSDE(), 1000
    log_lik = lambda x0: jax.nn.log_softmax(mixture._log_joint(x0, None, None), -1)[:, 0]
    run = jax.jit(lambda k: smc_sample(sde, mixture.score_fn(sde), log_lik, (n, 2),
                                       jax.random.key(0), num_particles=k, num_steps=200),
                  static_argnums=0)
    one, many = run(1), run(16)
    share = lambda x: float(jnp.mean(jnp.argmax(mixture.responsibilities(x), -1) == 0))
    assert abs(share(one.x) - 0.3) < 0.05 and share(many.x) > 0.995
    mean, std = jnp.array([-2.0, 0.0]), 0.3
    assert float(jnp.linalg.norm(many.x.mean(0) - mean)) < 0.04
    assert 0.88 < float(jnp.sqrt(jnp.mean(jnp.square(many.x - mean)))) / std < 1.02
    assert int(many.nfe) == 201 and many.ess.shape == (201, n)
