"""From a data set to the accelerator: the batch order, each process's rows, preprocessing.

`batch_indices(step, ...)` is a pure function of the step, so a resumed run reads the same
batches as an uninterrupted one. Every process holds the whole data set on the host; a global
batch is placed by its sharding's index map, so each process reads and transfers only the rows
its own devices hold (`global_batch`, `put_global`), and `to_host` gathers results back.
`preprocess` (dequantisation, flips, scaling) is a pure function of the batch and a key that
runs inside the jitted train step. `DeviceBatches` feeds the devices: resident small data
sets, or a prefetching thread.
"""
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
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


def _split(dataset, split: str):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = ((dataset.train, dataset.train_labels) if split == "train"
            else (dataset.test, dataset.test_labels))
    return {"x": x} if y is None else {"x": x, "labels": y}


def host_batch(dataset, step: int, *, batch_size: int, seed: int, split: str = "train") -> dict:
    """Global batch `step` as numpy arrays {"x": ..., "labels": ...} ("labels" only when the
    data set has them)."""
    arrays = _split(dataset, split)
    idx = batch_indices(step, n=len(arrays["x"]), batch_size=batch_size, seed=seed)
    return {k: a[idx] for k, a in arrays.items()}


def global_batch(dataset, step: int, sharding, *, batch_size: int, seed: int,
                 split: str = "train") -> dict:
    """Global batch `step` as arrays with `sharding` (over the batch axis). Each process reads
    only the rows its own devices hold, as the sharding's index map names them (device order
    need not follow process order), so the batch is the same whatever the process count."""
    arrays = _split(dataset, split)
    idx = batch_indices(step, n=len(arrays["x"]), batch_size=batch_size, seed=seed)
    return {k: jax.make_array_from_callback((batch_size, *a.shape[1:]), sharding,
                                            lambda index, a=a: a[idx[index[0]]][:, *index[1:]])
            for k, a in arrays.items()}


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


def to_uint8(x, *, centered: bool = True):
    """Model-space images back to uint8 (clipped); a jax.Array stays on its devices."""
    xp = jnp if isinstance(x, jax.Array) else np
    x = (x + 1) / 2 if centered else x
    return xp.clip(xp.round(x * 255), 0, 255).astype(xp.uint8)


def put_global(tree, sharding):
    """Host arrays that every process holds in full -> global arrays with `sharding`, each
    process transferring only the blocks its own devices hold."""
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda index: a[index]),
        tree)


def shard_batch(batch, mesh):
    """A global batch held in full on the host -> arrays sharded over the mesh's "data" axis."""
    return put_global(batch, NamedSharding(mesh, P("data")))


def to_host(x) -> np.ndarray:
    """All of a global array as numpy, on every process (a collective when it spans several
    processes: every process must call it)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


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
        arrays = _split(dataset, "train")
        self.replicated = NamedSharding(mesh, P())
        self.resident = sum(a.nbytes for a in arrays.values()) <= resident_bytes
        if self.resident:
            self.arrays = put_global(arrays, self.replicated)
            self.gather = jax.jit(lambda arrays, idx: jax.tree_util.tree_map(
                lambda a: a[idx], arrays), out_shardings=self.sharded)
        else:
            self.queue = queue.Queue(maxsize=prefetch)
            self.stopped = threading.Event()
            self.thread = threading.Thread(target=self._fill, daemon=True)
            self.thread.start()

    def _fill(self):
        step = self.step
        try:
            while not self.stopped.is_set():
                self._put(global_batch(self.dataset, step, self.sharded,
                                       batch_size=self.batch_size, seed=self.seed))
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
            batch = self.gather(self.arrays, put_global(idx, self.replicated))
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
