"""Compare SDE variants: the same network trained under each, every applicable sampler at
several NFE budgets, tables and plots.

    python train.py compare --config=configs/compare_mixture.py --workdir=runs/compare_mixture

Each (variant, seed) is an ordinary run in `workdir`/runs/<variant>_seed<k>, trained with
`scorelab.train` (so resuming and the reliability guarantees of train.py hold). A cell is one
(score, variant, seed, sampler, budget); `results.json` keeps every finished cell and is
rewritten after each, so re-running computes only the missing cells (a new seed, sampler or
budget in the config adds only its own). Then `results.md` and the plots are redrawn.

Config (`config.compare`, configs/compare_mixture.py): `variants` (name -> nested dict of
config overrides: the SDE, the loss, the parameterisation), `run_variants` (which of them run),
`seeds`, `samplers` (names of SAMPLERS), `budgets` (NFE), `num_samples` per cell,
`num_likelihood` held-out examples per run, `exact_score` (the analytic mixture: the samplers
also run with the exact score, so that training and sampling error separate), `grid_sampler`
(the samples picture) and `quick` (the settings of --quick).
"""
import json
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from models.score import bind
from samplers import bits_per_dim, log_likelihood, ode_sample, pc_sample, sde_sample
from scorelab.build import build_sde, score_fn_for
from scorelab.commands import restore
from scorelab.config import ConfigError
from scorelab.data.toy import analytic_mixture
from scorelab.loop import check_workdir, load_data, train
from scorelab.metrics import METRICS, sliced_wasserstein
from scorelab.progress import Progress
from scorelab.step import make_mesh

REFERENCE_SEED = 12345  # the exact draws every mixture cell is compared with
# What names one cell, in the order of its key in results.json ("learned/vp/0/pc/10") and of
# its samples file; the tables pool the seeds of cells equal in the other four.
CELL_FIELDS = ("score", "variant", "seed", "sampler", "budget")

# sampler name -> (function, keyword arguments for a budget of n NFE, variants it applies to:
# None = every variant, else SDE names). NFE = steps per budget x evaluations per step + 1
# (the final Tweedie step); the measured NFE is stored with every cell.
SAMPLERS = {
    "pc": (pc_sample, lambda n: dict(predictor="reverse_diffusion", corrector="none",
                                     num_steps=max(2, n - 1)), None),
    "pc_langevin": (pc_sample, lambda n: dict(predictor="reverse_diffusion",
                                              corrector="langevin",
                                              num_steps=max(2, (n - 1) // 2)), None),
    "ancestral": (pc_sample, lambda n: dict(predictor="ancestral", corrector="none",
                                            num_steps=max(2, n - 1)), None),
    "ald": (pc_sample, lambda n: dict(predictor="none", corrector="ald",
                                      num_steps=max(2, n - 1)), ("vesde",)),
    "sde_euler_maruyama": (sde_sample, lambda n: dict(solver="euler_maruyama",
                                                      num_steps=max(2, n - 1)), None),
    "ode_euler": (ode_sample, lambda n: dict(solver="euler", num_steps=max(2, n - 1)), None),
    "ode_dpmpp_2m": (ode_sample, lambda n: dict(solver="dpmpp_2m", num_steps=max(2, n - 1)),
                     None),
    # adaptive: one cell per run at its default tolerances; its budget is what it used
    "ode_adaptive": (ode_sample, None, None),
}


def check_compare(config) -> None:
    """Names and numbers of `config.compare`, before any training."""
    c = config.get("compare")
    if c is None:
        raise ConfigError("compare needs a config with a `compare` section "
                          "(configs/compare_mixture.py, configs/compare_digits.py)")
    for name in c.run_variants:
        if name not in c.variants:
            raise ConfigError(f"compare.run_variants: {name!r} is not one of compare.variants "
                              f"{sorted(c.variants)}")
    for name in c.samplers:
        if name not in SAMPLERS:
            raise ConfigError(f"compare.samplers: {name!r} is not one of {sorted(SAMPLERS)}")
    if not c.budgets or any(not isinstance(b, int) or b < 3 for b in c.budgets):
        raise ConfigError(f"compare.budgets must be integers >= 3 (NFE), got {c.budgets!r}")
    if not c.seeds or any(not isinstance(s, int) for s in c.seeds):
        raise ConfigError(f"compare.seeds must be integers, got {c.seeds!r}")
    if c.exact_score and config.data.name != "mixture":
        raise ConfigError(f"compare.exact_score needs data.name='mixture' (the analytic "
                          f"mixture), got {config.data.name!r}")


def variant_config(config, name: str, seed: int):
    """The training config of one variant and seed: `config` with the variant's overrides."""
    out = ml_collections.ConfigDict(config.to_dict())
    del out["compare"]

    def merge(target, changes, path):
        for key, value in changes.items():
            if key not in target:
                raise ConfigError(f"compare.variants.{name}: {path + key} is not a config field")
            if isinstance(value, (dict, ml_collections.ConfigDict)):
                merge(target[key], value, f"{path}{key}.")
            else:
                target[key] = value
    merge(out, config.compare.variants[name].to_dict(), "")
    out.seed = seed
    return out


def _cell_key(cell) -> str:
    return "/".join(str(cell[k]) for k in CELL_FIELDS)


class Results:
    """results.json: the finished cells by key, and per-run facts (likelihood, score error)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.cells = {_cell_key(c): c for c in saved.get("cells", [])}
        self.runs = saved.get("runs", {})

    def save(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cells": list(self.cells.values()), "runs": self.runs},
                                  indent=1))
        tmp.replace(self.path)  # atomic: an interrupted write leaves the previous file


class Model:
    """A trained run's SDE, data and score `score_of(params)` with its (EMA) parameters, or the
    exact mixture's score under the run's SDE. Jitted functions take `params` as an argument,
    so the parameters never become constants of a compiled program."""

    def __init__(self, config, sde, dataset, score_of, params):
        self.config, self.sde, self.dataset = config, sde, dataset
        self.score_of, self.params = score_of, params

    @classmethod
    def trained(cls, workdir):
        config, run, state, _ = restore(workdir, make_mesh())
        score_fn = score_fn_for(config, run.model, run.sde)
        return cls(config, run.sde, run.dataset, lambda p: bind(score_fn, p), state.ema_params)

    @classmethod
    def exact(cls, config, dataset):
        sde, mix = build_sde(config), analytic_mixture()
        return cls(config, sde, dataset, lambda _: mix.score_fn(sde), ())


def _mixture_w2(x) -> float:
    """Sliced W2 between x and one fixed set of as many exact mixture draws, along fixed
    directions: every cell and the noise floor are measured against the same reference."""
    exact = analytic_mixture().sample(jax.random.key(REFERENCE_SEED), len(x))
    return float(sliced_wasserstein(x, exact, jax.random.key(REFERENCE_SEED + 1)))


def _weight_error(x) -> float:
    """|share of x in the mixture's first component - its weight|, the share being the mean
    of the exact responsibilities: far less noisy than sliced W2 (its standard deviation is
    about sqrt(w (1 - w) / n)), and blind to errors within a component."""
    mix = analytic_mixture()
    share = jnp.mean(mix.responsibilities(x)[:, 0])
    return float(jnp.abs(share - mix.weights[0]))


def sample_metrics(model, x, key) -> dict:
    """Sample quality: sliced W2 to exact mixture draws (`_mixture_w2`) and the error of the
    first component's weight, or the digit classifier's Frechet distance and class coverage."""
    data = model.dataset
    if model.config.data.name == "mixture":
        return {"sliced_w2": _mixture_w2(x), "weight_error": _weight_error(x)}
    if "digit_classifier" in data.metrics:
        m = METRICS["digit_classifier"](x, data, key, centered=model.config.data.centered)
        return {"fd_digits": m["eval/fd_digits"], "classes_covered": m["eval/classes_covered"]}
    return {"sliced_w2": METRICS["sliced_w2"](x, data, key)["eval/sliced_w2"]}


def noise_floor(num: int, sets: int = 8) -> dict:
    """The mixture metrics of `sets` fresh sets of `num` exact draws, mean and std: what a
    perfect sampler scores, and how much one cell's value scatters."""
    draws = [analytic_mixture().sample(jax.random.key(1000 + i), num) for i in range(sets)]
    out = {}
    for name, metric in (("sliced_w2", _mixture_w2), ("weight_error", _weight_error)):
        values = [metric(x) for x in draws]
        out.update({name: float(np.mean(values)), f"{name}_std": float(np.std(values, ddof=1))})
    return out


def run_cell(model, sampler: str, budget: int, num: int, key) -> dict:
    fn, kwargs_of, _ = SAMPLERS[sampler]
    kwargs = {} if kwargs_of is None else kwargs_of(budget)
    shape = (num, *model.dataset.data_shape)
    call = jax.jit(lambda p, k: fn(model.sde, model.score_of(p), shape, k, **kwargs))
    try:
        compiled = call.lower(model.params, key).compile()  # the timing excludes compilation
    except ValueError as e:  # e.g. DDPM's chain needs N > beta_max: too few steps for VP
        return {"skipped": str(e)}, None
    tic = time.perf_counter()
    x, nfe = jax.block_until_ready(compiled(model.params, key))
    seconds = time.perf_counter() - tic
    finite = bool(jnp.all(jnp.isfinite(x)))
    metrics = sample_metrics(model, x, jax.random.fold_in(key, 1)) if finite else {}
    return {"nfe": int(nfe), "seconds": round(seconds, 3), "finite": finite, **metrics}, x


def likelihood(model, num: int, key) -> dict:
    """NLL of held-out data from the probability-flow ODE: bits/dim for images, nats for points
    (beside the exact NLL of the analytic mixture)."""
    data = model.dataset
    x = jnp.asarray(data.test[:num])
    if data.is_image:  # bits_per_dim dequantises the raw 8-bit images itself
        lo = -1.0 if model.config.data.centered else 0.0
        bpd, nfe = jax.jit(lambda p, x: bits_per_dim(model.sde, model.score_of(p), x, key,
                                                     data_range=(lo, 1.0)))(model.params, x)
        return {"bpd": float(jnp.mean(bpd)), "likelihood_nfe": int(nfe)}
    logp, _, nfe = jax.jit(lambda p, x: log_likelihood(model.sde, model.score_of(p), x, key))(
        model.params, x)
    out = {"nll_nats": -float(jnp.mean(logp)), "likelihood_nfe": int(nfe)}
    if model.config.data.name == "mixture":
        out["exact_nll_nats"] = -float(jnp.mean(analytic_mixture().log_prob(x)))
        out["nll_gap_nats"] = out["nll_nats"] - out["exact_nll_nats"]
    return out


def score_error(model, key, times=(0.01, 0.1, 0.3, 0.6, 1.0), num=2000) -> dict:
    """E |std (s_theta - s_exact)|^2 / d at each t on x_t ~ p_t (the analytic mixture): the
    learned score's error in the units of the DSM loss."""
    mix = analytic_mixture()
    exact = mix.score_fn(model.sde)
    out = {}
    for t in times:
        k1, k2 = jax.random.split(jax.random.fold_in(key, int(1000 * t)))
        x0 = mix.sample(k1, num)
        tt = jnp.full((num,), t * model.sde.T)
        mean, std = model.sde.marginal_prob(x0, tt)
        xt = mean + std[:, None] * jax.random.normal(k2, x0.shape)
        err = std[:, None] * (model.score_of(model.params)(xt, tt) - exact(xt, tt))
        out[f"{t:g}"] = float(jnp.mean(jnp.square(err)))
    return out


def cells_of(config):
    """Every (score, variant, seed, sampler, budget) of the config, in order."""
    c = config.compare
    scores = ["learned"] + (["exact"] if c.exact_score else [])
    for score in scores:
        for variant in c.run_variants:
            training = variant_config(config, variant, 0)  # the seed changes neither field
            if score == "exact" and training.training.loss != "continuous":
                continue  # the exact score does not depend on the loss: one row per SDE
            for seed in (c.seeds if score == "learned" else c.seeds[:1]):
                for sampler in c.samplers:
                    applies = SAMPLERS[sampler][2]
                    if applies is not None and training.sde.name not in applies:
                        continue
                    for budget in (c.budgets if SAMPLERS[sampler][1] else ["adaptive"]):
                        yield dict(score=score, variant=variant, seed=seed, sampler=sampler,
                                   budget=budget)


def compare(config, workdir: pathlib.Path, *, quick: bool = False) -> dict:
    """Trains every (variant, seed), fills every missing cell, writes the tables and plots;
    returns the results (cells and runs)."""
    check_compare(config)
    if quick:
        config = quick_config(config)
    workdir = check_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    c = config.compare
    results = Results(workdir / "results.json")
    cells = list(cells_of(config))
    todo = [cell for cell in cells if _cell_key(cell) not in results.cells]
    runs = sorted({(cell["variant"], cell["seed"]) for cell in cells
                   if cell["score"] == "learned"})
    for variant, seed in runs:
        train(variant_config(config, variant, seed), run_dir(workdir, variant, seed))
    models = {}

    def model_of(score, variant, seed):
        if (score, variant, seed) not in models:
            models.clear()  # one model in memory at a time
            if score == "learned":
                models[score, variant, seed] = Model.trained(run_dir(workdir, variant, seed))
            else:  # the variant's SDE and data, no network
                run_config = variant_config(config, variant, c.seeds[0])
                models[score, variant, seed] = Model.exact(run_config, load_data(run_config))
        return models[score, variant, seed]

    if config.data.name == "mixture" and "floor" not in results.runs:
        results.runs["floor"] = noise_floor(c.num_samples)
    for variant, seed in runs:  # per-run facts: likelihood, score error
        name = f"{variant}_seed{seed}"
        if name not in results.runs:
            model = model_of("learned", variant, seed)
            key = jax.random.key(seed)
            facts = likelihood(model, c.num_likelihood, key) if c.num_likelihood else {}
            if config.data.name == "mixture":
                facts["score_error"] = score_error(model, key)
            results.runs[name] = facts
            results.save()
    progress = Progress(len(todo), desc="cells", unit="cell", file=sys.stderr)
    for done, cell in enumerate(todo, 1):
        model = model_of(cell["score"], cell["variant"], cell["seed"])
        budget = 0 if cell["budget"] == "adaptive" else cell["budget"]
        # one key per seed: every sampler and variant starts from the same latents (paired cells)
        key = jax.random.fold_in(jax.random.key(cell["seed"]), 1)
        out, x = run_cell(model, cell["sampler"], budget, c.num_samples, key)
        results.cells[_cell_key(cell)] = {**cell, **out}
        results.save()
        if x is not None and cell["budget"] in (max(c.budgets), "adaptive"):  # the grid
            (workdir / "samples").mkdir(exist_ok=True)
            np.save(_samples_file(workdir, cell), np.asarray(x[:2000 if x.ndim == 2 else 64]))
        progress.update(done, _cell_key(cell))
    write_tables(config, workdir, results)
    write_plots(config, workdir, results)
    return {"cells": list(results.cells.values()), "runs": results.runs, "new_cells": len(todo)}


def run_dir(workdir: pathlib.Path, variant: str, seed: int) -> pathlib.Path:
    return workdir / "runs" / f"{variant}_seed{seed}"


def quick_config(config):
    """`config.compare.quick` applied: short training, few budgets, samples and likelihood
    examples (a few minutes on 2 CPU cores)."""
    config = ml_collections.ConfigDict(config.to_dict())
    q = config.compare.quick
    config.training.n_steps = q.n_steps
    config.training.eval_every = q.n_steps
    config.training.checkpoint_every = q.n_steps
    config.sampling.num_samples = min(config.sampling.num_samples, q.num_samples)
    config.eval.num_metric_samples = min(config.eval.num_metric_samples, q.num_samples)
    config.eval.num_likelihood = min(config.eval.num_likelihood, q.num_likelihood)
    config.sampling.pc.num_steps = q.eval_steps
    config.compare.budgets = q.budgets
    config.compare.num_samples = q.num_samples
    config.compare.num_likelihood = q.num_likelihood
    return config


def _samples_file(workdir, cell) -> pathlib.Path:
    return workdir / "samples" / f"{_cell_key(cell).replace('/', '_')}.npy"


# ---- tables and plots ----

def _metrics(config) -> list[str]:
    """The sample metrics of the tables, the first one plotted against NFE."""
    if config.data.name == "mixture":
        return ["sliced_w2", "weight_error"]
    return ["fd_digits", "classes_covered"] if config.data.name in ("digits", "mnist") \
        else ["sliced_w2"]


def _spread(values) -> str:
    """mean +- sample std over seeds ("mean" alone for one seed)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}"


def _group_key(cell) -> tuple:
    """A cell's CELL_FIELDS but the seed, in that order: the cells of all seeds of one
    (score, variant, sampler, budget) share it, and the tables pool them."""
    return tuple(cell[f] for f in CELL_FIELDS if f != "seed")


def _groups(results) -> dict:
    """{_group_key: [cells over seeds]}, in the order of results.json."""
    out = {}
    for cell in results.cells.values():
        out.setdefault(_group_key(cell), []).append(cell)
    return out


def _quality_cell(cells, metric) -> str:
    """One entry of a sample-quality table: the metric over seeds and the median NFE."""
    if not cells or "skipped" in cells[0]:
        return "n/a" if cells else ""
    nfe = int(np.median([x["nfe"] for x in cells]))
    return f"{_spread([x.get(metric) for x in cells])} ({nfe})"


def _quality_table(config, results, metric) -> list[str]:
    """results.md's section for one sample metric: a row per (score, sampler, budget), a
    column per variant, the noise floor above it (the mixture)."""
    c, groups = config.compare, _groups(results)
    variants, floor = list(c.run_variants), results.runs.get("floor", {})
    better = "higher" if metric == "classes_covered" else "lower"
    lines = [f"## Sample quality: {metric} ({better} is better), NFE in brackets", ""]
    if metric in floor:
        lines += [f"Noise floor (8 sets of {c.num_samples} exact draws; for sliced W2 "
                  f"against the cells' reference set), mean ± std: {floor[metric]:.4g} ± "
                  f"{floor[metric + '_std']:.2g}", ""]
    lines += ["| score | sampler | budget | " + " | ".join(variants) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in variants) + " |"]
    rows = {(cell["score"], cell["sampler"], cell["budget"]) for cell in results.cells.values()}
    for score, sampler, budget in sorted(rows, key=lambda r: (
            r[0], list(SAMPLERS).index(r[1]), 0 if r[2] == "adaptive" else r[2])):
        by_variant = [groups.get(_group_key(dict(score=score, variant=v, sampler=sampler,
                                                 budget=budget)), []) for v in variants]
        cols = [_quality_cell(cells, metric) for cells in by_variant]
        lines.append(f"| {score} | {sampler} | {budget} | " + " | ".join(cols) + " |")
    return lines + [""]


def _run_facts(config, results) -> dict:
    """{variant: [per-run facts of each seed]} (results.json's "runs")."""
    c = config.compare
    return {v: [results.runs.get(f"{v}_seed{s}", {}) for s in c.seeds] for v in c.run_variants}


def _likelihood_table(config, runs) -> list[str]:
    """results.md's likelihood section: bits/dim (images) or NLL in nats beside the exact
    NLL and the gap (points); empty when no run measured it."""
    key = "bpd" if any("bpd" in r for rs in runs.values() for r in rs) else "nll_nats"
    if not any(key in r for rs in runs.values() for r in rs):
        return []
    nats = key == "nll_nats"
    lines = [f"## Likelihood of {config.compare.num_likelihood} held-out examples "
             f"({'NLL, nats' if nats else 'bits/dim'}; probability-flow ODE)", "",
             "| variant | " + key + (" | exact | gap |" if nats else " |"),
             "| --- | --- |" + (" --- | --- |" if nats else "")]
    for v, rs in runs.items():
        row = f"| {v} | {_spread([r.get(key) for r in rs])} |"
        if nats:
            row += (f" {_spread([r.get('exact_nll_nats') for r in rs])} |"
                    f" {_spread([r.get('nll_gap_nats') for r in rs])} |")
        lines.append(row)
    return lines


def _score_error_table(runs) -> list[str]:
    """results.md's score-error section (the mixture): a column per t; empty without it."""
    if not any("score_error" in r for rs in runs.values() for r in rs):
        return []
    times = next(r["score_error"] for rs in runs.values() for r in rs if "score_error" in r)
    lines = ["", "## Score error E|std (s_theta - s_exact)|^2 / d by t", "",
             "| variant | " + " | ".join(f"t = {t}" for t in times) + " |",
             "| --- | " + " | ".join("---" for _ in times) + " |"]
    for v, rs in runs.items():
        lines.append(f"| {v} | " + " | ".join(
            _spread([r.get("score_error", {}).get(t) for r in rs]) for t in times) + " |")
    return lines


def write_tables(config, workdir: pathlib.Path, results) -> None:
    """results.md: sample quality by sampler and budget (one column per variant), the
    likelihood and, for the mixture, the score error by t; mean ± std over seeds."""
    c = config.compare
    lines = [f"# Comparing SDEs: {config.data.name}, {config.model.name}, "
             f"{config.training.n_steps} training steps, seeds {list(c.seeds)}", ""]
    for metric in _metrics(config):
        lines += _quality_table(config, results, metric)
    runs = _run_facts(config, results)
    lines += _likelihood_table(config, runs) + _score_error_table(runs)
    (workdir / "results.md").write_text("\n".join(lines) + "\n")


def _pyplot():
    """matplotlib.pyplot drawing to files only (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: pathlib.Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _mean_loss_curve(workdir, variant, seeds):
    """(steps, training loss averaged over seeds) from the runs' metrics.jsonl, cut to the
    shortest run; None when the first seed's run logged no loss."""
    curves = []
    for seed in seeds:
        path = run_dir(workdir, variant, seed) / "metrics.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] \
            if path.is_file() else []
        curves.append([(r["step"], r["loss"]) for r in rows if "loss" in r])
    if not (curves and curves[0]):
        return None
    n = min(len(cv) for cv in curves)
    steps = [p[0] for p in curves[0][:n]]
    return steps, np.mean([[p[1] for p in cv[:n]] for cv in curves], 0)


def _plot_loss_curves(config, workdir, colours) -> None:
    """loss_curves.png: training loss per variant, mean over seeds."""
    c = config.compare
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for v in c.run_variants:
        curve = _mean_loss_curve(workdir, v, c.seeds)
        if curve is not None:
            ax.plot(*curve, label=v, color=colours[v])
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title="Training loss")
    ax.legend(fontsize=8)
    _save(fig, workdir / "loss_curves.png")


def _quality_points(groups, metric, **fields) -> list:
    """Sorted (median NFE, mean metric over seeds) of the groups of one (score, sampler,
    variant), one point per budget; skipped cells left out."""
    return sorted((np.median([x["nfe"] for x in cells]),
                   np.mean([x.get(metric, np.nan) for x in cells]))
                  for cells in groups.values()
                  if all(cells[0][f] == value for f, value in fields.items())
                  and "skipped" not in cells[0])


def _plot_quality_vs_nfe(config, workdir, results, colours) -> None:
    """quality_vs_nfe.png: the first sample metric against NFE, a panel per sampler, learned
    (solid) and exact (dashed) scores per variant, the noise floor dotted."""
    c, metric, groups = config.compare, _metrics(config)[0], _groups(results)
    samplers = [s for s in c.samplers if any(cells[0]["sampler"] == s
                                             for cells in groups.values())]
    cols = min(4, len(samplers))
    rows = -(-len(samplers) // cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    floor = results.runs.get("floor", {}).get(metric)
    for ax, sampler in zip(axes.flat, samplers):
        for v in c.run_variants:
            for score, style in (("learned", "o-"), ("exact", "x--")):
                pts = _quality_points(groups, metric, score=score, sampler=sampler, variant=v)
                if pts:
                    ax.plot(*zip(*pts), style, color=colours[v], ms=3,
                            label=v if score == "learned" else f"{v} (exact score)")
        if floor is not None:
            ax.axhline(floor, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", title=sampler, xlabel="NFE")
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(samplers):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(metric)
    axes.flat[0].legend(fontsize=6)
    _save(fig, workdir / "quality_vs_nfe.png")


def _plot_likelihood(config, workdir, results, colours) -> None:
    """likelihood.png: held-out bits/dim or NLL per variant (bar: mean, error: std over
    seeds), the exact mixture's NLL dashed."""
    c = config.compare
    key = "bpd" if any("bpd" in r for r in results.runs.values()) else "nll_nats"
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    for i, v in enumerate(c.run_variants):
        vals = [results.runs.get(f"{v}_seed{s}", {}).get(key) for s in c.seeds]
        vals = [x for x in vals if x is not None]
        if vals:
            ax.bar(i, np.mean(vals), yerr=np.std(vals) if len(vals) > 1 else None,
                   color=colours[v])
    exact = [r.get("exact_nll_nats") for r in results.runs.values() if "exact_nll_nats" in r]
    if exact:
        ax.axhline(exact[0], color="k", lw=1, ls="--", label="exact NLL")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(c.run_variants)), list(c.run_variants))
    ax.set(ylabel="bits/dim" if key == "bpd" else "NLL (nats)", title="Held-out likelihood")
    _save(fig, workdir / "likelihood.png")


def _plot_samples(config, workdir, colours) -> None:
    """samples.png: each variant's first seed side by side, drawn by the grid sampler at the
    largest budget (points or an image grid); not written when no samples were saved."""
    from scorelab.data import to_uint8
    from scorelab.pictures import image_grid

    c = config.compare
    grid = c.grid_sampler if c.grid_sampler in c.samplers else next(
        (s for s in c.samplers if SAMPLERS[s][1]), c.samplers[0])
    budget = max(c.budgets) if SAMPLERS[grid][1] else "adaptive"
    files = {v: _samples_file(workdir, dict(score="learned", variant=v, seed=c.seeds[0],
                                            sampler=grid, budget=budget))
             for v in c.run_variants}
    shown = [(v, np.load(f)) for v, f in files.items() if f.is_file()]
    if not shown:
        return
    fig, axes = _pyplot().subplots(1, len(shown), figsize=(2.4 * len(shown), 2.6),
                                   squeeze=False)
    for ax, (v, x) in zip(axes[0], shown):
        if x.ndim == 2:
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color=colours[v])
            ax.set(xlim=(-4, 4), ylim=(-3, 4), aspect="equal")
        else:
            ax.imshow(image_grid(to_uint8(x[:36], centered=config.data.centered),
                                 fill=255).squeeze(), cmap="gray")
        ax.set_title(f"{v}: {grid}, {budget} NFE", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, workdir / "samples.png")


def write_plots(config, workdir: pathlib.Path, results) -> None:
    """loss_curves.png, quality_vs_nfe.png, likelihood.png and samples.png; each variant keeps
    one colour in all four."""
    colours = {v: f"C{i}" for i, v in enumerate(config.compare.run_variants)}
    _plot_loss_curves(config, workdir, colours)
    _plot_quality_vs_nfe(config, workdir, results, colours)
    _plot_likelihood(config, workdir, results, colours)
    _plot_samples(config, workdir, colours)
