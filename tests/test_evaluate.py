"""scorelab.evaluate: one compilation per function per run, parameters never baked in."""
import math
import re

import jax
import numpy as np

from models.score import bind
from scorelab.build import score_fn_for
from scorelab.evaluate import Evaluator
from scorelab.loop import build
from scorelab.sampling import generate
from scorelab.step import init_state
from tests.test_train import toy_config

BYTES = {"f32": 4, "f64": 8, "i32": 4, "ui32": 4, "i64": 8, "i1": 1, "bf16": 2}


def largest_constant_bytes(lowered) -> int:
    """The size of the largest constant in a lowered program's StableHLO."""
    sizes = [0]
    for line in lowered.as_text().splitlines():
        if "stablehlo.constant" in line or "dense_resource" in line:
            for dims, dtype in re.findall(r"tensor<([\dx]*?)x?(f32|f64|i32|ui32|i64|i1|bf16)>",
                                          line):
                n = math.prod(int(d) for d in dims.split("x") if d) if dims else 1
                sizes.append(n * BYTES[dtype])
    return max(sizes)


def test_two_evaluations_compile_once_and_hold_no_parameters(tmp_path):
    config = toy_config()
    config.model.mlp.hidden = 64  # a 64 x 64 kernel is 16 KB: visible if it were baked in
    run = build(config)
    params = init_state(config, run.model, run.tx, run.dataset, jax.random.key(0)).params
    evaluator = Evaluator(config, model=run.model, sde=run.sde, loss_fn=run.loss_fn,
                          dataset=run.dataset, workdir=tmp_path)
    first = evaluator(params, step=1, eval_key=jax.random.key(1))
    moved = jax.tree_util.tree_map(lambda a: a + 0.01, params)
    second = evaluator(moved, step=2, eval_key=jax.random.key(1))
    assert first["eval/loss"] != second["eval/loss"]  # the new parameters were used
    for fn in (evaluator.loss, evaluator.sample, evaluator.likelihood):
        assert fn._cache_size() == 1
    key = jax.random.key(0)
    assert largest_constant_bytes(evaluator.sample.lower(params, key)) < 4096
    # The habit this replaces: a closure over the parameters embeds them as constants.
    score = bind(score_fn_for(config, run.model, run.sde), params)
    closure = jax.jit(lambda k: generate(config, run.sde, score, k, 16, (2,)))
    assert largest_constant_bytes(closure.lower(key)) >= 64 * 64 * 4
    assert (tmp_path / "samples/step_0000002.png").exists()
    assert np.isfinite(second["eval/nll_nats"]) and second["eval/time_sampling_s"] >= 0
