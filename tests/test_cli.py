"""train.py's command line: each command's --help shows its own flags and defaults and exits 0;
a flag the command does not take is refused by name before the command runs."""
import dataclasses
import importlib.util
import inspect
import pathlib
import subprocess
import sys

import pytest

from scorelab import cli
from scorelab.tasks import run_task

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_py():
    spec = importlib.util.spec_from_file_location("train_cli", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def spied(train_py):
    """train.py's commands with every `run` replaced by a recorder of the parsed flags."""
    calls = []
    commands = {name: dataclasses.replace(c, run=lambda f, name=name: calls.append((name, f)))
                for name, c in train_py.COMMANDS.items()}
    return commands, calls


def test_every_command_has_help_with_its_own_flags(train_py, capsys):
    for name, command in train_py.COMMANDS.items():
        assert cli.main(["train.py", name, "--help"], train_py.COMMANDS, "train") == 0
        text = capsys.readouterr().out
        shown = {line.strip()[2:] for line in text.splitlines() if line.startswith("  --")}
        assert shown == {f.name for f in command.flags}, name
    assert cli.main(["train.py", "--help"], train_py.COMMANDS, "train") == 0
    overview = capsys.readouterr().out
    assert all(f"  {name} " in overview for name in train_py.COMMANDS)


def test_help_prints_the_defaults_each_command_uses(train_py, capsys):
    cli.main(["train.py", "sample", "-h"], train_py.COMMANDS, "train")
    assert "Number of samples. (default: 64)" in capsys.readouterr().out
    cli.main(["train.py", "complete", "-h"], train_py.COMMANDS, "train")
    assert "Number of held-out images. (default: 16)" in capsys.readouterr().out
    cli.main(["train.py", "train", "-h"], train_py.COMMANDS, "train")
    assert "--config.training.n_steps=500" in capsys.readouterr().out


def test_commands_run_with_the_printed_defaults(spied):
    commands, calls = spied
    for argv in (["sample"], ["complete"], ["reconstruct", "--operator=fourier:0.25"],
                 ["--config=configs/toy_vp.py", "--config.training.n_steps=7"]):
        assert cli.main(["train.py", *argv], commands, "train") == 0
    (_, s), (_, c), (_, r), (name, t) = calls
    assert (s.num, s.seed, s.sampler, c.num, c.mask, c.method) == (64, 0, "", 16, "center", "auto")
    assert (r.operator, r.noise_std) == ("fourier:0.25", 0.1)
    assert name == "train" and t.config.training.n_steps == 7 and t.config.data.name == "mixture"


@pytest.mark.parametrize("argv, flag, owners", [
    (["sample", "--mask=half"], "--mask", "complete"),
    (["score", "--draws=2"], "--draws", "impute"),
    (["denoise", "--method=ddrm"], "--method", "complete, super-resolve, colorize, reconstruct"),
    (["sample", "--config.sampling.method=ode"], "--config.sampling.method",
     "train, fid-stats, compare, import-score-sde"),
    (["--num=3"], "--num", "sample, complete"),
    (["compare", "--coordinator_address=h:1"], "--coordinator_address", "train, sample"),
])
def test_misplaced_flags_are_refused_by_name_before_running(spied, capsys, argv, flag, owners):
    commands, calls = spied
    assert cli.main(["train.py", *argv], commands, "train") == 2
    err = capsys.readouterr().err
    command = argv[0] if not argv[0].startswith("-") else "train"
    assert f"{flag} is not a flag of `{command}`; it belongs to {owners}" in err
    assert calls == []


@pytest.mark.parametrize("argv, message", [
    (["smaple"], "command must be one of ['train', 'sample'"),
    (["sample", "--num=many"], "flag --num=many"),
    (["sample", "--sampler=rk45"], "flag --sampler=rk45"),
    (["sample", "runs/x"], "takes flags only, got the arguments ['runs/x']"),
    (["--config=configs/toy_vp.py", "--config.training.n_stepz=1"], "no such config field"),
])
def test_bad_command_lines_are_refused(spied, capsys, argv, message):
    commands, calls = spied
    assert cli.main(["train.py", *argv], commands, "train") == 2
    assert message in capsys.readouterr().err and calls == []


def test_task_flags_are_run_tasks_keywords(train_py):
    """Every flag a task command declares reaches run_task (none is parsed and then dropped)."""
    keywords = set(inspect.signature(run_task).parameters)
    hosts = {f.name for f in train_py.HOSTS}
    for name in train_py.TASKS:
        declared = {f.name for f in train_py.COMMANDS[name].flags} - hosts - {"workdir"}
        assert declared <= keywords, (name, declared - keywords)


def test_help_and_refusal_exit_codes_of_the_real_script(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "train.py"), *a], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=300)
    ok = run("score", "--help")
    assert ok.returncode == 0 and "--output" in ok.stdout and "--draws" not in ok.stdout
    bad = run("sample", "--workdir=nowhere", "--draws=3")
    assert bad.returncode == 2 and "--draws is not a flag of `sample`" in bad.stderr
    assert not (tmp_path / "nowhere").exists()


def test_progress_off_a_terminal_is_plain_lines():
    import io
    from scorelab.progress import Progress
    out = io.StringIO()
    progress = Progress(3, desc="training", unit="step", file=out, every_s=0.0)
    for done in (1, 2, 3):
        progress.update(done, f"loss={done / 10:.4f}")
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("training: 3/3 step (") and lines[-1].endswith("loss=0.3000")
    assert len(lines) == 3 and not any(c in out.getvalue() for c in "\r\x1b")
