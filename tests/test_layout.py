"""The layout's promises: the library imports nothing of the application, nothing points outside
the repository, and runs written by v0.1 still restore, sample and resume."""
import ast
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

import scorelab
from configs import default, toy_vp
from scorelab import config as config_module
from scorelab.commands import restore
from scorelab.config import _ADDED, upgrade
from scorelab.loop import train
from scorelab.step import make_mesh
from scorelab.workdir import read_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# Run directories saved by older versions (score_sde's own checkpoints lie one level deeper).
OLD_RUNS = sorted(path.parent.name for path in FIXTURES.glob("*/config.json"))
# What each library package may import from this repository (STYLE: imports run one way).
ALLOWED = {"sde": {"sde"}, "samplers": {"sde", "samplers"}, "models": {"sde", "models"}}
OURS = {"sde", "samplers", "models", "scorelab", "configs", "train", "bench", "tests"}


def imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", list(ALLOWED))
def test_library_imports_nothing_of_the_application(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        ours = imported_roots(path) & OURS
        assert ours <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {ours}"
    if package == "samplers":  # samplers work on any score function: no networks, no Flax
        for path in (ROOT / package).rglob("*.py"):
            assert "flax" not in imported_roots(path), path


def test_nothing_points_outside_the_repository():
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".toml")
             and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    for path in files:
        text = path.read_text()
        for outside in ("../" + "shared", "API" + ".md"):  # spelled apart so this file passes
            assert outside not in text, (path.relative_to(ROOT), outside)


def copy_fixture(name, tmp_path) -> pathlib.Path:
    workdir = tmp_path / name
    shutil.copytree(FIXTURES / name, workdir)
    return workdir


def expected_ema(workdir):
    with np.load(workdir / "expected_ema_params.npz") as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.parametrize("name", ["toy_v0_1", "digits_v0_1"])
def test_v0_1_checkpoints_restore_bit_for_bit(name, tmp_path):
    workdir = copy_fixture(name, tmp_path)
    config, run, state, step = restore(workdir, make_mesh())
    assert step == (6 if name.startswith("toy") else 2)
    leaves = jax.tree_util.tree_leaves(jax.device_get(state.ema_params))
    for a, b in zip(leaves, expected_ema(workdir), strict=True):
        np.testing.assert_array_equal(a, b)


def test_v0_1_config_upgrades_to_the_same_config_today():
    """The v0.1 digits run was default.py with these overrides; its config.json, upgraded, is
    today's default.py with the same overrides in today's layout."""
    config = default.get_config()
    config.model.ncsnpp.update(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=())
    config.model.conditional_classes = 10
    config.training.update(batch_size=8, n_steps=2, log_every=1, eval_every=10**6,
                           checkpoint_every=2, max_to_keep=1)
    config.eval.update(num_likelihood=0, num_metric_samples=0)
    config.sampling.num_samples = 4
    config.sampling.pc.num_steps = config.sampling.sde.num_steps = 30  # v0.1 shared num_steps
    config.sampling.ode.solver = "tsit5"  # the adaptive default until 0.3: its runs keep it
    expected = json.loads(config.to_json_best_effort())
    # every field added since v0.1 at the value the upgrade table gives its runs (ema_warmup:
    # False, the plain EMA); the table is the one place that states those values
    for path, value in _ADDED.items():
        *sections, name = path.split(".")
        parent = expected
        for section in sections:
            parent = parent[section]
        parent[name] = value
    saved = json.loads((FIXTURES / "digits_v0_1" / "config.json").read_text())
    assert upgrade(saved) == expected
    today = json.loads(toy_vp.get_config().to_json_best_effort())
    assert upgrade(today) == today


def leaf_paths(tree: dict, prefix: str = "") -> set[str]:
    """The dotted paths of a nested dict's leaves ("model.ncsnpp.nf", ...)."""
    paths = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            paths |= leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


def fields_old_runs_lack(name: str) -> tuple[list[str], list[str]]:
    """(fields of default.py's get_config() that the old run `name` lacks after `upgrade`,
    fields it has that get_config() does not)."""
    today = leaf_paths(json.loads(default.get_config().to_json_best_effort()))
    saved = json.loads((FIXTURES / name / "config.json").read_text())
    upgraded = leaf_paths(upgrade(saved))
    return sorted(today - upgraded), sorted(upgraded - today)


@pytest.mark.parametrize("name", OLD_RUNS)
def test_every_config_field_reaches_old_runs(name):
    """A field added to configs/default.py must be given to runs saved before it: in their
    config.json already, or by scorelab.config._ADDED (or v0.1's layout conversion)."""
    missing, stale = fields_old_runs_lack(name)
    assert not missing, (f"{missing} of configs/default.py are missing from {name}'s upgraded "
                         f"config.json: add each to scorelab.config._ADDED with the value "
                         f"runs saved before it had")
    assert not stale, (f"{name}'s upgraded config.json has {stale}, which configs/default.py "
                       f"no longer has: scorelab.config.upgrade must rename or drop them")


def test_a_field_left_out_of_the_upgrade_table_is_named(monkeypatch):
    """The check above catches a new field without its _ADDED entry."""
    table = {k: v for k, v in _ADDED.items() if k != "model.ema_warmup"}
    monkeypatch.setattr(config_module, "_ADDED", table)
    assert fields_old_runs_lack("toy_v0_1") == (["model.ema_warmup"], [])


def test_v0_1_run_samples_and_resumes(tmp_path):
    workdir = copy_fixture("toy_v0_1", tmp_path)
    stem = scorelab.sample(workdir, method="", num=8, seed=0, out="")
    assert np.load(stem.with_suffix(".npz"))["samples"].shape == (8, 2)
    assert stem.name == "sample_step_6_ode"  # the run's own sampler, as v0.1 saved it
    config = read_config(workdir)
    config.training.n_steps = 9
    state = train(config, workdir)
    assert int(state.step) == 9
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines if "eval/loss" not in ln] == [3, 6, 9]
    assert "ncsnpp" in json.loads((workdir / "config.json").read_text())["model"]
