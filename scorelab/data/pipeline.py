"""From a data set to the accelerator: the batch order, each process's slice, preprocessing.

`batch_indices(step, ...)` is a pure function of the step, so a resumed run reads the same
batches as an uninterrupted one. `host_batch` is the slice of a global batch that one process
feeds (all of it with one process). `preprocess` (dequantisation, flips, scaling) is a pure
function of the batch and a key that runs inside the jitted train step. `DeviceBatches` feeds
the devices: resident small data sets, or a prefetching thread.
"""
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


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


def shard_batch(batch, mesh):
    """This process's numpy batch as its part of a global array sharded over the mesh."""
    sharding = NamedSharding(mesh, P("data"))
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, a), batch)


class DeviceBatches:
    """Global training batches `start, start + 1, ...` as arrays sharded over `mesh`'s "data"
    axis, each process materialising only its own rows.

    A training split of at most `resident_bytes` is put on the devices once (replicated), and
    a batch is gathered there from indices computed on the host: no per-step copy at all.
    Larger ones are gathered on the host by a background thread `prefetch` steps ahead and
    transferred while the current step runs. `wait_s` adds up the time `next` spent waiting.
    """

    def __init__(self, dataset, mesh, *, start: int, batch_size: int, seed: int,
                 prefetch: int = 2, resident_bytes: int = 256 * 2**20):
        self.dataset, self.mesh, self.step = dataset, mesh, start
        self.batch_size, self.seed, self.wait_s = batch_size, seed, 0.0
        self.sharded = NamedSharding(mesh, P("data"))
        arrays = {"x": dataset.train}
        if dataset.train_labels is not None:
            arrays["labels"] = dataset.train_labels
        self.resident = sum(a.nbytes for a in arrays.values()) <= resident_bytes
        if self.resident:
            self.arrays = jax.device_put(arrays, NamedSharding(mesh, P()))
            self.gather = jax.jit(lambda arrays, idx: jax.tree_util.tree_map(
                lambda a: a[idx], arrays), out_shardings=self.sharded)
        else:
            self.queue = queue.Queue(maxsize=prefetch)
            self.stopped = threading.Event()
            self.thread = threading.Thread(target=self._fill, daemon=True)
            self.thread.start()

    def _host(self, step: int) -> dict:
        return host_batch(self.dataset, step, batch_size=self.batch_size, seed=self.seed,
                          process_index=jax.process_index(), process_count=jax.process_count())

    def _fill(self):
        step = self.step
        try:
            while not self.stopped.is_set():
                self._put(shard_batch(self._host(step), self.mesh))
                step += 1
        except BaseException as e:  # surfaces in the training loop, not lost in the thread
            self._put(e)

    def _put(self, item):
        while not self.stopped.is_set():
            try:
                return self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue

    def __next__(self) -> dict:
        tic = time.perf_counter()
        if self.resident:
            idx = batch_indices(self.step, n=len(self.dataset.train),
                                batch_size=self.batch_size, seed=self.seed)
            batch = self.gather(self.arrays, idx)
        else:
            batch = self.queue.get()
            if isinstance(batch, BaseException):
                raise batch
        self.step += 1
        self.wait_s += time.perf_counter() - tic
        return batch

    def close(self):
        if not self.resident:
            self.stopped.set()
            self.thread.join()
