"""The compiled train step's memory, with and without rematerialisation (`model.remat`).

For each config: XLA's `memory_analysis()` of the jitted train step (arguments: parameters,
optimiser state, EMA and the batch; temporaries: activations and everything the backward pass
keeps; outputs), with `model.remat = "none"` and `"blocks"`, on one device. The step is
compiled, never run, so any batch size fits; XLA:CPU's figures differ from XLA:GPU's (buffer
assignment and scheduling differ); `bench/gpu_check.py` measures a card.

    python -m bench.bench_memory [--configs=default,cifar10_ddpmpp_continuous] [--batch=128]
        # bench/results/memory.json
"""
import argparse
import importlib
import json
import pathlib
import time

import jax
import numpy as np

from scorelab import data
from scorelab.build import build_model, build_objective, build_optimizer, build_sde
from scorelab.step import init_state, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = {"cifar10": (32, 32, 3), "digits": (8, 8, 1)}


def step_memory(config, batch: int) -> dict:
    """memory_analysis() of the train step of `config` at `batch`, compiled for one device."""
    shape = SIZES.get(config.data.name, (config.data.image_size,) * 2 + (3,))
    x = np.zeros((batch, *shape), np.uint8)
    dataset = data.Dataset(x[:1], x[:1], None, None)
    sde, tx = build_sde(config), build_optimizer(config)
    model = build_model(config, dataset)
    state = jax.eval_shape(lambda: init_state(config, model, tx, dataset, jax.random.key(0)))
    step = jax.jit(lambda s, b: train_step(s, b, config=config, tx=tx, is_image=True,
                                           objective=build_objective(config, sde, model)))
    tic = time.perf_counter()
    analysis = step.lower(state, {"x": jax.ShapeDtypeStruct(x.shape, x.dtype)}).compile() \
        .memory_analysis()
    mb = lambda n: n / 2**20
    return {"arguments_mb": mb(analysis.argument_size_in_bytes),
            "temporaries_mb": mb(analysis.temp_size_in_bytes),
            "outputs_mb": mb(analysis.output_size_in_bytes),
            "compile_s": time.perf_counter() - tic}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="default,cifar10_ddpmpp_continuous")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    a = p.parse_args()
    result = {"backend": jax.default_backend(), "batch": a.batch, "configs": {}}
    print(f"{'config':<32} {'remat':<7} {'arguments MB':>13} {'temporaries MB':>15} "
          f"{'compile s':>10}")
    for name in a.configs.split(","):
        for remat in ("none", "blocks"):
            config = importlib.import_module(f"configs.{name}").get_config()
            config.model.remat = remat
            row = step_memory(config, a.batch)
            result["configs"][f"{name}/{remat}"] = row
            print(f"{name:<32} {remat:<7} {row['arguments_mb']:>13.1f} "
                  f"{row['temporaries_mb']:>15.1f} {row['compile_s']:>10.1f}", flush=True)
            pathlib.Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
