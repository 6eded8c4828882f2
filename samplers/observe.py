"""Sampling under observations y = A x0 + noise_std n: one mechanism (an operator and a noise
level) behind denoising, linear inverse problems, inpainting, colorization, super-resolution.

Exact pieces (with the exact score):
  * denoising, A = I: under any linear SDE, x_t / m(t) = x0 + sigma(t) z, so at t* with
    sigma(t*) = noise_std the state m(t*) y is distributed exactly as x_t*. The reverse-time
    chain started there draws from p(x0 | y), and one Tweedie step there is E[x0 | y].
  * a Gaussian prior and any A: the guided score of method "tweedie" is then exact.
Consistent as its particles grow, for every prior: `solve_inverse`'s "smc" (`smc_solve`, the
math in samplers/smc.py; bench/bench_smc.py). Approximate, for other priors (their distance to
the exact posterior of a Gaussian mixture is measured by bench/bench_observe.py, results in
bench/results/observe.json), the four other methods of `solve_inverse`:
  "tweedie"    guidance by log N(y; A E[x0 | x_t], noise_std^2 I + A Cov[x0 | x_t] A^T), with
               Tweedie's mean and covariance, Cov = std^2 / m dE[x0 | x_t]/dx_t (Boys et al.
               2023, TMPD); the system is solved by `cg_steps` conjugate-gradient steps, each one
               Jacobian-vector product through the score. Costs cg_steps + 2 evaluations.
  "pigdm"      the same with Cov = r^2 I, r^2 = sigma^2 / (1 + sigma^2) (Song et al. 2023,
               PiGDM, for unit-variance data). Costs 2 evaluations (the score and one VJP).
               Its move of E[x0 | x_t], Cov A^T v with Cov = std^2 / m J, is capped per sample
               at PIGDM_TRUST r^2 |A^T v|: the most that a prior with Cov[x0 | x_t] <=
               PIGDM_TRUST r^2 I allows, ten times PiGDM's own variance. A learned J errs by
               about 1 / m at large t, where the exact J is of order m: without the cap that
               error sends the chain to infinity within a few steps; on the exact mixtures of
               bench/bench_observe.py the cells re-checked (12-D mask, channel mean, block
               average) did not move.
  "projection" for operators with A A^T = gram I: after each step the observed part A x_t is
               replaced by m(t) (y + sqrt(gram sigma(t)^2 - noise_std^2) w) while that noise level
               exceeds the observation's (Song et al. 2021's inpainting and colorization,
               generalised to noisy y); below it the chain runs free. 1 evaluation.
  "ddrm"       for the same operators, DDRM (Kawar et al. 2022): the projection above while the
               chain's noise exceeds the observation's, then DDIM-like steps towards Tweedie's
               estimate, whose observed part is pulled to y; eta sets the fresh noise. 1 evaluation.
With noise_std = 0 and an operator with a pseudo-inverse the result is finally projected onto
A x = y, so the constraint holds to float rounding (for a mask, exactly).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from samplers.common import check_sampler_args, check_score, check_sde, tweedie_denoise
from samplers.operators import BlockAverage, ChannelMean, Mask, Operator, as_operator, check_linear
from samplers.pc import CORRECTORS, PREDICTORS, run_chain
from samplers.smc import NUM_PARTICLES, SMCResult, check_particle_args, linear_smc
from sde import checks
from sde.base import SDE, Batch, ScoreFn, batch_mul

# Tweedie guidance's safeguard: conjugate gradients stop, per sample, at a search direction p where
# p^T M p <= CURVATURE_FLOOR r^2 |A^T p|^2, with r^2 = sigma^2 / (1 + sigma^2) PiGDM's variance.
CURVATURE_FLOOR = 0.1
# PiGDM's trust region: its move of E[x0 | x_t] is capped at PIGDM_TRUST r^2 |A^T v| per sample.
PIGDM_TRUST = 10.0
METHODS = ("tweedie", "pigdm", "projection", "ddrm", "smc")


# ---- noise levels, start times and per-sample grids ----

def _noise_std(sde: SDE, noise_std, y, *, representable: bool):
    """noise_std as (batch,) in y's dtype. Concrete values must be finite and >= 0 and, when
    `representable` (a start time is needed), 0 or within [sigma(0), sigma(T)]; traced values are
    clipped into that range."""
    b = y.shape[0]
    with jax.ensure_compile_time_eval():  # concrete values are checked (and stay concrete) in jit
        s = jnp.asarray(noise_std, y.dtype)
        lo, hi = sde.sigma(jnp.asarray([0.0, sde.T], y.dtype))
        if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != b):
            raise ValueError(f"noise_std must be a scalar or of shape (batch,) = ({b},), got "
                             f"shape {tuple(s.shape)}")
        if any(isinstance(a, jax.core.Tracer) for a in (s, lo, hi)):
            s = jnp.where(s == 0, 0.0, jnp.clip(s, lo, hi)) if representable else jnp.maximum(s, 0)
            return jnp.broadcast_to(s, (b,))
        v, lo, hi = np.asarray(s), float(lo), float(hi)
        bad = ~np.isfinite(v) | (v < 0)
        if representable:
            bad |= (v != 0) & ((v < lo * (1 - 1e-6)) | (v > hi * (1 + 1e-6)))
        if np.any(bad):
            allowed = (f"0 or within [{lo:.4g}, {hi:.4g}], the noise levels sigma(t) of {sde!r}"
                       if representable else "finite and >= 0")
            raise ValueError(f"noise_std must be {allowed}; got {v.ravel()[bad.ravel()][:4]}")
        return jnp.broadcast_to(s, (b,))


def _num_steps(sde: SDE, num_steps, t_start):
    """num_steps, or ceil(N t_start / T) for the largest start time (N when it is traced)."""
    checks.check_int("num_steps", num_steps, low=1, allow_none=True)
    if num_steps is not None:
        return num_steps
    with jax.ensure_compile_time_eval():
        t_max = jnp.max(t_start)
    if isinstance(t_max, jax.core.Tracer):
        return sde.N
    return max(1, math.ceil(sde.N * float(t_max) / sde.T - 1e-4))  # float32 slack


def _grid(t_start, eps, n):
    """(n + 1, batch) times, per sample from t_start down to min(eps, t_start) in equal steps."""
    t_end = jnp.minimum(eps, t_start)
    u = jnp.linspace(0.0, 1.0, n + 1)[:, None]
    return t_start[None] + u * (t_end - t_start)[None]


def _chain_options(predictor, corrector, snr, n_corrector_steps):
    checks.check_choice("predictor", predictor, [p for p in PREDICTORS if p != "none"])
    checks.check_choice("corrector", corrector, list(CORRECTORS))
    checks.check_number("snr", snr, low=0.0, low_open=True)
    checks.check_int("n_corrector_steps", n_corrector_steps, low=0)
    return PREDICTORS[predictor], lambda sde, score_fn, x, t, key: CORRECTORS[corrector](
        sde, score_fn, x, t, key, snr=snr, n_steps=n_corrector_steps)


def _reverse_from(sde, score_fn, x, grid, key, chain, *, cost=1, after=None):
    """The reverse chain along `grid` ((n + 1, batch) times) and a Tweedie step at its end."""
    predict, correct = chain
    x, nfe = run_chain(sde, score_fn, x, grid[:-1], grid[1:], key, predict, correct, cost=cost,
                       after=after)
    return tweedie_denoise(sde, score_fn, x, grid[-1]), nfe + cost


# ---- denoising: the exact start ----

def _start(sde: SDE, y: Batch, s):
    """t* with sigma(t*) = s, and m(t*) y. Samples with s = 0 (returned as y by the callers) get
    t* = 1e-3 instead of 0, where std = 0 would form 0 / 0 in the chain."""
    with jax.ensure_compile_time_eval():  # concrete for a concrete s: it sets the step count
        t_star = sde.time_of_sigma(jnp.where(s == 0, sde.sigma(jnp.full_like(s, 1e-3)), s))
    return t_star, batch_mul(sde.mean_coeff(t_star), y)


def _noiseless(s, like):
    """Where noise_std is 0, as a mask shaped like `like` (those samples are given exactly)."""
    return batch_mul(s == 0, jnp.ones_like(like, bool))


def denoise(sde: SDE, score_fn: ScoreFn, y: Batch, noise_std, key, *, num_steps=None, eps=1e-3,
            predictor="reverse_diffusion", corrector="none", snr=0.16,
            n_corrector_steps=1) -> tuple[Batch, jax.Array]:
    """A draw from p(x0 | y) for y = x0 + noise_std n; returns (x, nfe), x shaped like y.

    The reverse-time chain starts at t* (sigma(t*) = noise_std, per sample) from m(t*) y, which is
    exactly distributed as x_t* there, and takes `num_steps` steps (default ceil(N t* / T)) to
    eps, then one Tweedie step; samples with noise_std = 0 are returned as y. `predictor`,
    `corrector`, `snr` and `n_corrector_steps` are those of `pc_sample` (the chain steps with the
    continuous SDE's exact transitions on each sample's own grid).
    """
    checks.check_batch("y", y)
    check_sampler_args(sde, score_fn, y.shape, key, eps=eps, denoise=True)
    chain = _chain_options(predictor, corrector, snr, n_corrector_steps)
    s = _noise_std(sde, noise_std, y, representable=True)
    t_star, x = _start(sde, y, s)
    n = _num_steps(sde, num_steps, t_star)
    x, nfe = _reverse_from(sde, score_fn, x, _grid(t_star, eps, n), key, chain)
    return jnp.where(_noiseless(s, y), y, x), nfe


def posterior_mean(sde: SDE, score_fn: ScoreFn, y: Batch, noise_std) -> tuple[Batch, jax.Array]:
    """E[x0 | y] for y = x0 + noise_std n, by Tweedie's formula at t* from m(t*) y: one score
    evaluation, exact for the exact score; returns (mean, nfe = 1), the mean shaped like y."""
    check_sde(sde)
    checks.check_batch("y", y)
    check_score(score_fn, y.shape)
    s = _noise_std(sde, noise_std, y, representable=True)
    t_star, x = _start(sde, y, s)
    mean = tweedie_denoise(sde, score_fn, x, t_star)
    return jnp.where(_noiseless(s, y), y, mean), jnp.int32(1)


# ---- linear inverse problems: a guided score, or a projection after each step ----

def _cg(matvec, b, n_iter: int, floor=None):
    """n_iter conjugate-gradient steps for M v = b, per sample, M symmetric positive definite.
    Truncated (Steihaug): a sample stops at its first search direction p whose curvature
    p^T M p is not above floor(p) (default 0), keeping the iterate reached, so an M that is
    not positive definite (a learned model's covariance) cannot send v to infinity."""
    dot = lambda u, v: jnp.sum((u * v).reshape(u.shape[0], -1), axis=-1)
    floor = floor or (lambda p: jnp.zeros(p.shape[0], p.dtype))

    def step(_, carry):
        v, r, p, rr, active = carry
        mp = matvec(p)
        curvature = dot(p, mp)
        active = active & (curvature > floor(p)) & (rr > 0)
        alpha = jnp.where(active, rr / jnp.where(active, curvature, 1.0), 0.0)
        v, r = v + batch_mul(alpha, p), r - batch_mul(alpha, mp)
        rr_next = dot(r, r)
        beta = jnp.where(active, rr_next / jnp.where(active, rr, 1.0), 0.0)
        return v, r, r + batch_mul(beta, p), rr_next, active

    init = (jnp.zeros_like(b), b, b, dot(b, b), jnp.ones(b.shape[0], bool))
    v, *_ = jax.lax.fori_loop(0, n_iter, step, init)
    return v


def _norm(u):
    """Per-sample Euclidean norm of a batch."""
    return jnp.sqrt(jnp.sum(jnp.square(u).reshape(u.shape[0], -1), axis=-1))


def guided_score(sde: SDE, score_fn: ScoreFn, y, operator: Operator, noise_std, *,
                 method="tweedie", cg_steps=4) -> tuple[ScoreFn, int]:
    """(score_fn of p_t(x | y) in the Gaussian approximation of `method`, its cost in score
    evaluations): score + J^T A^T v with J = dE[x0 | x_t]/dx_t, v = M^-1 (y - A E[x0 | x_t]) and
    M = noise_std^2 I + A C A^T for C = Cov[x0 | x_t] ("tweedie") or r^2 I ("pigdm")."""
    noise_var = jnp.square(noise_std)

    def score(x, t):
        m, std = sde.mean_coeff(t), sde.std(t)
        s, dscore = jax.linearize(lambda x: score_fn(x, t), x)
        x0 = batch_mul(1 / m, x + batch_mul(jnp.square(std), s))
        jac = lambda v: batch_mul(1 / m, v + batch_mul(jnp.square(std), dscore(v)))
        sigma2 = jnp.square(std / m)
        if method == "tweedie":
            cov = lambda v: batch_mul(jnp.square(std) / m, jac(v))
        else:
            cov = lambda v: batch_mul(sigma2 / (1 + sigma2), v)
        residual = operator.restrict(y - operator(x0))
        if method == "pigdm" and operator.gram is not None:  # M is diagonal
            v = batch_mul(1 / (noise_var + operator.gram * sigma2 / (1 + sigma2)), residual)
        else:
            matvec = lambda w: batch_mul(noise_var, w) + operator.restrict(
                operator(cov(operator.adjoint(w))))
            # CG stops where the curvature is below CURVATURE_FLOOR of PiGDM's (module docstring)
            floor = lambda w: CURVATURE_FLOOR * sigma2 / (1 + sigma2) * jnp.sum(
                jnp.square(operator.adjoint(w)).reshape(w.shape[0], -1), axis=-1)
            v = _cg(matvec, residual, cg_steps, floor)
        back = operator.adjoint(v)
        (pull,) = jax.linear_transpose(jac, x)(back)
        if method == "pigdm":  # PiGDM's trust region (module docstring)
            bound = PIGDM_TRUST * sigma2 / (1 + sigma2) * _norm(back)
            pull = batch_mul(jnp.minimum(1.0, bound / jnp.maximum(
                jnp.square(std) / m * _norm(pull), jnp.finfo(x.dtype).tiny)), pull)
        return s + pull

    return score, (cg_steps + 2 if method == "tweedie" else 2)


def _excess_variance(operator: Operator, sigma, noise_std):
    """gram sigma^2 - noise_std^2: the variance A (x_t / m) has beyond the observation's."""
    return operator.gram * jnp.square(sigma) - jnp.square(noise_std)


def _observed_noise(operator: Operator, y, key):
    """Standard normal noise in A's range, shaped like y."""
    return operator.restrict(jax.random.normal(key, y.shape, y.dtype))


def _noised(y, excess, w):
    """y plus the noise w scaled to variance max(excess, 0): A (x_t / m) at that level."""
    return y + batch_mul(jnp.sqrt(jnp.maximum(excess, 0.0)), w)


def _replace_observed(sde: SDE, operator: Operator, y, noise_std):
    """`after` for run_chain: A x_t <- m (y + sqrt(gram sigma^2 - noise_std^2) w) where positive."""
    def after(x, t, key):
        excess = _excess_variance(operator, sde.sigma(t), noise_std)
        w = _observed_noise(operator, y, key)
        target = batch_mul(sde.mean_coeff(t), _noised(y, excess, w))
        active = batch_mul(excess > 0, jnp.ones_like(x, bool))
        return jnp.where(active, operator.project(x, target), x)
    return after


def _ddrm_step(operator: Operator, y, noise_std, eta):
    """A `predict` of run_chain: DDRM's step (Kawar et al. 2022, with eta_b = 1) from t to t_next
    in the coordinates x / m = x0 + sigma z, split along A's orthonormal rows, where coordinate u
    is observed as y / sqrt(gram) = u + sigma_y n, sigma_y = noise_std / sqrt(gram). While sigma
    exceeds sigma_y the observed part is y plus the missing noise (the "projection" method);
    below it, and in the free part, it moves towards Tweedie's estimate with a fraction eta of
    fresh noise (eta = 1: an ancestral-like step, eta = 0: DDIM)."""
    def predict(sde, score_fn, x, t, key, t_next):
        k_free, k_obs = jax.random.split(key)
        sigma, sigma_next = sde.sigma(t), sde.sigma(t_next)
        x0 = tweedie_denoise(sde, score_fn, x, t)
        # the free part: DDIM with a fraction eta of fresh noise
        z = batch_mul(1 / sigma, batch_mul(1 / sde.mean_coeff(t), x) - x0)
        free = x0 + batch_mul(sigma_next, math.sqrt(1 - eta ** 2) * z
                              + eta * jax.random.normal(k_free, x.shape, x.dtype))
        # the observed part, in y's space (noise of std sqrt(gram) per unit of sigma)
        g, y0 = operator.gram, operator(x0)
        sigma_y = noise_std / math.sqrt(g)
        # below y's noise: towards Tweedie's y0, pulled to y; above it: y plus the missing noise
        below = batch_mul(sigma_next < sigma_y, jnp.ones_like(y, bool))
        w = _observed_noise(operator, y, k_obs)
        pulled = y0 + batch_mul(math.sqrt(1 - eta ** 2) * sigma_next / jnp.where(
            sigma_y > 0, sigma_y, 1.0), y - y0) + batch_mul(eta * sigma_next * math.sqrt(g), w)
        replaced = _noised(y, _excess_variance(operator, sigma_next, noise_std), w)
        target = operator.restrict(jnp.where(below, pulled, replaced))
        return batch_mul(sde.mean_coeff(t_next), operator.project(free, target)), 1
    return predict


def _check_operator(method, operator, y, shape) -> Operator:
    """`operator` as an `Operator` that maps x of `shape` to y's shape and that `method` can
    use ("projection" and "ddrm" need A A^T = gram I)."""
    operator = as_operator(operator, shape)
    checks.check_batch("y", y)
    if tuple(y.shape[1:]) != operator.out_shape:
        raise ValueError(f"y must have shape (batch, *{operator.out_shape}) for operator "
                         f"{type(operator).__name__}, got {tuple(y.shape)}")
    check_linear(operator)
    if method in ("projection", "ddrm") and operator.gram is None:
        raise ValueError(f"method={method!r} needs an operator with orthogonal rows of one norm "
                         f"(Mask, ChannelMean, BlockAverage, FourierSampling), got "
                         f"{type(operator).__name__}; use 'tweedie' or 'pigdm'")
    return operator


def smc_solve(sde: SDE, score_fn: ScoreFn, y, operator, noise_std, key, *, shape=None,
              num_particles=NUM_PARTICLES, num_steps=None, eps=1e-3,
              ess_threshold=0.5, particle_chunk=None) -> SMCResult:
    """Sequential Monte Carlo (`samplers.smc` has the math): `num_particles` particles per row
    of y = A x0 + noise_std n on a chain of `num_steps` bridge steps (default N) from T to eps,
    one draw per row; returns `SMCResult(x, nfe, ess)`, nfe = num_steps + 1 score evaluations
    per particle (num_particles x nfe in all) and the effective sample sizes along the chain.
    A: any linear operator or function, as for `solve_inverse` (method "smc" calls this).
    The score function is called on batch x num_particles rows at once, or on batch x
    `particle_chunk` rows at a time in a loop where memory does not hold them all."""
    check_particle_args(num_particles, num_steps, ess_threshold, particle_chunk)
    operator = _check_operator("smc", operator, y, shape)
    x_shape = (y.shape[0],) + tuple(operator.in_shape)
    check_sampler_args(sde, score_fn, x_shape, key, eps=eps, denoise=True)
    s = _noise_std(sde, noise_std, y, representable=False)
    result = linear_smc(sde, score_fn, y, operator, s, key, num_particles=num_particles,
                        num_steps=sde.N if num_steps is None else num_steps, eps=eps,
                        ess_threshold=ess_threshold, particle_chunk=particle_chunk)
    if operator.gram is None:
        return result
    return result._replace(x=jnp.where(_noiseless(s, result.x),
                                       operator.project(result.x, y), result.x))


def solve_inverse(sde: SDE, score_fn: ScoreFn, y, operator, noise_std, key, *, shape=None,
                  method="tweedie", num_steps=None, eps=1e-3, cg_steps=4, eta=0.85,
                  predictor="reverse_diffusion", corrector="none", snr=0.16,
                  n_corrector_steps=1, num_particles=NUM_PARTICLES,
                  ess_threshold=0.5, particle_chunk=None) -> tuple[Batch, jax.Array]:
    """A draw from the model's posterior given y = A x0 + noise_std n; returns (x, nfe), x of
    shape (batch, *A.in_shape).

    A = `operator`: an `Operator` (`samplers.operators`), or a linear function of a batch with
    `shape` = (batch, *data_shape) of x. The chain runs `num_steps` steps (default N) from the
    prior at T to eps, then takes a Tweedie step. `method` (the module docstring has the math),
    what it needs, and what one call of its score costs:
      "tweedie"     the chain on the score guided with Tweedie's covariance, solved by
                    `cg_steps` conjugate-gradient steps. Any linear A. cg_steps + 2 NFE.
      "pigdm"       the chain on the score guided with PiGDM's covariance r^2 I (`cg_steps`
                    steps solve it where A A^T is not diagonal, at no NFE). Any linear A. 2 NFE.
      "projection"  the chain on the score, A x_t replaced by the noised observation after
                    each step. A with orthogonal rows of one norm (A A^T = gram I: Mask,
                    ChannelMean, BlockAverage, FourierSampling). 1 NFE.
      "ddrm"        DDRM's own step as the predictor, a fraction `eta` of fresh noise. A as for
                    "projection". 1 NFE. A `predictor` other than the default is refused.
      "smc"         `num_particles` particles per row on the chain of bridge steps, weighted and
                    resampled (`smc_solve`): consistent for the model's posterior as
                    num_particles grows. Any linear A. 1 NFE per particle, num_particles NFE
                    in all; `predictor` and `corrector` other than the defaults are refused;
                    `particle_chunk` particles at a time through the score (default all).
    `predictor`, `corrector`, `snr` and `n_corrector_steps` are those of `pc_sample`; a run
    calls the score num_steps times in the predictor, num_steps n_corrector_steps times in a
    corrector (none for "none") and once for the final Tweedie step, so nfe is that count
    times the cost above. Where noise_std = 0 and A has a pseudo-inverse, x is finally
    projected onto A x = y.
    """
    checks.check_choice("method", method, METHODS)
    checks.check_int("cg_steps", cg_steps, low=1)
    checks.check_number("eta", eta, low=0.0, high=1.0)
    checks.check_int("num_steps", num_steps, low=1, allow_none=True)
    predict, correct = _chain_options(predictor, corrector, snr, n_corrector_steps)
    if method == "smc":
        if (predictor, corrector) != ("reverse_diffusion", "none"):
            raise ValueError(f"method='smc' steps by the forward process's Gaussian bridge and "
                             f"takes no predictor or corrector; got predictor={predictor!r}, "
                             f"corrector={corrector!r}")
        x, nfe, _ = smc_solve(sde, score_fn, y, operator, noise_std, key, shape=shape,
                              num_particles=num_particles, num_steps=num_steps, eps=eps,
                              ess_threshold=ess_threshold, particle_chunk=particle_chunk)
        return x, nfe
    if method == "ddrm" and predictor != "reverse_diffusion":
        raise ValueError(f"predictor={predictor!r} cannot be used with method='ddrm', which "
                         f"steps by DDRM's own update: leave predictor at its default "
                         f"'reverse_diffusion', or use method 'tweedie', 'pigdm' or 'projection'")
    operator = _check_operator(method, operator, y, shape)
    x_shape = (y.shape[0],) + tuple(operator.in_shape)
    check_sampler_args(sde, score_fn, x_shape, key, eps=eps, denoise=True)
    s = _noise_std(sde, noise_std, y, representable=False)
    n = sde.N if num_steps is None else num_steps
    k_prior, k_chain = jax.random.split(key)
    x = sde.prior_sampling(k_prior, x_shape, y.dtype)
    grid = _grid(jnp.full((x_shape[0],), sde.T, y.dtype), eps, n)
    if method in ("tweedie", "pigdm"):
        guided, cost = guided_score(sde, score_fn, y, operator, s, method=method,
                                    cg_steps=cg_steps)
        x, nfe = _reverse_from(sde, guided, x, grid, k_chain, (predict, correct), cost=cost)
    elif method == "projection":
        x, nfe = _reverse_from(sde, score_fn, x, grid, k_chain, (predict, correct),
                               after=_replace_observed(sde, operator, y, s))
    else:  # "ddrm"
        x, nfe = _reverse_from(sde, score_fn, x, grid, k_chain,
                               (_ddrm_step(operator, y, s, eta), correct))
    if operator.gram is not None:
        x = jnp.where(_noiseless(s, x), operator.project(x, y), x)
    return x, nfe


# ---- the noise-free special cases (API v0.2) and SDEdit ----

def inpaint(sde: SDE, score_fn: ScoreFn, y: Batch, mask, key, *, num_steps=None, eps=1e-3,
            **options) -> tuple[Batch, jax.Array]:
    """A draw from the model given y where mask == 1 (`mask` shaped like y or like one sample);
    x equals y exactly there. Imputes plain vectors too. `options` go to `solve_inverse`."""
    checks.check_batch("y", y)
    if not hasattr(mask, "shape") or tuple(mask.shape) not in (tuple(y.shape), tuple(y.shape[1:])):
        raise ValueError(f"mask must have the shape of y {tuple(y.shape)} or of one sample "
                         f"{tuple(y.shape[1:])}, got {checks.describe(mask)}")
    op = Mask.create(mask, y.shape[1:])
    return solve_inverse(sde, score_fn, op(y), op, 0.0, key, num_steps=num_steps, eps=eps,
                         **options)


def colorize(sde: SDE, score_fn: ScoreFn, gray: Batch, key, *, num_steps=None, eps=1e-3,
             **options) -> tuple[Batch, jax.Array]:
    """(batch, H, W, 1) grey images -> (batch, H, W, 3) draws whose channel mean is `gray`."""
    checks.check_batch("gray", gray)
    if gray.ndim != 4 or gray.shape[-1] != 1:
        raise ValueError(f"gray must have shape (batch, H, W, 1), got {tuple(gray.shape)}")
    op = ChannelMean.create(tuple(gray.shape[1:3]) + (3,))
    return solve_inverse(sde, score_fn, gray, op, 0.0, key, num_steps=num_steps, eps=eps,
                         **options)


def super_resolve(sde: SDE, score_fn: ScoreFn, low: Batch, key, *, factor, num_steps=None,
                  eps=1e-3, **options) -> tuple[Batch, jax.Array]:
    """(batch, H, W, C) -> (batch, factor H, factor W, C) draws whose factor x factor block
    means are `low`."""
    checks.check_batch("low", low)
    if low.ndim != 4:
        raise ValueError(f"low must have shape (batch, H, W, C), got {tuple(low.shape)}")
    checks.check_int("factor", factor, low=2)
    _, h, w, c = low.shape
    op = BlockAverage.create((factor * h, factor * w, c), factor)
    return solve_inverse(sde, score_fn, low, op, 0.0, key, num_steps=num_steps, eps=eps,
                         **options)


def edit(sde: SDE, score_fn: ScoreFn, x0: Batch, key, *, t_start=0.5, num_steps=None, eps=1e-3,
         predictor="reverse_diffusion", corrector="none", snr=0.16,
         n_corrector_steps=1) -> tuple[Batch, jax.Array]:
    """SDEdit (Meng et al. 2022): x_t = m x0 + std z at t_start, then the reverse chain over
    `num_steps` steps (default ceil(N t_start / T)) to eps and a Tweedie step."""
    checks.check_batch("x0", x0)
    check_sampler_args(sde, score_fn, x0.shape, key, eps=eps, denoise=True)
    checks.check_number("t_start", t_start, low=eps, high=sde.T, low_open=True)
    chain = _chain_options(predictor, corrector, snr, n_corrector_steps)
    t = jnp.full((x0.shape[0],), t_start, x0.dtype)
    k_noise, k_chain = jax.random.split(key)
    mean, std = sde.marginal_prob(x0, t)
    x = mean + batch_mul(std, jax.random.normal(k_noise, x0.shape, x0.dtype))
    return _reverse_from(sde, score_fn, x, _grid(t, eps, _num_steps(sde, num_steps, t)), k_chain,
                         chain)
