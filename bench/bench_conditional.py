"""Controllable generation from trained runs, measured: class accuracy by guidance scale,
anomaly detection by likelihood, and imputation of a table against classical baselines.

Trains what is missing under --runs (ordinary resumable runs: default, digits_cfg,
digits_classifier, table), then:
  guidance    `sample --class=all` (the classes in turn) at each scale, for classifier-free
              guidance (digits_cfg) and classifier guidance (default + digits_classifier), with
              the probability-flow ODE; accuracy is the in-project digit classifier's agreement
              with the requested class, beside the unguided baseline (scale 0) and its FD;
  anomaly     `score` (bits/dim) of the 297 held-out digits against the same digits corrupted
              (flipped upside down, pixels shuffled, inverted) and uniform noise; AUROC of bits/dim
              as the anomaly score;
  imputation  the 57 held-out rows of the bundled table with 10 / 30 / 50% of the cells removed
              at random, filled by `impute` (the mean of 8 draws), by the training columns' means
              and by the 5 nearest training rows on the observed cells; RMSE in standard
              deviations of each column, over the removed cells.

    python -m bench.bench_conditional            # writes bench/results/conditional.json
    python -m bench.bench_conditional --quick    # fewer samples, scales and fractions
"""
import argparse
import json
import pathlib
import shutil
import tempfile

import jax
import numpy as np

from configs import default, digits_cfg, digits_classifier, table
from scorelab import train
from scorelab.commands import sample
from scorelab.data import tables
from scorelab.inputs import impute, score
from scorelab.loop import load_data
from scorelab.metrics import METRICS

RESULTS = pathlib.Path(__file__).with_name("results")
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "conditional"
DIGITS = load_data(default.get_config())  # the held-out digits every FD is measured against


def ensure_run(runs: pathlib.Path, name: str, module) -> pathlib.Path:
    workdir = runs / name
    train(module.get_config(), workdir)  # a finished run only restores
    return workdir


def guidance(runs, scales, num) -> list[dict]:
    cfg = ensure_run(runs, "digits_cfg", digits_cfg)
    unconditional = ensure_run(runs, "default", default)
    classifier = ensure_run(runs, "digits_classifier", digits_classifier)
    rows = []
    for method, workdir, extra in [("classifier-free", cfg, {}),
                                   ("classifier", unconditional, {"classifier": str(classifier)})]:
        for scale in scales:
            stem = sample(workdir, method="ode", num=num, seed=0, out="", label="all",
                          guidance=scale, **extra)
            figures = json.loads(stem.with_suffix(".json").read_text())
            figures["fd_digits"] = frechet(stem)
            rows.append({"guidance": method, "scale": scale, **{
                k: figures[k] for k in ("class_accuracy", "fd_digits", "nfe")}})
            print(f"  {method:>15} scale {scale:g}: accuracy {figures['class_accuracy']:.3f}, "
                  f"FD {figures['fd_digits']:.2f}, NFE {figures['nfe']}")
            if method == "classifier-free" and scale == max(scales):
                DOCS.mkdir(parents=True, exist_ok=True)
                shutil.copy(stem.with_suffix(".png"), DOCS / "classes_cfg.png")
    return rows


def frechet(stem) -> float:
    """The digit metric's Frechet distance of the samples saved at `stem` (model space)."""
    with np.load(stem.with_suffix(".npz")) as f:
        samples = f["samples"]
    return METRICS["digit_classifier"](samples, DIGITS, centered=True)["eval/fd_digits"]


def corruptions(test: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    flat = test.reshape(len(test), -1)
    shuffled = np.stack([row[rng.permutation(flat.shape[1])] for row in flat])
    return {"flipped": test[:, ::-1].copy(), "shuffled": shuffled.reshape(test.shape),
            "inverted": 255 - test, "uniform noise": rng.integers(0, 256, test.shape, np.uint8)}


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(score of an anomaly > score of a normal example), ties counting half."""
    diff = anomalous[:, None] - normal[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def anomaly(runs, tmp: pathlib.Path, num: int) -> list[dict]:
    workdir = ensure_run(runs, "default", default)
    test = load_data(default.get_config()).test[:num]
    nll = {}
    for name, x in {"held-out digits": test, **corruptions(test)}.items():
        path = tmp / f"{name}.npz"
        np.savez(path, images=x)
        nll[name] = score(workdir, input=str(path), output=str(tmp / f"{name}.csv"))
    rows = [{"inputs": name, "bits_per_dim": float(np.mean(v)),
             "auroc": None if name == "held-out digits" else auroc(nll["held-out digits"], v)}
            for name, v in nll.items()]
    for r in rows:
        print(f"  {r['inputs']:>16}: bpd {r['bits_per_dim']:.3f}, AUROC {r['auroc']}")
    return rows


def knn_fill(train: np.ndarray, rows: np.ndarray, k: int = 5) -> np.ndarray:
    """Each missing cell: the mean of that column over the k training rows nearest on the
    row's observed cells (standardised units)."""
    out = rows.copy()
    for i, row in enumerate(rows):
        seen = ~np.isnan(row)
        dist = np.sum(np.square(train[:, seen] - row[seen]), axis=1)
        out[i, ~seen] = train[np.argsort(dist)[:k]][:, ~seen].mean(axis=0)
    return out


def imputation(runs, tmp: pathlib.Path, fractions) -> list[dict]:
    workdir = ensure_run(runs, "table", table)
    config = table.get_config()
    dataset = load_data(config)
    stats = dataset.table
    test = dataset.test  # standardised, complete
    rows = []
    for frac in fractions:
        hidden = np.random.default_rng(int(100 * frac)).random(test.shape) < frac
        holed = np.where(hidden, np.nan, test)
        original = tables.read(tables.BUNDLED)
        cells = [["" if np.isnan(v) else f"{v:.17g}" for v in stats.to_data(r)] for r in holed]
        tables.write(tmp / "holed.csv", original.columns, cells)
        impute(workdir, input=str(tmp / "holed.csv"), output=str(tmp / "filled.csv"))
        filled = stats.to_model(tables.read(tmp / "filled.csv").values)
        rmse = lambda x: float(np.sqrt(np.mean(np.square(x[hidden] - test[hidden]))))
        row = {"missing": frac, "cells": int(hidden.sum()), "diffusion": rmse(filled),
               "column_mean": rmse(np.zeros_like(test)),
               "knn_5": rmse(knn_fill(dataset.train, holed))}
        rows.append(row)
        print(f"  {frac:.0%} missing ({row['cells']} cells): diffusion {row['diffusion']:.3f}, "
              f"column mean {row['column_mean']:.3f}, 5-NN {row['knn_5']:.3f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs", help="where the trained runs are (or go)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="guidance,anomaly,imputation",
                        help="which parts to (re)measure; the others keep their saved results")
    args = parser.parse_args()
    runs, quick = pathlib.Path(args.runs), args.quick
    scales = (0.0, 1.0, 3.0) if quick else (0.0, 1.0, 2.0, 4.0)
    parts = {"guidance": lambda tmp: guidance(runs, scales, 100 if quick else 500),
             "anomaly": lambda tmp: anomaly(runs, tmp, 64 if quick else 297),
             "imputation": lambda tmp: imputation(runs, tmp, (0.3,) if quick else (0.1, 0.3, 0.5))}
    chosen = args.parts.split(",")
    if unknown := set(chosen) - set(parts):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {list(parts)}")
    path = RESULTS / "conditional.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            results[name] = parts[name](pathlib.Path(tmp))
    results["device"] = jax.devices()[0].device_kind
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
