"""Sequential Monte Carlo against the exact posterior as the particles grow: `smc_solve` on the
Gaussian-mixture problems of bench_observe and the 2-D mixture with one coordinate observed
(exact scores), VP and VE, beside the default guided method at the same number of steps; and
`smc_sample` with a class as the condition ("class" rows: the 2-D mixture's lighter component
and the 12-D mixture's lightest, through log p(k | x0) of the clean mixture, whose exact
conditional is that component's Gaussian).

For each problem, noise level, SDE and K in the sweep: joint sliced W2 between (y, x) and
(y, x_exact) beside the floor of two exact draw sets, the RMS distance to the exact posterior
mean over that of an exact draw (1 is right), the smallest effective sample size along the
chain (a fraction of K), NFE per particle and in all, and the wall time of the compiled call.
Class rows: sliced W2 of x to exact component draws, the RMS ratio about the component's mean,
and the share of draws whose most likely component is the target (share).

    python -m bench.bench_smc            # writes bench/results/smc.json
    python -m bench.bench_smc --quick    # the 2-D and 12-D problems, fewer rows, K up to 64
    python -m bench.bench_smc --quick --problems="image block"   # that problem, quick settings
    python -m bench.bench_smc --quick --problems="12-D projection" --noise_std=0.2  # merged

JAX 0.10.2's CPU runtime stopped, idle, inside an exact-posterior program (LAPACK) in nearly
every run here, mostly the second of a process, with synchronous dispatch and with
XLA_FLAGS="--xla_cpu_use_thunk_runtime=false --xla_cpu_multi_thread_eigen=false" alike. So the
results are written after each problem and noise level, and each pair can run in a process of
its own.
"""
import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from bench.bench_fewstep import mixture_12d
from bench.bench_observe import distances, exact_posterior, problems, timed
from samplers import smc_sample, solve_inverse
from samplers.observe import smc_solve
from samplers.operators import Mask
from scorelab.data.toy import analytic_mixture
from scorelab.metrics import sliced_wasserstein
from sde import VESDE, VPSDE, GaussianMixture

# as bench_observe: JAX 0.10's CPU runtime has hung, idle, in the exact posterior's LAPACK
# programs when they were dispatched asynchronously
jax.config.update("jax_cpu_enable_async_dispatch", False)


def run_problem(sde, prior, op, s, steps, particles, keys, posterior):
    """The default guided method and SMC for each K, on `posterior` (bench_observe's
    exact_posterior, computed once per problem and noise level for both SDEs: each LAPACK
    program is a chance for the hang above)."""
    y, y_rows, post, exact, floor_draw = posterior
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


def run_class(sde, prior, k, n, steps, particles, keys):
    """`smc_sample` with log p(k | x0) of the clean mixture as the likelihood, against exact
    draws of component k."""
    component = GaussianMixture.create([1.0], prior.means[k:k + 1], prior.stds[k:k + 1])
    exact, floor_draw = component.sample(keys[2], n), component.sample(keys[3], n)
    flat = lambda v: v.reshape(n, -1)
    sw = lambda u: float(sliced_wasserstein(flat(u), flat(exact), keys[5], num_projections=512))
    rms = lambda v: float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(flat(v - prior.means[k])), -1))))
    log_lik = lambda x0: jax.nn.log_softmax(prior._log_joint(x0, None, None), -1)[:, k]
    for p in particles:
        run = jax.jit(lambda key: smc_sample(sde, prior.score_fn(sde), log_lik,
                                             (n,) + prior.data_shape, key, num_particles=p,
                                             num_steps=steps))
        result, seconds = timed(run, keys[4])
        share = float(jnp.mean(jnp.argmax(prior.responsibilities(result.x), -1) == k))
        yield dict(method="smc", particles=p, nfe=int(result.nfe), total_nfe=p * int(result.nfe),
                   sliced_w2=sw(result.x), floor=sw(floor_draw), rms_ratio=rms(result.x) /
                   rms(exact), share=share, min_ess=float(result.ess.min()), seconds=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/smc.json")
    parser.add_argument("--problems", default="", help="only problems whose names start with "
                        "one of these (comma-separated: '2-D', '12-D mask', 'image', ...); "
                        "their rows replace those of --out")
    parser.add_argument("--noise_std", type=float, default=None,
                        help="only this noise level (with --problems)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    only = [p for p in args.problems.split(",") if p]
    chosen = lambda name, s: ((not only or any(name.startswith(p) for p in only))
                              and args.noise_std in (None, s))
    rows = ([r for r in json.loads(out.read_text())["rows"]
             if not chosen(r["problem"], r["noise_std"])] if only and out.is_file() else [])
    n, steps = (1000, 200) if args.quick else (2000, 500)
    particles = (1, 4, 16, 64) if args.quick else (1, 4, 16, 64, 256)
    keys = jax.random.split(jax.random.key(0), 6)
    print(f"{'problem':24} {'s':>5} {'sde':3} {'method':8} {'K':>4} {'NFE':>7} {'SW2':>7} "
          f"{'floor':>6} {'rms/exact':>9} {'min ESS':>7} {'s/call':>7}")
    # the 2-D mixture with its second coordinate observed: which component is ambiguous
    two_d = ("2-D mask 1/2", analytic_mixture(), Mask.create(np.array([False, True])), (0.0, 0.5))
    for name, prior, k in (("class 2-D", analytic_mixture(), 0), ("class 12-D", mixture_12d(), 0)):
        if not chosen(name, 0.0):
            continue
        for sde_name, sde in (("vp", VPSDE()), ("ve", VESDE())):
            for r in run_class(sde, prior, k, n, steps, particles, keys):
                r.update(problem=name, noise_std=0.0, sde=sde_name, steps=steps)
                rows.append(r)
                print(f"{name:24} {'':5} {sde_name:3} {'smc':8} {r['particles']:4d} "
                      f"{r['total_nfe']:7d} {r['sliced_w2']:7.3f} {r['floor']:6.3f} "
                      f"{r['rms_ratio']:9.2f} {r['min_ess']:7.3f} {r['seconds']:7.2f} "
                      f"share {r['share']:.3f}", flush=True)
        write(out, n, steps, rows)
    # --quick: the 2-D and 12-D problems, unless --problems names others
    for name, prior, op, noises in [two_d] + problems(args.quick and not only):
        for s in noises:
            if not chosen(name, s):
                continue
            posterior = exact_posterior(prior, op, s, n, keys)
            for sde_name, sde in (("vp", VPSDE()), ("ve", VESDE())):
                for r in run_problem(sde, prior, op, s, steps, particles, keys, posterior):
                    r.update(problem=name, noise_std=s, sde=sde_name, steps=steps)
                    rows.append(r)
                    print(f"{name:24} {s:5.2f} {sde_name:3} {r['method']:8} "
                          f"{r['particles']:4d} {r['total_nfe']:7d} {r['sliced_w2']:7.3f} "
                          f"{r['floor']:6.3f} {r['rms_ratio']:9.2f} {r['min_ess']:7.3f} "
                          f"{r['seconds']:7.2f}", flush=True)
            write(out, n, steps, rows)  # after each cell group: a hang loses only the current one
    print(f"wrote {out}")


def write(out: pathlib.Path, n, steps, rows):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": n, "steps": steps, "backend": jax.default_backend(),
                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
