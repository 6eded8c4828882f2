"""Predictor-corrector sampling (Song et al. 2021, sec. 4.2 and Algs. 1-5).

Time runs down the grid t_k = linspace(T, eps, N); at each t_k a corrector (Langevin MCMC aimed at
p_{t_k}) is followed by a predictor (one step of a reverse-time solver). Each step function takes
(sde, score_fn, x, t, key) and returns (x, number of score evaluations it made); `pc_sample` adds
those up in the `lax.scan` carry, so the returned NFE is counted, not assumed.

DDPM ancestral sampling (Ho et al. 2020, Alg. 2) is `VPSDE` + predictor "ancestral" + corrector
"none"; NCSN annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) is `VESDE` + predictor "none" +
corrector "ald" with snr = sqrt(step_lr) / (2 sigma_min), n_corrector_steps = T_ald and eps = 0.
"""
import functools

import jax
import jax.numpy as jnp

from samplers import grids
from samplers.common import check_sampler_args, tweedie_denoise
from sde import checks
from sde.base import SDE, Batch, ScoreFn, Times, batch_mul


def _noise_like(key, x):
    return jax.random.normal(key, x.shape, x.dtype)


# ---- predictors: one step from t_k towards t_{k+1} ----
#
# On the uniform grid (t_next None) the steps are Song et al.'s: Euler-Maruyama with dt = T / N
# and the discrete chain of `sde` (DDPM's betas, SMLD's sigmas). On any other grid they use the
# exact Gaussian transition of the continuous SDE between t_next and t.

def _transition(sde: SDE, t: Times, t_next: Times):
    """(r, G, ancestral std) of x_t = r x_{t_next} + G z, from the continuous marginals; the
    ancestral std is that of the exact posterior of x_{t_next} given x_t and x_0."""
    m, s = sde.mean_coeff(t), sde.std(t)
    m_next, s_next = sde.mean_coeff(t_next), sde.std(t_next)
    r = m / m_next
    g = jnp.sqrt(jnp.maximum(jnp.square(s) - jnp.square(r * s_next), 0.0))
    return r, g, s_next * g / s


def euler_maruyama(sde: SDE, score_fn: ScoreFn, x: Batch, t: Times, key, t_next=None):
    """x <- x - [f - g^2 score] dt + g sqrt(dt) z with dt = T / N, or t - t_next (eq. 6)."""
    dt = jnp.full_like(t, sde.T / sde.N) if t_next is None else t - t_next
    drift, g = sde.reverse(score_fn).sde(x, t)
    return x - batch_mul(dt, drift) + batch_mul(g * jnp.sqrt(dt), _noise_like(key, x)), 1


def reverse_diffusion(sde: SDE, score_fn: ScoreFn, x: Batch, t: Times, key, t_next=None):
    """x_{i-1} = x_i - f_i + G_i^2 score + G_i z: the forward chain step reversed (eq. 46)."""
    if t_next is None:
        f, g = sde.reverse(score_fn).discretize(x, t)
    else:
        r, g, _ = _transition(sde, t, t_next)
        f = batch_mul(r - 1, x) - batch_mul(jnp.square(g), score_fn(x, t))
    return x - f + batch_mul(g, _noise_like(key, x)), 1


def ancestral(sde: SDE, score_fn: ScoreFn, x: Batch, t: Times, key, t_next=None):
    """Ancestral sampling of the discrete chain x_i = r_i x_{i-1} + G_i z (eq. 47).

    The mean (x_i + G_i^2 score) / r_i is the posterior mean of x_{i-1} given x_i and the Tweedie
    estimate of x_0; for VP it is DDPM's (x - beta / sqrt(1 - alpha_bar) eps) / sqrt(1 - beta). The
    noise std is `sde.ancestral_std` (DDPM's sqrt(beta_i) for VP, the posterior std otherwise);
    on a non-uniform grid, the posterior std of the continuous transition (DDIM with eta = 1).
    """
    if t_next is None:
        i = sde.time_index(t)
        (r, g), noise_std = sde.discrete_transition(i), sde.ancestral_std(i)
    else:
        r, g, noise_std = _transition(sde, t, t_next)
    mean = batch_mul(1 / r, x + batch_mul(jnp.square(g), score_fn(x, t)))
    return mean + batch_mul(noise_std, _noise_like(key, x)), 1


def no_predictor(sde, score_fn, x, t, key, t_next=None):
    return x, 0


# ---- correctors: n steps of Langevin dynamics with p_t as the target ----

def _langevin_loop(step_size_fn, score_fn, x, t, key, n_steps):
    """n_steps of x <- x + e score + sqrt(2 e) z with e = step_size_fn(score, z)."""
    def step(x, k):
        score, z = score_fn(x, t), _noise_like(k, x)
        e = step_size_fn(score, z)
        return x + batch_mul(e, score) + batch_mul(jnp.sqrt(2 * e), z), None
    x, _ = jax.lax.scan(step, x, jax.random.split(key, n_steps))
    return x, n_steps


def _norm(a):
    return jnp.linalg.norm(a.reshape(a.shape[0], -1), axis=-1)


def langevin(sde: SDE, score_fn: ScoreFn, x: Batch, t: Times, key, *, snr, n_steps):
    """Langevin corrector (Song et al. Algs. 4 and 5): e = 2 alpha (snr ||z|| / ||score||)^2.

    alpha = m(t)^2, the continuous form of the paper's alpha_i = prod_{j <= i} (1 - beta_j) for VP
    and sub-VP (Alg. 5; Song et al.'s code used 1 - beta_i instead) and 1 for VE (Alg. 4). As in
    Song et al.'s code, the norms are averaged over the batch: E||score||^2 is the Fisher
    information of p_t, and a per-sample ||score|| near a mode (small in low dimensions) would
    give an unbounded step.
    """
    alpha = jnp.square(sde.mean_coeff(t))

    def step_size(score, z):
        ratio = jnp.mean(_norm(z)) / jnp.maximum(jnp.mean(_norm(score)), jnp.finfo(x.dtype).tiny)
        return 2 * alpha * jnp.square(snr * ratio)
    return _langevin_loop(step_size, score_fn, x, t, key, n_steps)


def annealed_langevin(sde: SDE, score_fn: ScoreFn, x: Batch, t: Times, key, *, snr, n_steps):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): e = 2 alpha (snr std(t))^2.

    NCSN's step alpha_i / 2 = step_lr sigma_i^2 / (2 sigma_L^2) is this with
    snr = sqrt(step_lr) / (2 sigma_L). alpha = m(t)^2 as in `langevin`.
    """
    e = 2 * jnp.square(sde.mean_coeff(t)) * jnp.square(snr * sde.std(t))
    return _langevin_loop(lambda score, z: e, score_fn, x, t, key, n_steps)


def no_corrector(sde, score_fn, x, t, key, *, snr, n_steps):
    return x, 0


PREDICTORS = {"euler_maruyama": euler_maruyama, "reverse_diffusion": reverse_diffusion,
              "ancestral": ancestral, "none": no_predictor}
CORRECTORS = {"langevin": langevin, "ald": annealed_langevin, "none": no_corrector}


def pc_sample(sde: SDE, score_fn: ScoreFn, shape, key, *, predictor="reverse_diffusion",
              corrector="langevin", snr=0.16, n_corrector_steps=1, num_steps=None, eps=1e-3,
              denoise=True, time_grid="uniform") -> tuple[Batch, jax.Array]:
    """Samples of `shape` = (batch, *data) by predictor-corrector sampling; returns (x, nfe).

    `num_steps` (default `sde.N`) sets the number of grid points; the discrete chain used by the
    "reverse_diffusion" and "ancestral" predictors is then `sde.replace(N=num_steps)`, i.e. DDPM's
    betas (or SMLD's sigmas) for that many steps. `denoise` ends with one Tweedie step at t = eps.

    `time_grid` "karras" or "logsnr" (`samplers.grids`), or an array of num_steps + 1 times,
    places the `num_steps` predictor steps from T to eps by noise level instead; the predictors
    then step with the continuous SDE's exact transitions between grid points (the discrete
    chain belongs to the uniform grid).
    """
    predictor = "none" if predictor is None else predictor
    corrector = "none" if corrector is None else corrector
    checks.check_choice("predictor", predictor, list(PREDICTORS))
    checks.check_choice("corrector", corrector, list(CORRECTORS))
    checks.check_number("snr", snr, low=0.0, low_open=True)
    checks.check_int("n_corrector_steps", n_corrector_steps, low=0)
    checks.check_int("num_steps", num_steps, low=2, allow_none=True)
    uniform = isinstance(time_grid, str) and time_grid == "uniform"
    if predictor == "none" and (corrector == "none" or n_corrector_steps == 0):
        raise ValueError("predictor and corrector are both 'none' (or n_corrector_steps=0): "
                         "nothing would move the prior sample; choose at least one of them")
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=denoise,
                               eps_low_open=False)
    n = sde.N if num_steps is None else num_steps
    grids.check_time_grid(time_grid, n)
    if uniform and n != sde.N:  # other grids do not use the discrete chain
        try:
            sde = sde.replace(N=num_steps)
        except ValueError as e:
            raise ValueError(f"num_steps={num_steps} does not give a valid discrete chain: {e}")
    predict = PREDICTORS[predictor]
    correct = functools.partial(CORRECTORS[corrector], snr=snr, n_steps=n_corrector_steps)

    k_prior, k_loop = jax.random.split(key)
    x = sde.prior_sampling(k_prior, shape)
    if uniform:  # Song et al.'s N grid points, each followed by a chain step
        ts, t_nexts = jnp.linspace(sde.T, eps, n), None
    else:
        grid = grids.time_grid(sde, n, eps, time_grid)
        ts, t_nexts = grid[:-1], grid[1:]
    x, nfe = run_chain(sde, score_fn, x, ts, t_nexts, k_loop, predict, correct)
    if denoise:
        x, nfe = tweedie_denoise(sde, score_fn, x, eps), nfe + 1
    return x, nfe


def run_chain(sde: SDE, score_fn: ScoreFn, x: Batch, ts, t_nexts, key, predict, correct, *,
              cost=1, after=None) -> tuple[Batch, jax.Array]:
    """Corrector then predictor at each ts[k] (shape (n,) or (n, batch): per-sample times),
    stepping to t_nexts[k] (None: the discrete chain's next point); returns (x, nfe).

    `cost` is the number of score evaluations one call of `score_fn` makes (a guided score is
    several); `after(x, t_next, key)`, when given, acts on x after each step (a projection onto
    observations).
    """
    batch = lambda t: jnp.broadcast_to(t, (x.shape[0],)).astype(x.dtype)

    def step(carry, inputs):
        x, nfe = carry
        t, t_next, k = inputs
        k_c, k_p = jax.random.split(k)
        t, t_next = batch(t), None if t_next is None else batch(t_next)
        x, n_c = correct(sde, score_fn, x, t, k_c)
        x, n_p = predict(sde, score_fn, x, t, k_p, t_next)
        if after is not None:
            x = after(x, t_next, jax.random.fold_in(k, 2))
        return (x, nfe + cost * (n_c + n_p)), None

    keys = jax.random.split(key, ts.shape[0])
    (x, nfe), _ = jax.lax.scan(step, (x, jnp.int32(0)), (ts, t_nexts, keys))
    return x, nfe
