"""The observation commands (complete, super-resolve, colorize, denoise, reconstruct) on a tiny
trained digits run."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scorelab import data
from scorelab.config import ConfigError
from scorelab.data import to_uint8
from scorelab.metrics.classifier import classify, load_or_train
from scorelab.tasks import make_mask, observe, psnr, run_task, ssim
from tests.test_layout import ROOT, copy_fixture


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_fixture("digits_v0_1", tmp_path_factory.mktemp("tasks"))


def test_complete_keeps_observed_pixels_through_the_command_line(workdir):
    proc = subprocess.run([sys.executable, "train.py", "complete", f"--workdir={workdir}",
                           "--mask=half", "--num=4", "--num_steps=5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = workdir / "tasks" / "complete_step_2"
    rows = np.load(stem.with_suffix(".npz"))
    observed = make_mask("half", rows["original"].shape, 0)
    np.testing.assert_array_equal(rows["draws"][observed], rows["original"][observed])
    figures = json.loads(stem.with_suffix(".json").read_text())
    assert figures["nfe"] == 6 and figures["conditioned_on_labels"]  # DDRM: 1 per step
    assert figures["method"] == "ddrm"  # "auto" for a mask
    assert figures["class_accuracy_original"] > 0.9  # the held-out digits themselves
    # The 2-step fixture fills the hidden half with noise (1 of these 4 draws is read as its
    # digit, 2 of the half-masked observations; guessing gets 0.1), so no threshold can hold;
    # instead each figure must be the in-project classifier's share of *those* rows read as
    # their held-out labels.
    digits = data.load("digits")
    params = load_or_train(digits.train, digits.train_labels)
    for row, name in (("observation", "observation"), ("draws", "draw"), ("original", "original")):
        _, predicted = classify(params, to_uint8(rows[row], centered=True))
        assert figures[f"class_accuracy_{name}"] == pytest.approx(
            np.mean(predicted == digits.test_labels[:4]), abs=1e-9), (name, predicted)
    assert stem.with_suffix(".png").is_file() and "PSNR" in proc.stdout


@pytest.mark.parametrize("task, options", [
    ("super-resolve", {"factor": 2, "method": "smc", "num_particles": 2}),
    ("denoise", {"noise_std": 0.2}),
    ("reconstruct", {"operator": "fourier:0.5", "noise_std": 0.05}),
])
def test_tasks_write_their_rows_and_figures(workdir, tmp_path, task, options):
    figures = run_task(workdir, task, num=3, out=str(tmp_path / task), num_steps=4, **options)
    rows = np.load(tmp_path / f"{task}.npz")
    assert rows["draws"].shape == rows["original"].shape == (3, 8, 8, 1)
    assert np.isfinite(rows["draws"]).all() and np.isfinite(figures["psnr_draw"])
    if task == "super-resolve":  # the block means of the draws are the observation's
        assert (figures["method"], figures["num_particles"], figures["nfe"]) == ("smc", 2, 5)
        blocks = lambda a: a.reshape(3, 4, 2, 4, 2, 1).mean((2, 4))
        # to float32 rounding of the chain's last state, which the 2-step fixture leaves far
        # outside [-1, 1] (the projection x + A^+(y - A x) cancels its magnitude)
        np.testing.assert_allclose(blocks(rows["draws"]), blocks(rows["original"]), atol=1e-3)
    if task == "denoise":
        assert "mean" in rows and figures["nfe"] >= 1 and "psnr_mean" in figures


@pytest.mark.parametrize("task, operator, method", [
    ("reconstruct", "blur:1.0", "tweedie"), ("reconstruct", "project:10", "tweedie"),
    ("reconstruct", "fourier:0.5", "ddrm"), ("super-resolve", "blur:1.0", "ddrm"),
    ("complete", "blur:1.0", "ddrm"), ("denoise", "blur:1.0", "exact start")])
def test_auto_method_is_ddrm_where_the_rows_are_orthonormal(task, operator, method):
    options = dict(mask="center", factor=2, noise_std=0.1, operator=operator, seed=0,
                   num_steps=2)
    x0, key = jnp.zeros((2, 8, 8, 1)), jax.random.key(0)
    assert observe(task, x0, key, method="auto", **options).method == method
    if task != "denoise":
        assert observe(task, x0, key, method="pigdm", **options).method == "pigdm"


@pytest.mark.parametrize("task, options, message", [
    ("colorize", {}, "colorize needs colour images"),
    ("complete", {"mask": "nowhere.npy"}, "--mask must be one of"),
    ("super-resolve", {"factor": 3}, "--factor=3 must divide the image size"),
    ("denoise", {"noise_std": 1.5}, "--noise_std must be in [0, 1]"),
    ("reconstruct", {"operator": "warp:2"}, "--operator must be blur:WIDTH"),
    ("denoise", {"num_steps": 0}, "--num_steps must be >= 1"),
    ("complete", {"method": "dps"}, "--method must be one of"),
    ("complete", {"num_particles": 4}, "--num_particles=4 needs --method=smc"),
])
def test_bad_task_arguments_are_named(workdir, tmp_path, task, options, message):
    with pytest.raises(ConfigError) as info:
        run_task(workdir, task, num=2, out=str(tmp_path / "x"), **options)
    assert message in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_psnr_and_ssim_of_known_images():
    ref = np.random.default_rng(0).random((2, 8, 8, 1))
    assert psnr(np.clip(ref + 0.1, 0, 1), ref) < psnr(np.clip(ref + 0.01, 0, 1), ref)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0)  # MSE 0.01
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(np.full_like(ref, 0.5), ref) < 0.5
