"""Posterior draws and their spread on a trained digits run: the right half of held-out digits
hidden, several independent draws per digit from SMC (`solve_inverse(method="smc")`) and, for
contrast, from DDRM and Tweedie guidance at the same steps.

The figure has a block of rows per method (SMC, DDRM, Tweedie guidance), one row per digit: the
observation (hidden pixels black), the draws, their per-pixel standard deviation (black 0, white
the figure's largest) and the original. The JSON holds, per
method, NFE per draw, the PSNR of one draw and of the draws' mean against the original, the
in-project classifier's accuracy on the draws, and the mean per-pixel spread over the hidden
and over the observed pixels (the latter 0: observed pixels are kept exactly).

    python train.py                                      # the default run (runs/default)
    python -m bench.bench_smc_digits --workdir=runs/default

With --sweep, no figure: one draw for each of `--digits` held-out digits, by SMC for each K of
--particles_sweep at --num_steps, and by DDRM and Tweedie guidance at the same total NFE (their
steps raised to K (num_steps + 1) NFE); PSNR of the draws and the classifier's accuracy on them,
into `--out`_sweep.json.

    python -m bench.bench_smc_digits --workdir=runs/default --sweep --digits=64
"""
import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from models.score import bind
from samplers import inpaint
from scorelab.build import score_fn_for
from scorelab.commands import restore
from scorelab.data import preprocess, to_uint8
from scorelab.metrics.classifier import class_accuracy
from scorelab.pictures import image_grid, save_png
from scorelab.step import make_mesh
from scorelab.tasks import make_mask, psnr


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/default")
    parser.add_argument("--digits", type=int, default=8)
    parser.add_argument("--draws", type=int, default=6)
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--num_steps", type=int, default=200)
    parser.add_argument("--out", default="bench/results/smc_digits")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--particles_sweep", default="1,4,16,64")
    args = parser.parse_args()
    config, run, state, step = restore(pathlib.Path(args.workdir).resolve(), make_mesh())
    if args.sweep:
        return sweep(args, config, run, state, step)
    centered = config.data.centered
    x0 = preprocess(jnp.asarray(run.dataset.test[:args.digits]), jax.random.key(0),
                    is_image=True, centered=centered)
    labels = run.dataset.test_labels[:args.digits]
    rows = jnp.repeat(x0, args.draws, axis=0)  # each digit `draws` times: independent draws
    mask = jnp.asarray(make_mask("half", rows.shape, 0))
    score = bind(score_fn_for(config, run.model, run.sde), state.ema_params)
    pixels = lambda a: np.asarray(to_uint8(a, centered=centered), np.float64) / 255
    truth = pixels(rows)
    methods = {"smc": dict(method="smc", num_particles=args.particles),
               "ddrm": dict(method="ddrm"), "tweedie": dict(method="tweedie")}
    figures, picture_rows = {"step": step, "workdir": args.workdir, "digits": args.digits,
                             "draws_per_digit": args.draws, "num_steps": args.num_steps}, []
    spreads = {}
    for name, options in methods.items():
        draw = jax.jit(lambda y: inpaint(run.sde, score, y, mask, jax.random.key(1),
                                         num_steps=args.num_steps, **options))
        x, nfe = draw(rows * mask)
        p = pixels(x).reshape((args.digits, args.draws) + x.shape[1:])
        spread = p.std(axis=1)  # (digits, H, W, C)
        hidden = ~np.asarray(mask[::args.draws])
        figures[name] = {
            "nfe_per_draw": int(nfe) * options.get("num_particles", 1),
            "psnr_draw": psnr(pixels(x), truth),
            "psnr_mean_of_draws": psnr(p.mean(axis=1), truth[::args.draws]),
            "class_accuracy_draws": class_accuracy(x, np.repeat(labels, args.draws),
                                                   run.dataset, centered=centered),
            "spread_hidden": float(spread[hidden].mean()),
            "spread_observed": float(spread[~hidden].mean())}
        spreads[name] = (p, spread)
        print(name, figures[name], flush=True)
    top = max(float(s.max()) for _, s in spreads.values())
    shown = np.asarray(pixels(jnp.where(mask, rows, 0.0 if not centered else -1.0)))
    for name, (p, spread) in spreads.items():  # a block of rows per method
        for i in range(args.digits):
            picture_rows.append(np.concatenate([shown[i * args.draws][None], p[i],
                                                (spread[i] / top)[None],
                                                truth[i * args.draws][None]]))
    images = np.round(255 * np.concatenate(picture_rows)).astype(np.uint8)
    images = np.repeat(np.repeat(images, 6, axis=1), 6, axis=2)  # 8 x 8 digits, readable
    grid = image_grid(images, pad=6, cols=args.draws + 3, fill=255)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(figures, indent=1))
    print(f"wrote {out}.png and {out}.json")


def sweep(args, config, run, state, step):
    """PSNR and accuracy of one draw per digit against K, beside the guided methods at equal
    total NFE (the module docstring)."""
    centered = config.data.centered
    x0 = preprocess(jnp.asarray(run.dataset.test[:args.digits]), jax.random.key(0),
                    is_image=True, centered=centered)
    labels = run.dataset.test_labels[:args.digits]
    mask = jnp.asarray(make_mask("half", x0.shape, 0))
    score = bind(score_fn_for(config, run.model, run.sde), state.ema_params)
    pixels = lambda a: np.asarray(to_uint8(a, centered=centered), np.float64) / 255
    per_step = {"ddrm": 1, "tweedie": 6}  # NFE per step (Tweedie guidance: 4 CG steps)
    rows = []
    print(f"{'K':>4} {'method':8} {'steps':>6} {'NFE':>7} {'PSNR':>6} {'accuracy':>8}")
    for k in (int(v) for v in args.particles_sweep.split(",")):
        budget = k * (args.num_steps + 1)
        runs = [("smc", args.num_steps, dict(method="smc", num_particles=k))]
        runs += [(m, max(1, budget // per_step[m] - 1), dict(method=m)) for m in per_step]
        for name, steps, options in runs:
            x, nfe = jax.jit(lambda y: inpaint(run.sde, score, y, mask, jax.random.key(1),
                                               num_steps=steps, **options))(x0 * mask)
            total = int(nfe) * options.get("num_particles", 1)
            row = dict(particles=k, method=name, num_steps=steps, total_nfe=total,
                       psnr=psnr(pixels(x), pixels(x0)),
                       accuracy=class_accuracy(x, labels, run.dataset, centered=centered))
            rows.append(row)
            print(f"{k:4d} {name:8} {steps:6d} {total:7d} {row['psnr']:6.2f} "
                  f"{row['accuracy']:8.3f}", flush=True)
    out = pathlib.Path(args.out + "_sweep.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"step": step, "workdir": args.workdir, "digits": args.digits,
                               "mask": "half", "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
