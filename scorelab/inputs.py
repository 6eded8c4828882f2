"""Commands on a user's own file, with a trained run: `impute` fills the empty cells of a CSV
table, `score` writes each example's negative log-likelihood (for anomaly detection).

impute: a table run (`data.name = "csv"`) reads the file with the run's saved columns and
statistics (`table.json`), draws the missing cells of each row from the model given its
observed cells (`samplers.inpaint`, exact on the observed entries) and writes every given cell
back as the same text. `method`: "projection" (the default: the replacement method, one score
evaluation per step; with the table MLP the guidance methods diverged, RMSE in the thousands of
standard deviations) or "smc" (`num_particles` weighted particles per draw, consistent for the
model's conditional as they grow: `samplers.smc`; num_particles times the cost). `draws` > 1 writes the mean of that many draws per cell (the
posterior mean's estimate, for the lowest squared error); `draws` = 1 writes one draw.

score: bits/dim of uint8 images (an .npz with `images`, (n, H, W[, C])) or nats of the rows of
a CSV (in the file's units: the standardisation's log-determinant is added back), by the
probability-flow ODE (`samplers.log_likelihood`), in batches with a progress bar.
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from samplers import bits_per_dim, inpaint, log_likelihood
from samplers.smc import NUM_PARTICLES
from scorelab import distributed
from scorelab.build import null_label, score_fn_for
from scorelab.commands import restore
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError
from scorelab.data import tables
from scorelab.loop import check_workdir
from scorelab.progress import Progress
from scorelab.step import make_mesh
from scorelab.workdir import TABLE_FILE


IMPUTE_METHODS = ("projection", "smc")


def impute(workdir, *, input: str, output: str, draws: int = 8, seed: int = 0,
           num_steps: int | None = None, batch_size: int = 256, method: str = "projection",
           num_particles: int | None = None) -> dict:
    """Fills `input`'s empty cells into `output` (a new file; `input` is never written).
    Returns {"rows", "filled_cells", "nfe", "method"} (nfe per draw, per particle for smc)."""
    if draws < 1:
        raise ConfigError(f"--draws must be >= 1, got {draws}")
    if method not in IMPUTE_METHODS:
        raise ConfigError(f"--method must be one of {list(IMPUTE_METHODS)}, got {method!r}")
    if num_particles is not None and (method != "smc" or num_particles < 1):
        raise ConfigError(f"--num_particles={num_particles} needs --method=smc and a value "
                          f">= 1 (got --method={method})")
    options = {"method": method}
    if method == "smc":
        options["num_particles"] = num_particles or NUM_PARTICLES
    if not output:
        raise ConfigError("--output is required: the CSV file to write")
    if pathlib.Path(output).resolve() == pathlib.Path(input).resolve():
        raise ConfigError(f"--output={output} is the input file; write to a new file")
    workdir = check_workdir(workdir)
    stats, table = _read_table(workdir, input, "impute")
    enable_compilation_cache()
    config, run, state, _ = restore(workdir, make_mesh())
    score = _unconditional_score(config, run, state, "impute")
    missing = np.isnan(table.values)
    rows = np.flatnonzero(missing.any(axis=1))
    y = np.nan_to_num(stats.to_model(table.values[rows]))

    def fill(y, mask, key):  # the mean of `draws` draws given the observed cells
        x, nfe = jax.vmap(lambda k: inpaint(run.sde, score, y, mask, k, num_steps=num_steps,
                                            **options))(jax.random.split(key, draws))
        return jnp.mean(x, axis=0), nfe[0]
    fill, nfe = jax.jit(fill), 0
    filled = np.empty_like(y, np.float64)
    for start in _progress(range(0, len(rows), batch_size), "imputing rows", batch_size,
                           len(rows)):
        part = slice(start, start + batch_size)
        x, nfe = fill(y[part], ~missing[rows][part], jax.random.fold_in(jax.random.key(seed),
                                                                         start))
        filled[part] = stats.to_data(x)
    cells = [list(row) for row in table.cells]
    for i, row in enumerate(rows):
        for j in np.flatnonzero(missing[row]):
            cells[row][j] = f"{filled[i, j]:.6g}"
    if distributed.is_writer():
        tables.write(output, table.columns, cells)
        particles = (f", {options['num_particles']} particles of NFE {int(nfe)} each"
                     if method == "smc" else f", NFE {int(nfe)} each")
        print(f"filled {int(missing.sum())} empty cells in {len(rows)} of {len(cells)} rows "
              f"(method {method}: mean of {draws} draws{particles}): {output}")
    return {"rows": len(rows), "filled_cells": int(missing.sum()), "nfe": int(nfe),
            "method": method}


def score(workdir, *, input: str, output: str, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Per-example NLL of `input` into the CSV `output` (columns index, bits_per_dim or
    nll_nats). Returns the values."""
    if not output:
        raise ConfigError("--output is required: the CSV file to write")
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    mesh = make_mesh()
    config, run, state, _ = restore(workdir, mesh)
    score_fn = _unconditional_score(config, run, state, "score")
    if run.dataset.is_image:
        x, unit = _read_images(input, run.dataset.data_shape), "bits_per_dim"
        lo = -1.0 if config.data.centered else 0.0
        nll = jax.jit(lambda x, key: bits_per_dim(run.sde, score_fn, x, key,
                                                  data_range=(lo, 1.0))[0])
        shift = 0.0
    else:
        stats, table = _read_table(workdir, input, "score")
        if np.isnan(table.values).any():
            line = int(np.flatnonzero(np.isnan(table.values).any(axis=1))[0]) + 2
            raise ConfigError(f"--input={input}: line {line} has empty cells; score needs "
                              f"complete rows (fill them with `impute` first)")
        x, unit = stats.to_model(table.values), "nll_nats"
        nll = jax.jit(lambda x, key: -log_likelihood(run.sde, score_fn, x, key)[0])
        shift = stats.log_det
    values = np.empty(len(x))
    for start in _progress(range(0, len(x), batch_size), f"scoring ({unit})", batch_size,
                           len(x)):
        part = x[start:start + batch_size]
        padded = np.concatenate([part, np.repeat(part[-1:], batch_size - len(part), 0)])
        key = jax.random.fold_in(jax.random.key(seed), start)
        values[start:start + len(part)] = np.asarray(nll(padded, key))[:len(part)] + shift
    if distributed.is_writer():
        path = pathlib.Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tables.write(path, ("index", unit), [[str(i), f"{v:.6g}"] for i, v in
                                              enumerate(values)])
        print(f"{unit} of {len(values)} examples (mean {values.mean():.4g}): {output}")
    return values


def _read_table(workdir: pathlib.Path, input: str, command: str):
    """(the run's saved Standardizer, the Table in `input`), its columns checked."""
    path = workdir / TABLE_FILE
    if not path.is_file():
        raise ConfigError(f"{command} of a table needs a table run (data.name='csv'); "
                          f"{workdir} has no {TABLE_FILE}")
    stats = tables.Standardizer.load(path)
    try:
        table = tables.read(input)
        stats.check_columns(table.columns, input)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--input: {e}") from e
    return stats, table


def _unconditional_score(config, run, state, command: str):
    """The run's score of p(x): its own, or a label-dropout run's null-label score."""
    conditional = bool(config.model.conditional_classes)
    if conditional and not config.model.label_dropout:
        raise ConfigError(f"{command} needs p(x), and this run is class-conditional without "
                          f"label dropout (only p(x | class) was learnt)")

    def unconditional(x, t):
        labels = jnp.full((x.shape[0],), null_label(config)) if conditional else None
        return score_fn_for(config, run.model, run.sde, labels=labels)(state.ema_params, x, t)
    return unconditional


def _read_images(path: str, data_shape) -> np.ndarray:
    try:
        with np.load(path) as f:
            images = f["images"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"--input={path}: needs an .npz file with an 'images' array of uint8 "
                          f"images ({type(e).__name__}: {e})") from e
    if images.ndim == len(data_shape):  # (n, H, W) grey images
        images = images[..., None]
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(data_shape):
        raise ConfigError(f"--input={path}: 'images' must be uint8 of shape (n, "
                          f"{', '.join(map(str, data_shape))}) like the run's data, got "
                          f"{images.dtype} {images.shape}")
    return images


def _progress(chunks, what: str, batch_size: int, total: int):
    """The batch starts, reporting progress over the examples on process 0."""
    progress = Progress(total, desc=what, unit="example", file=sys.stderr)
    for start in chunks:
        yield start
        progress.update(min(start + batch_size, total))
