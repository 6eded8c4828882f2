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
from scorelab.step import init_state, make_mesh
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
    evaluator = Evaluator(config, run, tmp_path, make_mesh())
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


def test_evaluation_is_split_over_the_mesh_and_agrees_with_one_device(tmp_path):
    """On 4 devices every evaluation stage runs on a quarter of its batch (the compiled
    program holds no full-batch activations) and gives the figures of a 1-device run; sample
    and likelihood counts that do not divide are padded and cut back."""
    assert jax.device_count() == 4
    config = toy_config()
    config.sampling.method = "sde"
    config.sampling.num_samples, config.eval.num_likelihood = 20, 8
    run = build(config)
    params = jax.tree_util.tree_map(lambda a: a + 0.01, init_state(
        config, run.model, run.tx, run.dataset, jax.random.key(0)).params)
    one = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                        devices=jax.devices()[:1])
    results, hidden = [], config.model.mlp.hidden
    for mesh in (make_mesh(), one):
        evaluator = Evaluator(config, run, tmp_path / str(mesh.size), mesh)
        results.append(evaluator(params, step=1, eval_key=jax.random.key(1)))
    sharded, single = results
    assert sharded["eval/sample_nfe"] == single["eval/sample_nfe"]
    for name in ("eval/loss", "eval/sliced_w2"):
        np.testing.assert_allclose(sharded[name], single[name], rtol=1e-5)
    # The adaptive likelihood solve picks its steps from the batch's RMS error, a reduction
    # whose float order differs between 4 devices and 1 (jax 0.10.2: 9e-5 relative).
    np.testing.assert_allclose(sharded["eval/nll_nats"], single["eval/nll_nats"], rtol=1e-3)
    np.testing.assert_allclose(np.load(tmp_path / "4/samples/step_0000001.npz")["samples"],
                               np.load(tmp_path / "1/samples/step_0000001.npz")["samples"],
                               rtol=1e-5, atol=1e-6)

    config.sampling.num_samples, config.eval.num_likelihood = 18, 6  # padded to 20 and 8
    evaluator = Evaluator(config, run, tmp_path / "padded", make_mesh())
    key = jax.random.key(0)
    programs = {
        "sample": (evaluator.sample.lower(params, key), 5, 20),
        "likelihood": (evaluator.likelihood.lower(params, evaluator.ll_batch["x"], None, key),
                       2, 8),
        "loss": (evaluator.loss.lower(params, evaluator.test["x"], None, key), 64, 256)}
    for name, (lowered, per_device, whole) in programs.items():
        text = lowered.compile().as_text()
        assert f"f32[{per_device},{hidden}]" in text, name
        assert f"f32[{whole},{hidden}]" not in text, name
    x, _ = evaluator.sample(params, key)
    assert x.shape == (18, 2)
    out = evaluator(params, step=2, eval_key=key)
    assert np.isfinite(out["eval/nll_nats"])
