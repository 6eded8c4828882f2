"""Anomaly scores of a trained image run against the classical detectors: AUROC of each of
`train.py score`'s methods beside scikit-learn's IsolationForest, one-class SVM, a kernel density
and a Gaussian mixture, all fitted on the run's own training images.

The normal set is the run's held-out images; each anomalous set is the same images corrupted:
  flipped     upside down;
  rotated     a quarter turn;
  noised      Gaussian noise of 40 grey levels added (clipped to 0..255);
  occluded    a black square of a quarter of the side hidden at a random place;
  natural     out of domain: grey patches of the two photographs scikit-learn ships
              (china.jpg, flower.jpg), cut at random and resized to the run's image size.
Baselines see the pixels in [0, 1] as vectors: IsolationForest (200 trees), OneClassSVM (RBF,
gamma "scale", nu 0.1), KernelDensity (Gaussian, bandwidth by 5-fold likelihood over a grid)
and GaussianMixture (10 full-covariance components, reg_covar 1e-3); their score is the
negative of their normality score. AUROC: held-out (0) against corrupted (1), higher is better.

    pip install -e '.[bench]'
    python train.py --workdir=runs/default                         # the digits run (6 minutes)
    python -m bench.bench_anomaly --workdir=runs/default           # bench/results/anomaly.json
    python train.py --config=configs/mnist.py --workdir=runs/mnist
    python -m bench.bench_anomaly --workdir=runs/mnist --name=mnist --count=128 \
        --methods=likelihood,msma,ratio                            # 2 x 25 minutes
    python -m bench.bench_anomaly --report
"""
import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

from bench.bench_impute import read_results
from scorelab.inputs import score
from scorelab.loop import load_data
from scorelab.workdir import read_config

CORRUPTIONS = ("flipped", "rotated", "noised", "occluded", "natural")
OURS = ("likelihood", "msma", "ratio", "reconstruction")
BASELINES = ("isolation_forest", "ocsvm", "kde", "gmm")


def corrupt(images: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The held-out uint8 images (n, H, W, C) corrupted by `kind`."""
    n, h, w, c = images.shape
    if kind == "flipped":
        return images[:, ::-1].copy()
    if kind == "rotated":
        return np.rot90(images, 1, axes=(1, 2)).copy()
    if kind == "noised":
        return np.clip(images + rng.normal(0, 40, images.shape), 0, 255).astype(np.uint8)
    if kind == "occluded":
        out, side = images.copy(), max(h // 4, 1)
        for image, i, j in zip(out, rng.integers(0, h - side + 1, n),
                               rng.integers(0, w - side + 1, n)):
            image[i:i + side, j:j + side] = 0
        return out
    if kind == "natural":
        return natural_patches(n, (h, w, c), rng)
    raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {kind!r}")


def natural_patches(n: int, shape, rng: np.random.Generator) -> np.ndarray:
    """n grey patches of scikit-learn's two sample photographs, each a random square of 4 to
    8 times the image side, resized (PIL, bilinear) to `shape`."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    photos = [np.asarray(Image.fromarray(p).convert("L")) for p in load_sample_images().images]
    h, w, c = shape
    out = np.empty((n, h, w, c), np.uint8)
    for k in range(n):
        photo = photos[k % len(photos)]
        side = int(rng.integers(4 * h, 8 * h + 1))
        i, j = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        patch = Image.fromarray(photo[i:i + side, j:j + side]).resize((w, h), Image.BILINEAR)
        out[k] = np.asarray(patch)[..., None]
    return out


def baseline_scores(train: np.ndarray, sets: dict, seed: int) -> dict:
    """{detector: {set: scores}} of the classical detectors fitted on `train` (higher: more
    anomalous)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity
    from sklearn.svm import OneClassSVM
    flat = lambda x: x.reshape(len(x), -1).astype(np.float64) / 255.0
    x = flat(train)
    grid = GridSearchCV(KernelDensity(), {"bandwidth": np.geomspace(0.05, 2.0, 12)}, cv=5)
    detectors = {
        "isolation_forest": IsolationForest(n_estimators=200, random_state=seed).fit(x),
        "ocsvm": OneClassSVM(gamma="scale", nu=0.1).fit(x),
        "kde": grid.fit(x).best_estimator_,
        "gmm": GaussianMixture(10, covariance_type="full", reg_covar=1e-3,
                               random_state=seed).fit(x),
    }
    return {name: {s: -d.score_samples(flat(v)) for s, v in sets.items()}
            for name, d in detectors.items()}


def our_scores(workdir: str, sets: dict, seed: int, methods: str) -> dict:
    """{method: {set: scores}} of `train.py score --method=<methods>`, all sets in one
    call."""
    names = list(sets)
    joined = np.concatenate([sets[s] for s in names])
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "images.npz"
        np.savez(path, images=joined)
        values = score(workdir, input=str(path), output=str(pathlib.Path(tmp) / "scores.csv"),
                       seed=seed, method=methods)
    bounds = np.cumsum([0] + [len(sets[s]) for s in names])
    return {m: {s: v[a:b] for s, a, b in zip(names, bounds[:-1], bounds[1:])}
            for m, v in values.items()}


def maps_picture(workdir: str, sets: dict, path: pathlib.Path, seed: int, n: int = 8):
    """The first n images of each set above their reconstruction maps (`score --maps`), one
    row pair per set, the maps on one colour scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(sets)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        np.savez(tmp / "images.npz", images=np.concatenate([sets[s][:n] for s in names]))
        score(workdir, input=str(tmp / "images.npz"), output=str(tmp / "scores.csv"),
              seed=seed, method="reconstruction", maps=str(tmp / "maps.npz"))
        with np.load(tmp / "maps.npz") as f:
            maps = f["maps"].mean(axis=-1)
    top = np.quantile(maps, 0.99)
    fig, axes = plt.subplots(2 * len(names), n, figsize=(n, 2 * len(names)))
    for row, name in enumerate(names):
        for col in range(n):
            image, heat = sets[name][col, ..., 0], maps[row * n + col]
            axes[2 * row, col].imshow(image, cmap="gray", vmin=0, vmax=255)
            axes[2 * row + 1, col].imshow(heat, cmap="magma", vmin=0, vmax=top)
        axes[2 * row, 0].set_ylabel(name, rotation=0, ha="right", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(labels, np.r_[normal, anomalous]))


def report(rows: list) -> str:
    """One markdown table per data set: AUROC by corruption, ours then the baselines; the
    best of each row in bold."""
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        row = next(r for r in rows if r["data"] == name)
        methods = [m for m in OURS + BASELINES if m in row["auroc"]]
        out += [f"\n{name} ({row['count']} held-out images against {row['count']} of each "
                f"kind)\n", "| anomalies | " + " | ".join(methods) + " |",
                "| --- " * (len(methods) + 1) + "|"]
        for kind in CORRUPTIONS:
            values = [row["auroc"][m][kind] for m in methods]
            best = max(round(v, 3) for v in values)
            cells = [f"**{v:.3f}**" if round(v, 3) == best else f"{v:.3f}" for v in values]
            out.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/default", help="a trained image run")
    parser.add_argument("--name", default="digits", help="the data set's name in the results")
    parser.add_argument("--count", type=int, default=297,
                        help="held-out images used (and as many of each anomaly)")
    parser.add_argument("--methods", default="all",
                        help="score's --method: all, or ours joined by commas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/anomaly.json")
    parser.add_argument("--report", action="store_true", help="print --out as tables, only")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    results = read_results(out, report if args.report else None)
    if results is None:
        return
    config = read_config(pathlib.Path(args.workdir))
    data = load_data(config)
    rng = np.random.default_rng(args.seed)
    normal = data.test[:args.count]
    sets = {"held_out": normal, **{k: corrupt(normal, k, rng) for k in CORRUPTIONS}}
    tic = time.perf_counter()
    scores = our_scores(args.workdir, sets, args.seed, args.methods)
    seconds_ours = time.perf_counter() - tic
    scores |= baseline_scores(data.train, sets, args.seed)
    row = {"data": args.name, "workdir": args.workdir, "count": len(normal),
           "seconds_ours": round(seconds_ours, 1),
           "auroc": {m: {k: auroc(s["held_out"], s[k]) for k in CORRUPTIONS}
                     for m, s in scores.items()}}
    results["rows"] = [r for r in results["rows"] if r["data"] != args.name] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(report([row]))
    picture = out.parent / f"anomaly_maps_{args.name}.png"
    maps_picture(args.workdir, sets, picture, args.seed)
    print(f"wrote {out} and {picture}")


if __name__ == "__main__":
    main()
