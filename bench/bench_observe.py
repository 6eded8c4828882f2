"""Sampling under observations against the exact posterior: every method of `solve_inverse` and
`denoise` on Gaussian-mixture priors, whose posterior under y = A x0 + s n is known in closed
form (`GaussianMixture.posterior`).

Problems (exact scores, VP SDE unless stated):
  12-D   the five-component mixture of bench_fewstep; mask (6 of 12 coordinates observed) and
         a random projection (4 Gaussian rows);
  image  three components on 4 x 4 x 3 images; channel mean (colorization), 2 x 2 block average
         (super-resolution), Fourier rows (30% of the frequencies), Gaussian blur (width 1 px);
  denoise  the 12-D mixture with A = I (a full mask) at s = 0.5, VP and VE: the exact start of
         `denoise` beside the guidance methods.
For each: joint sliced W2 between (y, x) and (y, x_exact) with x_exact an exact posterior draw,
beside the floor of two exact draws; the RMS distance of x to the exact posterior mean divided by
that of an exact draw (1 for a right posterior; below 1 a draw too narrow, above too far);
NFE per sample (a JVP or VJP through the score counts as one); wall time of the compiled call.

    python -m bench.bench_observe            # writes bench/results/observe.json
    python -m bench.bench_observe --quick    # fewer samples and cells
    python -m bench.bench_observe --methods=ddrm   # only these, merged into the results
"""
import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.bench_fewstep import mixture_12d
from samplers import denoise, solve_inverse
from samplers.operators import (BlockAverage, ChannelMean, FourierSampling, GaussianBlur, Mask,
                                RandomProjection)
from scorelab.metrics import sliced_wasserstein
from sde import VESDE, VPSDE, GaussianMixture

# JAX 0.10's asynchronous CPU dispatch can hang when programs with LAPACK calls (the exact
# posterior's Cholesky solves) are queued without blocking (tests/conftest.py).
jax.config.update("jax_cpu_enable_async_dispatch", False)
IMAGE = (4, 4, 3)
METHODS = [("tweedie", 2), ("tweedie", 4), ("pigdm", 0)]  # (method, CG steps)


def image_mixture() -> GaussianMixture:
    rng = np.random.default_rng(3)
    return GaussianMixture.create([1.0, 2.0, 1.5], rng.standard_normal((3,) + IMAGE),
                                  [0.3, 0.5, 0.4])


def problems(quick: bool):
    """(name, prior, operator, noise levels)."""
    m12, img = mixture_12d(), image_mixture()
    rows = [("12-D mask 6/12", m12, Mask.create(np.arange(12) < 6), (0.0, 0.2)),
            ("12-D projection 4", m12, RandomProjection.create((12,), 4, 0), (0.0, 0.2)),
            ("image channel mean", img, ChannelMean.create(IMAGE), (0.0, 0.1)),
            ("image block average 2", img, BlockAverage.create(IMAGE, 2), (0.0, 0.1)),
            ("image Fourier 30%", img, FourierSampling.create(IMAGE, 0.3, 0), (0.05,)),
            ("image blur 1 px", img, GaussianBlur.create(IMAGE, 1.0), (0.1,))]
    return rows[:2] if quick else rows


def observed_rows(op, a):
    """The rows of A that observe something (a mask's unobserved entries read 0)."""
    keep = np.linalg.norm(np.asarray(a), axis=1) > 0
    return a[keep], keep


def distances(y_rows, x, post, exact, key):
    flat = lambda v: v.reshape(v.shape[0], -1)
    joint = lambda v: jnp.concatenate([y_rows, flat(v)], 1)
    sw = lambda u, v: float(sliced_wasserstein(joint(u), joint(v), key, num_projections=512))
    rms = lambda v: float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(flat(v) - flat(post.mean)), -1))))
    return sw(x, exact), rms(x) / rms(exact)


def timed(fn, *args):
    out = jax.block_until_ready(fn(*args))  # compile and run once
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def exact_posterior(prior, op, s, n, keys):
    """(y, its observed rows, the exact posterior, two exact draw sets) for n draws of `prior`
    observed through `op` with noise s. One compiled program per draw set: with both in one
    program, JAX 0.10.2's CPU runtime stopped, idle, every time on the 48-D image problems (all
    threads waiting; each part alone takes a second)."""
    x0 = prior.sample(keys[0], n)
    y = op(x0) + s * jax.random.normal(keys[1], (n,) + op.out_shape)
    a, keep = observed_rows(op, op.matrix())
    y_rows = y.reshape(n, -1)[:, keep]
    post = jax.block_until_ready(jax.jit(lambda p, a, y: p.posterior(a, y, s))(prior, a, y_rows))
    exact = jax.block_until_ready(post.sample(keys[2]))
    floor_draw = jax.block_until_ready(post.sample(keys[3]))
    return y, y_rows, post, exact, floor_draw


def run_cell(sde, prior, op, s, method, steps, n, keys, cg_steps=4):
    y, y_rows, post, exact, floor_draw = exact_posterior(prior, op, s, n, keys)
    score = prior.score_fn(sde)
    if method == "exact start":
        fn = jax.jit(lambda y: denoise(sde, score, y, s, keys[4], num_steps=steps))
    else:
        fn = jax.jit(lambda y: solve_inverse(sde, score, y, op, s, keys[4], method=method,
                                             num_steps=steps, cg_steps=cg_steps))
    (x, nfe), seconds = timed(fn, y)
    sw, spread = distances(y_rows, x, post, exact, keys[5])
    floor, _ = distances(y_rows, floor_draw, post, exact, keys[5])
    return {"sliced_w2": sw, "floor": floor, "rms_ratio": spread, "nfe": int(nfe),
            "seconds": seconds}


def cells(quick: bool):
    steps = (100, 300) if quick else (100, 300, 1000)
    for name, prior, op, noises in problems(quick):
        methods = METHODS + ([("projection", 0), ("ddrm", 0)] if op.gram is not None else [])
        for s in noises:
            for method, cg in methods:
                for n_steps in steps:
                    yield name, VPSDE(), prior, op, s, method, cg, n_steps
    full = Mask.create(np.ones(12, bool))
    for sde_name, sde in (("vp", VPSDE()), ("ve", VESDE())):
        for method, cg in [("exact start", 0)] + METHODS + [("projection", 0), ("ddrm", 0)]:
            for n_steps in steps:
                yield (f"12-D denoise ({sde_name})", sde, mixture_12d(), full, 0.5, method, cg,
                       n_steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/observe.json")
    parser.add_argument("--methods", default="", help="only these methods (comma-separated); "
                        "their rows replace those of an existing --out")
    args = parser.parse_args()
    only = set(args.methods.split(",")) if args.methods else None
    out = pathlib.Path(args.out)
    kept = ([r for r in json.loads(out.read_text())["rows"] if r["method"] not in only]
            if only and out.is_file() else [])
    n = 500 if args.quick else 2000
    keys = jax.random.split(jax.random.key(0), 6)
    rows = []
    print(f"{'problem':24} {'s':>5} {'method':12} {'CG':>3} {'steps':>5} {'NFE':>6} {'SW2':>7} "
          f"{'floor':>6} {'rms/exact':>9} {'s/call':>7}")
    for name, sde, prior, op, s, method, cg, n_steps in cells(args.quick):
        if only and method not in only:
            continue
        r = run_cell(sde, prior, op, s, method, n_steps, n, keys, cg_steps=max(cg, 1))
        r.update(problem=name, noise_std=s, method=method, cg_steps=cg, steps=n_steps)
        rows.append(r)
        print(f"{name:24} {s:5.2f} {method:12} {cg:3d} {n_steps:5d} {r['nfe']:6d} "
              f"{r['sliced_w2']:7.3f} "
              f"{r['floor']:6.3f} {r['rms_ratio']:9.2f} {r['seconds']:7.2f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": n, "backend": jax.default_backend(),
                               "rows": kept + rows},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
