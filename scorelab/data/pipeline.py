"""From a data set to the accelerator: the batch order, each process's rows, preprocessing.

`batch_indices(step, ...)` is a pure function of the step, so a resumed run reads the same
batches as an uninterrupted one, on any process count. A global batch is placed by its
sharding's index map, so each process reads and transfers only the rows its own devices hold
(`local_rows`, `StepRows`, `put_global`), and `to_host` gathers results back. In-memory data
sets are numpy arrays every process holds; prepared records (`scorelab.data.records`) are read
row by row.
`preprocess` (dequantisation, flips, scaling) is a pure function of the batch and a key that
runs inside the jitted train step. `DeviceBatches` feeds the devices: resident small data
sets, or a prefetching thread.
"""
import functools
import os
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


class StepRows:
    """grain's transform of a step to this process's rows of global batch `step` (decoded:
    a `Records` array reads only those), {"x": ..., "labels": ...} in the order of `rows`.
    It pickles (the arrays and records with it), so grain's worker processes can run it."""

    def __init__(self, arrays: dict, rows: np.ndarray, *, batch_size: int, seed: int):
        self.arrays, self.rows, self.batch_size, self.seed = arrays, rows, batch_size, seed

    def __call__(self, step: int) -> dict:
        idx = batch_indices(int(step), n=len(self.arrays["x"]), batch_size=self.batch_size,
                            seed=self.seed)[self.rows]
        return {k: a[idx] for k, a in self.arrays.items()}


def exit_with_parent(parent: int, *_) -> None:
    """Run in each grain worker: exits it once `parent` (the training process) is gone, also
    after a SIGKILL that gave the parent no chance to stop its workers."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def local_rows(sharding, batch_size: int, devices=None) -> np.ndarray:
    """The rows of a (batch_size, ...) array that `devices` (default: this process's) hold,
    in order."""
    index = sharding.devices_indices_map((batch_size,))
    devices = sharding.addressable_devices if devices is None else set(devices)
    return np.unique(np.concatenate([np.arange(batch_size)[i[0]] for d, i in index.items()
                                     if d in devices]))


class DeviceBatches:
    """Global training batches `start, start + 1, ...` as arrays sharded over `mesh`'s "data"
    axis, each process materialising only its own rows.

    An in-memory training split of at most `resident_bytes` is put on the devices once
    (replicated), and a batch is gathered there from indices computed on the host: no per-step
    copy at all. Larger ones, and `Records` always, are read by grain: a `MapDataset` over the
    steps whose element is this process's rows of that step's batch (`StepRows`), decoded in
    `workers` spawned processes (0: in this one) `prefetch` steps ahead, and a background thread
    transfers each to the devices while the current step runs. The state to resume is the step
    alone. `wait_s` adds up the time `next` spent waiting.
    """

    def __init__(self, dataset, mesh, *, start: int, batch_size: int, seed: int,
                 prefetch: int = 2, resident_bytes: int = 256 * 2**20, workers: int = 0,
                 stop: int = 2**40):
        self.dataset, self.mesh, self.step = dataset, mesh, start
        self.batch_size, self.seed, self.wait_s = batch_size, seed, 0.0
        self.sharded = NamedSharding(mesh, P("data"))
        arrays = _split(dataset, "train")
        self.replicated = NamedSharding(mesh, P())
        self.resident = isinstance(arrays["x"], np.ndarray) and sum(
            a.nbytes for a in arrays.values()) <= resident_bytes
        if self.resident:
            self.arrays = put_global(arrays, self.replicated)
            self.gather = jax.jit(lambda arrays, idx: jax.tree_util.tree_map(
                lambda a: a[idx], arrays), out_shardings=self.sharded)
        else:
            import grain

            self.rows = local_rows(self.sharded, batch_size)
            steps = grain.MapDataset.range(start, stop).map(
                StepRows(arrays, self.rows, batch_size=batch_size, seed=seed)).to_iter_dataset()
            if workers:
                from absl import flags

                if not flags.FLAGS.is_parsed():  # grain reads its absl flags in mp_prefetch
                    flags.FLAGS.mark_as_parsed()
                steps = steps.mp_prefetch(grain.MultiprocessingOptions(
                    num_workers=workers, per_worker_buffer_size=prefetch),
                    worker_init_fn=functools.partial(exit_with_parent, os.getpid()))
            self.steps = iter(steps)
            self.queue = queue.Queue(maxsize=prefetch)
            self.stopped = threading.Event()
            self.thread = threading.Thread(target=self._fill, daemon=True)
            self.thread.start()

    def _fill(self):
        position = {int(r): i for i, r in enumerate(self.rows)}

        def block(a, index):  # a device's block of the batch, from this process's rows
            rows = np.arange(self.batch_size)[index[0]]
            first = position[int(rows[0])]
            return a[first:first + len(rows)][(slice(None), *index[1:])]
        try:
            while not self.stopped.is_set():
                local = next(self.steps)
                self._put({k: jax.make_array_from_callback(
                    (self.batch_size, *a.shape[1:]), self.sharded,
                    lambda index, a=a: block(a, index)) for k, a in local.items()})
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
            close = getattr(self.steps, "close", None)
            if close is not None:
                close()
