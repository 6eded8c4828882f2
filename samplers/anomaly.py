"""Anomaly statistics of a score model, beside the likelihood (`samplers.likelihood`).

- `score_norms`: multiscale score matching analysis (MSMA, Mahmood et al. 2021): at each of
  several times t the input is put on the marginal's scale, m(t) x, and the network's noise
  prediction there, std(t) s(m(t) x, t), is summarised by its root mean square. A typical
  input is explained by little noise at every scale; an atypical one is not. The vector of
  log RMS values across times is the feature on which a simple density is fitted (in
  `scorelab.anomaly`), as the paper does.
- `reconstruction_error`: an SDEdit round trip (`samplers.edit`): the input noised to t and
  denoised by the reverse chain, at several t; the squared error per cell (a map for images)
  and its mean per example. Inputs the model can regenerate come back close.
"""
import jax
import jax.numpy as jnp

from samplers.observe import edit
from sde import checks
from sde.base import SDE, ScoreFn, batch_mul


def score_norms(sde: SDE, score_fn: ScoreFn, x, times) -> jax.Array:
    """(batch, len(times)): log RMS over the data dimensions of std(t) s(m(t) x, t)."""
    checks.check_batch("x", x)
    out = []
    for t in times:
        checks.check_number("times", t, low=0.0, high=sde.T, low_open=True)
        tt = jnp.full((x.shape[0],), t, x.dtype)
        m, std = sde.mean_coeff(tt), sde.std(tt)
        noise = batch_mul(std, score_fn(batch_mul(m, x), tt))
        out.append(0.5 * jnp.log(jnp.mean(jnp.square(noise.reshape(len(x), -1)), axis=-1)))
    return jnp.stack(out, axis=-1)


def reconstruction_error(sde: SDE, score_fn: ScoreFn, x, key, *, times=(0.1, 0.2, 0.3),
                         draws: int = 1, num_steps=None) -> tuple[jax.Array, jax.Array]:
    """(per-example mean squared error (batch, len(times)), per-cell squared error averaged
    over times and draws (x's shape)): each of `draws` SDEdit round trips from each t."""
    checks.check_batch("x", x)
    checks.check_int("draws", draws, low=1)
    errors, cells = [], jnp.zeros_like(x)
    for i, t in enumerate(times):
        total = jnp.zeros_like(x)
        for j in range(draws):
            k = jax.random.fold_in(key, i * draws + j)
            back, _ = edit(sde, score_fn, x, k, t_start=t, num_steps=num_steps)
            total = total + jnp.square(back - x)
        total = total / draws
        errors.append(jnp.mean(total.reshape(len(x), -1), axis=-1))
        cells = cells + total / len(times)
    return jnp.stack(errors, axis=-1), cells
