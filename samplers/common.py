"""Pieces every sampler shares: argument checks and the final Tweedie denoising step."""
import jax.numpy as jnp

from sde import checks
from sde.base import SDE, Batch, ScoreFn, batch_mul


def check_sde(sde):
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (VPSDE, subVPSDE, VESDE, ...), got {sde!r}")


def check_score(score_fn, shape):
    """Traces score_fn on a batch of `shape` (no FLOPs): it must return an array like x."""
    x = jnp.zeros(shape, jnp.float32)
    checks.check_score_fn(score_fn, x, jnp.zeros(shape[:1], jnp.float32))


def check_sampler_args(sde, score_fn, shape, key, *, eps, denoise, eps_low_open=True):
    """Checks what every sampler takes, before any work; returns `shape` as a tuple of ints."""
    check_sde(sde)
    shape = checks.check_shape("shape", shape)
    checks.check_key("key", key)
    checks.check_number("eps", eps, low=0.0, high=sde.T, low_open=eps_low_open, high_open=True)
    if not isinstance(denoise, bool):
        raise TypeError(f"denoise must be a bool, got {denoise!r}")
    check_score(score_fn, shape)
    return shape


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, x: Batch, t) -> Batch:
    """E[x_0 | x_t] = (x_t + std(t)^2 score(x_t, t)) / m(t) (Tweedie's formula), no noise added;
    `t` is a scalar or one time per sample."""
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
    m, std = sde.mean_coeff(t), sde.std(t)
    return batch_mul(1 / m, x + batch_mul(jnp.square(std), score_fn(x, t)))
