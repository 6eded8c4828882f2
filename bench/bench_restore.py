"""Noisy observations on trained image runs, beside classical methods: denoising against
scikit-image's denoisers, and Fourier-undersampled reconstruction against zero-filling and
total-variation least squares.

  denoise  the first --num held-out images with Gaussian noise of each std (pixel units of
           [0, 1] images): `posterior_mean` (1 NFE), a `denoise` draw (the exact start, its
           default steps), and scikit-image's non-local means, total variation (Chambolle) and
           wavelet (BayesShrink, PyWavelets) denoisers, given the true noise std where they take
           one and otherwise at their documented defaults. PSNR / SSIM against the clean images.
  fourier  (28 x 28 runs) the orthonormal 2-D FFT at a centre-dense random FRACTION of the
           frequencies with noise 0.01: `solve_inverse` with each method (steps: STEPS), the
           zero-filled inverse FFT (A^T y), and TV least squares, min 0.5 |A x - y|^2 +
           lam TV(x) over [0, 1] images (1000 Adam steps, smoothed TV), with lam the best of a
           grid in hindsight on these same images (an oracle choice, in the baseline's favour).
  methods  (any image run) each method of `solve_inverse` on the observation commands of
           `train.py` (centre and random-pixel completion, 2x super-resolution, deblurring with
           noise 0.02), 16 held-out images, N steps (PiGDM also at 100, DDRM at 20 and
           100): PSNR / SSIM of a draw, the classifier's accuracy on it for digits, NFE, seconds.
Pixel values of our draws are clipped to [0, 1] like the classical outputs'; seconds are those of
one call compiled beforehand (classical: one call per image on the CPU, summed).

    python -m bench.bench_restore --run=runs/default --parts=denoise,methods
    python -m bench.bench_restore --run=runs/default --parts=methods --methods=pigdm
    python -m bench.bench_restore --run=runs/mnist --parts=denoise
    python -m bench.bench_restore --run=runs/mnist --parts=fourier --num=16
    python -m bench.bench_restore --run=runs/mnist --parts=fourier --num=16 --methods=pigdm
--methods runs only those methods of solve_inverse (the fourier part also its cheap baselines),
their rows replacing the stored ones; the Fourier pictures' other rows come from
docs/observe/fourier_rows_<data>.npz, which every fourier run writes.
"""
import argparse
import json
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models.score import bind
from samplers import INVERSE_METHODS, denoise, posterior_mean, solve_inverse
from samplers.operators import FourierSampling
from scorelab.build import score_fn_for
from scorelab.commands import restore
from scorelab.data import preprocess
from scorelab.step import make_mesh
from scorelab.tasks import psnr, run_task, save_rows, ssim

RESULTS = pathlib.Path(__file__).with_name("results")
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "observe"
NOISE = (0.05, 0.1, 0.2, 0.3, 0.5)
FRACTIONS = (0.25, 0.1)
FOURIER_NOISE = 0.01
STEPS = {"tweedie": 300, "pigdm": 300, "ddrm": 100, "projection": 300}


def timed(fn, *args):
    """(fn(*args), seconds of the call) for a jitted fn, compiled ahead of the timing."""
    compiled = fn.lower(*args).compile()
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - start


def classical(name, fn, noisy):
    """A scikit-image denoiser image by image on (n, H, W, C) pixels; (output, seconds)."""
    start = time.perf_counter()
    out = np.stack([fn(img[..., 0])[..., None] if img.shape[-1] == 1 else fn(img)
                    for img in noisy])
    return np.clip(out, 0, 1), time.perf_counter() - start


def skimage_denoisers(s):
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet
    return {"non-local means": lambda im: denoise_nl_means(im, sigma=s, channel_axis=None
                                                           if im.ndim == 2 else -1),
            "total variation": lambda im: denoise_tv_chambolle(im, channel_axis=None
                                                               if im.ndim == 2 else -1),
            "wavelet": lambda im: denoise_wavelet(im, sigma=s, channel_axis=None
                                                  if im.ndim == 2 else -1)}


def figures(name, x, truth, nfe, seconds):
    return {"method": name, "psnr": psnr(x, truth), "ssim": ssim(x, truth), "nfe": nfe,
            "seconds": round(seconds, 3)}


def part_denoise(sde, score, x0, pixels, scale, key, out_rows):
    truth, rows = pixels(x0), []
    for s in NOISE:
        y = x0 + scale * s * jax.random.normal(jax.random.fold_in(key, int(1000 * s)), x0.shape)
        noisy = np.asarray(pixels(y, clip=False))
        (mean, _), t_mean = timed(jax.jit(lambda y: posterior_mean(sde, score, y, scale * s)), y)
        (draw, nfe), t_draw = timed(jax.jit(lambda y: denoise(sde, score, y, scale * s, key)), y)
        cells = [figures("noisy", np.clip(noisy, 0, 1), truth, 0, 0.0),
                 figures("posterior mean", pixels(mean), truth, 1, t_mean),
                 figures("denoise draw", pixels(draw), truth, int(nfe), t_draw)]
        shown = {"noisy": np.clip(noisy, 0, 1), "posterior mean": pixels(mean),
                 "denoise draw": pixels(draw)}
        for name, fn in skimage_denoisers(s).items():
            out, seconds = classical(name, fn, noisy)
            cells.append(figures(name, out, truth, 0, seconds))
            shown[name] = out
        for c in cells:
            c["noise_std"] = s
            print(f"  denoise s={s:<5} {c['method']:16} PSNR {c['psnr']:6.2f} SSIM "
                  f"{c['ssim']:.3f} NFE {c['nfe']:4d} {c['seconds']:7.3f} s", flush=True)
        rows += cells
        if s == out_rows:
            order = ["noisy", "non-local means", "total variation", "wavelet", "posterior mean",
                     "denoise draw"]
            grid_rows = [shown[k][:8] for k in order] + [truth[:8]]
    return rows, grid_rows


def tv_least_squares(op, y, lam, steps=1000):
    """argmin over [0, 1] images of 0.5 |A x - y|^2 + lam sum sqrt(|grad x|^2 + 1e-4)."""
    def loss(x):
        dx, dy = jnp.diff(x, axis=1), jnp.diff(x, axis=2)
        tv = jnp.sum(jnp.sqrt(dx[:, :, :-1] ** 2 + dy[:, :-1, :] ** 2 + 1e-4))
        return 0.5 * jnp.sum(jnp.square(op(x) - y)) + lam * tv

    tx = optax.adam(0.01)
    x = jnp.clip(op.adjoint(y), 0, 1)

    def step(carry, _):
        x, state = carry
        g = jax.grad(loss)(x)
        updates, state = tx.update(g, state)
        return (jnp.clip(optax.apply_updates(x, updates), 0, 1), state), None

    (x, _), _ = jax.lax.scan(step, (x, tx.init(x)), None, length=steps)
    return x


def part_fourier(sde, score, x0, pixels, scale, key, centered, only=None, stored=None):
    """Rows and picture grids; with `only`, of those methods of solve_inverse (and the cheap
    baselines), the other methods' picture rows coming from `stored` (the last run's)."""
    truth, rows, grids = pixels(x0), [], {}
    for fraction in FRACTIONS:
        op = FourierSampling.create(x0.shape[1:], fraction, 0)
        # the observation of the [0, 1] images; the model sees the same data in its own space
        y_pix = op(jnp.asarray(truth, jnp.float32))
        y_pix = y_pix + FOURIER_NOISE * jax.random.normal(key, y_pix.shape)
        zero = np.clip(np.asarray(op.adjoint(y_pix)), 0, 1)
        cells = [figures("zero-filled IFFT", zero, truth, 0, 0.0)]
        shown = {"zero-filled IFFT": zero}
        best = None
        for lam in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0):
            x, seconds = timed(jax.jit(lambda y: tv_least_squares(op, y, lam)), y_pix)
            c = figures(f"TV least squares (lam {lam:g})", np.asarray(x), truth, 0, seconds)
            if best is None or c["psnr"] > best[0]["psnr"]:
                best = (c, np.asarray(x))
        cells.append(best[0])
        shown["TV least squares"] = best[1]
        # A is linear: A (2 p - 1) = 2 A p - A 1 for centred data
        y = (2 * y_pix - op(jnp.ones_like(x0))) if centered else y_pix
        for method, steps in STEPS.items():
            if only and method not in only:
                if f"{fraction}/{method}" in stored:  # a row of the pictures
                    shown[method] = stored[f"{fraction}/{method}"] / 255
                continue
            fn = jax.jit(lambda y: solve_inverse(sde, score, y, op, scale * FOURIER_NOISE, key,
                                                 method=method, num_steps=steps))
            (x, nfe), seconds = timed(fn, y)
            cells.append(figures(f"{method} ({steps} steps)", pixels(x), truth, int(nfe),
                                 seconds))
            shown[method] = pixels(x)
        for c in cells:
            c["fraction"] = fraction
            print(f"  fourier {fraction:.2f} {c['method']:28} PSNR {c['psnr']:6.2f} SSIM "
                  f"{c['ssim']:.3f} NFE {c['nfe']:5d} {c['seconds']:7.2f} s", flush=True)
        rows += cells
        grids[fraction] = {k: shown[k][:8] for k in ("zero-filled IFFT", "TV least squares",
                                                     "pigdm", "tweedie", "ddrm")}
        grids[fraction]["original"] = truth[:8]
    return rows, grids


TASKS = {"complete center": ("complete", {"mask": "center"}),
         "complete random": ("complete", {"mask": "random"}),
         "super-resolve 2x": ("super-resolve", {"factor": 2}),
         "deblur (blur:1.0, noise 0.02)": ("reconstruct", {"operator": "blur:1.0",
                                                           "noise_std": 0.02})}


def part_methods(workdir: pathlib.Path, only=None):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (task, options) in TASKS.items():
            runs = [(m, None) for m in INVERSE_METHODS] + [("pigdm", 100), ("ddrm", 20),
                                                            ("ddrm", 100)]
            for method, steps in runs:
                if method in ("projection", "ddrm") and task == "reconstruct":
                    continue  # a blur's rows are not orthonormal
                if only and method not in only:
                    continue
                f = run_task(workdir, task, num=16, out=f"{tmp}/{task}", num_steps=steps,
                             method=method, **options)
                rows.append({"task": name, "method": method, "steps": steps or "N", **{
                    k: f[k] for k in ("nfe", "seconds", "psnr_draw", "ssim_draw",
                                      "psnr_observation") if k in f},
                    "class_accuracy_draw": f.get("class_accuracy_draw")})
    return rows


def plot_denoise(rows, name, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        cells = [r for r in rows if r["method"] == m]
        ax.plot([c["noise_std"] for c in cells], [c["psnr"] for c in cells], "o-", label=m,
                lw=2.5 if m in ("posterior mean", "denoise draw") else 1.2)
    ax.set_xlabel("noise std (pixels in [0, 1])")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"Denoising held-out {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained image run directory")
    parser.add_argument("--parts", default="denoise,fourier")
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--grid_noise", type=float, default=0.2)
    parser.add_argument("--methods", default="", help="methods and fourier parts: only these "
                        "methods of solve_inverse (comma-separated), their rows replacing the "
                        "stored ones")
    args = parser.parse_args()
    parts = args.parts.split(",")
    config, run, state, step = restore(pathlib.Path(args.run), make_mesh())
    centered = config.data.centered
    x0 = preprocess(jnp.asarray(run.dataset.test[:args.num]), jax.random.key(0), is_image=True,
                    centered=centered)
    score = bind(score_fn_for(config, run.model, run.sde, labels=None), state.ema_params)
    scale = 2.0 if centered else 1.0

    def pixels(x, clip=True):
        p = (np.asarray(x, np.float64) + 1) / 2 if centered else np.asarray(x, np.float64)
        return np.clip(p, 0, 1) if clip else p

    name = f"{config.data.name} ({x0.shape[1]} x {x0.shape[2]})"
    key = jax.random.key(1)
    stem = pathlib.Path(args.run).name
    out = RESULTS / f"restore_{config.data.name}.json"
    result = json.loads(out.read_text()) if out.is_file() else {}  # the other part is kept
    result.update(run=stem, step=step, backend=jax.default_backend())
    DOCS.mkdir(parents=True, exist_ok=True)
    if "denoise" in parts:
        rows, grid = part_denoise(run.sde, score, x0, pixels, scale, key, args.grid_noise)
        result["denoise"] = {"num": args.num, "rows": rows}
        plot_denoise(rows, name, DOCS / f"denoise_psnr_{config.data.name}.png")
        save_rows([(g * 255).round().astype(np.uint8) for g in grid],
                  DOCS / f"denoise_methods_{config.data.name}")
    only = set(args.methods.split(",")) if args.methods else None
    if "methods" in parts:
        kept = [r for r in result.get("methods", []) if only and r["method"] not in only]
        rows = part_methods(pathlib.Path(args.run), only)
        order = lambda r: (list(TASKS).index(r["task"]), INVERSE_METHODS.index(r["method"]),
                           0 if r["steps"] == "N" else r["steps"])
        result["methods"] = sorted(kept + rows, key=order)
    if "fourier" in parts:
        # the pictures' rows as uint8, so that --methods re-runs only some of them
        cache = DOCS / f"fourier_rows_{config.data.name}.npz"
        stored = dict(np.load(cache)) if only and cache.is_file() else None
        if only and stored is None:
            raise SystemExit(f"--methods needs the pictures' rows of a full run, {cache}")
        rows, grids = part_fourier(run.sde, score, x0, pixels, scale, key, centered, only,
                                   stored)
        if only:
            name = lambda r: r["method"].split(" (")[0]  # "tweedie (300 steps)" -> "tweedie"
            ran = lambda r: name(r) not in STEPS or name(r) in only
            order = ["zero-filled IFFT", "TV least squares", *STEPS]
            rows = sorted([r for r in result["fourier"]["rows"] if not ran(r)] + rows,
                          key=lambda r: (-r["fraction"], order.index(name(r))))
        result["fourier"] = {"num": args.num, "noise_std": FOURIER_NOISE, "rows": rows}
        as_uint8 = lambda g: (g * 255).round().astype(np.uint8)
        np.savez_compressed(cache, **{f"{f}/{k}": as_uint8(g) for f, grid in grids.items()
                                      for k, g in grid.items()})
        for fraction, grid in grids.items():
            save_rows([as_uint8(g) for g in grid.values()],
                      DOCS / f"fourier_{round(100 * fraction)}_{config.data.name}")
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
