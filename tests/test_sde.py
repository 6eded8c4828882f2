"""Closed forms of every SDE member, checked against the paper's formulas and autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sde import SDE, VESDE, VPSDE, register_sde, subVPSDE

T_GRID = np.linspace(0.0, 1.0, 11)


def _vp_log_mean(t, bmin=0.1, bmax=20.0):
    return -0.25 * t**2 * (bmax - bmin) - 0.5 * t * bmin


def test_vp_closed_forms(x64):
    sde, t = VPSDE(), jnp.asarray(T_GRID)
    m = np.exp(_vp_log_mean(T_GRID))
    x = jnp.ones((11, 3))
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_allclose(mean[:, 0], m, rtol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(1 - m**2), rtol=1e-12)
    drift, g = sde.sde(x, t)
    beta = 0.1 + T_GRID * 19.9
    np.testing.assert_allclose(drift[:, 0], -0.5 * beta, rtol=1e-12)
    np.testing.assert_allclose(g, np.sqrt(beta), rtol=1e-12)


def test_subvp_closed_forms(x64):
    sde, t = subVPSDE(), jnp.asarray(T_GRID)
    m = np.exp(_vp_log_mean(T_GRID))
    mean, std = sde.marginal_prob(jnp.ones((11, 2)), t)
    np.testing.assert_allclose(mean[:, 0], m, rtol=1e-12)
    np.testing.assert_allclose(std, 1 - m**2, rtol=1e-12, atol=1e-300)
    beta = 0.1 + T_GRID * 19.9
    np.testing.assert_allclose(sde.g2(t), beta * (1 - m**4), rtol=1e-12)


def test_ve_closed_forms(x64):
    sde, t = VESDE(sigma_min=0.01, sigma_max=50.0), jnp.asarray(T_GRID)
    sigma = 0.01 * (50.0 / 0.01) ** T_GRID
    x = jnp.full((11, 2), 3.0)
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_allclose(mean, x)
    np.testing.assert_allclose(std, sigma, rtol=1e-12)
    np.testing.assert_allclose(sde.sde(x, t)[1], sigma * np.sqrt(2 * np.log(5000.0)), rtol=1e-12)
    assert sde.prior_std == 50.0


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_moment_equations(name, x64):
    """d m/dt = f m and d std^2/dt = 2 f std^2 + g^2: drift and diffusion match the marginals."""
    sde = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE()}[name]
    t = jnp.linspace(0.01, 1.0, 25)
    dm = jax.vmap(jax.grad(lambda s: sde.mean_coeff(s[None])[0]))(t)
    dvar = jax.vmap(jax.grad(lambda s: jnp.square(sde.std(s[None]))[0]))(t)
    f, g2 = sde.drift_coeff(t), sde.g2(t)
    np.testing.assert_allclose(dm, f * sde.mean_coeff(t), rtol=1e-10)
    np.testing.assert_allclose(dvar, 2 * f * jnp.square(sde.std(t)) + g2, rtol=1e-10)


def test_forward_simulation_matches_marginal(sde):
    """Euler-Maruyama on the forward SDE from a point mass reproduces marginal_prob at t = 0.5."""
    x0, n, steps, t_end = jnp.full((20000, 2), 1.5), 20000, 500, 0.5
    dt = t_end / steps

    def step(x, inputs):
        t, k = inputs
        drift, g = sde.sde(x, jnp.full((n,), t))
        return x + drift * dt + g[:, None] * jnp.sqrt(dt) * jax.random.normal(k, x.shape), None
    ts = jnp.arange(steps) * dt
    x, _ = jax.lax.scan(step, x0, (ts, jax.random.split(jax.random.key(0), steps)))
    mean, std = sde.marginal_prob(x0[:1], jnp.array([t_end]))
    np.testing.assert_allclose(x.mean(0), mean[0], atol=4 * std[0] / np.sqrt(n) + 2e-3)
    np.testing.assert_allclose(x.std(0), std[0], rtol=0.02)


def test_prior(sde):
    z = sde.prior_sampling(jax.random.key(0), (50000, 3))
    assert z.shape == (50000, 3) and z.dtype == jnp.float32
    np.testing.assert_allclose(z.std(), sde.prior_std, rtol=0.01)
    zz = jnp.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    var = sde.prior_std**2
    expected = -1.5 * np.log(2 * np.pi * var) - np.array([0.0, 5.25]) / (2 * var)
    np.testing.assert_allclose(sde.prior_logp(zz), expected, rtol=1e-6)


def test_vp_discretize_is_ddpm(x64):
    """VPSDE(N=1000): DDPM's betas linspace(1e-4, 0.02, 1000), x_{i+1} = sqrt(1 - beta_i) x_i + ..."""
    sde = VPSDE(N=1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    i = np.arange(1000)
    t = jnp.asarray(i / 999.0)
    x = jnp.ones((1000, 2))
    f, G = sde.discretize(x, t)
    np.testing.assert_allclose(G**2, betas, rtol=1e-12)
    np.testing.assert_allclose(f[:, 0], np.sqrt(1 - betas) - 1, rtol=1e-12)
    m, s = sde.discrete_marginal(jnp.asarray(i))
    alpha_bar = np.cumprod(1 - betas)
    np.testing.assert_allclose(m**2, alpha_bar, rtol=1e-10)
    np.testing.assert_allclose(s**2, 1 - alpha_bar, rtol=1e-10)


def test_ve_discretize_is_smld(x64):
    """VESDE: NCSN's geometric sigmas, x_{i+1} = x_i + sqrt(sigma_i^2 - sigma_{i-1}^2) z."""
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(50.0), 10))
    prev = np.concatenate([[0.0], sigmas[:-1]])
    t = jnp.asarray(np.arange(10) / 9.0)
    f, G = sde.discretize(jnp.ones((10, 2)), t)
    np.testing.assert_allclose(f, 0.0)
    np.testing.assert_allclose(G, np.sqrt(sigmas**2 - prev**2), rtol=1e-12)
    np.testing.assert_allclose(sde.discrete_marginal(jnp.arange(10))[1], sigmas, rtol=1e-12)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_discrete_chain_is_consistent(name, x64):
    """std_i^2 = r_i^2 std_{i-1}^2 + G_i^2 and m_i = r_i m_{i-1}: the transitions generate the
    marginals; and the chain's marginals approach the continuous ones at t_i = i / (N - 1)."""
    sde = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE()}[name]
    i = jnp.arange(sde.N)
    m, s = sde.discrete_marginal(i)
    r, G = sde.discrete_transition(i)
    m_prev = jnp.concatenate([jnp.ones(1), m[:-1]])
    s_prev = jnp.concatenate([jnp.zeros(1), s[:-1]])
    np.testing.assert_allclose(m, r * m_prev, rtol=1e-10)
    np.testing.assert_allclose(s**2, r**2 * s_prev**2 + G**2, rtol=1e-8, atol=1e-14)
    t = i / (sde.N - 1)
    # DDPM's alpha_bar_i sits about one step (1 / N) later than t_i: a 0.011 gap at most.
    np.testing.assert_allclose(m, sde.mean_coeff(t), atol=0.011)
    np.testing.assert_allclose(s, sde.std(t), atol=0.011)


def test_time_index_maps_sampler_grid():
    sde = VPSDE(N=1000)
    for eps in (0.0, 1e-3):
        t = jnp.linspace(1.0, eps, 1000)
        np.testing.assert_array_equal(sde.time_index(t), np.arange(999, -1, -1))


def test_reverse_and_probability_flow(sde):
    score = lambda x, t: -x / (1.0 + t[:, None])
    x, t = jax.random.normal(jax.random.key(0), (4, 3)), jnp.linspace(0.1, 0.9, 4)
    f, g = sde.sde(x, t)
    drift, diffusion = sde.reverse(score).sde(x, t)
    np.testing.assert_allclose(drift, f - (g**2)[:, None] * score(x, t), rtol=1e-6)
    np.testing.assert_allclose(diffusion, g)
    drift, diffusion = sde.reverse(score, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(drift, f - 0.5 * (g**2)[:, None] * score(x, t), rtol=1e-6)
    np.testing.assert_array_equal(diffusion, 0.0)
    fd, gd = sde.discretize(x, t)
    rf, rg = sde.reverse(score).discretize(x, t)
    np.testing.assert_allclose(rf, fd - (gd**2)[:, None] * score(x, t), rtol=1e-6)
    np.testing.assert_allclose(rg, gd)


def test_sde_is_a_pytree_passed_to_jit():
    """Numeric parameters are data: a new beta_max reuses the compiled function."""
    traces = []

    @jax.jit
    def std_at_half(sde):
        traces.append(1)
        return sde.std(jnp.array([0.5]))

    a, b = std_at_half(VPSDE(beta_max=20.0)), std_at_half(VPSDE(beta_max=10.0))
    assert len(traces) == 1 and not np.allclose(a, b)
    np.testing.assert_allclose(b, VPSDE(beta_max=10.0).std(jnp.array([0.5])), rtol=1e-6)
    assert jax.tree_util.tree_leaves(VESDE()) == [0.01, 50.0]
    with pytest.raises(dataclasses_frozen_error()):
        VPSDE().beta_min = 1.0


@pytest.mark.parametrize("make, field, values", [
    (VPSDE, "beta_max", [10.0, 20.0]), (subVPSDE, "beta_min", [0.05, 0.5]),
    (VESDE, "sigma_max", [5.0, 20.0])], ids=["vp", "subvp", "ve"])
def test_stacked_sdes_sweep_a_parameter_in_one_vmapped_call(make, field, values):
    """SDEs stacked as a pytree (leaves with a leading axis) pass their checks, and one vmapped
    sampler call over the stack gives each SDE's own samples, to float32 rounding."""
    from samplers import ode_sample, pc_sample
    from sde import GaussianMixture
    mix = GaussianMixture.create([1.0, 2.0], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.4])
    stacked = jax.vmap(lambda v: make(**{field: v}))(jnp.asarray(values))
    assert getattr(stacked, field).shape == (2,)
    key = jax.random.key(0)
    samplers = [lambda sde: pc_sample(sde, mix.score_fn(sde), (64, 2), key, num_steps=20),
                lambda sde: ode_sample(sde, mix.score_fn(sde), (64, 2), key, solver="dpmpp_2m",
                                       num_steps=10)]
    for sample in samplers:
        xs, nfe = jax.jit(jax.vmap(sample))(stacked)
        for i, v in enumerate(values):
            x, n = jax.jit(sample)(make(**{field: v}))
            np.testing.assert_allclose(xs[i], x, atol=2e-4)  # VE: a prior std of 20
            assert int(nfe[i]) == int(n)
        assert float(jnp.max(jnp.abs(xs[0] - xs[1]))) > 1e-2  # the parameter mattered


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_new_sde_is_one_small_subclass(x64):
    """EDM's sigma(t) = t (Karras et al. 2022) as a subclass: its members are derived."""
    @register_sde
    class EDM(SDE):
        sigma_max: float = 80.0
        N: int = 18
        T = 80.0

        def mean_coeff(self, t):
            return jnp.ones_like(t)

        def std(self, t):
            return t

        def drift_coeff(self, t):
            return jnp.zeros_like(t)

        def g2(self, t):
            return 2 * t

        @property
        def prior_std(self):
            return self.sigma_max

    sde, x = EDM(), jnp.ones((3, 2))
    t = jnp.array([1.0, 10.0, 80.0])
    assert sde.marginal_prob(x, t)[1].tolist() == [1.0, 10.0, 80.0]
    drift, g = sde.reverse(lambda x, t: -x / t[:, None] ** 2, probability_flow=True).sde(x, t)
    np.testing.assert_allclose(drift, x / t[:, None])  # EDM's dx/dt = -t score = (x - D) / t
    np.testing.assert_allclose(sde.discretize(x, jnp.array([0.0]))[1], [0.0], atol=1e-12)


@pytest.mark.parametrize("make, match", [
    (lambda: VPSDE(beta_min=-0.1), "beta_min"),
    (lambda: VPSDE(beta_min=30.0, beta_max=20.0), "beta_min must be <= beta_max"),
    (lambda: VPSDE(beta_max=float("nan")), "beta_max"),
    (lambda: VPSDE(beta_max=2000.0), "beta_max / N"),
    (lambda: subVPSDE(beta_min=0.0), "beta_min"),
    (lambda: VESDE(sigma_min=0.0), "sigma_min"),
    (lambda: VESDE(sigma_min=5.0, sigma_max=1.0), "sigma_min must be < sigma_max"),
    (lambda: VESDE(N=1), "N must be an integer >= 2"),
    (lambda: VPSDE(beta_min=jnp.array([0.1, -1.0])), r"beta_min must hold finite numbers > 0.0"),
    (lambda: VPSDE(beta_min=jnp.array([0.1, 30.0])), "beta_min must be <= beta_max"),
    (lambda: VESDE(sigma_min=jnp.array([0.01, 60.0])), "sigma_min must be < sigma_max"),
])
def test_bad_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, match", [
    (lambda: VPSDE(N=100.0), "N must be an integer"),
    (lambda: VPSDE(N=True), "N must be an integer"),
    (lambda: VESDE(sigma_max="50"), "sigma_max must be a real number"),
    (lambda: VPSDE().reverse(lambda x, t: x, probability_flow="yes"), "probability_flow"),
])
def test_bad_types_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make()
