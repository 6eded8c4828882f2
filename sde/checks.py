"""Argument checks shared by the public API.

Each check raises at once with a message that names the argument, the value given and what is
allowed (docs/api.md). Traced or abstract values (inside `jax.jit`, or leaves of a pytree that JAX
rebuilds) are skipped: they were checked when the object was first built from concrete numbers.
"""
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np


def concrete_float(value) -> float | None:
    """`value` as a Python float, or None when it is traced, abstract or not a real scalar."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)
    except Exception:  # tracer, ShapeDtypeStruct, sentinel leaf, non-scalar array
        return None


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                 allow_none=False):
    """A finite real number in [low, high] (either end open or absent)."""
    if value is None and allow_none:
        return
    v = concrete_float(value)
    if v is None:
        if isinstance(value, jax.core.Tracer):
            return
        raise TypeError(f"{name} must be a real number, got {value!r}")
    ok = math.isfinite(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low}"
        right = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {left}, {right}, got {value!r}")


def concrete_array(value) -> np.ndarray | None:
    """`value` as a float numpy array (any shape), or None when it is traced, abstract or not
    numeric."""
    if isinstance(value, (bool, str, bytes)) or isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # ShapeDtypeStruct, sentinel leaf
        return None


def check_parameter(name: str, value, *, low=None, low_open=False):
    """An SDE parameter: a real number, or an array of them for a stack of SDEs (the leaves of
    SDEs batched by jax.vmap), each finite and >= low (> low when `low_open`)."""
    if not hasattr(value, "ndim") or value.ndim == 0:
        return check_number(name, value, low=low, low_open=low_open)
    v = concrete_array(value)
    if v is None:
        return
    ok = np.isfinite(v) & ((v > low if low_open else v >= low) if low is not None else True)
    if not ok.all():
        bound = "" if low is None else f" {'>' if low_open else '>='} {low}"
        raise ValueError(f"{name} must hold finite numbers{bound}, got {v[~ok][:4]} in an "
                         f"array of shape {v.shape}")


def check_int(name: str, value, *, low: int = 1, allow_none: bool = False):
    """A Python or numpy integer >= low (bools are refused)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        none = " or None" if allow_none else ""
        raise TypeError(f"{name} must be an integer >= {low}{none}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_choice(name: str, value, allowed: Sequence[str]):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def check_shape(name: str, shape) -> tuple[int, ...]:
    """A batch shape `(batch, *data_shape)` of positive ints; returned as a tuple of ints."""
    valid = isinstance(shape, (tuple, list)) and len(shape) >= 2 and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)
    if not valid:
        raise ValueError(f"{name} must be a tuple (batch, *data_shape) of at least two positive "
                         f"ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def check_key(name: str, key):
    """One `jax.random` key: typed (`jax.random.key`) of shape () or raw uint32 of shape (2,)."""
    if hasattr(key, "dtype") and hasattr(key, "shape"):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return
        if key.dtype == np.uint32 and tuple(key.shape) == (2,):
            return
    raise TypeError(f"{name} must be one jax.random key (jax.random.key(seed) or "
                    f"jax.random.PRNGKey(seed)), got {describe(key)}")


def check_batch(name: str, x):
    """A floating array of shape (batch, *data_shape) with batch > 0."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array of shape (batch, *data_shape), "
                        f"got {describe(x)}")
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (batch, *data_shape) with batch > 0, "
                         f"got shape {tuple(x.shape)}")


def check_score_fn(score_fn: Callable, x, t):
    """Traces `score_fn(x, t)` abstractly (no FLOPs) and checks it returns an array like x."""
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a callable score_fn(x, t) -> array shaped like x, "
                        f"got {describe(score_fn)}")
    out = jax.eval_shape(score_fn, x, t)
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"score_fn(x, t) must return an array shaped like x "
                         f"{tuple(x.shape)}, got {out}")


def describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)
