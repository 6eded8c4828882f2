"""Nothing lost under interruption, damaged checkpoints or extreme settings."""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import log_likelihood, ode_sample, pc_sample, sde_sample
from scorelab import data
from scorelab.build import build_model, build_optimizer
from scorelab.loop import train
from scorelab.step import init_state
from scorelab.workdir import checkpoint_manager, restore_latest_valid
from sde import VESDE, VPSDE
from tests.test_train import toy_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLI_ARGS = ["--config=configs/toy_vp.py", "--config.model.mlp.hidden=32",
            "--config.data.num_train=512",
            "--config.training.batch_size=64", "--config.training.log_every=5",
            "--config.training.checkpoint_every=5", "--config.training.eval_every=1000000",
            "--config.sampling.num_samples=16", "--config.sampling.pc.num_steps=30",
            "--config.eval.num_likelihood=4"]


def final_params(workdir: pathlib.Path, config):
    """The parameters of the newest checkpoint in `workdir`."""
    dataset = data.load("mixture", num_train=config.data.num_train)
    model = build_model(config, dataset)
    tx = build_optimizer(config)
    abstract = jax.eval_shape(lambda: init_state(config, model, tx, dataset,
                                                       jax.random.key(0)))
    state, step = restore_latest_valid(checkpoint_manager(workdir, 2), abstract,
                                             workdir)
    return step, jax.tree_util.tree_leaves(jax.device_get(state.params))


def cli_config(n_steps):
    config = toy_config(n_steps=n_steps, checkpoint_every=5, eval_every=10**6)  # as CLI_ARGS
    config.sampling.num_samples = 16
    config.sampling.pc.num_steps = 30
    return config


def steps_on_disk(workdir) -> list[int]:
    """The steps of the finished checkpoints in `workdir`, oldest first."""
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def start(workdir, n_steps):
    """train.py in a subprocess, on the same 4 CPU devices as this process (XLA_FLAGS)."""
    return subprocess.Popen([sys.executable, "train.py", f"--workdir={workdir}", *CLI_ARGS,
                             f"--config.training.n_steps={n_steps}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL twice at random points (during start-up, steps or async saves); the run that
    finishes has the uninterrupted run's parameters bit for bit and logs each step once."""
    n_steps, rng = 100, random.Random(0)
    for _ in range(2):
        proc = start(tmp_path, n_steps)
        deadline = time.time() + 60  # wait for the first checkpoints, then kill at random
        while time.time() < deadline and not list((tmp_path / "checkpoints").glob("[0-9]*")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        # Steps 5 to 100 take about 2 s here; the kill lands among them (or in the start-up
        # of the second run, whose checkpoints are already there).
        time.sleep(rng.uniform(0.0, 0.8))
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = steps_on_disk(tmp_path)
        assert max(saved, default=0) < n_steps, "killed after its last step: nothing interrupted"
    proc = start(tmp_path, n_steps)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    killed_step, killed = final_params(tmp_path, cli_config(n_steps))
    reference = train(cli_config(n_steps), tmp_path / "reference")
    assert killed_step == n_steps
    for a, b in zip(killed, jax.tree_util.tree_leaves(jax.device_get(reference.params))):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if "eval/loss" not in ln]
    assert steps == list(range(5, n_steps + 1, 5))
    assert not list((tmp_path / "checkpoints").glob("*tmp*"))


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    proc = start(tmp_path, 100000)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    saved = int(out.split("SIGTERM: saved step ")[1].split(",")[0])
    assert saved > 0 and (tmp_path / "checkpoints" / str(saved)).is_dir()


def _truncate_checkpoint(step_dir: pathlib.Path):
    for f in step_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 16:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    train(toy_config(n_steps=20, checkpoint_every=10), tmp_path)
    _truncate_checkpoint(tmp_path / "checkpoints" / "20")
    resumed = train(toy_config(n_steps=30, checkpoint_every=10), tmp_path)
    assert "checkpoint 20" in capsys.readouterr().err
    reference = train(toy_config(n_steps=30, checkpoint_every=10), tmp_path / "ref")
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(resumed.params)),
                    jax.tree_util.tree_leaves(jax.device_get(reference.params))):
        np.testing.assert_array_equal(a, b)


def test_unrestorable_checkpoints_stop_the_run_and_are_kept(tmp_path):
    """Checkpoints of another model shape (or all damaged): refuse, never start over them."""
    small = toy_config(n_steps=10)
    train(small, tmp_path / "small")
    other = toy_config(n_steps=20)
    other.model.mlp.hidden = 48
    (tmp_path / "big").mkdir()
    os.rename(tmp_path / "small" / "checkpoints", tmp_path / "big" / "checkpoints")
    with pytest.raises(RuntimeError, match="no checkpoint .* can be restored"):
        train(other, tmp_path / "big")
    assert (tmp_path / "big" / "checkpoints" / "10").is_dir()


@pytest.mark.parametrize("sampler", ["pc", "sde", "ode"])
def test_samplers_stay_finite_in_float32_at_extremes(mixture, sampler):
    """t down to eps = 1e-5 and VE sigma_max = 500."""
    for sde in (VPSDE(), VESDE(sigma_max=500.0)):
        score, shape, key = mixture.score_fn(sde), (256, 2), jax.random.key(0)
        if sampler == "pc":
            x, _ = pc_sample(sde, score, shape, key, eps=1e-5)
        elif sampler == "sde":
            x, _ = sde_sample(sde, score, shape, key, eps=1e-5)
        else:
            x, _ = ode_sample(sde, score, shape, key, eps=1e-5)
        assert x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(x)))
        assert float(jnp.abs(x).max()) < 10
        logp, _, _ = log_likelihood(sde, score, x[:16], key, eps=1e-5)
        assert bool(jnp.all(jnp.isfinite(logp)))
