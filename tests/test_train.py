"""train.py and scorelab.loop: learning, resuming bit for bit, bad configs and data refused before
training (the compiled step itself: tests/test_step.py)."""
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, toy_vp
from models.score import bind
from scorelab import data
from scorelab.build import build_model, build_objective, build_optimizer, build_sde, score_fn_for
from scorelab.data import toy
from scorelab.commands import restore
from scorelab.evaluate import Selection
from scorelab.loop import build, train
from scorelab.step import init_state, make_mesh, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cheap_eval(config):
    """The end-of-run evaluation on a few samples and likelihoods only; the config is locked, as
    train.py locks it, so a misspelt field fails instead of being added."""
    config.lock()
    config.sampling.num_samples = 16
    config.sampling.pc.num_steps = config.sampling.sde.num_steps = 30
    config.eval.update(num_likelihood=4, num_metric_samples=0)
    return config


def toy_config(**training):
    config = cheap_eval(toy_vp.get_config())
    config.training.update(dict(batch_size=64, n_steps=20, log_every=5, eval_every=0,
                                checkpoint_every=10), **training)
    config.model.mlp.hidden = 32
    config.data.num_train = 512
    return config


def toy_step(config):
    """(the jitted train step, the initial state, the 512-point mixture) of a toy config."""
    sde, tx = build_sde(config), build_optimizer(config)
    dataset = data.load("mixture", num_train=512)
    model = build_model(config, dataset)
    step = jax.jit(lambda s, b: train_step(s, b, config=config, tx=tx, is_image=False,
                                           objective=build_objective(config, sde, model)))
    return step, init_state(config, model, tx, dataset, jax.random.key(0)), dataset


def tiny_unet(config):
    config.model.ncsnpp.update(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    config.training.update(batch_size=8, log_every=2, eval_every=0, checkpoint_every=10**6)
    return cheap_eval(config)


def params_of(state):
    return jax.tree_util.tree_leaves(jax.device_get(state.params))


def test_short_run_learns_the_mixture_score(tmp_path):
    """600 steps on the analytic mixture: the learned score is close to the exact one."""
    config = toy_config(n_steps=600, batch_size=256, checkpoint_every=600)
    config.model.mlp.hidden = 64
    config.data.num_train = 10000
    state = train(config, tmp_path)
    sde = build_sde(config)
    dataset = data.load("mixture", num_train=16)
    model = build_model(config, dataset)
    learned = bind(score_fn_for(config, model, sde), state.ema_params)
    exact = toy.analytic_mixture().score_fn(sde)
    for t in (0.1, 0.3, 0.6, 1.0):
        x0 = toy.analytic_mixture().sample(jax.random.key(1), 2000)
        mean, std = sde.marginal_prob(x0, jnp.full((2000,), t))
        xt = mean + std[:, None] * jax.random.normal(jax.random.key(2), x0.shape)
        tt = jnp.full((2000,), t)
        err = jnp.linalg.norm(learned(xt, tt) - exact(xt, tt)) / jnp.linalg.norm(exact(xt, tt))
        assert float(err) < 0.25, (t, float(err))


def test_loss_decreases_on_digits(tmp_path):
    config = tiny_unet(default.get_config())
    config.training.update(n_steps=60, log_every=20, eval_every=60, batch_size=32)
    config.eval.num_likelihood = 0  # bits/dim of the U-Net: another 20 s of compiling
    config.optim.warmup = 0
    train(config, tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(ln)["loss"] for ln in lines if "eval/loss" not in ln]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0], losses
    assert "eval/loss" in lines[-1] and (tmp_path / "samples/step_0000060.png").exists()


def test_resume_reproduces_uninterrupted_run_bitwise(tmp_path):
    """Stopping at a checkpoint and re-running the same command gives the same parameters."""
    full = train(toy_config(), tmp_path / "full")
    train(toy_config(n_steps=10), tmp_path / "split")  # "killed" after step 10
    resumed = train(toy_config(), tmp_path / "split")
    for a, b in zip(params_of(full), params_of(resumed)):
        np.testing.assert_array_equal(a, b)
    lines = (tmp_path / "split/metrics.jsonl").read_text().splitlines()
    steps = [json.loads(ln)["step"] for ln in lines if "eval/loss" not in ln]
    assert steps == [5, 10, 15, 20]


def test_selection_keeps_the_lowest_held_out_loss_across_a_resume(tmp_path):
    """training.select_every: <workdir>/best holds the EMA parameters of the lowest logged
    held-out loss; a resumed run recomputes that loss bit for bit (the same noise each time)
    and keeps them against worse ones; commands read them."""
    train(toy_config(n_steps=10, select_every=5), tmp_path)
    state = train(toy_config(select_every=5), tmp_path)
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = {ln["step"]: ln["select/loss"] for ln in lines if "select/loss" in ln}
    assert sorted(losses) == [5, 10, 15, 20]
    best_step = min(losses, key=losses.get)
    assert lines[-1]["select/best_step"] == best_step

    config = toy_config(select_every=5)
    run = build(config)
    selection = Selection(config, run, tmp_path, make_mesh(), run.abstract.ema_params)
    assert (selection.step, selection.best) == (best_step, losses[best_step])
    worse = init_state(config, run.model, run.tx, run.dataset, jax.random.key(0)).ema_params
    assert selection(worse, 25)["select/best_step"] == best_step
    selection.close()

    _, _, restored, step = restore(tmp_path, make_mesh())
    assert step == best_step and int(restored.step) == 20
    kept = jax.tree_util.tree_leaves(jax.device_get(restored.ema_params))
    last = jax.tree_util.tree_leaves(jax.device_get(state.ema_params))
    assert (best_step == 20) == all(np.array_equal(a, b) for a, b in zip(kept, last))


def _bad(field, value):
    config = default.get_config()
    *sections, key = field.split(".")
    node = config
    for section in sections:
        node = node[section]
    node[key] = value
    return config


@pytest.mark.parametrize("config, message", [
    (_bad("sde.name", "vp"), "sde.name must be one of"),
    (_bad("sde.beta_min", 30.0), "beta_min must be <= beta_max"),
    (_bad("optim.lr", -1e-3), "optim.lr must be a positive number"),
    (_bad("training.batch_size", 6), "must be divisible by the number of devices (4)"),
    (_bad("training.loss", "ddpm"), "training.loss must be"),
    (_bad("training.select_every", -5), "training.select_every must be a positive integer"),
    (_bad("model.name", "resnet"), "model.name must be"),
    (_bad("model.ncsnpp.ch_mult", (1, 2, 2, 2, 2)), "not divisible"),
    (_bad("model.ncsnpp.embedding_type", "learned"), "embedding_type"),
    (_bad("sampling.method", "ddim"), "sampling.method must be"),
    (_bad("sampling.pc.corrector", "hmc"), "sampling.pc: corrector must be one of"),
    (_bad("sampling.pc.snr", -1.0), "sampling.pc: snr must be"),
    (_bad("data.name", "imagenet"), "data.name must be one of"),
    (_bad("model.ema_rate", 1.0), "model.ema_rate"),
    (_bad("training.nonfinite", "ignore"), "training.nonfinite"),
    (_bad("training.eval_every", -1), "training.eval_every must be a positive integer, or 0"),
    (_bad("model.remat", "layers"), "remat must be one of"),
    (_bad("data.num_workers", -1), "data.num_workers must be an integer >= 0"),
    (_bad("eval.batch_size", 0), "eval.batch_size must be a positive integer"),
    (_bad("eval.inception_resize", "area"), "eval.inception_resize must be one of"),
    (_bad("eval.inception_path", "/nowhere/pt_inception.pth"), "6726825d"),
])
def test_bad_config_fails_before_training(config, message, tmp_path):
    with pytest.raises(ValueError) as info:
        train(config, tmp_path / "run")
    assert message in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_or_malformed_data_file(tmp_path):
    config = _bad("data.name", "npz")
    config.data.path = str(tmp_path / "none.npz")
    with pytest.raises(FileNotFoundError, match="none.npz"):
        train(config, tmp_path / "run")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    config.data.path = str(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="not a readable .npz"):
        train(config, tmp_path / "run")


def test_different_config_in_existing_workdir_is_refused(tmp_path):
    train(toy_config(n_steps=5), tmp_path)
    before = (tmp_path / "config.json").read_text()
    changed = toy_config(n_steps=5)
    changed.optim.lr = 1e-4
    with pytest.raises(ValueError, match=r"different config \(fields \['optim.lr'\]\)"):
        train(changed, tmp_path)
    assert (tmp_path / "config.json").read_text() == before
    train(toy_config(n_steps=10), tmp_path)  # more steps: the same run, extended


def test_cli_trains_samples_and_rejects_unknown_keys(tmp_path):
    """From another directory, with a relative --workdir (orbax itself needs absolute paths)."""
    run = lambda *args: subprocess.run([sys.executable, str(ROOT / "train.py"), *args],
                                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    bad = run("--workdir=run", "--config.training.n_stepz=3")
    assert bad.returncode != 0 and "n_stepz" in bad.stderr
    ok = run(f"--config={ROOT / 'configs/toy_ve.py'}", "--workdir=run",
             "--config.training.n_steps=4", "--config.training.eval_every=4",
             "--config.training.checkpoint_every=2", "--config.sampling.num_samples=32",
             "--config.eval.num_likelihood=4", "--config.sampling.pc.num_steps=50")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "run/samples/step_0000004.png").exists()
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["2", "4"]
    out = run("sample", "--workdir=run", "--sampler=ode", "--num=16", "--out=ode")
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.load(tmp_path / "ode.npz")["samples"].shape == (16, 2)
