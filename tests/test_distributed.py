"""Several processes: real train.py processes x 2 CPU devices each, against 1 process x 4.

The two-process runs are few and reused: a short run launched through --multihost under a fake
SLURM environment (the loss curve, the files, a 1-process resume), and one run with explicit
flags that is sent SIGTERM, then killed, then finished (agreement, faults, resume).
"""
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from scorelab.commands import restore
from scorelab.config import ConfigError
from scorelab.distributed import LaunchError, check_launch
from scorelab.loop import train
from scorelab.step import make_mesh
from tests.test_reliability import CLI_ARGS, cli_config, steps_on_disk

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEARTBEAT_S = 5


def free_port() -> int:
    """A free port in SLURM's range for JAX (61440 + job id % 4096)."""
    while True:
        port = random.randint(61440, 65535)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def launch(workdir, n_steps, *, slurm=False, extra=(), per_process=None):
    """Two train.py processes with 2 CPU devices each, sharing `workdir`."""
    port, procs = free_port(), []
    for i in range(2):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        if slurm:
            env.update(SLURM_JOB_ID=str(port - 61440), SLURM_STEP_NODELIST="localhost",
                       SLURM_NTASKS="2", SLURM_PROCID=str(i), SLURM_LOCALID=str(i))
            how = ["--multihost"]
        else:
            how = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                   f"--process_id={i}"]
        args = [sys.executable, "train.py", f"--workdir={workdir}", *CLI_ARGS, *how,
                f"--heartbeat_timeout={HEARTBEAT_S}", f"--config.training.n_steps={n_steps}",
                *extra, *(per_process[i] if per_process else ())]
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def finish(procs, timeout=240):
    """(return codes, outputs) once both processes have ended."""
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [p.returncode for p in procs], outs


def lines(workdir):
    return [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]


def losses(workdir):
    return {ln["step"]: ln["loss"] for ln in lines(workdir) if "loss" in ln}


def wait_for(condition, procs, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        for p in procs:
            assert p.poll() is None, p.communicate()[0][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def slurm_pair(tmp_path_factory):
    """A 2 x 2 run of 20 steps launched with --multihost in a fake SLURM environment, and
    the same config trained by this process on its 4 devices."""
    root = tmp_path_factory.mktemp("distributed")
    codes, outs = finish(launch(root / "pair", 20, slurm=True))
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outs)
    train(cli_config(20), root / "single")
    return root, outs


def test_two_processes_follow_the_one_process_loss_curve(slurm_pair):
    root, outs = slurm_pair
    pair, single = losses(root / "pair"), losses(root / "single")
    assert list(pair) == [5, 10, 15, 20]
    np.testing.assert_allclose([pair[k] for k in pair], [single[k] for k in pair], rtol=1e-6)
    # One writer: each logged step once (training, then the final evaluation), one summary.
    assert [ln["step"] for ln in lines(root / "pair")] == [5, 10, 15, 20, 20]
    assert sum("done at step 20" in o for o in outs) == 1
    assert (root / "pair/samples/step_0000020.png").exists()


def test_one_process_resumes_a_two_process_checkpoint(slurm_pair, tmp_path):
    """The 2 x 2 checkpoint restores on 1 x 4 and continues as the 1 x 4 run does."""
    root, _ = slurm_pair
    shutil.copytree(root / "pair", tmp_path / "pair")
    resumed = train(cli_config(30), tmp_path / "pair")
    shutil.copytree(root / "single", tmp_path / "single")
    reference = train(cli_config(30), tmp_path / "single")
    assert losses(tmp_path / "pair")[30] == pytest.approx(losses(tmp_path / "single")[30],
                                                          rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(resumed.params)),
                    jax.tree_util.tree_leaves(jax.device_get(reference.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_two_process_checkpoint_restores_on_one_device(slurm_pair):
    root, _ = slurm_pair
    one = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                        devices=jax.devices()[:1])
    _, _, state, step = restore(root / "pair", one)
    _, _, single, _ = restore(root / "single", make_mesh())
    assert step == 20
    for a, b in zip(jax.tree_util.tree_leaves(state.params),
                    jax.tree_util.tree_leaves(single.params)):
        assert a.sharding.device_set == {jax.devices()[0]}
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_object_store_workdirs_are_refused():
    with pytest.raises(ConfigError, match="object-store URLs are not supported"):
        train(cli_config(5), "gs://bucket/run")


def test_sigterm_on_one_host_saves_one_agreed_step_then_a_lost_host_ends_the_other(tmp_path):
    workdir = tmp_path / "run"
    procs = launch(workdir, 100000)
    wait_for(lambda: (workdir / "metrics.jsonl").exists(), procs)
    procs[1].send_signal(signal.SIGTERM)
    codes, outs = finish(procs)
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outs)
    saved = steps_on_disk(workdir)[-1]
    assert f"SIGTERM: saved step {saved}, exiting" in outs[0]
    assert max(losses(workdir)) == saved

    # A lost process: the survivor is ended by JAX's coordination service within the
    # heartbeat bound, and the same command resumes from the last complete checkpoint.
    procs = launch(workdir, 100000)
    wait_for(lambda: steps_on_disk(workdir)[-1] > saved, procs)
    procs[1].send_signal(signal.SIGKILL)
    tic = time.time()
    procs[0].wait(timeout=60)
    assert time.time() - tic < 6 * HEARTBEAT_S and procs[0].returncode != 0
    finish(procs)
    last = steps_on_disk(workdir)[-1]
    codes, outs = finish(launch(workdir, last + 5, extra=["--config.training.eval_every=0"]))
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert f"resumed from step {last}" in outs[0]
    logged = [ln["step"] for ln in lines(workdir) if "loss" in ln]
    assert logged == sorted(set(logged)) and logged[-1] == last + 5


def test_processes_with_different_configs_stop_before_any_work(tmp_path):
    workdir = tmp_path / "run"
    codes, outs = finish(launch(workdir, 20, per_process=[(), ("--config.seed=1",)]))
    assert codes[0] != 0 and codes[1] != 0
    for out in outs:
        assert "processes [1] were started with a config that differs" in out
    assert not workdir.exists()


def test_unreachable_coordinator_is_named_within_the_timeout():
    port = free_port()
    tic = time.time()
    proc = subprocess.run([sys.executable, "train.py", "--workdir=/nonexistent/never",
                           f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                           "--process_id=1", "--initialization_timeout=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and time.time() - tic < 60
    assert f"--coordinator_address=127.0.0.1:{port} did not answer within 2 s" in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (dict(coordinator_address="h:1", num_processes=2, process_id=2),
     r"--process_id=2 must be in \[0, 2\)"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=-1),
     r"--process_id=-1 must be in \[0, 2\)"),
    (dict(num_processes=2), "without --coordinator_address, --process_id"),
    (dict(multihost=True, process_id=0), "cannot be combined with --process_id"),
    (dict(coordinator_address="h", num_processes=2, process_id=0), "must be HOST:PORT"),
    (dict(coordinator_address="h:1", num_processes=0, process_id=0), "at least 1"),
])
def test_bad_launch_flags(flags, message):
    flags = {"coordinator_address": None, "num_processes": None, "process_id": None,
             "multihost": False, **flags}
    with pytest.raises(LaunchError, match=message):
        check_launch(**flags)


def test_single_process_and_cluster_launches_are_told_apart():
    none = dict(coordinator_address=None, num_processes=None, process_id=None)
    assert check_launch(**none, multihost=False) is False
    assert check_launch(**none, multihost=True) is True
    assert check_launch(coordinator_address="h:1", num_processes=1, process_id=0,
                        multihost=False) is True
