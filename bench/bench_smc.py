"""Sequential Monte Carlo against the exact posterior as the particles grow: `smc_solve` on the
Gaussian-mixture problems of bench_observe (exact scores), VP and VE, beside the default
guided method at the same number of steps.

For each problem, noise level, SDE and K in the sweep: joint sliced W2 between (y, x) and
(y, x_exact) beside the floor of two exact draw sets, the RMS distance to the exact posterior
mean over that of an exact draw (1 is right), the smallest effective sample size along the
chain (a fraction of K), NFE per particle and in all, and the wall time of the compiled call.

    python -m bench.bench_smc            # writes bench/results/smc.json
    python -m bench.bench_smc --quick    # the 12-D problems, fewer rows, K up to 64
"""
import argparse
import json
import pathlib

import jax

from bench.bench_observe import distances, observed_rows, problems, timed
from samplers import solve_inverse
from samplers.observe import smc_solve
from sde import VESDE, VPSDE

jax.config.update("jax_cpu_enable_async_dispatch", False)  # as bench_observe


def run_problem(sde, prior, op, s, n, steps, particles, keys):
    x0 = prior.sample(keys[0], n)
    y = op(x0) + s * jax.random.normal(keys[1], (n,) + op.out_shape)
    a, keep = observed_rows(op, op.matrix())
    y_rows = y.reshape(n, -1)[:, keep]
    post = jax.jit(lambda p, a, y: p.posterior(a, y, s))(prior, a, y_rows)
    exact, floor_draw = jax.jit(lambda p: (p.sample(keys[2]), p.sample(keys[3])))(post)
    floor, _ = distances(y_rows, floor_draw, post, exact, keys[5])
    score = prior.score_fn(sde)
    tweedie = jax.jit(lambda y: solve_inverse(sde, score, y, op, s, keys[4], num_steps=steps))
    (x, nfe), seconds = timed(tweedie, y)
    sw, spread = distances(y_rows, x, post, exact, keys[5])
    yield dict(method="tweedie", particles=1, nfe=int(nfe), total_nfe=int(nfe), sliced_w2=sw,
               floor=floor, rms_ratio=spread, min_ess=1.0, seconds=seconds)
    for k in particles:
        smc = jax.jit(lambda y: smc_solve(sde, score, y, op, s, keys[4], num_particles=k,
                                          num_steps=steps))
        result, seconds = timed(smc, y)
        sw, spread = distances(y_rows, result.x, post, exact, keys[5])
        yield dict(method="smc", particles=k, nfe=int(result.nfe),
                   total_nfe=k * int(result.nfe), sliced_w2=sw, floor=floor,
                   rms_ratio=spread, min_ess=float(result.ess.min()), seconds=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/smc.json")
    args = parser.parse_args()
    n, steps = (1000, 200) if args.quick else (2000, 500)
    particles = (1, 4, 16, 64) if args.quick else (1, 4, 16, 64, 256)
    keys = jax.random.split(jax.random.key(0), 6)
    rows = []
    print(f"{'problem':24} {'s':>5} {'sde':3} {'method':8} {'K':>4} {'NFE':>7} {'SW2':>7} "
          f"{'floor':>6} {'rms/exact':>9} {'min ESS':>7} {'s/call':>7}")
    for name, prior, op, noises in problems(args.quick):
        for s in noises:
            for sde_name, sde in (("vp", VPSDE()), ("ve", VESDE())):
                for r in run_problem(sde, prior, op, s, n, steps, particles, keys):
                    r.update(problem=name, noise_std=s, sde=sde_name, steps=steps)
                    rows.append(r)
                    print(f"{name:24} {s:5.2f} {sde_name:3} {r['method']:8} "
                          f"{r['particles']:4d} {r['total_nfe']:7d} {r['sliced_w2']:7.3f} "
                          f"{r['floor']:6.3f} {r['rms_ratio']:9.2f} {r['min_ess']:7.3f} "
                          f"{r['seconds']:7.2f}", flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": n, "steps": steps, "backend": jax.default_backend(),
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
