"""Commands on a user's own file, with a trained run: `impute` fills the empty cells of a CSV
table, `score` writes each example's negative log-likelihood (for anomaly detection).

impute: a table run (`data.name = "csv"`) reads the file with the run's saved columns and
statistics (`table.json`), draws the missing cells of each row from the model given its
observed cells and writes every given cell back as the same text. `method`:
  "conditional"  a run trained with `model.conditional_cells` (CSDI): its network is
                 conditioned on the observed cells and sampled for the others by the reverse
                 diffusion (one score evaluation per step); the default for such runs;
  "projection"   an unconditional run inpainted by the replacement method (`samplers.inpaint`,
                 one evaluation per step; with the table MLP the guidance methods diverged,
                 RMSE in the thousands of standard deviations); the default otherwise;
  "smc"          the unconditional score by sequential Monte Carlo, `num_particles` weighted
                 particles per draw, consistent for the model's conditional as they grow
                 (`samplers.smc`; num_particles times the cost).
`draws` > 1 writes the mean of that many draws per cell (the posterior mean's estimate, for the
lowest squared error); `draws` = 1 writes one draw.

A series run (`data.name = "series"`) reads a series CSV (time stamps first) of any length,
fills it window by window (`series_draws`) and with `horizon` forecasts that many steps.

score: per-example anomaly scores of uint8 images (an .npz with `images`, (n, H, W[, C])) or
the rows of a CSV, in batches with a progress bar, one column per method (`score`): the
likelihood (bits/dim, or nats in the file's units), score norms across noise levels, a
likelihood ratio, SDEdit reconstruction error.
"""
import pathlib
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models.score import bind
from samplers import bits_per_dim, inpaint, log_likelihood, pc_sample
from samplers.anomaly import reconstruction_error, score_norms
from samplers.series import fill_series
from samplers.smc import NUM_PARTICLES
from scorelab import distributed
from scorelab.build import null_label, score_fn_for
from scorelab.commands import restore
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError
from scorelab.data import preprocess, series, tables
from scorelab.loop import check_workdir
from scorelab.progress import Progress
from scorelab.tasks import check_num_particles
from scorelab.step import make_mesh
from scorelab.workdir import TABLE_FILE, read_config


IMPUTE_METHODS = ("auto", "conditional", "projection", "smc")


def impute(workdir, *, input: str, output: str, draws: int = 8, seed: int = 0,
           num_steps: int | None = None, batch_size: int = 256, method: str = "auto",
           num_particles: int | None = None, quantiles=(), horizon: int = 0) -> dict:
    """Fills `input`'s empty cells into `output` (a new file; `input` is never written) with
    `point_estimate` of `draws` draws (`impute_draws`), and for each q of `quantiles` writes
    `output`'s name with `_q<q>` (filled_q0.05.csv) whose empty cells hold the draws' q-th
    quantile (a category's cells its most frequent draw). A series run (`series_draws`) also
    forecasts `horizon` steps past the file's end, at its time stamps' spacing. Returns
    {"rows", "filled_cells", "nfe", "method", "files"} (nfe per draw, per particle for smc, per
    window for a series; method the one run, "auto" resolved)."""
    if not output:
        raise ConfigError("--output is required: the CSV file to write")
    if pathlib.Path(output).resolve() == pathlib.Path(input).resolve():
        raise ConfigError(f"--output={output} is the input file; write to a new file")
    workdir = check_workdir(workdir)
    _check_impute_args(draws, method, num_particles)
    quantiles = _check_quantiles(quantiles, draws)
    if not (isinstance(horizon, int) and horizon >= 0):
        raise ConfigError(f"--horizon must be an integer >= 0 (future steps to forecast), got "
                          f"{horizon!r}")
    options = dict(draws=draws, seed=seed, num_steps=num_steps, method=method,
                   num_particles=num_particles)
    if (workdir / "config.json").is_file() and read_config(workdir).data.name == "series":
        stats, s = _read_series(workdir, input)
        stamps = s.stamps + series.next_stamps(s.stamps, horizon)
        width = len(s.table.columns)
        table = tables.Table(s.table.columns, s.table.cells + [[""] * width] * horizon,
                             np.concatenate([s.table.values, np.full((horizon, width), np.nan)]),
                             s.table.levels)
        result = series_draws(workdir, table.values, **options)
        header, prefix = (s.time, *table.columns), [[stamp] for stamp in stamps]
    else:
        if horizon:
            raise ConfigError(f"--horizon={horizon} forecasts a series run (data.name="
                              f"'series'); this run is a table")
        stats, table = _read_table(workdir, input, "impute")
        result = impute_draws(workdir, table.values, batch_size=batch_size, **options)
        header, prefix = table.columns, [[] for _ in table.cells]
    missing = np.isnan(table.values)
    files = {pathlib.Path(output): point_estimate(stats, result.samples)}
    for q in quantiles:
        path = pathlib.Path(output)
        files[path.with_name(f"{path.stem}_q{q:g}{path.suffix}")] = point_estimate(
            stats, result.samples, q)
    rows = int(missing.any(axis=1).sum())
    if distributed.is_writer():
        for path, filled in files.items():
            cells = [list(row) for row in table.cells]
            for i, j in zip(*np.nonzero(missing)):
                cells[i][j] = stats.text(j, filled[i, j])
            tables.write(path, header, [p + row for p, row in zip(prefix, cells)])
        particles = (f", {num_particles or NUM_PARTICLES} particles of NFE {result.nfe} each"
                     if result.method == "smc" else f", NFE {result.nfe} each")
        print(f"filled {int(missing.sum())} empty cells in {rows} of {len(table.cells)} rows "
              + (f"({horizon} of them forecast) " if horizon else "")
              + f"(method {result.method}: {'mean' if draws > 1 else 'one'} of {draws} "
              f"draws{particles}): {output}"
              + "".join(f"\n  quantile {q:g}: {p}" for q, p in zip(quantiles, list(files)[1:])))
    return {"rows": rows, "filled_cells": int(missing.sum()), "nfe": result.nfe,
            "method": result.method, "files": [str(p) for p in files]}


class Imputation(NamedTuple):
    """samples: (draws, rows, columns) in the data's units, each observed cell its value;
    method: the one run; nfe: score evaluations per draw (per particle for smc)."""
    samples: np.ndarray
    method: str
    nfe: int


def impute_draws(workdir, values: np.ndarray, *, draws: int = 8, seed: int = 0,
                 num_steps: int | None = None, batch_size: int = 256, method: str = "auto",
                 num_particles: int | None = None) -> Imputation:
    """`draws` draws of the NaN cells of `values` (rows of the run's columns, in the data's
    units) from the table run in `workdir`, given each row's other cells (the module docstring
    has the methods); rows without NaN are returned as they are."""
    _check_impute_args(draws, method, num_particles)
    stats, _, method, draw = _load_imputer(workdir, method, num_steps, num_particles)
    missing = np.isnan(values)
    rows = np.flatnonzero(missing.any(axis=1))
    z = stats.to_model(values[rows])  # a category's entries are missing together
    y, given = np.nan_to_num(z), ~np.isnan(z)
    fill = jax.jit(jax.vmap(draw, in_axes=(None, None, 0)))  # over draws
    samples, nfe = np.repeat(values[None].astype(np.float64), draws, axis=0), 0
    for start in _progress(range(0, len(rows), batch_size), "imputing rows", batch_size,
                           len(rows)):
        part = slice(start, start + batch_size)
        key = jax.random.fold_in(jax.random.key(seed), start)
        x, nfe = fill(y[part], given[part], jax.random.split(key, draws))
        filled = stats.to_data(np.asarray(x, np.float64))
        samples[:, rows[part]] = np.where(missing[rows][part], filled, values[rows][part])
    return Imputation(samples, method, int(np.asarray(nfe).reshape(-1)[0]))


def point_estimate(stats: tables.Standardizer, samples: np.ndarray,
                   quantile: float | None = None) -> np.ndarray:
    """One value per cell from draws (draws, rows, columns): their mean (the lowest squared
    error) or their `quantile`, rounded into the training range for an integer column; the
    most frequent draw for a categorical one."""
    mean = samples.mean(axis=0) if quantile is None else np.quantile(samples, quantile, axis=0)
    for j, levels in enumerate(stats.levels):
        if levels:
            counts = (samples[..., j, None] == np.arange(len(levels))).sum(axis=0)
            mean[:, j] = counts.argmax(axis=-1)
        elif stats.integer[j]:
            mean[:, j] = np.clip(np.round(mean[:, j]), stats.low[j], stats.high[j])
    return mean


def series_draws(workdir, values: np.ndarray, *, draws: int = 8, seed: int = 0,
                 num_steps: int | None = None, method: str = "auto",
                 num_particles: int | None = None) -> Imputation:
    """`draws` draws of the NaN cells of a series `values` (steps, features in the data's
    units) of any length from the series run in `workdir`, window by window
    (`samplers.series.fill_series`: blocks of window / 4 steps, each given the drawn window / 4
    before it and every observation up to window / 2 after it); nfe is per window drawn."""
    _check_impute_args(draws, method, num_particles)
    stats, config, method, draw = _load_imputer(workdir, method, num_steps, num_particles)
    z = stats.to_model(values)
    window, nfe = jax.jit(draw), []

    def drawn(y, mask, key):
        x, n = window(y, mask, key)
        nfe.append(int(np.asarray(n).reshape(-1)[0]))
        return x
    x = fill_series(drawn, np.nan_to_num(z), np.isfinite(z), window=config.data.window,
                    key=jax.random.key(seed), draws=draws)
    samples = np.where(np.isnan(values), stats.to_data(x), values)
    return Imputation(samples, method, nfe[0] if nfe else 0)


def _check_quantiles(quantiles, draws: int) -> tuple[float, ...]:
    """--quantiles as numbers in (0, 1): a comma-separated string or a sequence."""
    if isinstance(quantiles, str):
        quantiles = [q for q in quantiles.split(",") if q.strip()]
    try:
        values = tuple(float(q) for q in quantiles)
    except ValueError:
        raise ConfigError(f"--quantiles must be numbers in (0, 1) separated by commas, got "
                          f"{quantiles!r}") from None
    if any(not 0 < q < 1 for q in values):
        raise ConfigError(f"--quantiles must be numbers in (0, 1), got {list(values)}")
    if values and draws < 2:
        raise ConfigError(f"--quantiles needs --draws >= 2 (quantiles of the draws; 20 or more "
                          f"for the tails), got --draws={draws}")
    return values


def _check_impute_args(draws, method, num_particles) -> None:
    if draws < 1:
        raise ConfigError(f"--draws must be >= 1, got {draws}")
    if method not in IMPUTE_METHODS:
        raise ConfigError(f"--method must be one of {list(IMPUTE_METHODS)}, got {method!r}")
    check_num_particles(method, num_particles)


SCORE_METHODS = ("auto", "likelihood", "msma", "ratio", "reconstruction", "all")
MSMA_TIMES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)  # fractions of T
RECONSTRUCTION_TIMES = (0.1, 0.2, 0.3)  # fractions of T


def score(workdir, *, input: str, output: str, seed: int = 0, batch_size: int = 64,
          method: str = "auto", maps: str = "") -> dict:
    """Per-example anomaly scores of `input` (higher: more anomalous) into the CSV `output`,
    a column per method (`samplers.anomaly`):
      "likelihood"      bits/dim of uint8 images (an .npz with `images`), nats of CSV rows
                        (in the file's units) by the probability-flow ODE;
      "msma"            the negative log-density of the example's score norms at 8 times
                        (`score_norms`) under a Gaussian fitted to those of up to 1,024
                        training examples (Mahmood et al. 2021);
      "ratio"           the likelihood minus a reference's that absorbs input complexity: the
                        PNG code length in bits/dim of an image (Serra et al. 2020), a Gaussian
                        fitted to the training rows for a table;
      "reconstruction"  the mean squared error of SDEdit round trips from 0.1, 0.2, 0.3 T
                        (`maps`: an .npz of per-pixel maps for images);
    "auto" is "msma" (bench/bench_anomaly.py on digits: it ties our best AUROC on rotated,
    noised and out-of-domain images and is within 0.05 of it on flipped and occluded ones,
    with 8 network calls an example); "all" every one; several joined by commas those.
    Returns {method: values}."""
    if not output:
        raise ConfigError("--output is required: the CSV file to write")
    methods = _score_methods(method)
    if maps and "reconstruction" not in methods:
        raise ConfigError("--maps writes the reconstruction's per-pixel maps: it needs "
                          "--method=reconstruction or all")
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    config, run, state, _ = restore(workdir, make_mesh())
    score_fn = _unconditional_score(config, run, state, "score")
    sde, image = run.sde, run.dataset.is_image
    if image:
        raw = _read_images(input, run.dataset.data_shape)
        x = np.asarray(preprocess(raw, jax.random.key(0), is_image=True, centered=config.data.centered))
        lo, unit, shift = (-1.0 if config.data.centered else 0.0), "bits_per_dim", 0.0
        nll = lambda x, key: bits_per_dim(sde, score_fn, x, key, data_range=(lo, 1.0))[0]
    else:
        stats, table = _read_table(workdir, input, "score")
        if np.isnan(table.values).any():
            line = int(np.flatnonzero(np.isnan(table.values).any(axis=1))[0]) + 2
            raise ConfigError(f"--input={input}: line {line} has empty cells; score needs "
                              f"complete rows (fill them with `impute` first)")
        x, unit, shift = stats.to_model(table.values), "nll_nats", stats.log_det
        nll = lambda x, key: -log_likelihood(sde, score_fn, x, key)[0]
    batched = lambda fn, data, what: _batched(jax.jit(fn), data, batch_size, seed, what)
    out = {}
    if "likelihood" in methods or "ratio" in methods:  # bits/dim takes the uint8 images
        out["likelihood"] = batched(nll, raw if image else x, f"scoring ({unit})") + shift
    if "msma" in methods:
        times = [f * sde.T for f in MSMA_TIMES]
        norms = lambda x, key: score_norms(sde, score_fn, x, times)
        reference = _training_examples(run.dataset, config, 1024)
        out["msma"] = _gaussian_nll(batched(norms, reference, "msma (training)"),
                                    batched(norms, x, "msma"))
    if "ratio" in methods:
        if image:
            out["ratio"] = out["likelihood"] - _png_bits_per_dim(raw)
        else:  # both in standardised units: the log-determinant cancels
            train = _training_examples(run.dataset, config, None)
            out["ratio"] = out["likelihood"] - shift - _gaussian_nll(train, x)
        if "likelihood" not in methods:
            del out["likelihood"]
    if "reconstruction" in methods:
        times = [f * sde.T for f in RECONSTRUCTION_TIMES]
        both = batched(lambda x, key: reconstruction_error(sde, score_fn, x, key, times=times),
                       x, "reconstruction")
        out["reconstruction"] = both[0].mean(axis=1)
        if maps and distributed.is_writer():
            np.savez_compressed(maps, maps=both[1])
    if distributed.is_writer():
        path = pathlib.Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = [unit if m == "likelihood" else m for m in out]
        tables.write(path, ("index", *names), [[str(i), *(f"{v[i]:.6g}" for v in out.values())]
                                               for i in range(len(x))])
        chosen = "msma" if method == "auto" else method
        print(f"{', '.join(names)} of {len(x)} examples (method {chosen}; "
              + ", ".join(f"mean {n} {v.mean():.4g}" for n, v in zip(names, out.values()))
              + f"): {output}" + (f"\n  maps: {maps}" if maps else ""))
    return out


def _score_methods(method: str) -> tuple[str, ...]:
    """`score`'s --method: one of SCORE_METHODS, or several of the four methods joined by
    commas (e.g. "likelihood,ratio": the ratio's likelihood is not computed twice)."""
    one = SCORE_METHODS[1:-1]
    if method == "all":
        return one
    if method == "auto":
        return ("msma",)
    chosen = tuple(dict.fromkeys(method.split(",")))
    if not chosen or any(m not in one for m in chosen):
        raise ConfigError(f"--method must be one of {list(SCORE_METHODS)} or several of "
                          f"{list(one)} joined by commas, got {method!r}")
    return chosen


def _batched(fn, x, batch_size: int, seed: int, what: str):
    """fn(batch, key) over x in padded batches: its outputs (or tuple of outputs) joined."""
    parts = []
    for start in _progress(range(0, len(x), batch_size), what, batch_size, len(x)):
        part = x[start:start + batch_size]
        padded = np.concatenate([part, np.repeat(part[-1:], batch_size - len(part), 0)])
        result = fn(padded, jax.random.fold_in(jax.random.key(seed), start))
        parts.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:len(part)], result))
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


def _training_examples(dataset, config, limit):
    """Up to `limit` training examples in model units (complete rows of a table)."""
    x = dataset.train[:limit] if limit else dataset.train
    if dataset.is_image:
        return np.asarray(preprocess(x, jax.random.key(0), is_image=True, centered=config.data.centered))
    return x[np.isfinite(x.reshape(len(x), -1)).all(axis=1)]


def _gaussian_nll(reference: np.ndarray, x: np.ndarray) -> np.ndarray:
    """NLL in nats of each row of x under the Gaussian fitted to `reference` (rows)."""
    reference, x = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (reference, x))
    mean = reference.mean(axis=0)
    cov = np.atleast_2d(np.cov(reference, rowvar=False)) + 1e-6 * np.eye(x.shape[1])
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return (0.5 * np.sum(z ** 2, axis=0) + np.sum(np.log(np.diag(chol)))
            + 0.5 * x.shape[1] * np.log(2 * np.pi))


def _png_bits_per_dim(images: np.ndarray) -> np.ndarray:
    """The PNG code length of each uint8 image in bits per dimension (the best zlib level)."""
    import io
    from PIL import Image
    out = np.empty(len(images))
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            buffer, format="PNG", optimize=True)
        out[i] = 8 * buffer.tell() / image.size
    return out


def _load_imputer(workdir, method: str, num_steps, num_particles):
    """(the run's Standardizer, its config, the method, `draw`) of `_imputer` for `workdir`."""
    workdir = check_workdir(workdir)
    stats = tables.Standardizer.load(workdir / TABLE_FILE)
    enable_compilation_cache()
    config, run, state, _ = restore(workdir, make_mesh())
    return (stats, config, *_imputer(config, run, state, method, num_steps, num_particles))


def _imputer(config, run, state, method: str, num_steps, num_particles):
    """(the method, `draw(y, mask, key) -> (x, nfe)`): one draw of each row's cells where mask is
    False given y where it is True, x equal to y there."""
    conditional = bool(config.model.conditional_cells)
    if method == "auto":
        method = "conditional" if conditional else "projection"
    if method == "conditional":
        if not conditional:
            raise ConfigError("--method=conditional needs a run trained with "
                              "model.conditional_cells=True; this one is unconditional (use "
                              "projection or smc)")

        def draw(y, mask, key):
            score = bind(score_fn_for(config, run.model, run.sde, given=(y, mask)),
                         state.ema_params)
            x, nfe = pc_sample(run.sde, score, y.shape, key, corrector="none",
                               num_steps=num_steps)
            return jnp.where(mask, y, x), nfe
        return method, draw
    score = _unconditional_score(config, run, state, "impute")
    options = {"num_particles": num_particles or NUM_PARTICLES} if method == "smc" else {}
    return method, lambda y, mask, key: inpaint(run.sde, score, y, mask, key,
                                                num_steps=num_steps, method=method, **options)


def _read_series(workdir: pathlib.Path, input: str):
    """(the run's Standardizer, the Series in `input`), its feature columns checked."""
    stats = tables.Standardizer.load(workdir / TABLE_FILE)
    try:
        return stats, series.read(input, stats)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--input: {e}") from e


def _read_table(workdir: pathlib.Path, input: str, command: str):
    """(the run's saved Standardizer, the Table in `input`), its columns checked."""
    path = workdir / TABLE_FILE
    if not path.is_file():
        raise ConfigError(f"{command} of a table needs a table run (data.name='csv'); "
                          f"{workdir} has no {TABLE_FILE}")
    stats = tables.Standardizer.load(path)
    try:
        table = tables.read(input, stats)
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
