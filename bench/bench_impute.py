"""Imputation of tables against the statisticians' tools: our diffusion imputers beside the
column mean, k nearest neighbours, MICE and MissForest, on tables that scikit-learn carries
(wine, 178 x 13; diabetes, 442 x 10) and the bundled breast-cancer table (569 x 30).

For each table and missingness pattern (cells missing completely at random at 10 / 30 / 50%,
and a self-masking pattern missing not at random: a cell above its column's median is hidden
with probability 0.5, one below with probability 0.1, about 30% in all), the holed table is
what every method sees, as a user's file (at least one cell is kept in each row):
  ours, unconditional   `configs/table.py` trained on the holed table, each row inpainted by
                        the replacement method ("projection") and by sequential Monte Carlo
                        ("smc", 16 particles, 200 steps);
  ours, conditional     the same config with `model.conditional_cells` (CSDI's random masks),
                        sampled given each row's observed cells ("conditional");
  mean, knn             scikit-learn's SimpleImputer and KNNImputer (5 neighbours);
  mice                  IterativeImputer (Bayesian ridge, 10 rounds, sample_posterior=False);
  missforest            IterativeImputer with a random forest of 100 trees (10 rounds).
RMSE and MAE over the hidden cells in the column's standard deviations (of the full table),
ours from the mean of `--draws` draws; CRPS of our draws (the energy form,
E|X - y| - E|X - X'| / 2, per cell). Every run directory is kept under --runs, so a second
call only re-imputes; results go to --out as each cell finishes.

    pip install -e '.[bench]'
    python -m bench.bench_impute                       # writes bench/results/impute.json
    python -m bench.bench_impute --tables=wine --patterns=mcar30 --steps=2000   # one cell
    python -m bench.bench_impute --ours=conditional    # one of ours only, other rows kept
    python -m bench.bench_impute --report              # the markdown table of the results
"""
import argparse
import json
import pathlib
import time

import numpy as np

from configs import table as table_config
from scorelab.data import tables
from scorelab.inputs import impute_draws
from scorelab.loop import train

PATTERNS = {"mcar10": 0.1, "mcar30": 0.3, "mcar50": 0.5, "mnar": None}


def load_tables() -> dict:
    """name -> (columns, values): real tables that a package carries, no download."""
    from sklearn.datasets import load_diabetes, load_wine
    wine, diabetes = load_wine(), load_diabetes(scaled=False)
    bundled = tables.read(tables.BUNDLED)
    return {"wine": (tuple(wine.feature_names), wine.data),
            "diabetes": (tuple(diabetes.feature_names), diabetes.data),
            "breast_cancer": (bundled.columns, bundled.values)}


def hide(values: np.ndarray, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """The mask of hidden cells; every row keeps at least one cell."""
    if PATTERNS[pattern] is not None:
        hidden = rng.random(values.shape) < PATTERNS[pattern]
    else:
        above = values > np.median(values, axis=0)
        hidden = rng.random(values.shape) < np.where(above, 0.5, 0.1)
    full = hidden.all(axis=1)
    hidden[full, rng.integers(0, values.shape[1], full.sum())] = False
    return hidden


def baselines(holed: np.ndarray) -> dict:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
    methods = {
        "mean": SimpleImputer(),
        "knn": KNNImputer(n_neighbors=5),
        "mice": IterativeImputer(max_iter=10, random_state=0),
        "missforest": IterativeImputer(
            estimator=RandomForestRegressor(n_estimators=100, n_jobs=2, random_state=0),
            max_iter=10, random_state=0)}
    out = {}
    for name, imputer in methods.items():
        tic = time.perf_counter()
        out[name] = (imputer.fit_transform(holed), time.perf_counter() - tic)
    return out


def crps(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per cell, from draws (draws, cells): E|X - y| - E|X - X'| / 2."""
    first = np.abs(samples - truth).mean(axis=0)
    spread = np.abs(samples[:, None] - samples[None]).mean(axis=(0, 1))
    return first - 0.5 * spread


def ours(runs: pathlib.Path, name: str, holed_csv: pathlib.Path, holed: np.ndarray,
         args) -> dict:
    out = {}
    for kind in args.ours.split(","):
        workdir = runs / f"{name}-{kind}"
        config = table_config.get_config()
        config.data.path = str(holed_csv)
        config.training.update(n_steps=args.steps, eval_every=0,
                               checkpoint_every=args.steps)
        config.model.conditional_cells = kind == "conditional"
        tic = time.perf_counter()
        train(config, workdir)
        seconds = time.perf_counter() - tic
        methods = ({"conditional": {}} if kind == "conditional" else
                   {"projection": {}, "smc": dict(num_particles=16, num_steps=200)})
        for method, options in methods.items():
            tic = time.perf_counter()
            result = impute_draws(workdir, holed, draws=args.draws, method=method, **options)
            out[method] = (result.samples, seconds + time.perf_counter() - tic)
    return out


BASELINES, OURS = ("mean", "knn", "mice", "missforest"), ("projection", "smc", "conditional")


def report(rows: list) -> str:
    """The results as one markdown table: RMSE per method, the best baseline and ours in bold,
    and CRPS of the conditional imputer."""
    cells = {}
    for r in rows:
        cells.setdefault((r["table"], r["pattern"]), {})[r["method"]] = r
    lines = ["| table | missing | " + " | ".join(BASELINES + OURS) + " | CRPS (conditional) |",
             "| --- | --- |" + " --- |" * (len(BASELINES + OURS) + 1)]
    for (table, pattern), m in cells.items():
        best = {min((k for k in group if k in m), key=lambda k: m[k]["rmse"])
                for group in (BASELINES, OURS)}
        values = [(f"**{m[k]['rmse']:.3f}**" if k in best else f"{m[k]['rmse']:.3f}")
                  if k in m else "" for k in BASELINES + OURS]
        crps_ = m.get("conditional", {}).get("crps")
        lines.append(f"| {table} | {pattern} | " + " | ".join(values)
                     + f" | {'' if crps_ is None else f'{crps_:.3f}'} |")
    return "\n".join(lines)


def read_results(out: pathlib.Path, report=None) -> dict | None:
    """The results already in `out` (a run adds to them); with `report`, prints them as its
    table and returns None."""
    results = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    if report is None:
        return results
    print(report(results["rows"]))
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default="wine,diabetes,breast_cancer")
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--steps", type=int, default=6000, help="training steps of our runs")
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--ours", default="unconditional,conditional",
                        help="which of our runs to train and impute with (the other methods' "
                             "rows in --out are kept)")
    parser.add_argument("--runs", default="runs/bench_impute")
    parser.add_argument("--out", default="bench/results/impute.json")
    parser.add_argument("--report", action="store_true", help="print --out as a table, only")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    results = read_results(out, report if args.report else None)
    if results is None:
        return
    every = load_tables()
    for table_name in args.tables.split(","):
        columns, values = every[table_name]
        for pattern in args.patterns.split(","):
            rng = np.random.default_rng(0)
            hidden = hide(values, pattern, rng)
            holed = np.where(hidden, np.nan, values)
            name = f"{table_name}-{pattern}"
            runs = pathlib.Path(args.runs)
            runs.mkdir(parents=True, exist_ok=True)
            holed_csv = runs / f"{name}.csv"
            tables.write(holed_csv, columns, [[("" if np.isnan(v) else repr(float(v)))
                                               for v in row] for row in holed])
            scale = values.std(axis=0)
            truth = values[hidden] / np.broadcast_to(scale, values.shape)[hidden]
            cells = {**{k: (v[None], s) for k, (v, s) in baselines(holed).items()},
                     **ours(runs, name, holed_csv, holed, args)}
            rows = [r for r in results["rows"] if (r["table"], r["pattern"]) !=
                    (table_name, pattern) or r["method"] not in cells]
            print(f"{name}: {int(hidden.sum())} hidden cells of {values.size}")
            for method, (samples, seconds) in cells.items():
                draws = samples[:, hidden] / np.broadcast_to(scale, values.shape)[hidden]
                error = draws.mean(axis=0) - truth
                row = dict(table=table_name, pattern=pattern, method=method,
                           hidden=int(hidden.sum()), rmse=float(np.sqrt(np.mean(error ** 2))),
                           mae=float(np.mean(np.abs(error))), seconds=seconds,
                           crps=float(crps(draws, truth).mean()) if len(draws) > 1 else None)
                rows.append(row)
                print(f"  {method:12} RMSE {row['rmse']:.3f}  MAE {row['mae']:.3f}  CRPS "
                      f"{row['crps'] if row['crps'] is None else round(row['crps'], 3)}  "
                      f"{seconds:.0f} s", flush=True)
            results = {"steps": args.steps, "draws": args.draws, "rows": rows}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    print(report(results["rows"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
