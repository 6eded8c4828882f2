"""Train a score model, checkpoint, resume, sample and evaluate.

    python train.py                                      # default config, workdir runs/default
    python train.py --config=configs/digits_ve.py --workdir=runs/ve --config.training.n_steps=500
    python train.py sample --workdir=runs/ve --sampler=ode --num=64

Re-running the same command resumes from the newest checkpoint in the workdir, along the same
trajectory as an uninterrupted run: batches, noise and dropout depend only on (seed, step).
Data parallel over every local device: the batch is sharded over a 1-D mesh, the state
replicated, and `jax.jit` inserts the gradient all-reduce. This is the only module that reads a
config; everything below it takes plain arguments.
"""
import functools
import json
import math
import pathlib
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags, logging
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags

import data
import evaluation
from models.mlp import MLP
from models.score import bind, make_score_fn
from models.unet import NCSNpp
from samplers import (CORRECTORS, ODE_SOLVERS, PREDICTORS, SDE_SOLVERS, bits_per_dim,
                      log_likelihood, ode_sample, pc_sample, sde_sample)
from sde import VESDE, VPSDE, discrete_dsm_loss, dsm_loss, subVPSDE

ROOT = pathlib.Path(__file__).resolve().parent
SDES = {"vpsde": (VPSDE, ("beta_min", "beta_max", "N")),
        "subvpsde": (subVPSDE, ("beta_min", "beta_max", "N")),
        "vesde": (VESDE, ("sigma_min", "sigma_max", "N"))}
SAMPLERS = ("pc", "sde", "ode")
UNET_FIELDS = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout",
               "resblock_type", "embedding_type", "fourier_scale", "fir", "skip_rescale",
               "progressive", "progressive_input", "init_scale")
# Fields that may change between the runs of one workdir (they do not change the trajectory).
RESUMABLE_CHANGES = ("training.n_steps", "training.log_every", "training.eval_every",
                     "training.checkpoint_every", "training.max_to_keep", "sampling", "eval")


class ConfigError(ValueError):
    """A config value that cannot work; raised before any training step."""


@struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    key: jax.Array  # the run's base key (raw uint32 data); per-step keys are fold_in(key, step)


# ---- config -> objects ----

def build_sde(config):
    if config.sde.name not in SDES:
        raise ConfigError(f"sde.name must be one of {list(SDES)}, got {config.sde.name!r}")
    cls, fields = SDES[config.sde.name]
    try:
        return cls(**{f: config.sde[f] for f in fields})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sde: {e}") from e


def load_data(config) -> data.Dataset:
    d = config.data
    return data.load(d.name, path=d.path, image_size=d.image_size, seed=config.seed,
                     num_train=d.num_train, num_test=d.num_test)


def build_model(config, dataset: data.Dataset):
    m = config.model
    num_classes = m.conditional_classes or None
    if num_classes and dataset.train_labels is None:
        raise ConfigError(f"model.conditional_classes={m.conditional_classes} needs labels, but "
                          f"data.name={config.data.name!r} has none")
    if m.name == "mlp":
        if dataset.is_image or num_classes:
            raise ConfigError("model.name='mlp' is for unconditional toy data (points); use "
                              "model.name='ncsnpp' for images")
        return MLP(hidden=m.hidden, depth=m.depth)
    if m.name == "ncsnpp":
        if not dataset.is_image:
            raise ConfigError("model.name='ncsnpp' is a U-Net for images; use model.name='mlp' "
                              "for toy points")
        return NCSNpp(**{f: m[f] for f in UNET_FIELDS}, num_classes=num_classes)
    raise ConfigError(f"model.name must be 'ncsnpp' or 'mlp', got {m.name!r}")


def build_optimizer(config):
    o = config.optim
    if not o.lr > 0 or not math.isfinite(o.lr):
        raise ConfigError(f"optim.lr must be a positive number, got {o.lr!r}")
    if o.warmup < 0 or o.grad_clip < 0:
        raise ConfigError(f"optim.warmup and optim.grad_clip must be >= 0, got "
                          f"{o.warmup!r} and {o.grad_clip!r}")
    schedule = optax.linear_schedule(0.0, o.lr, o.warmup) if o.warmup else o.lr
    adam = optax.adam(schedule, b1=o.beta1, eps=o.eps)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip else adam


def build_loss(config, sde):
    """loss(score_fn, params, x0, key) for the configured DSM variant."""
    t = config.training
    if t.loss == "continuous":
        return functools.partial(dsm_loss, sde, eps=t.eps, reduce_mean=t.reduce_mean,
                                 likelihood_weighting=t.likelihood_weighting,
                                 importance_sampling=t.importance_sampling)
    if t.loss == "discrete":
        return functools.partial(discrete_dsm_loss, sde, reduce_mean=t.reduce_mean)
    raise ConfigError(f"training.loss must be 'continuous' or 'discrete', got {t.loss!r}")


def score_fn_for(config, model, sde, *, train=False, dropout_key=None, labels=None):
    """`score_fn(params, x, t)` of the network: the parameterisation lives in models/score.py."""
    kwargs = {} if labels is None else {"labels": labels}
    if train:
        kwargs["rngs"] = {"dropout": dropout_key}

    def apply(params, x, c):
        return model.apply({"params": params}, x, c, train=train, **kwargs)
    return make_score_fn(apply, sde, parameterization=config.model.parameterization,
                         time_input=config.model.time_input,
                         continuous=config.training.loss == "continuous")


def check_config(config, num_devices: int):
    """Values that would only fail later, checked before anything is built or loaded."""
    t = config.training
    for name in ("batch_size", "n_steps", "log_every", "eval_every", "checkpoint_every",
                 "max_to_keep"):
        if not isinstance(t[name], int) or t[name] < 1:
            raise ConfigError(f"training.{name} must be a positive integer, got {t[name]!r}")
    if t.batch_size % num_devices:
        raise ConfigError(f"training.batch_size={t.batch_size} must be divisible by the number "
                          f"of devices ({num_devices})")
    if t.nonfinite not in ("error", "skip"):
        raise ConfigError(f"training.nonfinite must be 'error' or 'skip', got {t.nonfinite!r}")
    if not 0 <= config.model.ema_rate < 1:
        raise ConfigError(f"model.ema_rate must be in [0, 1), got {config.model.ema_rate!r}")
    s = config.sampling
    choices = {"method": SAMPLERS, "predictor": PREDICTORS, "corrector": CORRECTORS,
               "solver": ["", *(SDE_SOLVERS if s.method == "sde" else ODE_SOLVERS)]}
    for name, allowed in choices.items():
        if s[name] not in allowed:
            raise ConfigError(f"sampling.{name} must be one of {list(allowed)}, got {s[name]!r}")


# ---- state, train step, sharding ----

def init_state(config, model, tx, dataset, key) -> TrainState:
    k_init, k_run = jax.random.split(key)
    x = jnp.zeros((1,) + dataset.data_shape, jnp.float32)
    labels = {"labels": jnp.zeros((1,), jnp.int32)} if config.model.conditional_classes else {}
    params = model.init(k_init, x, jnp.zeros((1,)), **labels)["params"]
    ema = jax.tree_util.tree_map(jnp.copy, params)  # its own buffers: the state is donated
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=ema,
                      opt_state=tx.init(params), key=jax.random.key_data(k_run))


def train_step(state: TrainState, batch, *, config, model, sde, tx, loss_fn, is_image):
    """One optimiser step on a (global) batch; non-finite loss or gradients leave the state as
    it was (only the step advances) and are reported in the metrics."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    k_pre, k_loss, k_drop = jax.random.split(key, 3)
    x0 = data.preprocess(batch["x"], k_pre, is_image=is_image, centered=config.data.centered,
                         dequantize=config.data.dequantize, random_flip=config.data.random_flip)
    labels = batch["labels"] if config.model.conditional_classes else None
    score_fn = score_fn_for(config, model, sde, train=True, dropout_key=k_drop, labels=labels)
    loss, grads = jax.value_and_grad(lambda p: loss_fn(score_fn, p, x0, k_loss))(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    rate = config.model.ema_rate
    ema = jax.tree_util.tree_map(lambda e, p: rate * e + (1 - rate) * p, state.ema_params, params)
    new = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
    kept = state.replace(step=state.step + 1)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, kept)
    return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def make_mesh():
    # Auto axes: the compiler propagates shardings (jax.make_mesh defaults to Explicit ones).
    return jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))


def host_batch(dataset: data.Dataset, step: int, *, batch_size: int, seed: int, split="train"):
    """This process's slice of global batch `step` as numpy arrays."""
    x = dataset.train if split == "train" else dataset.test
    y = dataset.train_labels if split == "train" else dataset.test_labels
    idx = data.batch_indices(step, n=len(x), batch_size=batch_size, seed=seed)
    per_process = batch_size // jax.process_count()
    idx = idx[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]
    return {"x": x[idx]} if y is None else {"x": x[idx], "labels": y[idx]}


def shard_batch(batch, mesh):
    sharding = NamedSharding(mesh, P("data"))
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, a), batch)


# ---- sampling and evaluation ----


def generate(config, sde, score_fn, key, num: int, shape):
    """`num` samples in model space with the configured sampler; returns (x, nfe)."""
    s = config.sampling
    full = (num,) + tuple(shape)
    steps = s.num_steps or None
    if s.method == "pc":
        return pc_sample(sde, score_fn, full, key, predictor=s.predictor, corrector=s.corrector,
                         snr=s.snr, n_corrector_steps=s.n_corrector_steps, num_steps=steps,
                         eps=s.eps)
    if s.method == "sde":
        return sde_sample(sde, score_fn, full, key, solver=s.solver or "euler_maruyama",
                          num_steps=steps or 1000, eps=s.eps)
    return ode_sample(sde, score_fn, full, key, solver=s.solver or "tsit5",
                      num_steps=s.ode_num_steps or None, rtol=s.rtol, atol=s.atol, eps=s.eps,
                      denoise=True)


def sample_labels(config, num):
    n = config.model.conditional_classes
    return jnp.arange(num) % n if n else None


def evaluate(config, state, model, sde, loss_fn, dataset, workdir, step, eval_key):
    """Held-out loss, samples (PNG grid or scatter + npz), bits/dim or NLL, and for digits the
    Frechet distance and class coverage on the in-project classifier."""
    out = {}
    k_loss, k_sample, k_ll = jax.random.split(eval_key, 3)
    test = host_batch(dataset, 0, batch_size=min(len(dataset.test), 256), seed=1, split="test")
    x0 = data.preprocess(jnp.asarray(test["x"]), k_loss, is_image=dataset.is_image,
                         centered=config.data.centered)
    eval_score = score_fn_for(config, model, sde, labels=test["labels"]
                              if config.model.conditional_classes else None)
    out["eval/loss"] = float(loss_fn(eval_score, state.ema_params, x0, k_loss))

    num = config.sampling.num_samples
    num_fid = config.eval.num_fid if config.data.name == "digits" else 0
    total = max(num, num_fid)
    score = bind(score_fn_for(config, model, sde, labels=sample_labels(config, total)),
                 state.ema_params)
    x, nfe = jax.jit(lambda k: generate(config, sde, score, k, total, dataset.data_shape))(
        k_sample)
    out["eval/sample_nfe"] = int(nfe)
    evaluation.save_samples(x[:num], workdir / "samples" / f"step_{step:07d}",
                            is_image=dataset.is_image, centered=config.data.centered)
    if num_fid:
        out.update(evaluation.digit_metrics(
            data.to_uint8(x, centered=config.data.centered), dataset.train,
            dataset.train_labels, dataset.test, dataset.test_labels))
    if not dataset.is_image:
        out.update(evaluation.toy_metrics(config.data.name, np.asarray(x), dataset.test,
                                          jax.random.fold_in(eval_key, 1)))

    n_ll = min(config.eval.num_likelihood, len(dataset.test))
    if n_ll:
        labels = (jnp.asarray(dataset.test_labels[:n_ll]) if config.model.conditional_classes
                  else None)
        ll_score = bind(score_fn_for(config, model, sde, labels=labels), state.ema_params)
        test_x = jnp.asarray(dataset.test[:n_ll])
        if dataset.is_image:
            data_range = (-1.0, 1.0) if config.data.centered else (0.0, 1.0)
            bpd, _ = bits_per_dim(sde, ll_score, test_x, k_ll, data_range=data_range)
            out["eval/bpd"] = float(jnp.mean(bpd))
        else:
            logp, _, _ = log_likelihood(sde, ll_score, test_x, k_ll)
            out["eval/nll_nats"] = -float(jnp.mean(logp))
    return out


# ---- workdir, checkpoints, metrics ----

def resolve_config_file(workdir: pathlib.Path, config) -> None:
    """Writes the config beside the checkpoints, or checks it against the one already there.

    A workdir holds one run: a config that differs in anything but RESUMABLE_CHANGES is refused
    (nothing in the workdir is touched), so a typo cannot silently continue or overwrite a run.
    """
    path = workdir / "config.json"
    new = json.loads(config.to_json_best_effort())
    if path.exists():
        old = json.loads(path.read_text())
        diffs = [k for k in _flat(old).keys() | _flat(new).keys()
                 if _flat(old).get(k) != _flat(new).get(k)
                 and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)]
        if diffs:
            raise ConfigError(f"workdir {workdir} holds a run with a different config "
                              f"(fields {sorted(diffs)}); use a new --workdir, or delete it")
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=2, sort_keys=True))


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


def restore_latest_valid(manager, target, workdir):
    """(state, step) from the newest checkpoint that restores and is finite, or (None, 0) when
    there is none. Unreadable ones (truncated files, a missing item, another model's shapes)
    are skipped with a warning; if every checkpoint is unreadable the run stops rather than
    start again from scratch over them."""
    failures = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            state = manager.restore(step, args=ocp.args.StandardRestore(target))
            if int(state.step) != step or not all(
                    bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(
                        (state.params, state.ema_params))):
                raise ValueError(f"holds step {int(state.step)} or non-finite parameters")
        except Exception as e:  # orbax raises many types for damaged files
            failures.append(f"step {step}: {type(e).__name__}: {str(e)[:200]}")
            print(f"warning: checkpoint {step} in {workdir} cannot be restored "
                  f"({failures[-1]}); trying an older one", file=sys.stderr)
            continue
        print(f"resumed from step {step} in {workdir}")
        return state, step
    if failures:
        raise RuntimeError(f"no checkpoint in {workdir / 'checkpoints'} can be restored, and "
                           f"training will not start over them:\n" + "\n".join(failures))
    return None, 0


class MetricsLog:
    """metrics.jsonl (one line per logged step, never twice) and TensorBoard event files."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.path = workdir / "metrics.jsonl"
        if self.path.exists():  # drop what a killed run logged past its last checkpoint
            lines = [ln for ln in self.path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["step"] <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in lines))
        self._tb = None
        if jax.process_index() == 0:
            try:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(str(workdir / "tensorboard"))
            except ImportError:
                pass

    def write(self, step: int, values: dict):
        if jax.process_index() != 0:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()


# ---- the loop ----

def train(config, workdir: pathlib.Path):
    workdir = pathlib.Path(workdir).resolve()  # orbax needs absolute paths
    mesh = make_mesh()
    check_config(config, mesh.size)
    sde = build_sde(config)
    tx = build_optimizer(config)
    loss_fn = build_loss(config, sde)
    dataset = load_data(config)
    model = build_model(config, dataset)
    key = jax.random.key(config.seed)
    try:
        abstract = jax.eval_shape(lambda: init_state(config, model, tx, dataset, key))
    except (ValueError, TypeError) as e:  # e.g. an image size the U-Net cannot downsample
        raise ConfigError(f"model: {e}") from e
    resolve_config_file(workdir, config)

    replicated = NamedSharding(mesh, P())
    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    target = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), abstract)
    state, start = restore_latest_valid(manager, target, workdir)
    if state is None:
        state = jax.device_put(init_state(config, model, tx, dataset, key), replicated)
    log = MetricsLog(workdir, start)
    step_fn = jax.jit(functools.partial(train_step, config=config, model=model, sde=sde, tx=tx,
                                        loss_fn=loss_fn, is_image=dataset.is_image),
                      donate_argnums=0)
    state = run_loop(config, state, step_fn, manager, log, mesh, dataset, workdir, start,
                     functools.partial(evaluate, config, model=model, sde=sde, loss_fn=loss_fn,
                                       dataset=dataset, workdir=workdir))
    return state


def run_loop(config, state, step_fn, manager, log, mesh, dataset, workdir, start, eval_fn):
    """Steps from `start` to n_steps: logs, checkpoints, evaluates; SIGTERM saves and exits."""
    t = config.training
    stop = {"signal": None}
    previous = signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal=s))
    pending, tic, tic_step = [], time.perf_counter(), start
    progress = _progress(t.n_steps, start)
    try:
        for step in range(start, t.n_steps):
            batch = shard_batch(host_batch(dataset, step, batch_size=t.batch_size,
                                           seed=config.seed), mesh)
            state, metrics = step_fn(state, batch)
            pending.append(metrics)
            done = step + 1
            if done % t.log_every == 0 or done == t.n_steps or stop["signal"]:
                rate = (done - tic_step) / (time.perf_counter() - tic)
                values = _summarise(jax.device_get(pending), done, t.nonfinite)
                values["steps_per_sec"] = rate
                log.write(done, values)
                progress(done, values)
                pending, tic, tic_step = [], time.perf_counter(), done
            if done % t.checkpoint_every == 0 or done == t.n_steps or stop["signal"]:
                manager.save(done, args=ocp.args.StandardSave(state))
            if stop["signal"]:
                print(f"\nSIGTERM: saved step {done}, exiting")
                break
            if done % t.eval_every == 0 or done == t.n_steps:
                eval_key = jax.random.fold_in(jax.random.key(config.seed + 1), done)
                log.write(done, eval_fn(state, step=done, eval_key=eval_key))
    finally:
        manager.wait_until_finished()
        signal.signal(signal.SIGTERM, previous)
    return state


def _summarise(metrics: list, done: int, nonfinite: str) -> dict:
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


def _progress(total: int, start: int):
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=total, initial=start, dynamic_ncols=True, mininterval=1.0,
               file=sys.stdout) if tqdm and jax.process_index() == 0 else None

    def update(done, values):
        if bar is not None:
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=True)
            if done == total:
                bar.close()
    return update


# ---- sampling entry point ----

def restore_for_sampling(workdir: pathlib.Path):
    """(config, model, sde, dataset, EMA params) of the newest checkpoint in `workdir`."""
    path = workdir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"--workdir={workdir} holds no config.json: train there first")
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    sde, tx = build_sde(config), build_optimizer(config)
    dataset = load_data(config)
    model = build_model(config, dataset)
    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    abstract = jax.eval_shape(lambda: init_state(config, model, tx, dataset, jax.random.key(0)))
    state, step = restore_latest_valid(manager, abstract, workdir)
    if state is None:
        raise FileNotFoundError(f"--workdir={workdir} holds no checkpoint")
    return config, model, sde, dataset, state.ema_params, step


def sample(workdir: pathlib.Path, *, method: str, num: int, seed: int, out: str):
    workdir = pathlib.Path(workdir).resolve()
    config, model, sde, dataset, params, step = restore_for_sampling(workdir)
    if method:
        config.sampling.method = method
    check_config(config, 1)
    score = bind(score_fn_for(config, model, sde, labels=sample_labels(config, num)), params)
    x, nfe = jax.jit(lambda k: generate(config, sde, score, k, num, dataset.data_shape))(
        jax.random.key(seed))
    name = f"sample_step_{step}_{config.sampling.method}"
    target = pathlib.Path(out) if out else workdir / "samples" / name
    evaluation.save_samples(x, target, is_image=dataset.is_image, centered=config.data.centered)
    print(f"{num} samples from step {step} with {config.sampling.method} (NFE {int(nfe)}): "
          f"{target}.npz, {target}.png")


# ---- CLI ----

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "default.py"),
                                          "Config file (get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (checkpoints, metrics).")
_SAMPLER = flags.DEFINE_enum("sampler", "", ["", *SAMPLERS], "sample: sampler (default: config's).")
_NUM = flags.DEFINE_integer("num", 64, "sample: number of samples.")
_SEED = flags.DEFINE_integer("sample_seed", 0, "sample: seed of the sampler's key.")
_OUT = flags.DEFINE_string("out", "", "sample: output path without extension.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _MULTIHOST.value:
        jax.distributed.initialize()
    command = argv[1] if len(argv) > 1 else "train"
    workdir = pathlib.Path(_WORKDIR.value)
    if command == "train":
        train(_CONFIG.value, workdir)
    elif command == "sample":
        sample(workdir, method=_SAMPLER.value, num=_NUM.value, seed=_SEED.value, out=_OUT.value)
    else:
        raise app.UsageError(f"command must be 'train' or 'sample', got {command!r}")


if __name__ == "__main__":
    app.run(main)
