"""The GPU check: one script for a short loan of a card, most important figure first, each
written to `--out` (JSON) the moment it lands, so a loan that ends early still leaves figures.

1. The paper's CIFAR-10 DDPM++ cont. train step at batch 128 against forward + backward of the
   network alone (the framework's overhead), in float32 and bfloat16, without and with
   `model.remat = "blocks"`; each with the compiled step's memory (arguments, temporaries) and
   the device's peak memory in use so far (a high-water mark over the whole script).
2. The sampler overhead: an `ode_sample` Euler solve of 100 steps on that network (batch 128)
   against 100 x one score evaluation.
3. FID Inception throughput (images / s, batch 50, 32 x 32 inputs), on the tests' seeded
   random weights at the real shapes.

    python -m bench.gpu_check --out=$OUT/gpu_check.json [--smoke]   # --smoke: tiny, on a CPU

The card has no internet: install what it lacks from wheels carried along, e.g.
`pip download -d .gpu_wheels ml-collections tensorboardX grain array-record` here, then
`pip install --no-index --find-links .gpu_wheels ...` there (docs/benchmarks.md#gpu-check).
"""
import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.bench_memory import step_memory
from bench.bench_train import bench, median_time
from configs import cifar10_ddpmpp_continuous
from scorelab import data
from scorelab.build import build_model, build_optimizer, build_sde, score_fn_for
from scorelab.compilation import enable_compilation_cache
from scorelab.step import init_state

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Figures:
    """A JSON file rewritten after each figure."""

    def __init__(self, path):
        self.path, self.data = pathlib.Path(path), {
            "device": f"{jax.devices()[0].platform} {jax.devices()[0].device_kind}",
            "jax": jax.__version__}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def add(self, key, value):
        self.data[key] = value
        self.write()
        print(f"{key}: {json.dumps(value)}", flush=True)

    def write(self):
        self.path.write_text(json.dumps(self.data, indent=1))


def paper_config(smoke: bool, **training):
    config = cifar10_ddpmpp_continuous.get_config()
    if smoke:
        config.model.ncsnpp.update(nf=16, num_res_blocks=1)
    config.training.update(**training)
    return config


def train_steps(figures, smoke: bool, batch: int, mesh):
    pixels = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    cifar = data.Dataset(pixels, pixels, None, None)
    for precision in ("float32", "bfloat16"):
        for remat in ("none", "blocks"):
            config = paper_config(smoke, batch_size=batch, precision=precision)
            config.model.remat = remat
            row = bench(f"DDPM++ {precision} remat={remat}", config, cifar, 5, mesh=mesh)
            figures.add(f"train_step/{precision}/remat_{remat}", row)


def sampler_overhead(figures, smoke: bool, batch: int):
    from models.score import bind
    from samplers import ode_sample

    config = paper_config(smoke)
    x = np.zeros((1, 32, 32, 3), np.uint8)
    dataset = data.Dataset(x, x, None, None)
    sde, model = build_sde(config), build_model(config, dataset)
    params = init_state(config, model, build_optimizer(config), dataset,
                        jax.random.key(0)).params
    score = bind(score_fn_for(config, model, sde), params)
    z = jax.random.normal(jax.random.key(1), (batch, 32, 32, 3))
    one = jax.jit(lambda x: score(x, jnp.full((batch,), 0.5)))
    solve = jax.jit(lambda k: ode_sample(sde, score, z.shape, k, solver="euler", num_steps=100,
                                         denoise=False)[0])
    score_s = median_time(one, z, repeats=5)
    solve_s = median_time(solve, jax.random.key(2), repeats=3)
    figures.add("sampler_overhead", {"score_eval_s": score_s, "euler_100_s": solve_s,
                                     "ratio": solve_s / (100 * score_s), "batch": batch})


def inception_throughput(figures):
    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "inception"))
    from random_weights import random_state_dict

    from scorelab.metrics import inception

    ref = np.load(ROOT / "tests" / "fixtures" / "inception" / "fixtures.npz")
    shapes = [tuple(int(d) for d in s.split("x")) if s else () for s in ref["shapes"]]
    params = inception.from_state_dict(random_state_dict(list(zip(ref["names"], shapes)), 2015))
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), np.uint8)
    tic = time.perf_counter()
    jax.block_until_ready(inception.apply(params, images))
    first = time.perf_counter() - tic
    seconds = median_time(lambda: inception.apply(params, images), repeats=5)
    figures.add("inception", {"images_per_s": 50 / seconds, "first_call_s": first})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    p.add_argument("--smoke", action="store_true", help="A tiny network and batch (CPU).")
    a = p.parse_args()
    enable_compilation_cache()
    figures = Figures(a.out)
    batch = 8 if a.smoke else 128
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:1])
    for part in (lambda: train_steps(figures, a.smoke, batch, mesh),
                 lambda: sampler_overhead(figures, a.smoke, batch),
                 lambda: inception_throughput(figures)):
        try:
            part()
        except Exception as e:  # noqa: BLE001 (a figure that fails must not cost the others)
            figures.add(f"error/{len(figures.data)}", f"{type(e).__name__}: {e}"[:2000])


if __name__ == "__main__":
    main()
