"""The run directory: its config file, its checkpoints and its metrics log.

    <workdir>/config.json     the resolved config (one run per workdir)
    <workdir>/checkpoints/    orbax: the whole TrainState at chosen steps
    <workdir>/best/           orbax: the EMA parameters of lowest held-out loss (select_every)
    <workdir>/metrics.jsonl   one line per logged step, never twice; TensorBoard in tensorboard/
    <workdir>/table.json      a table run's columns and their standardisation

With several processes, process 0 writes config.json, metrics and TensorBoard files; every
process takes part in orbax's saves and restores.
"""
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from scorelab import distributed
from scorelab.config import RESUMABLE_CHANGES, ConfigError, upgrade


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with, in today's layout."""
    path = workdir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"--workdir={workdir} holds no config.json: train there first")
    return ml_collections.ConfigDict(upgrade(json.loads(path.read_text())))


def resolve_config_file(workdir: pathlib.Path, config) -> None:
    """Writes the config beside the checkpoints, or checks it against the one already there.

    A workdir holds one run: a config that differs in anything but RESUMABLE_CHANGES is refused
    (nothing in the workdir is touched), so a typo cannot silently continue or overwrite a run.
    A v0.1 file is compared in today's layout, then rewritten in it.
    """
    path = workdir / "config.json"
    new = json.loads(config.to_json_best_effort())
    if path.exists():
        old, flat = _flat(upgrade(json.loads(path.read_text()))), _flat(new)
        diffs = [k for k in old.keys() | flat.keys()
                 if old.get(k) != flat.get(k)
                 and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)]
        if diffs:
            raise ConfigError(f"workdir {workdir} holds a run with a different config "
                              f"(fields {sorted(diffs)}); use a new --workdir, or delete it")
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2, sort_keys=True))


TABLE_FILE = "table.json"  # a table run's columns and standardisation


def save_table(workdir: pathlib.Path, stats) -> None:
    """Writes the table's columns and statistics on a run's first start; a resumed run must
    find the same ones (a changed file would change the scale the network learnt)."""
    path = workdir / TABLE_FILE
    if not path.exists():
        stats.save(path)
        return
    saved = type(stats).load(path)
    if saved.columns != stats.columns or not (np.allclose(saved.mean, stats.mean) and
                                              np.allclose(saved.std, stats.std)):
        raise ConfigError(f"{path}: the run was started on a table with other columns or "
                          f"statistics than data.path has now; restore the file or use a new "
                          f"--workdir")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def checkpoint_manager(workdir: pathlib.Path, max_to_keep: int):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=True)
    return ocp.CheckpointManager(workdir / "checkpoints", options=options)


def best_manager(workdir: pathlib.Path):
    """The one checkpoint of `training.select_every`: EMA parameters, at the step they had."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    return ocp.CheckpointManager(workdir / "best", options=options)


def snapshot_manager(workdir: pathlib.Path):
    """The post-hoc EMA snapshots (training.ema_snapshot_every): never pruned."""
    # its own barrier names: with several processes, two managers saving side by side would
    # otherwise wait on each other's barriers
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=True, enable_async_checkpointing=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix="ema_snapshots"))
    return ocp.CheckpointManager(workdir / "ema_snapshots", options=options)


def posthoc_manager(workdir: pathlib.Path):
    """The parameters `train.py ema` reconstructed, which every command then uses."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    return ocp.CheckpointManager(workdir / "ema", options=options)


def restore_best(workdir: pathlib.Path, target):
    """(EMA parameters, step) kept by model selection, or (None, None) where there are none."""
    if not (workdir / "best").is_dir():
        return None, None
    manager = best_manager(workdir)
    step = manager.latest_step()
    if step is None:
        return None, None
    return manager.restore(step, args=ocp.args.StandardRestore(target)), step


def restore_latest_valid(manager, target, workdir, *, resuming: bool = True):
    """(state, step) from the newest checkpoint that restores and is finite, or (None, 0) when
    there is none; prints "resumed from step N" (training) or "loaded step N" (`resuming=False`:
    a command that only reads the run). Unreadable ones (truncated files, a missing item,
    another model's shapes) are skipped with a warning; if every checkpoint is unreadable the run stops rather than
    start again from scratch over them.

    With several processes the step is agreed: all of them try the same steps in the same
    order and take the newest that every one of them restored.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if distributed.same_everywhere(str(steps)):
        raise RuntimeError(f"the processes see different checkpoints in {workdir}: is it one "
                           f"directory that every host mounts?")
    failures = []
    for step in steps:
        state, failure = None, None
        try:
            state = manager.restore(step, args=ocp.args.StandardRestore(target))
            if int(state.step) != step or not all(
                    bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(
                        (state.params, state.ema_params))):
                raise ValueError(f"holds step {int(state.step)} or non-finite parameters")
        except Exception as e:  # orbax raises many types for damaged files
            failure = f"step {step}: {type(e).__name__}: {str(e)[:200]}"
        if distributed.all_true(failure is None):
            if distributed.is_writer():
                print(f"{'resumed from' if resuming else 'loaded'} step {step} in {workdir}")
            return state, step
        failures.append(failure or f"step {step}: another process could not restore it")
        print(f"warning: checkpoint {step} in {workdir} cannot be restored ({failures[-1]}); "
              f"trying an older one", file=sys.stderr)
    if failures:
        raise RuntimeError(f"no checkpoint in {workdir / 'checkpoints'} can be restored, and "
                           f"training will not start over them:\n" + "\n".join(failures))
    return None, 0


class MetricsLog:
    """metrics.jsonl (one line per logged step, never twice) and TensorBoard event files."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.path = workdir / "metrics.jsonl"
        if distributed.is_writer() and self.path.exists():
            # Drop what a killed run logged past its last checkpoint.
            lines = [ln for ln in self.path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["step"] <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in lines))
        self._tb = None
        if distributed.is_writer():
            try:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(str(workdir / "tensorboard"))
            except ImportError:
                pass

    def last(self) -> dict:
        """Everything logged at the newest step (training and evaluation lines merged)."""
        if not self.path.exists():
            return {}
        lines = [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
        newest = max((ln["step"] for ln in lines), default=0)
        return {k: v for ln in lines if ln["step"] == newest for k, v in ln.items()}

    def write(self, step: int, values: dict):
        """Appends a line (process 0 only: the others' figures are the same)."""
        if not distributed.is_writer():
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
