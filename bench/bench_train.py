"""Training benchmark: throughput, train-step overhead over the bare network, peak memory.

For the default config (DDPM++ on 8x8 digits), a tiny CIFAR-10 DDPM++ in float32 and
bfloat16, and the paper's CIFAR-10 DDPM++ cont. at a small batch (32x32x3 random pixels: the
speed does not depend on them): examples per second of the full jitted train step (data
preprocessing, DSM loss, Adam, EMA), the ratio of its time to one forward+backward pass of the
network alone on the same batch (the rest of the step is the framework's cost), and the share
of a 20-step loop spent waiting for data as train.py feeds it. Peak memory: the accelerator's
peak bytes in use where the backend reports it, else the process's peak resident set (CPU).
Then the default train step's compile time in a fresh process with a cold and with a warm
persistent cache, and the default config's evaluation split by stage (first call, which
compiles, and second).

    python -m bench.bench_train            # from the repository root; writes
                                           # bench/results/train.json
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import cifar10_ddpmpp_continuous, default
from scorelab import data
from scorelab.build import build_model, build_objective, build_optimizer, build_sde
from scorelab.compilation import enable_compilation_cache
from scorelab.evaluate import Evaluator
from scorelab.loop import build
from scorelab.step import init_state, make_mesh, train_step


def median_time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def data_wait(step, state, dataset, config, mesh, steps=20):
    """The share of a loop of `steps` train steps spent waiting for the next batch, fed as
    train.py feeds it (scorelab.data.DeviceBatches: resident data or a prefetching thread)."""
    batches = data.DeviceBatches(dataset, mesh, start=0, batch_size=config.training.batch_size,
                                 seed=0)
    start, waited = time.perf_counter(), batches.wait_s
    for _ in range(steps):
        out = step(state, next(batches))
    jax.block_until_ready(out)
    batches.close()
    return (batches.wait_s - waited) / (time.perf_counter() - start)


def compile_seconds_cold_and_warm() -> tuple[float, float]:
    """The default config's train-step compilation in two fresh processes sharing a new
    persistent cache: the first compiles, the second reads the cache."""
    times = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(2):
            out = subprocess.run([sys.executable, "-m", "bench.bench_train", "--compile-only"],
                                 env={**os.environ, "SCORELAB_COMPILATION_CACHE": cache},
                                 capture_output=True, text=True, check=True)
            times.append(float(out.stdout.split()[-1]))
    return times[0], times[1]


def compile_only():
    enable_compilation_cache()
    _, step, state, batch = setup(default.get_config(), data.load("digits"), make_mesh())
    start = time.perf_counter()
    step.lower(state, batch).compile()
    print(time.perf_counter() - start)


def evaluation_stages(repeats=2) -> list[dict]:
    """The default config's evaluation split by stage, first call (compiling) and second."""
    config = default.get_config()
    run = build(config)
    params = init_state(config, run.model, run.tx, run.dataset, jax.random.key(0)).params
    with tempfile.TemporaryDirectory() as workdir:
        evaluator = Evaluator(config, run, workdir, make_mesh())
        return [{k: v for k, v in evaluator(params, step=i, eval_key=jax.random.key(i)).items()
                 if "time_" in k or "nfe" in k} for i in range(repeats)]


def peak_memory_mb():
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def setup(config, dataset, mesh):
    """(model, the jitted train step, a replicated state, the first sharded batch), as
    train.py lays them out."""
    sde, tx = build_sde(config), build_optimizer(config)
    model = build_model(config, dataset)
    state = jax.device_put(init_state(config, model, tx, dataset, jax.random.key(0)),
                           NamedSharding(mesh, P()))
    batch = data.shard_batch(
        data.host_batch(dataset, 0, batch_size=config.training.batch_size, seed=0), mesh)
    step = jax.jit(lambda s, b: train_step(
        s, b, config=config, tx=tx, objective=build_objective(config, sde, model),
        is_image=dataset.is_image))
    return model, step, state, batch


def bench(name, config, dataset, repeats, *, mesh):
    model, step, state, batch = setup(config, dataset, mesh)
    start = time.perf_counter()
    jax.block_until_ready(step(state, batch))
    compile_s = time.perf_counter() - start
    step_s = median_time(step, state, batch, repeats=repeats)

    x = jnp.asarray(batch["x"], jnp.float32) / 127.5 - 1
    c = jnp.full((x.shape[0],), 500.0)

    def network(params):  # forward + backward of the network alone, same batch, with dropout
        out = model.apply({"params": params}, x, c, train=True,
                          rngs={"dropout": jax.random.key(1)})
        return jnp.mean(out**2)
    net_s = median_time(jax.jit(jax.value_and_grad(network)), state.params, repeats=repeats)
    n_params = sum(a.size for a in jax.tree_util.tree_leaves(state.params))
    memory, kind = peak_memory_mb()
    return dict(config=name, precision=config.training.precision, params=int(n_params),
                batch=config.training.batch_size, compile_s=compile_s, step_s=step_s,
                data_wait_fraction=data_wait(step, state, dataset, config, mesh),
                examples_per_s=config.training.batch_size / step_s,
                network_fwd_bwd_s=net_s, ratio=step_s / net_s, peak_memory_mb=memory,
                memory_kind=kind)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="bench/results/train.json")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_only:
        return compile_only()
    mesh = make_mesh()
    rows = []
    config = default.get_config()
    rows.append(bench("default (DDPM++ digits 8x8)", config, data.load("digits"), args.repeats,
                      mesh=mesh))
    pixels = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    cifar = data.Dataset(pixels, pixels, None, None)
    for precision in ("float32", "bfloat16"):
        config = cifar10_ddpmpp_continuous.get_config()
        config.model.ncsnpp.update(nf=32, num_res_blocks=1)
        config.training.update(batch_size=16, precision=precision)
        rows.append(bench("tiny CIFAR-10 DDPM++ (nf=32, 1 block)", config, cifar, args.repeats,
                          mesh=mesh))
    config = cifar10_ddpmpp_continuous.get_config()
    config.training.batch_size = 2
    rows.append(bench("CIFAR-10 DDPM++ cont. (the paper's)", config, cifar, 3, mesh=mesh))
    print(f"{'config':38s} {'prec':>8s} {'params':>10s} {'batch':>5s} {'compile s':>9s} "
          f"{'step ms':>8s} {'ex/s':>7s} {'net ms':>8s} {'ratio':>5s} {'wait':>5s} "
          f"{'peak MB':>7s}")
    for r in rows:
        print(f"{r['config']:38s} {r['precision']:>8s} {r['params']:10d} {r['batch']:5d} "
              f"{r['compile_s']:9.1f} {r['step_s'] * 1e3:8.1f} {r['examples_per_s']:7.1f} "
              f"{r['network_fwd_bwd_s'] * 1e3:8.1f} {r['ratio']:5.2f} "
              f"{r['data_wait_fraction']:5.3f} {r['peak_memory_mb']:7.0f}")
    print(f"(peak memory: {rows[-1]['memory_kind']})")
    cold, warm = compile_seconds_cold_and_warm()
    print(f"default train step compilation: {cold:.1f} s cold, {warm:.1f} s from the cache")
    stages = evaluation_stages()
    for i, s in enumerate(stages):
        print(f"evaluation {i + 1} of the default config: " + ", ".join(
            f"{k.removeprefix('eval/')} {v:.2f}" for k, v in s.items()))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    out.write_text(json.dumps(dict(device=f"{device.platform} {device.device_kind}",
                                   jax=jax.__version__, rows=rows,
                                   compile_s={"cold": cold, "warm_cache": warm},
                                   evaluation_stages=stages), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
