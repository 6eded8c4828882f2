"""Data sets and a deterministic, resumable batch order.

`load(name, ...)` returns a `Dataset` of host numpy arrays: uint8 images (n, H, W, C) or float32
points (n, d). What happens to a batch on the accelerator (dequantisation, flips, scaling) is
`preprocess`, a pure function of the batch and a key, so it runs inside the jitted train step.
`batch_indices(step, ...)` is a pure function of the step: a resumed run sees the same batches.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from data import images as _images
from data import toy as _toy

IMAGE_SETS = ("digits", "npz", "folder", "cifar10")
TOY_SETS = tuple(_toy.GENERATORS)
NAMES = IMAGE_SETS + TOY_SETS


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None

    @property
    def is_image(self) -> bool:
        return self.train.dtype == np.uint8

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def load(name: str, *, path: str = "", image_size: int = 0, seed: int = 0,
         num_train: int = 10000, num_test: int = 2000) -> Dataset:
    """Loads a data set; images are uint8 NHWC, toy sets float32 (n, 2).

    digits: 1,500 train / 297 test (a fixed split); npz / folder: the last 10% (at least one
    image) held out; toy sets: `num_train` / `num_test` fresh draws from the generator.
    """
    if name not in NAMES:
        raise ValueError(f"data.name must be one of {list(NAMES)}, got {name!r}")
    if name in TOY_SETS:
        rng = np.random.default_rng(seed)
        gen = _toy.GENERATORS[name]
        return Dataset(gen(rng, num_train).astype(np.float32),
                       gen(rng, num_test).astype(np.float32), None, None)
    if name == "cifar10":
        (x, y), (xt, yt) = _images.cifar10("train"), _images.cifar10("test")
        return Dataset(_resize(x, image_size), _resize(xt, image_size), y, yt)
    if name == "folder":
        x, y = _images.folder(path, image_size or None)
    elif name == "npz":
        x, y = _images.npz(path)
    else:
        x, y = _images.digits()
    x = _resize(x, image_size)
    order = np.random.default_rng(0).permutation(len(x))  # a split fixed once for all runs
    n_test = 297 if name == "digits" else max(1, len(x) // 10)
    train, test = order[:-n_test], order[-n_test:]
    return Dataset(x[train], x[test], None if y is None else y[train],
                   None if y is None else y[test])


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour integer upsampling (e.g. 8x8 digits to 16x16) or no change."""
    if not size or size == x.shape[1]:
        return x
    if size % x.shape[1] or x.shape[1] != x.shape[2]:
        raise ValueError(f"data.image_size={size} must be a multiple of the square images' size "
                         f"{x.shape[1]} (or 0 to keep it)")
    k = size // x.shape[1]
    return np.repeat(np.repeat(x, k, axis=1), k, axis=2)


def batch_indices(step: int, *, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of training batch `step`: consecutive slices of per-epoch permutations.

    Epoch e's order is permutation(default_rng((seed, e))), so any step's batch is computed from
    the step alone (a resumed run reads the same data as an uninterrupted one).
    """
    pos = step * batch_size + np.arange(batch_size)
    epochs = pos // n
    out = np.empty(batch_size, np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = np.random.default_rng((seed, int(e))).permutation(n)[pos[sel] % n]
    return out


def preprocess(batch, key, *, is_image: bool, centered: bool = True, dequantize: bool = False,
               random_flip: bool = False):
    """uint8 images -> floats in [-1, 1] (centered) or [0, 1], with optional uniform
    dequantisation (x + u) / 256 and random horizontal flips; toy points pass through."""
    if not is_image:
        return batch
    k_u, k_flip = jax.random.split(key)
    x = batch.astype(jnp.float32)
    if dequantize:
        x = (x + jax.random.uniform(k_u, x.shape)) / 256.0
    else:
        x = x / 255.0
    if random_flip:
        flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
    return 2 * x - 1 if centered else x


def to_uint8(x, *, centered: bool = True) -> np.ndarray:
    """Model-space images back to uint8 (clipped)."""
    x = (np.asarray(x) + 1) / 2 if centered else np.asarray(x)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
