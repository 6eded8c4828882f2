"""Filling a series of any length with a model of fixed-length windows.

`fill_series(draw_window, values, observed, window=W, key=key)` draws every missing cell of a
(T, F) series from a conditional model of W-step windows, `draw_window(y, mask, key) -> x`
((batch, W, F) each; x equal to y where mask is True), by sampling the series left to right in
blocks:

    window k covers [s, s + W); its first cells up to a are already drawn (the context) and
    given, with every observed cell of the window; of the window's draw only the block
    [a, a + stride) is kept, and the next window starts `context` cells before its end.

Kept blocks are drawn from p(block | everything before it, the observations up to the window's
end), so the series is one draw from the joint conditional built as a product of conditionals,
without seams: nothing is averaged or overwritten where windows overlap. It is exact when the
series forgets what lies more than `context` steps behind (a Markov process of that order) and
the observations beyond a window's end say nothing about its kept block; for a stationary
AR(1) with coefficient phi the error of the last kept cell is of order phi^(W - context -
stride), the look-ahead (tests/test_series.py measures it against the Kalman smoother). Blocks
without a missing cell are copied, not drawn: only the windows around gaps cost a chain.
"""
from collections.abc import Callable

import jax
import numpy as np


def fill_series(draw_window: Callable, values, observed, *, window: int, key, draws: int = 1,
                context: int | None = None, stride: int | None = None) -> np.ndarray:
    """`draws` draws (draws, T, F) of the cells of `values` (T, F) where `observed` is False,
    each observed cell its value. `context` and `stride` default to window / 4 each, so each
    kept block looks window / 2 steps ahead. A series shorter than the window is padded with
    missing steps at its end (drawn and dropped)."""
    values, observed = np.asarray(values, np.float32), np.asarray(observed, bool)
    if values.ndim != 2 or values.shape != observed.shape:
        raise ValueError(f"values and observed must be (steps, features) of one shape, got "
                         f"{values.shape} and {observed.shape}")
    context = max(window // 4, 1) if context is None else context
    stride = max(window // 4, 1) if stride is None else stride
    if not (isinstance(window, int) and window >= 2 and 0 <= context and 1 <= stride
            and context + stride <= window):
        raise ValueError(f"window={window}, context={context}, stride={stride}: need window "
                         f">= 2, context >= 0, stride >= 1 and context + stride <= window")
    steps = len(values)
    pad = max(window - steps, 0)
    x = np.repeat(np.pad(np.where(observed, values, 0.0), ((0, pad), (0, 0)))[None], draws, 0)
    known = np.pad(observed, ((0, pad), (0, 0)))
    total = len(known)
    start = 0  # the first cell not yet drawn
    while start < total:
        s = min(max(start - context, 0), total - window)
        last = s + window >= total
        end = total if last else start + stride
        if not known[start:end].all():
            mask = known[s:s + window].copy()
            mask[:start - s] = True  # the context: drawn already
            key, sub = jax.random.split(key)
            batch = np.broadcast_to(mask, (draws, *mask.shape))
            filled = np.asarray(draw_window(x[:, s:s + window], batch, sub))
            x[:, start:end] = filled[:, start - s:end - s]
        start = end
    return x[:, :steps]
