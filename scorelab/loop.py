"""The training run: config -> data -> model -> loss -> train step -> checkpoints, and back.

`train(config, workdir)` checks the config, builds everything, restores the newest valid
checkpoint of `workdir` (or initialises) and runs the loop: log, checkpoint, evaluate; SIGTERM
saves and exits. Re-running it resumes along the same trajectory as an uninterrupted run.
"""
import contextlib
import functools
import pathlib
import signal
import time
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scorelab import data, distributed
from scorelab.build import build_model, build_objective, build_optimizer, build_sde, \
    is_classifier
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError, check_eval, check_training
from scorelab.evaluate import Selection, make_evaluator, say
from scorelab.progress import Progress
from scorelab.sampling import check_sampling
from scorelab.step import TrainState, init_state, make_mesh, replicated, train_step
from scorelab.workdir import TABLE_FILE, MetricsLog, checkpoint_manager, \
    resolve_config_file, restore_latest_valid, save_table, snapshot_manager


def load_data(config) -> data.Dataset:
    d = config.data
    return data.load(d.name, path=d.path, image_size=d.image_size, seed=config.seed,
                     num_train=d.num_train, num_test=d.num_test, window=d.window,
                     stream=d.stream)


class Run(NamedTuple):
    """Everything a config describes; `abstract` is the train state's shapes (no FLOPs)."""
    sde: object
    tx: object
    dataset: data.Dataset
    model: object
    objective: object  # scorelab.build.build_objective
    abstract: TrainState


def build(config) -> Run:
    """Builds and checks a config in order of cost: its values, then the data, then the
    network's shapes and the sampler, so every mistake surfaces before training starts."""
    sde, tx = build_sde(config), build_optimizer(config)
    dataset = load_data(config)
    model = build_model(config, dataset)
    table = dataset.table
    objective = build_objective(config, sde, model, table.dim_columns if table is not None and
                                table.categorical else None)
    if not is_classifier(config):
        check_sampling(config, sde, dataset.data_shape)
    try:
        abstract = jax.eval_shape(
            lambda: init_state(config, model, tx, dataset, jax.random.key(config.seed)))
    except (ValueError, TypeError) as e:  # e.g. an image size the U-Net cannot downsample
        raise ConfigError(f"model: {e}") from e
    return Run(sde, tx, dataset, model, objective, abstract)


def train(config, workdir: pathlib.Path) -> TrainState:
    """Trains to `training.n_steps` in `workdir`; returns the final TrainState.

    With several processes (`scorelab.distributed.start`) every process calls it with the
    same config and workdir, a directory all of them see; process 0 writes the files.
    """
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    mesh = make_mesh()
    check_training(config, mesh.size)
    check_eval(config)
    differ = distributed.same_everywhere(config.to_json_best_effort(sort_keys=True))
    if differ:
        raise ConfigError(f"processes {differ} were started with a config that differs from "
                          f"process 0's: launch every process with the same flags")
    run = build(config)
    distributed.on_writer(lambda: resolve_config_file(workdir, config),
                          f"checking {workdir / 'config.json'}")
    if run.dataset.table is not None:
        distributed.on_writer(lambda: save_table(workdir, run.dataset.table),
                              f"checking {workdir / TABLE_FILE}")
    if not distributed.all_true((workdir / "config.json").exists()):
        raise ConfigError(f"--workdir={workdir} is not one directory that every process sees "
                          f"(process 0 wrote config.json there, and another cannot read it): "
                          f"put it on a filesystem all hosts mount")

    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    state, start = restore_latest_valid(manager, replicated(run.abstract, mesh), workdir)
    if state is None:
        state = jax.device_put(init_state(config, run.model, run.tx, run.dataset,
                                          jax.random.key(config.seed)), NamedSharding(mesh, P()))
    log = MetricsLog(workdir, start)
    step_fn = jax.jit(functools.partial(train_step, config=config, tx=run.tx,
                                        objective=run.objective,
                                        is_image=run.dataset.is_image), donate_argnums=0)
    evaluator = make_evaluator(config, run, workdir, mesh) if config.training.eval_every else None
    selection = (Selection(config, run, workdir, mesh, replicated(run.abstract.ema_params, mesh))
                 if config.training.select_every else None)
    snapshots = snapshot_manager(workdir) if config.training.ema_profiles else None
    state = run_loop(config, state, step_fn, manager, log, mesh, run.dataset, start, evaluator,
                     selection, snapshots)
    if distributed.is_writer():
        report(workdir, log)
    return state


def check_workdir(workdir) -> pathlib.Path:
    """The workdir as an absolute path (orbax needs one); object-store URLs are refused."""
    if "://" in str(workdir):
        raise ConfigError(f"--workdir={workdir}: object-store URLs are not supported; use a "
                          f"directory on a filesystem every host mounts (NFS, Lustre, a GCS "
                          f"FUSE mount)")
    return pathlib.Path(workdir).resolve()


def run_loop(config, state, step_fn, manager, log, mesh, dataset, start, evaluator,
             selection=None, snapshots=None):
    """Steps from `start` to n_steps: logs, checkpoints, evaluates, keeps the best parameters
    (`evaluate.Selection`); SIGTERM saves and exits."""
    t = config.training
    batches = data.DeviceBatches(dataset, mesh, start=start, batch_size=t.batch_size,
                                 seed=config.seed, workers=config.data.num_workers,
                                 stop=t.n_steps)
    pending, tic, tic_step, waited = [], time.perf_counter(), start, 0.0
    # snapshots already saved (a resumed run recomputes them identically and keeps these); read
    # once, so every process takes the same decisions
    saved = set(snapshots.all_steps()) if snapshots is not None else set()
    progress = Progress(t.n_steps, desc="training", unit="step", initial=start)
    with _preemption() as preempted:
        try:
            for step in range(start, t.n_steps):
                state, metrics = step_fn(state, next(batches))
                pending.append(metrics)
                done = step + 1
                stop = preempted(done)
                if done % t.log_every == 0 or done == t.n_steps or stop:
                    values = summarise(jax.device_get(pending), done, t.nonfinite)
                    elapsed = time.perf_counter() - tic
                    values["steps_per_sec"] = (done - tic_step) / elapsed
                    # The share of the interval the loop spent waiting for its next batch.
                    values["data_wait_fraction"] = (batches.wait_s - waited) / elapsed
                    log.write(done, values)
                    progress.update(done, f"loss={values['loss']:.4f}")
                    pending, tic, tic_step, waited = [], time.perf_counter(), done, batches.wait_s
                if done % t.checkpoint_every == 0 or done == t.n_steps or stop:
                    manager.save(done, args=ocp.args.StandardSave(state))
                if snapshots is not None and (done % t.ema_snapshot_every == 0
                                              or done == t.n_steps) and done not in saved:
                    snapshots.save(done, args=ocp.args.StandardSave(state.ema_profiles))
                if stop:
                    say(f"\nSIGTERM: saved step {done}, exiting")
                    break
                if evaluator is not None and (done % t.eval_every == 0 or done == t.n_steps):
                    eval_key = jax.random.fold_in(jax.random.key(config.seed + 1), done)
                    log.write(done, evaluator(state.ema_params, step=done, eval_key=eval_key))
                if selection is not None and (done % t.select_every == 0 or done == t.n_steps):
                    log.write(done, selection(state.ema_params, done))
                    if done == t.n_steps and evaluator is not None and selection.step != done:
                        # what the commands will use: the kept parameters, as "best/..."
                        eval_key = jax.random.fold_in(jax.random.key(config.seed + 1), done)
                        figures = evaluator(selection.params(), step=selection.step,
                                            eval_key=eval_key)
                        log.write(done, {"best/" + k[5:]: v for k, v in figures.items()})
        finally:
            batches.close()
            manager.wait_until_finished()
            if snapshots is not None:
                snapshots.wait_until_finished()
            if selection is not None:
                selection.close()
    return state


@contextlib.contextmanager
def _preemption():
    """`preempted(step)`: whether to save `step` and stop, because of a SIGTERM.

    One process: our own SIGTERM handler. Several: JAX's preemption service, which hears a
    SIGTERM on any host and names one step at which every process returns True, so all of
    them enter the same save (a save that only some enter would hang the rest).
    """
    if jax.process_count() > 1:
        yield multihost_utils.reached_preemption_sync_point
        return
    signals = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: signals.append(s))
    try:
        yield lambda step: bool(signals)
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(workdir: pathlib.Path, log) -> None:
    """The run's last figures and where its results are."""
    last = log.last()
    figures = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                        if k not in ("step", "steps_per_sec", "skipped_steps",
                                     "data_wait_fraction")
                        and "time_" not in k)
    samples = sorted((workdir / "samples").glob("step_*.png"))
    say(f"done at step {last.get('step', 0)}: {figures}\n"
        + (f"  samples:     {samples[-1]}\n" if samples else "")
        + f"  metrics:     {log.path}\n"
        f"  checkpoints: {workdir / 'checkpoints'}")


def summarise(metrics: list, done: int, nonfinite: str) -> dict:
    """Mean loss over the interval; a non-finite step stops training (nonfinite='error')."""
    finite = np.array([m["finite"] for m in metrics])
    if not finite.all():
        bad = done - len(metrics) + int(np.argmin(finite)) + 1
        if nonfinite == "error":
            raise FloatingPointError(
                f"non-finite loss or gradient at step {bad}: that update and any later "
                f"non-finite ones were not applied and nothing non-finite was saved; set "
                f"training.nonfinite='skip' to drop such steps and continue")
    losses = np.array([m["loss"] for m in metrics])[finite]
    return {"loss": float(losses.mean()) if len(losses) else float("nan"),
            "grad_norm": float(np.mean([m["grad_norm"] for m in metrics])),
            "skipped_steps": int((~finite).sum())}
