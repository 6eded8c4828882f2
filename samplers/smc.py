"""Sequential Monte Carlo: K weighted particles per row whose law converges to the model's
posterior as K grows, for linear observations y = A x0 + noise_std n (`linear_smc`, behind
`samplers.observe.smc_solve`) and for any likelihood of clean samples (`smc_sample`).

The model. The reverse chain on a grid T = t_N > ... > t_0 = eps starts from the prior and steps
by the Gaussian bridge of the forward process, x_{k-1} ~ q(x_{t_{k-1}} | x_{t_k}, x0 = x0_hat),
with x0_hat = E[x0 | x_{t_k}] by Tweedie's formula (DDPM's ancestral step, for any linear SDE);
its sample is Tweedie's estimate at eps. The particle system targets that chain's posterior,

    p(x_N) prod_k p(x_{k-1} | x_k) N(y; A x0_hat(x_0), noise_std^2 I),

consistently as K grows, for a fixed grid (the discretised model's posterior, not the continuous
one). Where noise_std = 0 the likelihood is a point mass; the last factor is then the potential
g_0 below (y observed at the chain's final noise level sigma(eps)), and the draw is projected onto
A x = y for operators with a cheap pseudo-inverse.

The twist (Cardoso et al. 2023, MCGdiff, there for masks and the SVD of A; here for any A and
noisy y). Potentials g_k(x) = N(y; A x / m_k, noise_std^2 I + sigma_k^2 A A^T), with
sigma = std / m, are the likelihood of y given x_{t_k} = x if x0 had a flat prior
(x / m = x0 + sigma z). Each particle moves by the product of its bridge step N(mu, v I) and the
next potential, a Gaussian drawn exactly by Matheron's rule, and its weight is multiplied by that
product's normaliser, N(y; A mu / m, noise_std^2 I + (v / m^2 + sigma^2) A A^T), over the
potential it leaves. The potentials telescope: they change how spread the weights are, not what
the particles target. Only the score function is used (one Tweedie estimate per step): the
weights, not a closed form of the data, correct the proposal.

Resampling is systematic (one uniform per row), when the effective sample size
1 / sum(w^2) of a row falls below `ess_threshold` K. The linear algebra is in y's space: with
A A^T = gram I (masks, channel means, block averages, Fourier sampling) it is a division;
otherwise A A^T is formed densely once and diagonalised (prod(y.shape[1:])^2 floats).
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from samplers.common import check_sampler_args, tweedie_denoise
from samplers.operators import Operator
from sde import checks
from sde.base import SDE, Batch, ScoreFn, batch_mul


NUM_PARTICLES = 16  # the default of smc_sample, smc_solve and solve_inverse(method="smc")


def check_particle_args(num_particles, num_steps, ess_threshold,
                        particle_chunk=None) -> None:
    """The arguments both particle systems take, checked before any work."""
    checks.check_int("num_particles", num_particles, low=1)
    checks.check_int("num_steps", num_steps, low=1, allow_none=True)
    checks.check_number("ess_threshold", ess_threshold, low=0.0, high=1.0)
    checks.check_int("particle_chunk", particle_chunk, low=1, allow_none=True)


def _over_particles(f, chunk):
    """f(*args) mapped over the leading (particle) axis of every argument: vmapped over all K
    at once (chunk None), or `chunk` particles at a time in a loop (`jax.lax.map`), so that the
    score function sees chunk x batch rows and memory holds that many activations."""
    if chunk is None:
        return jax.vmap(f)
    return lambda *args: jax.lax.map(lambda a: f(*a), args, batch_size=chunk)


class SMCResult(NamedTuple):
    """x: one draw per row of y; nfe: score evaluations per particle (the run costs K x nfe);
    ess: (num_steps + 1, batch) effective sample sizes, as fractions of K, before each
    resampling decision and, last, before the final draw."""
    x: Batch
    nfe: jax.Array
    ess: jax.Array


class _GramSolver(NamedTuple):
    """(c1 I + c2 A A^T)^-1 on y's space (the range of A), for per-row scalars c1, c2."""
    operator: Operator
    eigenvalues: jax.Array | None  # None: A A^T = gram I
    eigenvectors: jax.Array | None

    @classmethod
    def create(cls, operator: Operator, dtype):
        if operator.gram is not None:
            return cls(operator, None, None)
        a = operator.matrix().astype(dtype)
        lam, u = jnp.linalg.eigh(a @ a.T)
        return cls(operator, jnp.maximum(lam, 1e-7 * lam[-1]), u)

    def solve(self, c1, c2, r):
        r = self.operator.restrict(r)
        if self.eigenvalues is None:
            return batch_mul(1 / (c1 + c2 * self.operator.gram), r)
        flat = r.reshape(r.shape[0], -1) @ self.eigenvectors
        flat = flat / (c1[:, None] + c2[:, None] * self.eigenvalues)
        return (flat @ self.eigenvectors.T).reshape(r.shape)

    def quadratic(self, c1, c2, r):
        """r^T (c1 I + c2 A A^T)^-1 r per row."""
        r = self.operator.restrict(r)
        return jnp.sum((r * self.solve(c1, c2, r)).reshape(r.shape[0], -1), axis=-1)


def _bridge(sde: SDE, x, x0, t, s):
    """Mean and variance of q(x_s | x_t, x0) for s < t: x_t = a x_s + b e with a = m_t / m_s and
    b^2 = std_t^2 - a^2 std_s^2, so the precision is 1 / std_s^2 + a^2 / b^2."""
    m_t, std_t, m_s, std_s = sde.mean_coeff(t), sde.std(t), sde.mean_coeff(s), sde.std(s)
    a = m_t / m_s
    b2 = jnp.square(std_t) - jnp.square(a * std_s)
    mean = batch_mul(a * jnp.square(std_s / std_t), x) + batch_mul(m_s * b2 / jnp.square(std_t),
                                                                   x0)
    return mean, jnp.square(std_s) * b2 / jnp.square(std_t)


def _systematic(key, log_w):
    """Ancestor indices (batch, K) by systematic resampling of each row's normalised weights."""
    b, k = log_w.shape
    w = jax.nn.softmax(log_w, axis=-1)
    u = (jax.random.uniform(key, (b, 1), log_w.dtype) + jnp.arange(k)) / k
    return jax.vmap(jnp.searchsorted)(jnp.cumsum(w, axis=-1), u).clip(0, k - 1)


def _ess(log_w):
    """Effective sample size per row, as a fraction of K, of weights (K, batch)."""
    return 1 / jnp.sum(jnp.square(jax.nn.softmax(log_w, axis=0)), axis=0) / log_w.shape[0]


def _run_particles(state, log_w, move, times, key, ess_threshold, chunk):
    """The particle loop shared by both systems: per step, resample the rows whose effective
    sample size is below `ess_threshold` (every leaf of the particle `state`, (K, batch, ...),
    follows its ancestors), then `move(state, t, s, key) -> (state, log-weight increment)`,
    over K (`_over_particles`). Returns (state, log_w, ess per step)."""
    k, b = log_w.shape
    full = lambda t: jnp.full((b,), t, times.dtype)

    def step(carry, ts):
        state, log_w, key = carry
        key, k_resample, k_move = jax.random.split(key, 3)
        ess = _ess(log_w)
        resample = ess < ess_threshold
        ancestors = jnp.where(resample[:, None], _systematic(k_resample, log_w.T),
                              jnp.arange(k)).T  # (K, batch)
        state = jax.tree_util.tree_map(lambda a: jnp.take_along_axis(
            a, ancestors.reshape(ancestors.shape + (1,) * (a.ndim - 2)), axis=0), state)
        log_w = jnp.where(resample, 0.0, log_w)
        state, increment = _over_particles(
            lambda state, key: move(state, full(ts[0]), full(ts[1]), key), chunk)(
            state, jax.random.split(k_move, k))
        return (state, log_w + increment, key), ess

    (state, log_w, _), ess = jax.lax.scan(step, (state, log_w, key),
                                          jnp.stack([times[:-1], times[1:]], axis=1))
    return state, log_w, ess


def _pick(key, x0, log_w, ess) -> tuple[Batch, jax.Array]:
    """One particle per row, drawn by its final weight; the ESS trace with the final one."""
    choice = jax.random.categorical(key, log_w, axis=0)
    return x0[choice, jnp.arange(x0.shape[1])], jnp.concatenate([ess, _ess(log_w)[None]])


def linear_smc(sde: SDE, score_fn: ScoreFn, y: Batch, operator: Operator, noise_std, key, *,
               num_particles: int, num_steps: int, eps: float, ess_threshold: float,
               particle_chunk: int | None) -> SMCResult:
    """The particle system of the module docstring, for checked arguments: `operator` an
    `Operator`, `noise_std` of shape (batch,). `samplers.observe.smc_solve` is the public door.
    Particles are (K, batch, ...): the score function and the operator see batches whose rows
    are y's rows (so per-row labels or masks bound in them stay aligned), mapped over K,
    `particle_chunk` particles at a time (`_over_particles`)."""
    b, k = y.shape[0], num_particles
    x_shape = (b,) + tuple(operator.in_shape)
    var_y = jnp.square(noise_std)
    gram = _GramSolver.create(operator, y.dtype)
    times = jnp.linspace(sde.T, eps, num_steps + 1).astype(y.dtype)
    full = lambda t: jnp.full((b,), t, y.dtype)

    def log_potential(x, t):
        m, sigma = sde.mean_coeff(t), sde.sigma(t)
        return -0.5 * gram.quadratic(var_y, jnp.square(sigma), y - operator(batch_mul(1 / m, x)))

    def move(x, t, s, key):
        """One particle per row from t to s: the bridge step N(mu, v I) times the potential at s
        (Matheron's rule), and the log-weight increment."""
        k_x, k_y1, k_y2 = jax.random.split(key, 3)
        mu, v = _bridge(sde, x, tweedie_denoise(sde, score_fn, x, t), t, s)
        m, sigma2 = sde.mean_coeff(s), jnp.square(sde.sigma(s))
        c2 = v / jnp.square(m) + sigma2
        noise_y = batch_mul(jnp.sqrt(var_y), jax.random.normal(k_y1, y.shape, y.dtype)) + \
            operator(batch_mul(jnp.sqrt(sigma2), jax.random.normal(k_y2, x_shape, y.dtype)))
        prior = mu + batch_mul(jnp.sqrt(v), jax.random.normal(k_x, x_shape, y.dtype))
        gain = gram.solve(var_y, c2, y - operator(batch_mul(1 / m, prior)) - noise_y)
        new = prior + batch_mul(v / m, operator.adjoint(gain))
        log_z = -0.5 * gram.quadratic(var_y, c2, y - operator(batch_mul(1 / m, mu)))
        return new, log_z - log_potential(x, t)

    k_prior, k_run, k_pick = jax.random.split(key, 3)
    x = sde.prior_sampling(k_prior, (k,) + x_shape, y.dtype)
    log_w = jax.vmap(log_potential, in_axes=(0, None))(x, full(sde.T))
    x, log_w, ess = _run_particles(x, log_w, move, times, k_run, ess_threshold, particle_chunk)
    x0 = _over_particles(lambda x: tweedie_denoise(sde, score_fn, x, full(eps)),
                         particle_chunk)(x)

    def final(x, x0):
        """The likelihood of the returned sample over the last potential (none for exact y)."""
        misfit = jnp.sum(jnp.square(operator.restrict(y - operator(x0))).reshape(b, -1), -1)
        return jnp.where(var_y > 0, -0.5 * misfit / jnp.where(var_y > 0, var_y, 1.0)
                         - log_potential(x, full(eps)), 0.0)
    x, ess = _pick(k_pick, x0, log_w + jax.vmap(final)(x, x0), ess)
    return SMCResult(x, jnp.int32(num_steps + 1), ess)


def smc_sample(sde: SDE, score_fn: ScoreFn, log_likelihood: Callable[[Batch], jax.Array],
               shape, key, *, num_particles=NUM_PARTICLES, num_steps=None, eps=1e-3,
               ess_threshold=0.5, particle_chunk=None) -> SMCResult:
    """Draws from p(x0 | c) proportional to p(x0) exp(log_likelihood(x0)), for any
    `log_likelihood(x0) -> (batch,)` of clean samples (a class's log-probability under a
    classifier of clean data, a measurement's log-likelihood): `num_particles` weighted particles
    per row of `shape` on the chain of bridge steps (module docstring), consistent for the
    chain's posterior p(x_N) prod p(x_{k-1} | x_k) exp(log_likelihood(x0_hat(x_eps))) as
    num_particles grows. The twist is the likelihood of Tweedie's estimate tempered by the
    noise level, g_k(x) = exp(log_likelihood(x0_hat(x, t_k)) / (1 + sigma(t_k)^2)), an
    approximation of p_t(c | x_t) (Wu et al. 2023's, tempered) that the weights correct.
    Particles move by the model's own bridge step; the twist steers them through the weights
    and resampling alone. (The Twisted Diffusion Sampler also shifts the proposal by
    v grad log g_k; on the 2-D mixture's class posterior that version kept a bias of 0.045 in
    the mean at 4,096 particles, which this one does not show, so it is not used.) One score
    evaluation per step and particle: nfe = num_steps + 1 per particle. The likelihood sees
    rows of `shape` (mapped over particles, `particle_chunk` at a time: default all), so
    per-row conditions stay aligned."""
    check_particle_args(num_particles, num_steps, ess_threshold, particle_chunk)
    shape = check_sampler_args(sde, score_fn, shape, key, eps=eps, denoise=True)
    if not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be a function of a batch of clean samples "
                        f"returning (batch,), got {log_likelihood!r}")
    n = sde.N if num_steps is None else num_steps
    times = jnp.linspace(sde.T, eps, n + 1).astype(jnp.float32)
    full = lambda t: jnp.full(shape[:1], t, jnp.float32)
    temper = lambda t: 1 / (1 + jnp.square(sde.sigma(t)))

    def evaluate(x, t):
        """(x, x0_hat, log g) at x: one score evaluation."""
        x0 = tweedie_denoise(sde, score_fn, x, t)
        return x, x0, temper(t) * log_likelihood(x0)

    def move(state, t, s, key):
        x, x0, log_g = state
        mu, v = _bridge(sde, x, x0, t, s)
        state = evaluate(mu + batch_mul(jnp.sqrt(v), jax.random.normal(key, x.shape, x.dtype)), s)
        return state, state[2] - log_g

    k_prior, k_run, k_pick = jax.random.split(key, 3)
    x = sde.prior_sampling(k_prior, (num_particles,) + shape, jnp.float32)
    state = _over_particles(lambda x: evaluate(x, full(sde.T)), particle_chunk)(x)
    (_, x0, log_g), log_w, ess = _run_particles(state, state[2], move, times, k_run,
                                                ess_threshold, particle_chunk)
    # the returned sample's weight is its likelihood: undo the last twist's tempering
    x, ess = _pick(k_pick, x0, log_w + log_g * (1 / temper(full(eps)) - 1), ess)
    return SMCResult(x, jnp.int32(n + 1), ess)
