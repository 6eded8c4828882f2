"""Several processes, one per host, through JAX's multi-controller runtime.

Every process runs the same program on one global mesh over all hosts' devices. `start` checks
a launch and connects the processes before any work; the rest are the few agreements the
training run needs between them:

- one writer: process 0 writes every file (config, metrics, samples, user caches), everyone
  takes part in orbax's checkpoint saves and restores (`on_writer`, `barrier`);
- one decision: a value decided on one process, or a yes that must hold on all (`all_true`,
  `same_everywhere`).

With a single process every function here is free: no collective runs.
"""
import hashlib
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils


class LaunchError(ValueError):
    """A launch that cannot work: raised before any process connects or computes."""


def check_launch(*, coordinator_address, num_processes, process_id, multihost) -> bool:
    """Whether the launch is multi-process; raises LaunchError for an inconsistent one."""
    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                "process_id": process_id}
    given = [k for k, v in explicit.items() if v is not None]
    if multihost and given:
        raise LaunchError(f"--multihost detects the cluster itself (SLURM, Cloud TPU, Open "
                          f"MPI); it cannot be combined with --{', --'.join(given)}")
    if multihost:
        return True
    if not given:
        return False
    if len(given) < 3:
        missing = sorted(explicit.keys() - set(given))
        raise LaunchError(f"--{', --'.join(given)} given without --{', --'.join(missing)}: a "
                          f"multi-process launch needs all three")
    host, sep, port = coordinator_address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise LaunchError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT")
    if num_processes < 1:
        raise LaunchError(f"--num_processes={num_processes} must be at least 1")
    if not 0 <= process_id < num_processes:
        raise LaunchError(f"--process_id={process_id} must be in [0, {num_processes}) for "
                          f"--num_processes={num_processes}")
    return True


def probe(address: str, timeout_s: float) -> None:
    """Waits up to `timeout_s` for `address` (HOST:PORT) to accept a TCP connection: JAX's
    own wait ends in a bare DEADLINE_EXCEEDED that names no address."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise LaunchError(f"the coordinator --coordinator_address={address} did not "
                                  f"answer within {timeout_s:.0f} s ({e}); start process 0 "
                                  f"there, or check the address and the firewall") from e
            time.sleep(0.5)


def start(*, coordinator_address=None, num_processes=None, process_id=None, multihost=False,
          initialization_timeout: int = 300, heartbeat_timeout: int = 100) -> None:
    """Connects this process to the others (jax.distributed.initialize), or does nothing for a
    single-process launch. A process that stops answering for `heartbeat_timeout` seconds
    makes JAX end all the others."""
    if not check_launch(coordinator_address=coordinator_address, num_processes=num_processes,
                        process_id=process_id, multihost=multihost):
        return
    if coordinator_address is not None and process_id != 0:
        probe(coordinator_address, initialization_timeout)
    timeouts = dict(initialization_timeout=initialization_timeout,
                    heartbeat_timeout_seconds=heartbeat_timeout,
                    shutdown_timeout_seconds=heartbeat_timeout)
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **timeouts)
    except ValueError as e:  # --multihost outside a cluster JAX recognises
        raise LaunchError(f"--multihost: JAX found no cluster environment it recognises "
                          f"(SLURM, Cloud TPU, Open MPI) ({e}); give --coordinator_address, "
                          f"--num_processes and --process_id instead") from e


def is_writer() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (e.g. after process 0 wrote a file)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def on_writer(fn, what: str, *, like=None):
    """fn() on process 0 alone, the others waiting for it. Returns its result there, and
    elsewhere None, or, given `like` (a pytree of arrays or ShapeDtypeStructs of the result's
    shapes), the result sent from process 0. When fn raises, every process stops: process 0
    with its exception, the others with a RuntimeError that points to it."""
    if jax.process_count() == 1:
        return fn()
    result, error = None, None
    if is_writer():
        try:
            result = fn()
        except Exception as e:  # re-raised below, after the others have heard of it
            error = e
    failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"process 0 failed while {what}: its output says why")
    if like is not None:
        mine = result if is_writer() else jax.tree_util.tree_map(
            lambda a: np.zeros(a.shape, a.dtype), like)
        result = jax.device_get(multihost_utils.broadcast_one_to_all(mine))
    return result


def all_true(flag: bool) -> bool:
    """True when `flag` is true on every process."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.all(multihost_utils.process_allgather(np.int32(bool(flag)))))


def same_everywhere(text: str) -> list[int]:
    """The processes whose `text` differs from process 0's (empty when all agree)."""
    if jax.process_count() == 1:
        return []
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int64)
    digests = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1)
    return [i for i, d in enumerate(digests) if d != digests[0]]
