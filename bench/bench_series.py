"""Imputation of series against the forecasters' tools: our series run (`configs/series.py`,
CSDI-style conditional windows stitched by `samplers.series.fill_series`, with the series
network or the MLP on flattened windows) beside linear interpolation, a state-space smoother
and MICE on lagged copies, on series that statsmodels carries (no download):

  co2       weekly CO2 at Mauna Loa, 1958-2001, 2,284 steps, with its 59 real gaps kept;
  elnino    monthly Pacific sea-surface temperature, 1950-2010, 732 steps;
  macro     US quarterly macro data 1959-2009 (statsmodels' macrodata), 202 steps of 9
            features: growth rates of real GDP, consumption, investment, government spending
            and disposable income, with unemployment, inflation, the T-bill and real rates.

Patterns, on the observed cells: "random" hides 20% of cells; "blocks" hides runs of 4 to 24
steps of one feature until about 20% are hidden. Every method sees the same holed series.
  linear    pandas' linear interpolation in time (the nearest value at the ends);
  kalman    statsmodels' UnobservedComponents per feature (a local linear trend, a yearly cycle
            of two harmonics for co2 and elnino), the Kalman smoother's estimate and variance
            (its CRPS from that Gaussian);
  mice      IterativeImputer on each step's features and their copies 1 and 2 steps before and
            after (Bayesian ridge, 10 rounds);
  series / mlp  ours: the mean of --draws stitched draws, CRPS from them.
RMSE and MAE over the hidden cells in each feature's standard deviations; one table per
series; a plot of the elnino "blocks" fill with ours' 10-90% band and the smoother's.

    pip install -e '.[bench]' statsmodels
    python -m bench.bench_series               # bench/results/series.json, series_fill.png
    python -m bench.bench_series --series=elnino --patterns=blocks --steps=500   # one cell
    python -m bench.bench_series --report      # the markdown table of the results
"""
import argparse
import json
import pathlib
import time

import numpy as np

from bench.bench_impute import crps, read_results
from configs import series as series_config
from scorelab.inputs import series_draws
from scorelab.loop import train

PATTERNS = ("random", "blocks")
WINDOWS = {"co2": 64, "elnino": 48, "macro": 16}
PERIODS = {"co2": 52.18, "elnino": 12.0, "macro": None}


def load_series() -> dict:
    """name -> (stamps, columns, values (steps, features)), NaN where the source has gaps."""
    import statsmodels.api as sm
    co2 = sm.datasets.co2.load_pandas().data
    nino = sm.datasets.elnino.load_pandas().data
    temps = nino.drop(columns="YEAR").to_numpy().reshape(-1, 1)
    months = [f"{int(y)}-{m:02d}-01" for y in nino["YEAR"] for m in range(1, 13)]
    macro = sm.datasets.macrodata.load_pandas().data
    growth = ["realgdp", "realcons", "realinv", "realgovt", "realdpi"]
    rates = np.diff(np.log(macro[growth].to_numpy()), axis=0) * 400
    levels = macro[["unemp", "infl", "tbilrate", "realint"]].to_numpy()[1:]
    quarters = [f"{int(y)}-{3 * int(q) - 2:02d}-01" for y, q in
                zip(macro["year"][1:], macro["quarter"][1:])]
    return {"co2": ([str(d.date()) for d in co2.index], ("co2",), co2.to_numpy()),
            "elnino": (months, ("temperature",), temps),
            "macro": (quarters, (*[f"{g}_growth" for g in growth], "unemp", "infl", "tbilrate",
                                 "realint"), np.concatenate([rates, levels], axis=1))}


def hide(values: np.ndarray, pattern: str, rng) -> np.ndarray:
    """Hidden cells among the observed ones: 20% at random, or blocks of 4-24 steps."""
    observed = np.isfinite(values)
    if pattern == "random":
        return observed & (rng.random(values.shape) < 0.2)
    hidden = np.zeros_like(observed)
    while hidden.sum() < 0.2 * observed.sum():
        length, f = rng.integers(4, 25), rng.integers(values.shape[1])
        start = rng.integers(0, len(values) - length)
        hidden[start:start + length, f] = True
    return hidden & observed


def linear(holed: np.ndarray) -> np.ndarray:
    import pandas as pd
    return pd.DataFrame(holed).interpolate(limit_direction="both").to_numpy()


def kalman(holed: np.ndarray, period) -> tuple[np.ndarray, np.ndarray]:
    """The smoother's mean and std of every cell, feature by feature."""
    import statsmodels.api as sm
    mean, std = np.empty_like(holed), np.empty_like(holed)
    for f in range(holed.shape[1]):
        seasonal = [{"period": period, "harmonics": 2}] if period else None
        model = sm.tsa.UnobservedComponents(holed[:, f], level="local linear trend",
                                            freq_seasonal=seasonal)
        result = model.fit(disp=False, maxiter=200)
        mean[:, f] = result.smoother_results.smoothed_forecasts[0]
        std[:, f] = np.sqrt(np.maximum(
            result.smoother_results.smoothed_forecasts_error_cov[0, 0], 1e-12))
    return mean, std


def mice(holed: np.ndarray) -> np.ndarray:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    shifted = [np.roll(holed, lag, axis=0) for lag in (0, 1, 2, -1, -2)]
    for lag, block in zip((0, 1, 2, -1, -2), shifted):  # no wrap-around
        if lag > 0:
            block[:lag] = np.nan
        elif lag < 0:
            block[lag:] = np.nan
    wide = np.concatenate(shifted, axis=1)
    return IterativeImputer(max_iter=10, random_state=0).fit_transform(wide)[:, :holed.shape[1]]


def ours(runs: pathlib.Path, name: str, stamps, columns, holed, args) -> dict:
    from scorelab.data import tables
    csv = runs / f"{name}.csv"
    tables.write(csv, ("date", *columns), [[s, *("" if np.isnan(v) else repr(float(v))
                                                 for v in row)] for s, row in zip(stamps, holed)])
    out = {}
    for network in args.networks.split(","):
        config = series_config.get_config()
        config.data.path = str(csv)
        config.data.window = WINDOWS[name.split("-")[0]]
        config.model.name = network
        config.training.update(n_steps=args.steps, checkpoint_every=args.steps)
        if network == "mlp":
            config.model.mlp.update(hidden=256, depth=3)
            config.training.n_steps = 2 * args.steps
        workdir = runs / f"{name}-{network}"
        tic = time.perf_counter()
        train(config, workdir)
        result = series_draws(workdir, holed, draws=args.draws, num_steps=args.sample_steps)
        out[network] = (result.samples, time.perf_counter() - tic)
    return out


def plot(path, stamps, truth, holed, hidden, band, smooth, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = np.arange(len(truth))
    fig, ax = plt.subplots(figsize=(11, 3.2))
    ax.plot(t, holed[:, 0], color="black", lw=0.8, label="given")
    ax.plot(t[hidden[:, 0]], truth[hidden[:, 0], 0], ".", color="red", ms=3, label="hidden truth")
    ax.fill_between(t, band[0][:, 0], band[1][:, 0], color="tab:blue", alpha=0.3,
                    label="ours, 10-90% of draws")
    ax.plot(t, band[2][:, 0], color="tab:blue", lw=0.8, label="ours, mean")
    ax.plot(t, smooth[:, 0], color="tab:green", lw=0.8, ls="--", label="Kalman smoother")
    ax.set_xlim(0, min(len(t), 240))
    ax.set_xlabel(f"step ({stamps[0]} on)")
    ax.set_title(title)
    ax.legend(ncol=5, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(rows: list) -> str:
    """The results as one markdown table: RMSE per method (CRPS in brackets where there are
    draws or a Gaussian), the best in bold."""
    cells = {}
    for r in rows:
        cells.setdefault((r["series"], r["pattern"]), {})[r["method"]] = r
    methods = ("linear", "kalman", "mice", "series", "mlp")
    lines = ["| series | hidden | " + " | ".join(methods) + " |",
             "| --- | --- |" + " --- |" * len(methods)]
    for (name, pattern), m in cells.items():
        best = min(m, key=lambda k: m[k]["rmse"])
        text = [(f"**{m[k]['rmse']:.3f}**" if k == best else f"{m[k]['rmse']:.3f}")
                + (f" ({m[k]['crps']:.3f})" if m[k]["crps"] is not None else "")
                if k in m else "" for k in methods]
        lines.append(f"| {name} | {pattern} ({m[best]['hidden']} cells) | " + " | ".join(text)
                     + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", default="co2,elnino,macro")
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--networks", default="series,mlp")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (mlp: twice)")
    parser.add_argument("--sample_steps", type=int, default=200)
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--runs", default="runs/bench_series")
    parser.add_argument("--out", default="bench/results/series.json")
    parser.add_argument("--report", action="store_true", help="print --out as a table, only")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    results = read_results(out, report if args.report else None)
    if results is None:
        return
    runs = pathlib.Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    every = load_series()
    for series_name in args.series.split(","):
        stamps, columns, values = every[series_name]
        for pattern in args.patterns.split(","):
            hidden = hide(values, pattern, np.random.default_rng(0))
            holed = np.where(hidden, np.nan, values)
            scale = np.nanstd(values, axis=0)
            truth = (values / scale)[hidden]
            tic = time.perf_counter()
            smooth, smooth_std = kalman(holed, PERIODS[series_name])
            cells = {"linear": (linear(holed)[None], 0.0),
                     "kalman": (smooth[None], time.perf_counter() - tic), "mice": None}
            tic = time.perf_counter()
            cells["mice"] = (mice(holed)[None], time.perf_counter() - tic)
            cells.update(ours(runs, f"{series_name}-{pattern}", stamps, columns, holed, args))
            rows = [r for r in results["rows"] if (r["series"], r["pattern"]) !=
                    (series_name, pattern)]
            print(f"{series_name}-{pattern}: {int(hidden.sum())} hidden cells of "
                  f"{int(np.isfinite(values).sum())}")
            for method, (samples, seconds) in cells.items():
                draws = (samples / scale)[:, hidden]
                error = draws.mean(axis=0) - truth
                if method == "kalman":  # CRPS of the smoother's Gaussian
                    s = (smooth_std / scale)[hidden]
                    z = (truth - draws[0]) / s
                    from scipy.stats import norm
                    score = float(np.mean(s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z)
                                               - 1 / np.sqrt(np.pi))))
                else:
                    score = float(crps(draws, truth).mean()) if len(draws) > 1 else None
                row = dict(series=series_name, pattern=pattern, method=method,
                           hidden=int(hidden.sum()), rmse=float(np.sqrt(np.mean(error ** 2))),
                           mae=float(np.mean(np.abs(error))), crps=score, seconds=seconds)
                rows.append(row)
                print(f"  {method:8} RMSE {row['rmse']:.3f}  MAE {row['mae']:.3f}  CRPS "
                      f"{'-' if score is None else f'{score:.3f}'}  {seconds:.0f} s", flush=True)
            if (series_name, pattern) == ("elnino", "blocks") and "series" in cells:
                samples = cells["series"][0]
                band = (np.quantile(samples, 0.1, axis=0), np.quantile(samples, 0.9, axis=0),
                        samples.mean(axis=0))
                plot(out.with_name("series_fill.png"), stamps, values, holed, hidden, band,
                     smooth, "elnino, blocks of 4-24 months hidden: the series run's draws")
            results = {"steps": args.steps, "draws": args.draws, "rows": rows}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    print(report(results["rows"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
