"""Sampler benchmark: speed against the network's own cost, and accuracy per NFE.

Speed: a small MLP score network (trained for a few seconds on the analytic mixture of
`scorelab.data.toy`, so the ODE solver sees realistic dynamics) on a batch of 2-D points. For
each sampler: the NFE it reports, its compile time, its wall time (median of --repeats runs
after compiling), and the overhead ratio = wall time / (NFE x time of one score evaluation
on the same batch). The score evaluation is timed two ways: one jitted call (includes dispatch,
as a user calling it would see) and amortised inside a compiled loop of 256 evaluations (the
network's pure cost; the stricter denominator). Target: ratio <= 1.2 against the stricter one.

Accuracy: the exact score of a two-component Gaussian mixture under VPSDE; sliced W2 between
50,000 samples and 50,000 exact draws, at NFE near 10, 20, 50, 100 and 1000, beside the noise
floor (sliced W2 between two exact sample sets of that size).

    python -m bench.bench_samplers            # from the repository root; writes
                                              # bench/results/samplers.json
"""
import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from models.mlp import MLP
from models.score import bind, make_score_fn
from samplers import log_likelihood, ode_sample, pc_sample, sde_sample
from scorelab.data.toy import analytic_mixture
from scorelab.metrics import sliced_wasserstein
from sde import VPSDE, dsm_loss

MIXTURE = analytic_mixture()


def timed(fn, *args, repeats):
    """(compile seconds, median seconds of `repeats` further calls); fn is jitted."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - start)
    return compile_s, statistics.median(runs)


def train_mlp(sde, steps=1500, seed=0):
    """A few seconds of DSM training so the score network has realistic dynamics."""
    model = MLP(hidden=128, depth=3)
    score = make_score_fn(lambda p, x, c: model.apply({"params": p}, x, c), sde)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
    opt = optax.adam(2e-3)

    @jax.jit
    def step(params, state, key):
        k_data, k_loss = jax.random.split(key)
        x0 = MIXTURE.sample(k_data, 512)
        loss, grads = jax.value_and_grad(lambda p: dsm_loss(sde, score, p, x0, k_loss))(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    state = opt.init(params)
    for i in range(steps):
        params, state, loss = step(params, state, jax.random.fold_in(jax.random.key(seed), i))
    return bind(score, params), float(loss)


def speed_table(sde, score_fn, batch, repeats):
    shape = (batch, 2)
    x = MIXTURE.sample(jax.random.key(1), batch)
    t = jnp.full((batch,), 0.5)
    _, call_s = timed(jax.jit(score_fn), x, t, repeats=max(repeats, 50))

    def loop(x):
        return jax.lax.fori_loop(0, 256, lambda i, x: score_fn(x, t) + x * 1e-3, x)
    _, loop_s = timed(jax.jit(loop), x, repeats=repeats)
    eval_s = loop_s / 256
    samplers = {
        "pc reverse_diffusion+langevin N=1000": lambda k: pc_sample(sde, score_fn, shape, k),
        "pc ancestral (DDPM) N=1000": lambda k: pc_sample(
            sde, score_fn, shape, k, predictor="ancestral", corrector=None),
        "sde euler_maruyama 1000 steps": lambda k: sde_sample(sde, score_fn, shape, k),
        "sde shark 100 steps": lambda k: sde_sample(sde, score_fn, shape, k, solver="shark",
                                                    num_steps=100),
        "ode tsit5 adaptive 1e-5": lambda k: ode_sample(sde, score_fn, shape, k,
                                                        solver="tsit5"),
        "ode tsit5 adaptive 1e-5 per_sample": lambda k: ode_sample(
            sde, score_fn, shape, k, solver="tsit5", step_control="per_sample"),
        "ode heun 50 steps": lambda k: ode_sample(sde, score_fn, shape, k, solver="heun",
                                                  num_steps=50),
    }
    rows = []
    for name, run in samplers.items():
        fn = jax.jit(run)
        compile_s, wall_s = timed(fn, jax.random.key(2), repeats=repeats)
        nfe = int(fn(jax.random.key(2))[1])
        rows.append(dict(sampler=name, nfe=nfe, compile_s=compile_s, wall_s=wall_s,
                         ratio=wall_s / (nfe * eval_s), ratio_call=wall_s / (nfe * call_s)))
    # Diffrax issue 517: fixed-step diffeqsolve against a hand-written scan of the same
    # Euler-Maruyama steps of the reverse SDE (same network, same NFE).
    def hand_written(key):
        k0, k1 = jax.random.split(key)
        reverse, dt = sde.reverse(score_fn), (sde.T - 1e-3) / 1000

        def step(x, inputs):
            t, k = inputs
            drift, g = reverse.sde(x, jnp.full((batch,), t))
            noise = jax.random.normal(k, x.shape)
            return x - drift * dt + g[:, None] * jnp.sqrt(dt) * noise, None
        ts = sde.T - dt * jnp.arange(1000)
        x, _ = jax.lax.scan(step, sde.prior_sampling(k0, shape), (ts, jax.random.split(k1, 1000)))
        return x, 1000
    compile_s, wall_s = timed(jax.jit(hand_written), jax.random.key(2), repeats=repeats)
    rows.append(dict(sampler="reference: hand-written lax.scan EM 1000 steps", nfe=1000,
                     compile_s=compile_s, wall_s=wall_s, ratio=wall_s / (1000 * eval_s),
                     ratio_call=wall_s / (1000 * call_s)))
    ll = jax.jit(lambda k: log_likelihood(sde, score_fn, x, k, solver="tsit5"))
    compile_s, wall_s = timed(ll, jax.random.key(3), repeats=repeats)
    nfe = int(ll(jax.random.key(3))[2])
    rows.append(dict(sampler="log_likelihood tsit5 1e-5 (rademacher)", nfe=nfe,
                     compile_s=compile_s, wall_s=wall_s, ratio=wall_s / (nfe * eval_s),
                     ratio_call=wall_s / (nfe * call_s)))
    return dict(score_eval_call_s=call_s, score_eval_loop_s=eval_s, rows=rows)


def accuracy_table(sde, n):
    score_fn = MIXTURE.score_fn(sde)
    shape = (n, 2)
    key = jax.random.key(10)
    ref = MIXTURE.sample(jax.random.key(11), n)
    sw = lambda x: float(sliced_wasserstein(x, ref, jax.random.key(12), num_projections=512))
    floors = [sw(MIXTURE.sample(jax.random.key(20 + i), n)) for i in range(5)]
    runs = {
        # DDPM's chain needs beta_max / N < 1: N > 20 for beta_max = 20.
        "pc reverse_diffusion": lambda m: pc_sample(sde, score_fn, shape, key, corrector=None,
                                                    num_steps=m - 1) if m - 1 > 20 else None,
        "pc ancestral": lambda m: pc_sample(sde, score_fn, shape, key, predictor="ancestral",
                                            corrector=None, num_steps=m - 1) if m > 21 else None,
        "pc reverse_diffusion+langevin": lambda m: pc_sample(
            sde, score_fn, shape, key, num_steps=(m - 1) // 2) if m > 42 else None,
        "sde euler_maruyama": lambda m: sde_sample(sde, score_fn, shape, key, num_steps=m - 1),
        "sde shark": lambda m: sde_sample(sde, score_fn, shape, key, solver="shark",
                                          num_steps=(m - 1) // 2),
        "ode heun": lambda m: ode_sample(sde, score_fn, shape, key, solver="heun",
                                         num_steps=m // 2),
        "ode tsit5 fixed": lambda m: ode_sample(sde, score_fn, shape, key, solver="tsit5",
                                                num_steps=max((m - 1) // 6, 1)),
    }
    rows = []
    for name, run in runs.items():
        for target in (10, 20, 50, 100, 1000):
            out = run(target)
            rows.append(dict(sampler=name, target_nfe=target,
                             nfe=None if out is None else int(out[1]),
                             sliced_w2=None if out is None else sw(out[0])))
    for tol in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
        x, nfe = ode_sample(sde, score_fn, shape, key, solver="tsit5", rtol=tol, atol=tol)
        rows.append(dict(sampler=f"ode tsit5 adaptive tol={tol:g}", target_nfe=None,
                         nfe=int(nfe), sliced_w2=sw(x)))
    return dict(floor=statistics.median(floors), floor_min=min(floors), floor_max=max(floors),
                n=n, rows=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--accuracy-samples", type=int, default=50000)
    parser.add_argument("--out", default="bench/results/samplers.json")
    parser.add_argument("--only", choices=["speed", "accuracy"], default=None,
                        help="rerun one part, keeping the other from --out")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    previous = json.loads(out.read_text()) if args.only and out.exists() else {}
    sde = VPSDE()
    if args.only == "accuracy":
        speed, final_loss = previous["speed"], previous.get("final_loss", float("nan"))
    else:
        score_fn, final_loss = train_mlp(sde)
        speed = speed_table(sde, score_fn, args.batch, args.repeats)
    print(f"\nscore network: MLP 128x3, batch {args.batch}, DSM loss after training "
          f"{final_loss:.3f}; one score evaluation: {speed['score_eval_call_s'] * 1e3:.3f} ms "
          f"as a jitted call, {speed['score_eval_loop_s'] * 1e3:.3f} ms inside a loop")
    print(f"{'sampler':44s} {'NFE':>6s} {'compile s':>9s} {'wall s':>8s} {'ratio':>6s} "
          f"{'ratio/call':>10s}")
    for r in speed["rows"]:
        print(f"{r['sampler']:44s} {r['nfe']:6d} {r['compile_s']:9.2f} {r['wall_s']:8.3f} "
              f"{r['ratio']:6.2f} {r['ratio_call']:10.2f}")
    acc = previous["accuracy"] if args.only == "speed" else accuracy_table(
        sde, args.accuracy_samples)
    print(f"\naccuracy: sliced W2 to exact samples (n = {acc['n']}); two exact sets: median "
          f"{acc['floor']:.4f}, range {acc['floor_min']:.4f}-{acc['floor_max']:.4f} (5 seeds)")
    print(f"{'sampler':36s} {'target':>6s} {'NFE':>6s} {'sliced W2':>9s}")
    for r in acc["rows"]:
        target = "" if r["target_nfe"] is None else str(r["target_nfe"])
        if r["nfe"] is None:
            print(f"{r['sampler']:36s} {target:>6s} {'n/a':>6s} {'n/a':>9s}")
        else:
            print(f"{r['sampler']:36s} {target:>6s} {r['nfe']:6d} {r['sliced_w2']:9.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    out.write_text(json.dumps(dict(device=f"{device.platform} {device.device_kind}",
                                   jax=jax.__version__, batch=args.batch, final_loss=final_loss,
                                   speed=speed, accuracy=acc), indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
