"""Linear observation operators: y = A x0 + noise_std n, the model of every conditional task.

An operator is a small immutable pytree with `apply` (A on a batch, also `op(x)`) and `adjoint`
(A^T, derived from `apply` by `jax.linear_transpose`, never written twice). Operators whose rows
are orthogonal with one common norm, A A^T = gram * I on the range of A, also have a cheap
pseudo-inverse A^+ = A^T / gram: `project(x, y)` is then the nearest point to x with A x = y,
and `samplers.observe` can split the data into an observed and a free part (its "projection"
method). They are:

  Mask(mask)               A x = mask * x                  gram 1 (inpainting, imputation)
  ChannelMean(C)           mean over the last axis         gram 1 / C (colorization)
  BlockAverage(f)          f x f average pooling           gram 1 / f^2 (super-resolution)
  FourierSampling          rows of the orthonormal 2-D FFT gram 1 (MRI-style undersampling)

and, without that structure, GaussianBlur and RandomProjection. `LinearFunction` wraps a user's
own linear function of a batch. `check_linear` refuses a function that is not linear
(superposition on random inputs) before any work.
"""
import abc
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sde import checks


def register_operator(*, meta=()):
    """A class decorator: a frozen dataclass pytree whose fields in `meta` are static."""
    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        data = [f.name for f in dataclasses.fields(cls) if f.name not in meta]
        return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(meta))
    return wrap


class Operator(abc.ABC):
    """A linear map from data of shape `in_shape` to observations of shape `out_shape`, batched:
    `apply` takes (batch, *in_shape) to (batch, *out_shape)."""

    in_shape: tuple[int, ...]
    gram = None  # A A^T = gram * I on the range of A, when the rows have that structure

    @abc.abstractmethod
    def apply(self, x):
        """A x for a batch x of shape (batch, *in_shape)."""

    def __call__(self, x):
        return _apply(self, x)

    def adjoint(self, y):
        """A^T y for a batch y of shape (batch, *out_shape), by `jax.linear_transpose`."""
        return _adjoint(self, y)

    @property
    def out_shape(self) -> tuple[int, ...]:
        x = jax.ShapeDtypeStruct((1,) + tuple(self.in_shape), jnp.float32)
        return tuple(jax.eval_shape(self.apply, x).shape[1:])

    def restrict(self, y):
        """The part of observations y in the range of A (all of y unless A has zero rows)."""
        return y

    def pinv(self, y):
        """A^+ y = A^T y / gram: the minimum-norm x with A x = y (operators with `gram`)."""
        if self.gram is None:
            raise ValueError(f"{type(self).__name__} has no cheap pseudo-inverse (its rows are "
                             f"not orthogonal with one norm)")
        return self.adjoint(self.restrict(y)) / self.gram

    def project(self, x, y):
        """The point nearest to x with A x = y: x + A^+ (y - A x)."""
        return x + self.pinv(y - self.apply(x))

    def matrix(self):
        """A as a dense (prod(out_shape), prod(in_shape)) matrix (for small problems and tests)."""
        d = math.prod(self.in_shape)
        basis = jnp.eye(d, dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
        rows = self.apply(basis.reshape((d,) + tuple(self.in_shape)))
        return rows.reshape(d, -1).T


def _image_shape(name, data_shape) -> tuple[int, int, int]:
    if len(data_shape) != 3 or not all(int(d) > 0 for d in data_shape):
        raise ValueError(f"{name} needs (H, W, C) images, got data shape {tuple(data_shape)}")
    return tuple(int(d) for d in data_shape)


# Compiled once per operator and shape when called outside jit (inside, they are inlined).
_apply = jax.jit(lambda op, x: op.apply(x))


@jax.jit
def _adjoint(op: Operator, y):
    primal = jax.ShapeDtypeStruct((y.shape[0],) + tuple(op.in_shape), y.dtype)
    (x,) = jax.linear_transpose(op.apply, primal)(y)
    return x


@register_operator(meta=("in_shape",))
class Mask(Operator):
    """A x = mask * x: observed entries (mask 1) pass, the others read as 0 and are ignored.

    `mask` has the data's shape, or (batch, *data_shape) for one mask per sample.
    """

    mask: jax.Array
    in_shape: tuple[int, ...]
    gram = 1.0

    @classmethod
    def create(cls, mask, data_shape=None) -> "Mask":
        concrete = not isinstance(mask, jax.core.Tracer)
        values = np.asarray(mask) if concrete else None  # checked on the host, also in jit
        mask = jnp.asarray(mask)
        data_shape = tuple(mask.shape) if data_shape is None else tuple(data_shape)
        if tuple(mask.shape[-len(data_shape):]) != data_shape or mask.ndim > len(data_shape) + 1:
            raise ValueError(f"mask must have shape {data_shape} or (batch, *{data_shape}), "
                             f"got {tuple(mask.shape)}")
        if jnp.issubdtype(mask.dtype, jnp.floating) or jnp.issubdtype(mask.dtype, jnp.integer):
            if concrete and not np.all((values == 0) | (values == 1)):
                raise ValueError("mask must hold only 0 and 1 (1 = observed), got other values")
        elif mask.dtype != jnp.bool_:
            raise TypeError(f"mask must be bool or numeric, got dtype {mask.dtype}")
        return cls(mask.astype(bool), data_shape)

    def apply(self, x):
        return jnp.where(self.mask, x, 0.0).astype(x.dtype)

    def restrict(self, y):
        return self.apply(y)

    def project(self, x, y):
        return jnp.where(self.mask, y, x)  # exactly y where observed


@register_operator(meta=("in_shape",))
class ChannelMean(Operator):
    """(H, W, C) -> (H, W, 1), the mean over channels: a grey image of a colour one."""

    in_shape: tuple[int, ...]

    @classmethod
    def create(cls, data_shape) -> "ChannelMean":
        return cls(_image_shape("ChannelMean", data_shape))

    @property
    def gram(self):
        return 1.0 / self.in_shape[-1]

    def apply(self, x):
        return jnp.mean(x, axis=-1, keepdims=True)


@register_operator(meta=("in_shape", "factor"))
class BlockAverage(Operator):
    """(H, W, C) -> (H / f, W / f, C), the mean of each f x f block (average pooling)."""

    in_shape: tuple[int, ...]
    factor: int

    @classmethod
    def create(cls, data_shape, factor: int) -> "BlockAverage":
        h, w, c = _image_shape("BlockAverage", data_shape)
        checks.check_int("factor", factor, low=1)
        if h % factor or w % factor:
            raise ValueError(f"factor {factor} must divide the image's height and width, got "
                             f"data shape {tuple(data_shape)}")
        return cls((h, w, c), factor)

    @property
    def gram(self):
        return 1.0 / self.factor ** 2

    def apply(self, x):
        h, w, c = self.in_shape
        f = self.factor
        return x.reshape(x.shape[0], h // f, f, w // f, f, c).mean(axis=(2, 4))


@register_operator(meta=("in_shape", "width"))
class GaussianBlur(Operator):
    """(H, W, C) -> (H, W, C): convolution with a Gaussian of standard deviation `width` pixels
    (truncated at 3 widths, normalised), with symmetric (mirror) boundaries."""

    in_shape: tuple[int, ...]
    width: float

    @classmethod
    def create(cls, data_shape, width: float) -> "GaussianBlur":
        checks.check_number("width", width, low=0.0, low_open=True)
        return cls(_image_shape("GaussianBlur", data_shape), float(width))

    def _kernel(self):
        r = max(1, math.ceil(3 * self.width))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / self.width) ** 2)
        return k / k.sum()

    def apply(self, x):
        k = self._kernel()
        r = len(k) // 2
        for axis in (1, 2):
            pad = [(0, 0)] * x.ndim
            pad[axis] = (r, r)
            xp = jnp.pad(x, pad, mode="symmetric")
            n = x.shape[axis]
            x = sum(float(k[i]) * jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
                    for i in range(len(k)))
        return x


@register_operator(meta=("in_shape",))
class RandomProjection(Operator):
    """x -> G vec(x) with G an (m, d) matrix of independent N(0, 1 / m) entries (compressed
    sensing); E[G^T G] = I."""

    matrix_: jax.Array
    in_shape: tuple[int, ...]

    @classmethod
    def create(cls, data_shape, num_measurements: int, seed: int) -> "RandomProjection":
        checks.check_int("num_measurements", num_measurements, low=1)
        checks.check_int("seed", seed, low=0)
        d = math.prod(data_shape)
        g = jax.random.normal(jax.random.key(seed), (num_measurements, d))
        return cls(g / math.sqrt(num_measurements), tuple(data_shape))

    def apply(self, x):
        return x.reshape(x.shape[0], -1) @ self.matrix_.T.astype(x.dtype)


@register_operator(meta=("in_shape",))
class FourierSampling(Operator):
    """(H, W, C) -> (M, C): chosen frequencies of the orthonormal 2-D FFT (norm "ortho") of each
    channel, as real numbers.

    A real image's FFT has F[-k] = conj(F[k]), so each frequency is kept once, with its Hermitian
    partner implied: a frequency with a distinct partner gives sqrt(2) Re F[k] and sqrt(2) Im F[k]
    (two orthonormal rows), a self-conjugate one (k = -k, e.g. the mean) gives Re F[k]. The rows
    are orthonormal, so A A^T = I and real noise on every output is the complex noise of MRI.
    `pairs` and `singles` hold the flat indices ky * W + kx of the two kinds.
    """

    pairs: jax.Array
    singles: jax.Array
    in_shape: tuple[int, ...]
    gram = 1.0

    @classmethod
    def create(cls, data_shape, fraction: float, seed: int) -> "FourierSampling":
        """About fraction * H * W real measurements per channel, drawn without replacement with
        probability falling as 1 / (1 + |k|)^2 in the frequency's radius (centre-dense); the mean
        is always kept."""
        checks.check_number("fraction", fraction, low=0.0, high=1.0, low_open=True)
        checks.check_int("seed", seed, low=0)
        h, w, _ = data_shape = _image_shape("FourierSampling", data_shape)
        ky, kx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        flat, partner = ky * w + kx, ((-ky) % h) * w + (-kx) % w
        keep = (flat <= partner).ravel()  # one representative per Hermitian pair
        reps, selfconj = flat.ravel()[keep], (flat == partner).ravel()[keep]
        fy, fx = (np.minimum(k, n - k).ravel()[keep] for k, n in ((ky, h), (kx, w)))
        weight = 1.0 / (1.0 + np.hypot(fy, fx)) ** 2
        u = np.random.default_rng(seed).random(len(reps))
        order = np.argsort(-np.log(u) / weight)  # weighted sampling without replacement
        order = np.concatenate([[0], order[order != 0]])  # reps[0] is the mean (k = 0)
        cost = np.where(selfconj[order], 1, 2)  # real measurements per frequency
        chosen = order[np.cumsum(cost) <= max(1, round(fraction * h * w))]
        is_self = selfconj[chosen]
        return cls(jnp.asarray(np.sort(reps[chosen][~is_self]), jnp.int32),
                   jnp.asarray(np.sort(reps[chosen][is_self]), jnp.int32), tuple(data_shape))

    def apply(self, x):
        b, (h, w, c) = x.shape[0], self.in_shape
        f = jnp.fft.fft2(x, axes=(1, 2), norm="ortho").reshape(b, h * w, c)
        pairs, singles = f[:, self.pairs], f[:, self.singles]
        root2 = math.sqrt(2.0)
        out = [root2 * pairs.real, root2 * pairs.imag, singles.real]
        return jnp.concatenate(out, axis=1).astype(x.dtype)

    def frequencies(self):
        """A (H, W) 0 / 1 map of the frequencies kept, partners included (for pictures)."""
        h, w, _ = self.in_shape
        kept = np.zeros(h * w, bool)
        kept[np.asarray(self.pairs)] = kept[np.asarray(self.singles)] = True
        ky, kx = np.divmod(np.arange(h * w), w)
        kept[((-ky) % h) * w + (-kx) % w] |= kept.copy()
        return kept.reshape(h, w)


@register_operator(meta=("fn", "in_shape"))
class LinearFunction(Operator):
    """A user's linear function `fn(x)` of a batch of shape (batch, *in_shape)."""

    fn: object
    in_shape: tuple[int, ...]

    def apply(self, x):
        return self.fn(x)


def as_operator(operator, shape=None) -> Operator:
    """`operator` as an `Operator`: package operators pass through (their data shape checked
    against `shape` = (batch, *data_shape) when given); a plain function needs `shape`."""
    if isinstance(operator, Operator):
        if shape is not None and tuple(shape[1:]) != tuple(operator.in_shape):
            raise ValueError(f"shape {tuple(shape)} does not fit operator {type(operator).__name__}"
                             f", whose data shape is {tuple(operator.in_shape)}")
        return operator
    if not callable(operator):
        raise TypeError(f"operator must be an Operator or a linear function of a batch, got "
                        f"{checks.describe(operator)}")
    if shape is None:
        raise ValueError("operator is a plain function: give shape=(batch, *data_shape) of x")
    return LinearFunction(operator, tuple(checks.check_shape("shape", shape)[1:]))


def check_linear(operator: Operator, key=None, rtol: float = 1e-4):
    """Raises ValueError unless A(a u + b v) = a A u + b A v and A 0 = 0 on random u, v.

    (`jax.linear_transpose` would accept an affine function; superposition does not.) Skipped
    when the operator's data are traced (inside jit), where nothing can be evaluated.
    """
    a, b = 0.7, -1.3
    with jax.ensure_compile_time_eval():  # evaluated now, also inside jit
        u, v = jax.random.normal(jax.random.key(0) if key is None else key,
                                 (2, 1) + tuple(operator.in_shape))
        lhs, rhs = operator(a * u + b * v), a * operator(u) + b * operator(v)
        err = jnp.max(jnp.abs(lhs - rhs)) + jnp.max(jnp.abs(operator(jnp.zeros_like(u))))
        scale = jnp.max(jnp.abs(rhs)) + 1e-12
    if isinstance(err, jax.core.Tracer):
        return
    err, scale = float(err), float(scale)
    if not err <= rtol * scale:  # also catches NaN
        raise ValueError(f"operator {type(operator).__name__} is not linear: "
                         f"|A(a u + b v) - a A u - b A v| + |A 0| = {err:.3g} on random inputs "
                         f"(allowed {rtol} x {scale:.3g}); give a linear function")
