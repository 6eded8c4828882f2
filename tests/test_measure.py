"""train.py evaluate and fid-stats: batches resumed after SIGKILL give the uninterrupted
figures; the Inception path end to end (with seeded random weights at the real shapes)."""
import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import default
from scorelab import measure
from scorelab.config import ConfigError
from scorelab.loop import train
from scorelab.metrics import fid, inception
from scorelab.data.records import sha256
from scorelab.metrics.standard import InceptionMetrics, load_reference
from tests.test_inception import FIXTURES, random_state_dict, REF
from tests.test_train import tiny_unet, toy_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def evaluate_cli(workdir, out):
    return subprocess.Popen(
        [sys.executable, "train.py", "evaluate", f"--workdir={workdir}", "--num=400",
         "--batch_size=50", "--sampler=ode", f"--out={out}"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_evaluation_killed_and_resumed_reports_the_uninterrupted_figures(tmp_path):
    train(toy_config(), tmp_path / "run")
    proc = evaluate_cli(tmp_path / "run", tmp_path / "killed")
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").glob("batch_*.npz"))) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((tmp_path / "killed").glob("batch_*.npz")))
    assert 2 <= written < 8, written  # interrupted between batches
    proc = evaluate_cli(tmp_path / "run", tmp_path / "killed")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    whole = measure.evaluate(tmp_path / "run", num=400, sampler="ode", seed=0, batch_size=50,
                             inception_path="", reference="", resize="pytorch-fid",
                             out=str(tmp_path / "whole"))
    figures = {k: v for k, v in whole.items() if k.startswith("eval/")}
    assert figures and figures == {k: killed[k] for k in figures}
    assert not list((tmp_path / "killed").glob(".*tmp"))
    with pytest.raises(ConfigError, match="holds another evaluation"):  # never mixed
        measure.evaluate(tmp_path / "run", num=400, sampler="ode", seed=1, batch_size=50,
                         inception_path="", reference="", resize="pytorch-fid",
                         out=str(tmp_path / "whole"))


@pytest.fixture
def random_inception(monkeypatch):
    """load_inception gives the fixture's seeded random weights at the real shapes."""
    shapes = [tuple(int(d) for d in s.split("x")) if s else () for s in REF["shapes"]]
    params = inception.from_state_dict(random_state_dict(list(zip(REF["names"], shapes)),
                                                         int(REF["seed"])))
    monkeypatch.setattr(measure, "load_inception", lambda path, mesh=None: params)
    return params


def test_fid_stats_then_evaluate_with_inception(tmp_path, random_inception):
    """fid-stats featurises every image of the split in order; evaluate computes FID, IS, KID
    and precision / recall against that file, each equal to the metric of the saved
    features."""
    weights = str(FIXTURES / "state_dict_zip.pth")  # any existing file: the loader is patched
    # 5 images: a training split of 4, the evaluation's batch size, so one Inception compile
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "data.npz", images=images)
    config = default.get_config()
    config.data.update(name="npz", path=str(tmp_path / "data.npz"))
    meta = measure.fid_stats(config, output=str(tmp_path / "ref.npz"), split="train",
                             inception_path=weights, resize="tf1")
    ref = load_reference(tmp_path / "ref.npz")
    assert meta["count"] == len(ref["pool"]) == 4 and ref["meta"]["resize"] == "tf1"
    mu, sigma = fid.statistics(ref["pool"])
    np.testing.assert_array_equal(ref["mu"], mu)

    config = tiny_unet(default.get_config())
    config.training.n_steps = 2
    config.sampling.update(method="ode")
    config.sampling.ode.update(solver="euler", num_steps=2)
    train(config, tmp_path / "run")
    out = measure.evaluate(tmp_path / "run", num=6, sampler="", seed=0, batch_size=4,
                           inception_path=weights, reference=str(tmp_path / "ref.npz"),
                           resize="tf1", out=str(tmp_path / "eval"))
    saved = [np.load(tmp_path / "eval" / f"batch_0000{i}.npz") for i in range(2)]
    pool = np.concatenate([s["inception/pool"] for s in saved])
    logits = np.concatenate([s["inception/logits"] for s in saved])
    assert pool.shape == (6, 2048) and out["resize"] == "tf1"
    assert out["nfe"] == out["nfe_max"] == 3  # euler, 2 steps, and the denoising step
    assert np.isfinite(out["eval/fid"]) and out["eval/fid"] > 0  # its parity: test_inception
    assert out["eval/inception_score"] == fid.inception_score(logits, splits=1)[0]
    assert out["eval/kid"] == fid.kid(ref["pool"], pool, subset_size=4)[0]
    assert 0 <= out["eval/precision"] <= 1 and "eval/fd_digits" in out  # a digits run
    assert out["reference"]["sha256"] == sha256(tmp_path / "ref.npz")


def test_bad_arguments_fail_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV, raising=False)
    args = dict(num=10, sampler="", seed=0, batch_size=4, inception_path="", reference="",
                resize="pytorch-fid", out="")
    for bad, message in ((dict(num=1), "--num must be >= 2"),
                         (dict(sampler="rk4"), "--sampler must be one of"),
                         (dict(resize="area"), "--resize must be one of"),
                         (dict(inception_path="/no/such.pth"), "pt_inception-2015-12-05"),
                         (dict(reference="r.npz"), "--reference needs the Inception weights")):
        with pytest.raises(ConfigError, match=message):
            measure.evaluate(tmp_path, **{**args, **bad})
    with pytest.raises(ConfigError, match="--output must be an .npz path in an existing"):
        measure.fid_stats(default.get_config(), output="x.txt", split="train",
                          inception_path="", resize="tf1")
    with pytest.raises(ConfigError, match="needs the FID Inception weights"):
        measure.fid_stats(default.get_config(), output="x.npz", split="train",
                          inception_path="", resize="tf1")


def test_reference_files_of_score_sde_and_pytorch_fid(tmp_path):
    """score_sde's stats keep raw pool_3 features (TF-GAN's resize); pytorch-fid's keep mu and
    sigma only, which give FID but neither KID nor precision / recall."""
    pool = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    np.savez(tmp_path / "cifar10_stats.npz", pool_3=pool)
    ref = load_reference(tmp_path / "cifar10_stats.npz")
    assert ref["meta"] == {"format": "score_sde", "resize": "tf1", "count": 40}
    np.testing.assert_array_equal(ref["sigma"], fid.statistics(pool)[1])
    mu, sigma = fid.statistics(pool)
    np.savez(tmp_path / "pytorch_fid.npz", mu=mu, sigma=sigma)
    ref = load_reference(tmp_path / "pytorch_fid.npz")
    assert ref["pool"] is None and ref["meta"]["resize"] == "pytorch-fid"
    metrics = InceptionMetrics(None, ref).result({"pool": pool[:20] + 1, "logits": pool[:20]})
    assert metrics["eval/fid"] > 0 and "eval/kid" not in metrics
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="neither raw features"):
        load_reference(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="fid-stats"):
        load_reference(tmp_path / "missing.npz")
