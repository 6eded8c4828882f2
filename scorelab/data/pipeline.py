"""From a data set to the accelerator: the batch order, each process's slice, preprocessing.

`batch_indices(step, ...)` is a pure function of the step, so a resumed run reads the same
batches as an uninterrupted one. `host_batch` is the slice of a global batch that one process
feeds (all of it with one process). `preprocess` (dequantisation, flips, scaling) is a pure
function of the batch and a key that runs inside the jitted train step.
"""
import jax
import jax.numpy as jnp
import numpy as np


def batch_indices(step: int, *, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of training batch `step`: consecutive slices of per-epoch permutations.

    Epoch e's order is permutation(default_rng((seed, e))), so any step's batch is computed from
    the step alone, and every example appears once per epoch.
    """
    pos = step * batch_size + np.arange(batch_size)
    epochs = pos // n
    out = np.empty(batch_size, np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = np.random.default_rng((seed, int(e))).permutation(n)[pos[sel] % n]
    return out


def host_batch(dataset, step: int, *, batch_size: int, seed: int, split: str = "train",
               process_index: int = 0, process_count: int = 1) -> dict:
    """Process `process_index`'s equal share of global batch `step`, as numpy arrays
    {"x": ..., "labels": ...} ("labels" only when the data set has them)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if batch_size % process_count:
        raise ValueError(f"batch_size={batch_size} must divide by the number of processes "
                         f"({process_count})")
    x = dataset.train if split == "train" else dataset.test
    y = dataset.train_labels if split == "train" else dataset.test_labels
    idx = batch_indices(step, n=len(x), batch_size=batch_size, seed=seed)
    share = batch_size // process_count
    idx = idx[process_index * share:(process_index + 1) * share]
    return {"x": x[idx]} if y is None else {"x": x[idx], "labels": y[idx]}


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
