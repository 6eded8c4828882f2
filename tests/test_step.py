"""The compiled train step: every config builds and steps, one device and four agree, bfloat16
compute keeps float32 state, non-finite updates are refused, initial parameters and the EMA."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import default
from scorelab import data, step
from scorelab.build import MODELS, build_model, build_objective, build_optimizer, build_sde
from scorelab.loop import summarise
from scorelab.step import ema_decay, init_state, make_mesh, train_step
from tests.test_train import ROOT, params_of, tiny_unet, toy_config, toy_step

def test_sharded_step_equals_single_device_step():
    """The batch split over 4 devices (params replicated) gives the single-device update."""
    assert jax.device_count() == 4, "tests/conftest.py asks XLA for 4 CPU devices"
    config = toy_config()
    step, state, dataset = toy_step(config)
    batch = data.host_batch(dataset, 0, batch_size=64, seed=0)
    single, m1 = step(state, batch)
    mesh = make_mesh()
    sharded_state = jax.device_put(state, NamedSharding(mesh, P()))
    sharded, m4 = step(sharded_state, data.shard_batch(batch, mesh))
    assert sharded.params["Dense_0"]["kernel"].sharding.is_fully_replicated
    np.testing.assert_allclose(float(m4["loss"]), float(m1["loss"]), rtol=1e-6)
    for a, b in zip(params_of(single), params_of(sharded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# configs/run.py reads a run directory's own config (tests/test_score_sde.py uses it); the
# records presets (networks of the classes below, at 64 and 256 pixels) are built on records
# of their shapes by tests/test_records.py.
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                 if p.stem not in ("__init__", "run", "records_presets")
                 and not p.stem.endswith("_records"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_and_steps(name):
    """The real model builds at its real size and a train step traces, without FLOPs (XLA on
    CPU takes 10-20 s to compile each U-Net); the MLP configs run a real step, and the default
    U-Net runs real steps in tests/test_train.py::test_loss_decreases_on_digits."""
    config = importlib.import_module(f"configs.{name}").get_config()
    sde, tx = build_sde(config), build_optimizer(config)
    image = MODELS[config.model.name][1]
    if image:
        size = {"cifar10": 32, "mnist": 28}.get(config.data.name, 8)
        x = np.zeros((16, size, size, 3 if size == 32 else 1), np.uint8)
    elif config.data.name == "series":  # windows (steps, features)
        x = np.zeros((16, config.data.window, 2), np.float32)
    else:
        x = np.zeros((16, 2), np.float32)
    labels = np.zeros(16, np.int32)
    dataset = data.Dataset(x, x, labels, labels)
    model = build_model(config, dataset)
    init = lambda: init_state(config, model, tx, dataset, jax.random.key(0))
    step = lambda s, b: train_step(s, b, config=config, tx=tx, is_image=image,
                                   objective=build_objective(config, sde, model))
    batch = data.host_batch(dataset, 0, batch_size=8, seed=0)
    if image:
        new, metrics = jax.eval_shape(step, jax.eval_shape(init), batch)
        assert new.params.keys() == jax.eval_shape(init).params.keys()
    else:
        new, metrics = jax.jit(step)(init(), batch)
        assert bool(metrics["finite"]) and int(new.step) == 1
    assert metrics["loss"].shape == ()


def test_nonfinite_update_is_not_applied_and_named():
    config = toy_config()
    sde, tx = build_sde(config), build_optimizer(config)
    dataset = data.load("mixture", num_train=64)
    model = build_model(config, dataset)
    state = init_state(config, model, tx, dataset, jax.random.key(0))
    objective = build_objective(config, sde, model)
    nan_loss = lambda *args, **kwargs: jnp.nan * objective(*args, **kwargs)
    new, metrics = train_step(state, data.host_batch(dataset, 0, batch_size=8, seed=0),
                              config=config, tx=tx, objective=nan_loss, is_image=False)
    assert not bool(metrics["finite"]) and int(new.step) == 1
    for a, b in zip(params_of(state), params_of(new)):
        np.testing.assert_array_equal(a, b)
    good = {"loss": 1.0, "grad_norm": 1.0, "finite": True}
    bad = {"loss": float("nan"), "grad_norm": float("nan"), "finite": False}
    with pytest.raises(FloatingPointError, match="at step 12"):
        summarise([good, bad, good], 13, "error")
    assert summarise([good, bad, good], 13, "skip")["skipped_steps"] == 1


@pytest.mark.parametrize("name", ["default", "toy_vp"])
def test_bfloat16_step_is_finite_and_keeps_float32_state(name):
    """bfloat16 compute in the network; parameters, optimiser state, EMA and loss stay float32,
    and the loss is the float32 step's to bfloat16 rounding."""
    config = importlib.import_module(f"configs.{name}").get_config()
    if name == "default":  # one level, still with GroupNorm, attention and dropout
        tiny_unet(config)
        config.model.ncsnpp.update(ch_mult=(1,), attn_resolutions=(8,))
    else:
        config.model.mlp.hidden = 32
    dataset = data.load(config.data.name, num_train=64, num_test=8)
    sde, tx, model = build_sde(config), build_optimizer(config), build_model(config, dataset)
    state = init_state(config, model, tx, dataset, jax.random.key(0))
    # Away from the zero-initialised output layers, so the output depends on every layer.
    leaves, tree = jax.tree_util.tree_flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    state = state.replace(params=tree.unflatten(
        [a + 0.05 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]))
    batch = data.host_batch(dataset, 0, batch_size=8, seed=0)
    losses = {}
    for precision in ("float32", "bfloat16"):
        config.training.precision = precision
        step = jax.jit(lambda s, b: train_step(
            s, b, config=config, tx=tx, objective=build_objective(config, sde, model),
            is_image=dataset.is_image))
        lowered = step.lower(state, batch)
        assert ("bf16" in lowered.as_text()) == (precision == "bfloat16")
        new, metrics = lowered.compile()(state, batch)
        assert bool(metrics["finite"]) and metrics["loss"].dtype == jnp.float32
        for leaf in jax.tree_util.tree_leaves((new.params, new.ema_params, new.opt_state)):
            assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
        losses[precision] = float(metrics["loss"])
    assert losses["bfloat16"] != losses["float32"]  # it did compute in bfloat16
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)


def test_initial_parameters_do_not_depend_on_how_the_init_program_is_optimised(monkeypatch):
    """init_state compiles without XLA's backend optimisations on CPU: the same bits as the
    optimised program, for a U-Net's initialisers (GroupNorm, attention, zero-initialised
    output layers)."""
    config = tiny_unet(default.get_config())
    config.model.ncsnpp.update(ch_mult=(1,), attn_resolutions=(8,))
    dataset = data.load(config.data.name, num_train=64, num_test=8)
    model, tx = build_model(config, dataset), build_optimizer(config)
    quick = init_state(config, model, tx, dataset, jax.random.key(3))
    monkeypatch.setattr(step, "INIT_COMPILER_OPTIONS", {})
    optimised = init_state(config, model, tx, dataset, jax.random.key(3))
    for a, b in zip(jax.tree_util.tree_leaves(quick), jax.tree_util.tree_leaves(optimised)):
        np.testing.assert_array_equal(a, b)


def test_ema_warmup_forgets_the_initial_parameters():
    """The weight of the initial parameters in the EMA after n steps is the product of the
    decays: 0.999^2000 = 0.135 for the plain EMA, 9! n! / (n + 9)! with the warm-up."""
    config = default.get_config()
    steps = jnp.arange(2000)
    warm = jax.vmap(lambda s: ema_decay(config, s))(steps)
    assert float(warm[0]) == pytest.approx(0.1) and float(warm[-1]) == pytest.approx(2000 / 2009)
    assert float(jnp.prod(warm)) < 1e-20
    config.model.ema_warmup = False
    plain = jax.vmap(lambda s: ema_decay(config, s))(steps)
    np.testing.assert_allclose(float(jnp.prod(plain)), 0.999 ** 2000, rtol=1e-3)
