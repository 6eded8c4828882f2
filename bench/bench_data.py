"""The streaming input pipeline: throughput, the share of training spent waiting, peak memory.

1. Throughput of the pipeline alone (`scorelab.data.DeviceBatches` over prepared records, no
   training): images per second at 32, 64 and 256 pixels with 0, 1 and 2 grain worker
   processes, batches of 64 on one device, 30 batches after 3 warm-up ones.
2. Data wait: the share of 20 real train steps (the default network) spent waiting for the next
   batch, for the default config (8 x 8 digits, resident on the device) and for CIFAR-10-shaped
   records (32 x 32 x 3, batch 128), by worker count.
3. Peak memory of the whole process tree (the training process and its workers: resident set
   sizes summed, sampled every 0.2 s) of `train.py` (the default network, batch 32) for 20
   steps on 64 x 64 x 3 records of 25 MB and of 2.5 GB, by worker count.

The records hold random pixels (speed and memory do not depend on them) and are written under
`--scratch` once.

    python -m bench.bench_data [--scratch=/tmp/bench_data] [--parts=throughput,wait,memory]
        # bench/results/data.json
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jax
import numpy as np

from configs import default
from scorelab import data
from scorelab.data import records
from scorelab.loop import build
from scorelab.step import init_state, make_mesh, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKERS = (0, 1, 2)


def make_records(root: pathlib.Path, count: int, size: int) -> pathlib.Path:
    """Prepared records of `count` random size x size x 3 images (written once)."""
    out = root / f"random_{size}px_{count}"
    if not out.exists():
        rng = np.random.default_rng(0)
        shape = (size, size, 3)
        records.write(out, lambda i: rng.integers(0, 256, shape, np.uint8), None,
                      image_shape=shape, preprocessing={"count": count}, source="random")
    return out


def one_device():
    return jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:1])


def throughput(path, workers: int, batch: int = 64, steps: int = 40, repeats: int = 3) -> float:
    """Images per second: the median of `repeats` runs of `steps` batches (after 3)."""
    dataset = data.load("records", path=str(path))
    batches = data.DeviceBatches(dataset, one_device(), start=0, batch_size=batch, seed=0,
                                 workers=workers)
    try:
        for _ in range(3):
            jax.block_until_ready(next(batches))
        rates = []
        for _ in range(repeats):
            tic = time.perf_counter()
            for _ in range(steps):
                jax.block_until_ready(next(batches))
            rates.append(steps * batch / (time.perf_counter() - tic))
        return float(np.median(rates))
    finally:
        batches.close()


def data_wait(config, workers: int, steps: int = 20) -> dict:
    """The share of `steps` train steps spent in `next(batches)`, and steps per second."""
    run, mesh = build(config), make_mesh()
    state = jax.device_put(init_state(config, run.model, run.tx, run.dataset,
                                      jax.random.key(0)),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = jax.jit(lambda s, b: train_step(s, b, config=config, tx=run.tx,
                                           objective=run.objective,
                                           is_image=run.dataset.is_image))
    batches = data.DeviceBatches(run.dataset, mesh, start=0, seed=0, workers=workers,
                                 batch_size=config.training.batch_size)
    try:
        state, _ = step(state, next(batches))  # compiles
        jax.block_until_ready(state)
        waited, tic = batches.wait_s, time.perf_counter()
        for _ in range(steps):
            state, _ = step(state, next(batches))
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - tic
        return {"wait_share": (batches.wait_s - waited) / elapsed, "steps_per_s": steps / elapsed,
                "resident": batches.resident}
    finally:
        batches.close()


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants."""
    children, total = {}, 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(stat[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in pathlib.Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


def peak_memory(path, workers: int, workdir: pathlib.Path, steps: int = 20) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    proc = subprocess.Popen(
        [sys.executable, "train.py", f"--workdir={workdir}", "--config.data.name=records",
         f"--config.data.path={path}", f"--config.data.num_workers={workers}",
         f"--config.training.n_steps={steps}", "--config.training.eval_every=0",
         "--config.training.checkpoint_every=1000000", "--config.training.batch_size=32"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    out = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(out[-3000:])
    return peak


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default="/tmp/bench_data")
    p.add_argument("--parts", default="throughput,wait,memory")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "data.json"))
    a = p.parse_args()
    scratch, parts = pathlib.Path(a.scratch), a.parts.split(",")
    scratch.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(a.out)
    result = json.loads(out.read_text()) if out.exists() else {}  # parts run apart add up
    result.update({"cpus": os.cpu_count()})
    for part in ("throughput_images_per_s", "data_wait", "peak_memory_mb"):
        result.setdefault(part, {})

    for size, count in ((32, 4096), (64, 4096), (256, 512)) if "throughput" in parts else ():
        path = make_records(scratch, count, size)
        for w in WORKERS:
            rate = throughput(path, w)
            result["throughput_images_per_s"][f"{size}px_{w}w"] = rate
            print(f"pipeline alone, {size} px, {w} workers: {rate:,.0f} images/s", flush=True)
        out.write_text(json.dumps(result, indent=1))

    if "wait" in parts:
        data_waits(result, scratch)
        out.write_text(json.dumps(result, indent=1))
    if "memory" in parts:
        for label, count in (("25MB", 2_000), ("2.5GB", 200_000)):
            path = make_records(scratch, count, 64)
            for w in (0, 1):
                peak = peak_memory(path, w, scratch / f"run_{label}_{w}w") / 2**20
                result["peak_memory_mb"][f"{label}_{w}w"] = peak
                print(f"peak memory, {label} of 64 x 64 x 3, {w} workers: {peak:,.0f} MB",
                      flush=True)
                out.write_text(json.dumps(result, indent=1))


def data_waits(result: dict, scratch: pathlib.Path) -> None:
    config = default.get_config()
    config.training.batch_size = 128
    result["data_wait"]["default_digits"] = data_wait(config, 0)
    print(f"default (digits, resident): {result['data_wait']['default_digits']}", flush=True)
    cifar = make_records(scratch, 4096, 32)
    for w in WORKERS:
        config = default.get_config()
        config.data.update(name="records", path=str(cifar))
        config.training.batch_size = 128
        result["data_wait"][f"cifar10_shaped_{w}w"] = data_wait(config, w)
        print(f"CIFAR-10-shaped records, {w} workers: "
              f"{result['data_wait'][f'cifar10_shaped_{w}w']}", flush=True)


if __name__ == "__main__":
    main()
