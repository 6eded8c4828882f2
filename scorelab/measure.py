"""`train.py evaluate` and `train.py fid-stats`: the sample metrics of a run at the scale papers
report them, resumable, and the reference files they are measured against.

`evaluate` draws `num` samples in batches of `batch_size` from the run's EMA parameters (batch
i with the key fold_in(key(seed), i)), keeps only each batch's features, one file per batch in
the output directory (written whole or not at all), and at the end computes the metrics from
all of them. Re-running the same command skips the batches already there, so an interrupted
evaluation resumes where it stopped and reports what an uninterrupted one reports; a directory
of another evaluation (another step, sampler, seed, count or reference) is refused, never mixed.
"""
import json
import os
import pathlib

import jax
import numpy as np

from scorelab import distributed
from scorelab.commands import restore
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError
from scorelab.evaluate import batch_sizes, concatenate
from scorelab.loop import check_workdir, load_data
from scorelab.metrics import METRICS, inception
from scorelab.metrics.standard import (InceptionMetrics, dataset_reference, load_inception,
                                       load_reference)
from scorelab.progress import Progress
from scorelab.sampling import SAMPLERS, make_sample_fn
from scorelab.step import make_mesh

SPLITS = ("train", "test")


def check_inception_args(inception_path: str, resize: str) -> str:
    """The weights file that --inception_path (or $SCORELAB_INCEPTION) names, or '' for none;
    --resize checked."""
    if resize not in inception.RESIZE:
        raise ConfigError(f"--resize must be one of {list(inception.RESIZE)}, got {resize!r}")
    path = inception_path or os.environ.get(inception.ENV, "")
    if path:
        try:
            return str(inception.weights_path(path))
        except FileNotFoundError as e:
            raise ConfigError(f"--inception_path: {e}") from None
    return ""


def fid_stats(config, *, output: str, split: str, inception_path: str, resize: str) -> dict:
    """Writes the reference file of the config's data set (`split`, every image in order) to
    `output`; returns its meta."""
    if not output.endswith(".npz") or not pathlib.Path(output).resolve().parent.is_dir():
        raise ConfigError(f"--output must be an .npz path in an existing directory, got "
                          f"{output!r}")
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {list(SPLITS)}, got {split!r}")
    path = check_inception_args(inception_path, resize)
    if not path:
        raise ConfigError(f"fid-stats needs the FID Inception weights: --inception_path or "
                          f"${inception.ENV}")
    dataset = load_data(config)
    if not dataset.is_image:
        raise ConfigError(f"data.name={config.data.name!r} is not an image data set")
    images = dataset.train if split == "train" else dataset.test
    params = load_inception(path)
    progress = Progress(len(images), desc="fid-stats", unit="image")
    reference = dataset_reference(
        params, images, resize=resize, path=output,
        source=f"{config.data.name} {split} split, image_size "
               f"{config.data.image_size or 'native'}",
        progress=lambda n: progress.update(progress.done + n))
    if distributed.is_writer():
        score = reference["meta"]["inception_score"]
        print(f"{len(images)} images -> {output} (resize {resize}; their Inception Score "
              f"{score[0]:.3f} +- {score[1]:.3f})")
    return reference["meta"]


def evaluate(workdir, *, num: int, sampler: str, seed: int, batch_size: int,
             inception_path: str, reference: str, resize: str, out: str) -> dict:
    """The metrics of `num` samples of the run in `workdir` (see the module docstring); writes
    <out>/metrics.json (default out: <workdir>/eval/<sampler>_n<num>_seed<seed>) and returns
    it."""
    if num < 2 or batch_size < 1:
        raise ConfigError(f"--num must be >= 2 and --batch_size >= 1, got {num} and "
                          f"{batch_size}")
    if sampler and sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    weights = check_inception_args(inception_path, resize)
    if reference and not weights:
        raise ConfigError("--reference needs the Inception weights (--inception_path)")
    ref = load_reference(reference) if reference else None
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    mesh = make_mesh()
    config, run, state, step = restore(workdir, mesh, method=sampler)
    dataset, method = run.dataset, config.sampling.method
    metrics = {name: METRICS[name] for name in dataset.metrics}
    if weights:
        params = load_inception(weights, mesh)
        if ref is None:
            ref = dataset_reference(params, dataset.train, resize=resize,
                                    source=f"{config.data.name} training split")
        metrics["inception"] = InceptionMetrics(params, ref, resize=resize)
    if not metrics:
        raise ConfigError(f"data.name={config.data.name!r} has no sample metrics; give "
                          f"--inception_path for FID and the others")

    target = pathlib.Path(out) if out else workdir / "eval" / f"{method}_n{num}_seed{seed}"
    what = {"step": step, "sampler": method, "sampler_options": config.sampling[method].to_dict(),
            "num": num, "batch_size": batch_size, "seed": seed, "metrics": sorted(metrics),
            "resize": resize if weights else None,
            "reference": None if ref is None else {
                "path": reference or "the run's training split", "sha256": ref["sha256"],
                "meta": ref["meta"]}}
    _claim(target, what)
    sample_fn = make_sample_fn(config, run.model, run.sde, min(batch_size, num),
                               dataset.data_shape, mesh)
    sizes = batch_sizes(num, batch_size)
    files = [target / f"batch_{i:05d}.npz" for i in range(len(sizes))]
    done = sum(count for f, count in zip(files, sizes) if f.exists())
    progress = Progress(num, desc="evaluate", unit="sample", initial=done)
    for i, (count, file) in enumerate(zip(sizes, files)):
        if file.exists():
            continue
        x, nfe = sample_fn(state.ema_params, jax.random.fold_in(jax.random.key(seed), i))
        x = x[:count]
        features = {f"{name}/{k}": v for name, metric in metrics.items()
                    for k, v in metric.features(x, dataset, centered=config.data.centered).items()}
        if distributed.is_writer():
            _save(file, {**features, "nfe": np.array(int(nfe))})
        done += count
        progress.update(done)
    distributed.barrier("evaluate: every batch written")

    batches = [dict(np.load(f)) for f in files]
    features = concatenate([{k: v for k, v in b.items() if k != "nfe"} for b in batches])
    nfe = [int(b["nfe"]) for b in batches]  # adaptive solvers take more steps on some batches
    result = {**what, "nfe": float(np.mean(nfe)), "nfe_max": max(nfe)}
    for name, metric in metrics.items():
        own = {k.split("/", 1)[1]: v for k, v in features.items() if k.startswith(name + "/")}
        result.update(metric.result(own, dataset, jax.random.key(seed)))
    if distributed.is_writer():
        (target / "metrics.json").write_text(json.dumps(result, indent=1))
        shown = {k[5:]: round(v, 4) for k, v in result.items() if k.startswith("eval/")}
        print(f"{num} samples of step {step} with {method} (NFE {result['nfe']:g}): {shown} -> "
              f"{target / 'metrics.json'}")
    return result


def _claim(target: pathlib.Path, what: dict) -> None:
    """Makes `target` this evaluation's directory, or checks that it already is."""
    spec = target / "evaluation.json"
    text = json.dumps(what, indent=1, sort_keys=True, default=str)
    if spec.exists():
        if spec.read_text() != text:
            raise ConfigError(f"{target} holds another evaluation (its evaluation.json differs "
                              f"from this command's): give another --out, or delete it")
        return
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} exists and is not an evaluation's directory: give another "
                          f"--out")
    if distributed.is_writer():
        target.mkdir(parents=True, exist_ok=True)
        spec.write_text(text)


def _save(path: pathlib.Path, arrays: dict) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, path)
