"""Training benchmark: throughput, train-step overhead over the bare network, peak memory.

For the default config (DDPM++ on 8x8 digits) and a tiny CIFAR-10 DDPM++ (32x32x3, random
pixels: the speed does not depend on them): examples per second of the full jitted train step
(data preprocessing, DSM loss, Adam, EMA), and the ratio of its time to one forward+backward
pass of the network alone on the same batch (the rest of the step is the framework's cost).
Peak memory: the accelerator's peak bytes in use where the backend reports it, else the
process's peak resident set (CPU).

    python -m bench.bench_train            # from the repository root; writes
                                           # bench/results/train.json
"""
import argparse
import json
import pathlib
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import cifar10_ddpmpp_continuous, default
from scorelab import data
from scorelab.build import build_loss, build_model, build_optimizer, build_sde
from scorelab.step import init_state, train_step


def median_time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb():
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def bench(name, config, dataset, repeats):
    sde, tx = build_sde(config), build_optimizer(config)
    model = build_model(config, dataset)
    state = init_state(config, model, tx, dataset, jax.random.key(0))
    batch = data.host_batch(dataset, 0, batch_size=config.training.batch_size, seed=0)
    step = jax.jit(lambda s, b: train_step(
        s, b, config=config, model=model, sde=sde, tx=tx, loss_fn=build_loss(config, sde),
        is_image=dataset.is_image))
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
    return dict(config=name, params=int(n_params), batch=config.training.batch_size,
                compile_s=compile_s, step_s=step_s,
                examples_per_s=config.training.batch_size / step_s,
                network_fwd_bwd_s=net_s, ratio=step_s / net_s, peak_memory_mb=memory,
                memory_kind=kind)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    rows = []
    config = default.get_config()
    rows.append(bench("default (DDPM++ digits 8x8)", config, data.load("digits"), args.repeats))
    config = cifar10_ddpmpp_continuous.get_config()
    config.model.ncsnpp.update(nf=32, num_res_blocks=1)
    config.training.batch_size = 16
    pixels = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    dataset = data.Dataset(pixels, pixels, None, None)
    rows.append(bench("tiny CIFAR-10 DDPM++ (nf=32, 1 block)", config, dataset, args.repeats))
    print(f"{'config':40s} {'params':>9s} {'batch':>5s} {'compile s':>9s} {'step ms':>8s} "
          f"{'ex/s':>8s} {'net ms':>7s} {'ratio':>6s} {'peak MB':>8s}")
    for r in rows:
        print(f"{r['config']:40s} {r['params']:9d} {r['batch']:5d} {r['compile_s']:9.1f} "
              f"{r['step_s'] * 1e3:8.1f} {r['examples_per_s']:8.1f} "
              f"{r['network_fwd_bwd_s'] * 1e3:7.1f} {r['ratio']:6.2f} {r['peak_memory_mb']:8.0f}")
    print(f"(peak memory: {rows[-1]['memory_kind']})")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    out.write_text(json.dumps(dict(device=f"{device.platform} {device.device_kind}",
                                   jax=jax.__version__, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
