"""Inception feature throughput: images per second of our Flax FID Inception (jitted, float32 at
full precision) and, side by side on the same CPU, of pytorch-fid's own network, on batches of
50 uint8 images (pytorch-fid's batch) at 32 x 32 (CIFAR-10, resized up to 299) and 299 x 299.

Speed does not depend on the weights: both networks get the tests' seeded random weights at the
real shapes (tests/fixtures/inception). pytorch-fid runs in a subprocess of `--torch_python`, a
Python with torch and pytorch-fid installed (docs/metrics.md says how); without it only ours
is measured. Medians of `--repeats` timed batches after one warm-up (compilation excluded and
reported apart).

    python -m bench.bench_inception [--torch_python=/path/to/python] [--repeats=5]
        # bench/results/inception.json
"""
import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

import jax
import numpy as np

from scorelab.metrics import inception

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "inception"
BATCH, SIZES = 50, (32, 299)

PEER = r"""
import json, sys, time
from unittest import mock
import numpy as np, torch
from pytorch_fid import inception
sys.path.insert(0, sys.argv[1])
from random_weights import random_state_dict
batch, repeats, sizes = int(sys.argv[2]), int(sys.argv[3]), [int(s) for s in sys.argv[4:]]
with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: {}), \
        mock.patch.object(torch.nn.Module, "load_state_dict", lambda *a, **k: None):
    names = [(k, list(v.shape)) for k, v in inception.fid_inception_v3().state_dict().items()]
state = {k: torch.from_numpy(v) for k, v in random_state_dict(names, 2015).items()}
with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: state):
    net = inception.InceptionV3([3], use_fid_inception=True).eval()
out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
for size in sizes:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, 3, size, size),
                                                           np.uint8)).float() / 255
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            tic = time.perf_counter(); net(x); times.append(time.perf_counter() - tic)
    out[size] = batch / float(np.median(times[1:]))
print(json.dumps(out))
"""


def ours(repeats: int) -> dict:
    sys.path.insert(0, str(FIXTURES))
    from random_weights import random_state_dict

    ref = np.load(FIXTURES / "fixtures.npz")
    shapes = [tuple(int(d) for d in s.split("x")) if s else () for s in ref["shapes"]]
    params = inception.from_state_dict(random_state_dict(list(zip(ref["names"], shapes)), 2015))
    out = {}
    for size in SIZES:
        images = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), np.uint8)
        tic = time.perf_counter()
        jax.block_until_ready(inception.apply(params, images))
        compile_s = time.perf_counter() - tic
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            jax.block_until_ready(inception.apply(params, images))
            times.append(time.perf_counter() - tic)
        out[size] = {"images_per_s": BATCH / float(np.median(times)),
                     "first_call_s": compile_s}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch_python", default="", help="A Python with torch and pytorch-fid.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "inception.json"))
    a = p.parse_args()
    result = {"device": str(jax.devices()[0].device_kind), "cpu": platform.processor() or
              platform.machine(), "batch": BATCH, "ours": ours(a.repeats)}
    if a.torch_python:
        proc = subprocess.run([a.torch_python, "-c", PEER, str(FIXTURES), str(BATCH),
                               str(a.repeats), *map(str, SIZES)], capture_output=True,
                              text=True, check=True)
        result["pytorch_fid"] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'input':>8} {'ours img/s':>11} {'first call s':>13} {'pytorch-fid img/s':>18}")
    for size in SIZES:
        peer = result.get("pytorch_fid", {}).get(str(size)) or result.get(
            "pytorch_fid", {}).get(size)
        print(f"{size:>8} {result['ours'][size]['images_per_s']:>11.2f} "
              f"{result['ours'][size]['first_call_s']:>13.1f} "
              f"{'' if peer is None else f'{peer:.2f}':>18}")
    pathlib.Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
