"""Samplers fed the exact score of a Gaussian mixture reproduce it; step equations match the
papers' update rules; NFE is what the call really evaluated; randomness only from the key."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scorelab.metrics import sliced_wasserstein
from samplers import ODE_SOLVERS, SDE_SOLVERS, ode_sample, pc_sample, sde_sample
from samplers import pc as pc_steps
from sde import VESDE, VPSDE, GaussianMixture, subVPSDE

N_SAMPLES = 4000

SAMPLERS = {
    "pc_reverse_diffusion_langevin": lambda s, f, shape, k: pc_sample(s, f, shape, k),
    "pc_ancestral": lambda s, f, shape, k: pc_sample(s, f, shape, k, predictor="ancestral",
                                                     corrector=None),
    "pc_euler_maruyama_ald": lambda s, f, shape, k: pc_sample(
        s, f, shape, k, predictor="euler_maruyama", corrector="ald", num_steps=500),
    "sde_euler_maruyama": lambda s, f, shape, k: sde_sample(s, f, shape, k),
    "sde_shark": lambda s, f, shape, k: sde_sample(s, f, shape, k, solver="shark", num_steps=200),
    # The solver named explicitly, so the id says what runs: dopri5 is ode_sample's default
    # (test_ode_default_solver_is_dopri5), tsit5 the solver that v0.1 runs keep.
    "ode_dopri5_adaptive": lambda s, f, shape, k: ode_sample(s, f, shape, k, solver="dopri5"),
    "ode_tsit5_per_sample": lambda s, f, shape, k: ode_sample(s, f, shape, k, solver="tsit5",
                                                              step_control="per_sample"),
    "ode_heun_fixed": lambda s, f, shape, k: ode_sample(s, f, shape, k, solver="heun",
                                                        num_steps=100),
}


def _component_stats(mixture, x):
    """Weight, mean and per-axis std of each component, samples assigned by p(k | x)."""
    comp = jnp.argmax(mixture.responsibilities(x), axis=-1)
    return [(float(jnp.mean(comp == k)), x[comp == k].mean(0), x[comp == k].std(0))
            for k in range(mixture.weights.shape[0])]


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_reproduces_mixture(sde, mixture, sampler):
    x, nfe = SAMPLERS[sampler](sde, mixture.score_fn(sde), (N_SAMPLES, 2), jax.random.key(0))
    assert x.shape == (N_SAMPLES, 2) and x.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(x))) and int(nfe) > 0
    ref = mixture.sample(jax.random.key(1), N_SAMPLES)
    # Two exact sample sets of this size lie 0.04-0.15 apart (seeds 2-7); a broken sampler, > 0.9.
    assert float(sliced_wasserstein(x, ref, jax.random.key(2))) < 0.2
    for (w, mean, std), w_true, mu, s in zip(_component_stats(mixture, x), mixture.weights,
                                             mixture.means, mixture.stds):
        assert abs(w - w_true) < 4 * np.sqrt(w_true * (1 - w_true) / N_SAMPLES)
        np.testing.assert_allclose(mean, mu, atol=0.05)
        np.testing.assert_allclose(std, s, rtol=0.08)


# ---- step equations against the papers' update rules ----

def _check_gaussian_step(step, x, mean_fn, std):
    """`step(x, key)` is mean_fn(x) + std z with z ~ N(0, I) drawn from the key alone."""
    key = jax.random.key(7)
    r1 = (step(x, key) - mean_fn(x)) / std
    x2 = 0.5 * x + 1.0
    r2 = (step(x2, key) - mean_fn(x2)) / std
    np.testing.assert_allclose(r1, r2, atol=2e-3)  # the same noise: the mean map is exact
    assert abs(float(r1.mean())) < 0.02 and abs(float(r1.std()) - 1) < 0.02


def _score(x, t):
    return -x / 1.3 + 0.2


def test_ddpm_ancestral_step(x64):
    """Ho et al. 2020, Alg. 2: x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)
    + sqrt(beta_t) z, with eps = -sqrt(1 - alpha_bar_t) score."""
    sde, i = VPSDE(N=1000), 400
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    x = jax.random.normal(jax.random.key(0), (20000, 4))
    t = jnp.full((20000,), i / 999)

    def ho(x):
        eps = -np.sqrt(1 - alpha_bar[i]) * _score(x, t)
        return (x - betas[i] / np.sqrt(1 - alpha_bar[i]) * eps) / np.sqrt(1 - betas[i])
    step = lambda x, k: pc_steps.ancestral(sde, _score, x, t, k)[0]
    _check_gaussian_step(step, x, ho, np.sqrt(betas[i]))


def test_smld_ancestral_and_reverse_diffusion_steps(x64):
    """Song et al. 2021 eqs. 46-47 for VE: x + (s_i^2 - s_{i-1}^2) score, noise std
    sqrt(s_{i-1}^2 (s_i^2 - s_{i-1}^2) / s_i^2) (ancestral) or sqrt(s_i^2 - s_{i-1}^2)."""
    sde, i = VESDE(sigma_min=0.01, sigma_max=50.0, N=100), 60
    sig = np.exp(np.linspace(np.log(0.01), np.log(50.0), 100))
    x = jax.random.normal(jax.random.key(0), (20000, 4))
    t = jnp.full((20000,), i / 99)
    d2 = sig[i] ** 2 - sig[i - 1] ** 2
    mean = lambda x: x + d2 * _score(x, t)
    _check_gaussian_step(lambda x, k: pc_steps.ancestral(sde, _score, x, t, k)[0], x, mean,
                         np.sqrt(sig[i - 1] ** 2 * d2 / sig[i] ** 2))
    _check_gaussian_step(lambda x, k: pc_steps.reverse_diffusion(sde, _score, x, t, k)[0], x,
                         mean, np.sqrt(d2))


def test_vp_reverse_diffusion_and_euler_maruyama_steps(x64):
    sde, i = VPSDE(N=1000), 250
    beta = np.linspace(1e-4, 0.02, 1000)[i]
    x = jax.random.normal(jax.random.key(0), (20000, 4))
    t = jnp.full((20000,), i / 999)
    _check_gaussian_step(lambda x, k: pc_steps.reverse_diffusion(sde, _score, x, t, k)[0], x,
                         lambda x: (2 - np.sqrt(1 - beta)) * x + beta * _score(x, t),
                         np.sqrt(beta))
    b, dt = 0.1 + float(t[0]) * 19.9, 1 / 1000
    _check_gaussian_step(lambda x, k: pc_steps.euler_maruyama(sde, _score, x, t, k)[0], x,
                         lambda x: x + (0.5 * b * x + b * _score(x, t)) * dt, np.sqrt(b * dt))


def test_ncsn_annealed_langevin_step(x64):
    """Song & Ermon 2019, Alg. 1: x + alpha_i / 2 score + sqrt(alpha_i) z with
    alpha_i = step_lr sigma_i^2 / sigma_L^2, reached with snr = sqrt(step_lr) / (2 sigma_L)."""
    sigma_min, sigma_max, step_lr, i = 0.01, 1.0, 2e-5, 6
    sde = VESDE(sigma_min=sigma_min, sigma_max=sigma_max, N=10)
    sig = np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), 10))
    alpha = step_lr * sig[i] ** 2 / sigma_min**2
    x = jax.random.normal(jax.random.key(0), (20000, 4))
    t = jnp.linspace(1.0, 0.0, 10)[9 - i] * jnp.ones(20000)  # pc_sample's grid with eps = 0
    snr = np.sqrt(step_lr) / (2 * sigma_min)
    step = lambda x, k: pc_steps.annealed_langevin(sde, _score, x, t, k, snr=snr, n_steps=1)[0]
    _check_gaussian_step(step, x, lambda x: x + alpha / 2 * _score(x, t), np.sqrt(alpha))


@pytest.mark.parametrize("sde_cls", [VPSDE, subVPSDE])
def test_langevin_step_size_uses_alpha_bar(sde_cls, x64):
    """Alg. 5: e = 2 alpha_i (snr ||z|| / ||score||)^2 with alpha_i = prod_j (1 - beta_j)
    (here its continuous form m(t)^2 = 0.079 at t = 0.5, not the code's 1 - beta_i = 0.99)."""
    sde, n, snr = sde_cls(), 200000, 0.16
    c = jnp.array([3.0, -4.0])  # a constant score of norm 5
    t = jnp.full((n,), 0.5)
    out = pc_steps.langevin(sde, lambda x, t: jnp.broadcast_to(c, x.shape), jnp.zeros((n, 2)),
                            t, jax.random.key(0), snr=snr, n_steps=1)[0]
    alpha_bar = float(sde.mean_coeff(t[:1])[0] ** 2)
    e = 2 * alpha_bar * (snr * np.sqrt(np.pi / 2) / 5.0) ** 2  # E||z|| = sqrt(pi / 2) in 2-D
    np.testing.assert_allclose(out.var(0), 2 * e, rtol=0.02)
    np.testing.assert_allclose(out.mean(0), e * c, atol=5 * np.sqrt(2 * e / n))


# ---- NFE is counted: a host-side counter agrees with what the samplers return ----

def _counting(score_fn):
    calls = []

    def counted(x, t):
        # With x as an argument the callback runs once per vmapped lane (per-sample solves).
        jax.debug.callback(lambda x: calls.append(1), x)
        return score_fn(x, t)
    return counted, calls


@pytest.mark.parametrize("kwargs, expected", [
    (dict(predictor="reverse_diffusion", corrector="langevin", n_corrector_steps=2), 3 * 25 + 1),
    (dict(predictor="ancestral", corrector=None), 25 + 1),
    (dict(predictor="none", corrector="ald", n_corrector_steps=3, denoise=False), 3 * 25),
    (dict(predictor="euler_maruyama", corrector="none", denoise=False), 25),
])
def test_pc_nfe_is_counted(mixture, kwargs, expected):
    sde = VPSDE(N=25)
    score, calls = _counting(mixture.score_fn(sde))
    _, nfe = pc_sample(sde, score, (3, 2), jax.random.key(0), **kwargs)
    jax.effects_barrier()
    assert int(nfe) == len(calls) == expected


@pytest.mark.parametrize("solver", list(SDE_SOLVERS))
def test_sde_nfe_is_counted(mixture, solver):
    sde = VESDE(sigma_max=50.0)
    score, calls = _counting(mixture.score_fn(sde))
    _, nfe = sde_sample(sde, score, (3, 2), jax.random.key(0), solver=solver, num_steps=7)
    jax.effects_barrier()
    assert int(nfe) == len(calls) == 7 * SDE_SOLVERS[solver].evals_per_step + 1


@pytest.mark.parametrize("solver", list(ODE_SOLVERS))
def test_ode_nfe_is_counted(mixture, solver):
    """Fixed steps on the batch, and adaptive per-sample solves (the call evaluates every lane
    until the slowest is done: the callback fires once per sample per evaluation)."""
    sde, batch = VPSDE(), 3
    score, calls = _counting(mixture.score_fn(sde))
    _, nfe = ode_sample(sde, score, (batch, 2), jax.random.key(0), solver=solver, num_steps=5)
    jax.effects_barrier()
    assert int(nfe) == len(calls) == 5 * ODE_SOLVERS[solver].evals_per_step \
        + ODE_SOLVERS[solver].initial_evals
    if ODE_SOLVERS[solver].adaptive:
        calls.clear()
        _, nfe = ode_sample(sde, score, (batch, 2), jax.random.key(0), solver=solver, rtol=1e-3,
                            atol=1e-3)
        jax.effects_barrier()
        assert int(nfe) == len(calls) and int(nfe) > 5
        calls.clear()
        _, nfe = ode_sample(sde, score, (batch, 2), jax.random.key(0), solver=solver, rtol=1e-3,
                            atol=1e-3, step_control="per_sample")
        jax.effects_barrier()
        assert int(nfe) * batch == len(calls) and int(nfe) > 5


# ---- the probability-flow ODE is an exact affine map for Gaussian data ----

def test_probability_flow_is_the_gaussian_affine_map(sde, x64):
    """Data N(mu, s^2 I): p_t = N(m mu, v(t) I), v = m^2 s^2 + std^2, and the ODE carries
    x_T to m(t) mu + sqrt(v(t) / v(T)) (x_T - m(T) mu), point by point."""
    mu, s = jnp.array([1.5, -0.5, 0.25]), 0.7
    gauss = GaussianMixture.create([1.0], mu[None], [s])
    gauss = GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in
                              (gauss.weights, gauss.means, gauss.stds)))
    z = sde.prior_sampling(jax.random.key(0), (8, 3), jnp.float64)
    eps = 1e-3
    x, _ = ode_sample(sde, gauss.score_fn(sde), (8, 3), jax.random.key(1), z=z, eps=eps,
                      rtol=1e-9, atol=1e-9)
    ends = jnp.array([eps, sde.T])
    m, std = sde.mean_coeff(ends), sde.std(ends)
    v = m**2 * s**2 + std**2
    expected = m[0] * mu + jnp.sqrt(v[0] / v[1]) * (z - m[1] * mu)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)


# ---- reverse mode: samplers inside a differentiated objective ----

@pytest.mark.parametrize("sampler", [
    lambda s, f, k: sde_sample(s, f, (6, 2), k, num_steps=40),
    lambda s, f, k: sde_sample(s, f, (6, 2), k, solver="shark", num_steps=20),
    lambda s, f, k: pc_sample(s, f, (6, 2), k),
    lambda s, f, k: ode_sample(s, f, (6, 2), k, solver="heun", num_steps=20),
], ids=["sde_euler_maruyama", "sde_shark", "pc", "ode_heun"])
def test_gradient_through_sampler_matches_finite_differences(sampler):
    """d/ds of E|x|^2 over samples of a score for data N(0, s^2 I): jax.grad through the whole
    solve (a fixed-step SDE solve included) equals a central difference."""
    sde = VPSDE(N=40)

    def objective(s):
        def score(x, t):
            m, std = sde.mean_coeff(t)[:, None], sde.std(t)[:, None]
            return -x / (m**2 * s**2 + std**2)
        x, _ = sampler(sde, score, jax.random.key(0))
        return jnp.mean(x**2)

    s, h = 0.8, 3e-3
    grad = jax.grad(objective)(s)
    fd = (objective(s + h) - objective(s - h)) / (2 * h)
    assert abs(float(grad)) > 0.1
    np.testing.assert_allclose(grad, fd, rtol=2e-4)


def test_ode_default_solver_is_dopri5():
    """What the ode_* ids above name runs: the default is dopri5 (since 0.3; Tsit5 before) and
    `solver` is honoured: one fixed step from T to eps with the linear score -x / 1.3 lands
    8e-3 apart with the two 5th-order tableaus (and exactly 0 apart with one of them)."""
    assert inspect.signature(ode_sample).parameters["solver"].default == "dopri5"
    run = lambda solver: np.asarray(ode_sample(VPSDE(), lambda x, t: -x / 1.3, (4, 2),
                                               jax.random.key(0), solver=solver, num_steps=1)[0])
    gap = np.abs(run("dopri5") - run("tsit5")).max()
    assert gap > 1e-3, gap


# ---- randomness only from the key; usable inside jit ----

@pytest.mark.parametrize("sampler", ["pc_reverse_diffusion_langevin", "sde_euler_maruyama",
                                     "ode_dopri5_adaptive"])
def test_same_key_same_samples_under_jit(mixture, sampler):
    sde = VPSDE(N=50)
    run = jax.jit(lambda s, k: SAMPLERS[sampler](s, mixture.score_fn(s), (16, 2), k))
    a, nfe_a = run(sde, jax.random.key(3))
    b, nfe_b = run(sde, jax.random.key(3))
    c, _ = run(sde, jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert int(nfe_a) == int(nfe_b) and not np.allclose(a, c)
    eager, _ = SAMPLERS[sampler](sde, mixture.score_fn(sde), (16, 2), jax.random.key(3))
    np.testing.assert_allclose(eager, a, rtol=1e-5, atol=1e-5)


def test_num_steps_changes_the_chain(mixture):
    """pc_sample(num_steps=k) runs DDPM's chain with k steps (betas rescaled by N / k)."""
    sde = VPSDE(N=1000)
    score, calls = _counting(mixture.score_fn(sde))
    x, nfe = pc_sample(sde, score, (2000, 2), jax.random.key(0), predictor="ancestral",
                       corrector=None, num_steps=100)
    assert int(nfe) == 101
    w = [c[0] for c in _component_stats(mixture, x)]
    assert abs(w[0] - 0.3) < 0.04
