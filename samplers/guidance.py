"""Guidance: new score functions from old ones, usable by every sampler and the likelihood.

Bayes' rule at each noise level, grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x):
`classifier_guidance` adds a noise-conditional classifier's gradient (Song et al. 2021, sec. 5;
Dhariwal & Nichol 2021 with a scale), `classifier_free_guidance` mixes a conditional and an
unconditional score (Ho & Salimans 2022), in the convention uncond + scale (cond - uncond).
"""
import jax
import jax.numpy as jnp

from sde import checks
from sde.base import ScoreFn


def _check_scale(scale):
    if isinstance(scale, jax.core.Tracer):
        return
    checks.check_number("scale", scale)


def classifier_guidance(score_fn: ScoreFn, log_prob_fn, scale=1.0) -> ScoreFn:
    """score_fn(x, t) + scale * grad_x log_prob_fn(x, t), with `log_prob_fn(x, t) -> (batch,)`
    the log p_t(y | x) of the wanted condition. One evaluation of the result costs one score and
    one classifier gradient. scale = 1 is the exact conditional score when both are exact."""
    for name, fn in (("score_fn", score_fn), ("log_prob_fn", log_prob_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable fn(x, t), got {checks.describe(fn)}")
    _check_scale(scale)

    def guided(x, t):
        # the sum over the batch has the per-sample gradients (samples are independent)
        grad = jax.grad(lambda x: jnp.sum(log_prob_fn(x, t)))(x)
        return score_fn(x, t) + scale * grad
    return guided


def classifier_free_guidance(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn,
                             scale) -> ScoreFn:
    """uncond + scale * (cond - uncond): scale 1 is the conditional score, 0 the unconditional
    one, larger sharpens the condition (the score of p_t(x) p_t(y | x)^scale)."""
    for name, fn in (("cond_score_fn", cond_score_fn), ("uncond_score_fn", uncond_score_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable fn(x, t), got {checks.describe(fn)}")
    _check_scale(scale)

    def guided(x, t):
        uncond = uncond_score_fn(x, t)
        return uncond + scale * (cond_score_fn(x, t) - uncond)
    return guided
