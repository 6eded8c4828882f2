"""Commands on a trained run: sampling from its newest checkpoint, unconditionally or for chosen
classes (classifier-free guidance of a run trained with label dropout, or classifier guidance
by a classifier run)."""
import json
import math
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from models.score import bind
from samplers import classifier_free_guidance, classifier_guidance
from scorelab import distributed
from scorelab import posthoc_ema as posthoc
from scorelab.build import class_log_prob, is_classifier, logits_fn_for, null_label, score_fn_for
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError
from scorelab.data import to_host
from scorelab.loop import build, check_workdir
from scorelab.metrics.classifier import class_accuracy
from scorelab.pictures import save_samples
from scorelab.sampling import make_sample_fn
from scorelab.step import make_mesh, profile_names, replicated
from scorelab.workdir import checkpoint_manager, posthoc_manager, read_config, restore_best, \
    restore_latest_valid, snapshot_manager


def restore(workdir: pathlib.Path, mesh, *, method: str = ""):
    """(config, Run, state, step) of the newest valid checkpoint in `workdir`, replicated over
    `mesh`, with the sampler switched to `method` when given (and checked). A run with model
    selection (`training.select_every`) gives its best EMA parameters, and their step."""
    config = read_config(workdir)
    if method:
        config.sampling.method = method
    run = build(config)
    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    state, step = restore_latest_valid(manager, replicated(run.abstract, mesh), workdir,
                                       resuming=False)
    if state is None:
        raise FileNotFoundError(f"--workdir={workdir} holds no checkpoint")
    target = replicated(run.abstract.ema_params, mesh)
    best, best_step = restore_best(workdir, target)
    if best is not None:
        if distributed.is_writer():
            print(f"using the EMA parameters of lowest held-out loss, step {best_step}")
        state, step = state.replace(ema_params=best), best_step
    if (workdir / "ema" / "info.json").is_file():  # `train.py ema`: chosen after the fact
        info = json.loads((workdir / "ema" / "info.json").read_text())
        manager = posthoc_manager(workdir)
        params = manager.restore(info["step"], args=ocp.args.StandardRestore(target))
        if distributed.is_writer():
            print(f"using the post-hoc EMA of sigma_rel {info['sigma_rel']:g} at step "
                  f"{info['step']} (train.py ema)")
        state, step = state.replace(ema_params=params), info["step"]
    return config, run, state, step


def posthoc_ema(workdir: pathlib.Path, *, sigma_rel: float) -> dict:
    """Reconstructs the power-function EMA of relative length `sigma_rel` at the last snapshot
    from every snapshot of the run's tracked profiles (EDM2's least squares,
    `scorelab.posthoc_ema.solve`) and keeps it in <workdir>/ema, where every command reads it
    as the run's EMA; returns what was done (also in <workdir>/ema/info.json)."""
    workdir = check_workdir(workdir)
    config = read_config(workdir)
    names, tracked = profile_names(config), tuple(config.training.ema_profiles)
    if not tracked:
        raise ConfigError(f"--workdir={workdir} tracked no EMA profiles "
                          f"(training.ema_profiles=()): nothing to reconstruct from")
    try:
        gamma = posthoc.sigma_rel_to_gamma(sigma_rel)
    except ValueError as e:
        raise ConfigError(f"--sigma_rel: {e}") from None
    snapshots = snapshot_manager(workdir)
    steps = sorted(snapshots.all_steps())
    if not steps:
        raise ConfigError(f"--workdir={workdir} has no EMA snapshots yet (one is written every "
                          f"training.ema_snapshot_every={config.training.ema_snapshot_every} "
                          f"steps)")
    gammas = [posthoc.sigma_rel_to_gamma(s) for s in tracked]
    weights, residual = posthoc.solve([(t, g) for t in steps for g in gammas], steps[-1], gamma)
    run = build(config)
    abstract = {name: run.abstract.params for name in names}
    total, k = None, 0
    for t in steps:
        profiles = jax.device_get(snapshots.restore(t, args=ocp.args.StandardRestore(abstract)))
        for name in names:
            part = jax.tree_util.tree_map(lambda a: weights[k] * np.asarray(a, np.float64),
                                          profiles[name])
            total = part if total is None else jax.tree_util.tree_map(np.add, total, part)
            k += 1
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float32), total)
    info = {"sigma_rel": sigma_rel, "step": steps[-1], "snapshots": len(steps),
            "profiles": list(tracked), "residual": residual,
            "weights_abs_sum": float(np.abs(weights).sum())}
    if distributed.is_writer():
        manager = posthoc_manager(workdir)
        for old in manager.all_steps():
            manager.delete(old)
        manager.save(steps[-1], args=ocp.args.StandardSave(params))
        manager.wait_until_finished()
        (workdir / "ema" / "info.json").write_text(json.dumps(info, indent=1))
        print(f"post-hoc EMA of sigma_rel {sigma_rel:g} at step {steps[-1]} from {len(steps)} "
              f"snapshots of {list(tracked)} (profile residual {residual:.3g}) -> "
              f"{workdir / 'ema'}; every command now uses it")
    return info


def check_class_flags(label: str, guidance: float | None) -> None:
    """--class is '' (the run's default), 'all' or a class index; --guidance a number >= 0."""
    if label not in ("", "all") and not label.isdigit():
        raise ConfigError(f"--class must be a class index (0, 1, ...) or 'all', got {label!r}")
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise ConfigError(f"--guidance must be a finite number >= 0, got {guidance}")


def sample(workdir: pathlib.Path, *, method: str, num: int, seed: int, out: str,
           label: str = "", guidance: float | None = None, classifier: str = "") -> pathlib.Path:
    """`num` samples from the EMA parameters with `method` (or the run's sampler), drawn over
    every device (of every process); process 0 writes `out`.npz, `out`.png and `out`.json (by
    default under `workdir`/samples). Returns that stem.

    `label` ('all' or a class index) and `guidance` (the scale) choose classes: see
    `conditioning`. For digits the JSON holds the in-project classifier's accuracy on the
    requested classes."""
    check_class_flags(label, guidance)
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    mesh = make_mesh()
    config, run, state, step = restore(workdir, mesh, method=method)
    cond = conditioning(config, run, state, mesh, label=label, guidance=guidance,
                        classifier=classifier)
    sample_fn = make_sample_fn(config, run.model, run.sde, num, run.dataset.data_shape, mesh,
                               score_of=cond.score_of)
    x, nfe = sample_fn(cond.params, jax.random.key(seed))
    name = f"sample_step_{step}_{config.sampling.method}" + (
        f"_class_{label or 'all'}_guidance_{cond.how['guidance']:g}" if cond.labels_of else "")
    target = pathlib.Path(out) if out else workdir / "samples" / name
    x = to_host(x)
    # `nfe` counts score evaluations (the library's meaning), not network calls.
    figures = {"step": step, "num": num, "sampler": config.sampling.method, "nfe": int(nfe),
               "network_calls": cond.network_calls * int(nfe), **cond.how}
    if cond.classifier_calls:
        figures["classifier_gradient_calls"] = cond.classifier_calls * int(nfe)
    if cond.labels_of and "digit_classifier" in run.dataset.metrics:
        figures["class_accuracy"] = class_accuracy(x, cond.labels_of(num), run.dataset,
                                                   centered=config.data.centered)
    if distributed.is_writer():
        save_samples(x, target, is_image=run.dataset.is_image, centered=config.data.centered)
        target.with_suffix(".json").write_text(json.dumps(figures, indent=1))
        accuracy = (f", class accuracy {figures['class_accuracy']:.3f}"
                    if "class_accuracy" in figures else "")
        calls = (f", {figures['network_calls']} network calls" if cond.network_calls > 1
                 else "")
        print(f"{num} samples from step {step} with {config.sampling.method} (NFE {int(nfe)}"
              f"{calls}{accuracy}): {target}.npz, {target}.png")
    return target


class Conditioning(NamedTuple):
    """How `sample` draws from a run: `score_of(params, n)` is the score function of n draws
    (None: the run's own, unconditional), called with `params`."""
    score_of: Callable | None
    params: Any  # the run's EMA parameters; under classifier guidance (those, the classifier's)
    labels_of: Callable | None  # labels_of(n): the class of each of n draws; None: no classes
    how: dict  # what was drawn, for the results' JSON
    network_calls: int = 1  # score-network calls per score evaluation
    classifier_calls: int = 0  # classifier gradients per score evaluation


def conditioning(config, run, state, mesh, *, label: str, guidance: float | None,
                 classifier: str) -> Conditioning:
    """The `Conditioning` that `label`, `guidance` and `classifier` ask of this run:

    - A class-conditional run samples `label` (default: the classes in turn). Trained with
      label dropout, its score is classifier-free guided with scale `guidance` (default 1, the
      conditional score; each evaluation then costs two network calls unless the scale is 1).
    - An unconditional run with `classifier` (the workdir of a classifier run on the same SDE
      and data) is classifier-guided: score + guidance * grad log p_t(label | x).
    - An unconditional run without one samples unconditionally; `label` and `guidance` are
      refused.
    """
    cond = bool(config.model.conditional_classes)
    if not cond and not classifier:
        if label or guidance is not None:
            raise ConfigError("--class and --guidance need a class-conditional run or "
                              "--classifier=WORKDIR (a classifier run, e.g. trained with "
                              "configs/digits_classifier.py); this run is unconditional")
        return Conditioning(None, state.ema_params, None, {})
    if cond and classifier:
        raise ConfigError("--classifier guides an unconditional run; this run is "
                          "class-conditional (its own guidance is --guidance, when it was "
                          "trained with model.label_dropout > 0)")
    scale = 1.0 if guidance is None else guidance
    if classifier:
        c_config, c_run, c_state, _ = restore(check_workdir(classifier), mesh)
        check_classifier(config, run, c_config, c_run, classifier)
        num_classes = c_run.model.num_classes
    else:
        num_classes = config.model.conditional_classes
    if label not in ("", "all") and int(label) >= num_classes:
        raise ConfigError(f"--class must be in [0, {num_classes}) for this run, got {label}")
    labels_of = (lambda n: jnp.arange(n) % num_classes) if label in ("", "all") else (
        lambda n: jnp.full((n,), int(label)))
    score = lambda params, labels=None: bind(score_fn_for(config, run.model, run.sde,
                                                          labels=labels), params)
    how = {"classes": label or "all", "guidance": scale}
    if classifier:
        logits = logits_fn_for(c_config, c_run.model, c_run.sde)
        score_of = lambda params, n: classifier_guidance(
            score(params[0]), class_log_prob(logits, params[1], labels_of(n)), scale)
        return Conditioning(score_of, (state.ema_params, c_state.ema_params), labels_of, {
            **how, "method": "classifier guidance", "classifier": str(classifier)},
            classifier_calls=1)
    if scale == 1.0:
        score_of = lambda params, n: score(params, labels_of(n))
        return Conditioning(score_of, state.ema_params, labels_of,
                            {**how, "method": "conditional score"})
    if not config.model.label_dropout:
        raise ConfigError(f"--guidance={guidance}: this run was trained without label dropout "
                          f"(model.label_dropout=0), so it has no unconditional score to guide "
                          f"with; only --guidance=1 (the conditional score) is possible")
    score_of = lambda params, n: classifier_free_guidance(
        score(params, labels_of(n)), score(params, jnp.full((n,), null_label(config))), scale)
    return Conditioning(score_of, state.ema_params, labels_of,
                        {**how, "method": "classifier-free guidance"}, network_calls=2)


def check_classifier(config, run, c_config, c_run, path) -> None:
    """A classifier run guides a score run only if both perturb the same data the same way."""
    if not is_classifier(c_config):
        raise ConfigError(f"--classifier={path} is not a classifier run (its model.name is "
                          f"{c_config.model.name!r}; train one with model.name='classifier')")
    for field in ("sde", "data"):
        mine, theirs = config[field].to_dict(), c_config[field].to_dict()
        if mine != theirs:
            diff = {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys()
                    if mine.get(k) != theirs.get(k)}
            raise ConfigError(f"--classifier={path} was trained with another {field} section "
                              f"than this run (field: (this run, classifier)): {diff}")
