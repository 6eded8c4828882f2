"""Prepared records (train.py prepare-data) and the grain pipeline that streams them: the same
training as the in-memory source, bit for bit and across a resume; each process's rows; bad
inputs refused before any work; no worker outlives a SIGKILL."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from configs import default
from scorelab import data
from scorelab.config import ConfigError
from scorelab.data import images, records
from scorelab.data.pipeline import StepRows, batch_indices, local_rows
from scorelab.data.prepare import prepare
from scorelab.loop import build, train
from tests.test_distributed import finish, free_port, losses

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    x, y = images.digits()
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, images=x, labels=y)
    return path


def test_prepared_npz_reads_back_as_the_in_memory_source(digits_npz, tmp_path):
    meta = prepare(str(digits_npz), str(tmp_path / "rec"))
    assert meta["splits"]["train"]["count"] == 1618 and meta["labels"]
    rec, mem = data.load("records", path=str(tmp_path / "rec")), data.load(
        "npz", path=str(digits_npz))
    assert isinstance(rec.train, records.Records) and rec.train.shape == mem.train.shape
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(rec, split)[:], getattr(mem, split))
        np.testing.assert_array_equal(getattr(rec, f"{split}_labels"),
                                      getattr(mem, f"{split}_labels"))
    rows = np.array([5, 0, 1617, 5])
    np.testing.assert_array_equal(rec.train[rows], mem.train[rows])
    np.testing.assert_array_equal(rec.train[7], mem.train[7])
    with pytest.raises(ConfigError, match="exists"):  # nothing is overwritten
        prepare(str(digits_npz), str(tmp_path / "rec"))


def test_changed_truncated_or_foreign_records_are_named_before_training(digits_npz, tmp_path):
    prepare(str(digits_npz), str(tmp_path / "rec"))
    shard = tmp_path / "rec" / "train-00000-of-00001.array_record"
    raw = bytearray(shard.read_bytes())
    raw[-100] ^= 1
    shard.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="train-00000-of-00001.array_record.*changed"):
        data.load("records", path=str(tmp_path / "rec"))
    shard.write_bytes(bytes(raw[:-10]))
    with pytest.raises(ConfigError, match="train-00000-of-00001.array_record has .*truncated"):
        data.load("records", path=str(tmp_path / "rec"))
    meta = json.loads((tmp_path / "rec" / "metadata.json").read_text())
    (tmp_path / "rec" / "metadata.json").write_text(json.dumps({**meta, "version": 0}))
    with pytest.raises(ConfigError, match="version 0.*prepare the data again"):
        data.load("records", path=str(tmp_path / "rec"))
    with pytest.raises(ConfigError, match="no metadata.json"):
        data.load("records", path=str(tmp_path))


def write_png(path, size, mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_folder_with_class_subfolders_and_score_sde_resizing(tmp_path):
    for i in range(6):
        write_png(tmp_path / "in" / ("cat" if i % 2 else "dog") / f"{i}.png", (40, 30),
                  value=(i * 40, 0, 0))
    (tmp_path / "in" / "README.txt").write_text("not an image")
    meta = prepare(str(tmp_path / "in"), str(tmp_path / "out"), image_size=16)
    ds = data.load("records", path=str(tmp_path / "out"))
    assert meta["label_names"] == ["cat", "dog"] and meta["preprocessing"]["skipped"] == 1
    assert ds.train.shape[1:] == (16, 16, 3)
    files = sorted((tmp_path / "in").rglob("*.png"))
    order = np.concatenate(records.split_order(6))
    # labels follow the files; the red channel recovers which file each record holds
    got = np.concatenate([ds.train[:, 8, 8, 0], ds.test[:, 8, 8, 0]]) // 40
    np.testing.assert_array_equal(got, [int(files[i].stem) for i in order])
    np.testing.assert_array_equal(np.concatenate([ds.train_labels, ds.test_labels]),
                                  [int(files[i].stem) % 2 == 0 for i in order])


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "holds no .png"),
    (lambda d: (write_png(d / "a.png", (8, 8)), write_png(d / "b.png", (9, 8))),
     "differ in size.*give --image_size"),
    (lambda d: (write_png(d / "a.png", (8, 8)), write_png(d / "c" / "b.png", (8, 8))),
     "all sit in the folder itself or all in"),
    (lambda d: (write_png(d / "a.png", (8, 8)), (d / "b.png").write_bytes(b"\x89PNG broken")),
     "b.png is not a readable image"),
])
def test_bad_folders_are_refused_by_name(tmp_path, setup, message):
    (tmp_path / "in").mkdir()
    setup(tmp_path / "in")
    with pytest.raises(ConfigError, match=message):
        prepare(str(tmp_path / "in"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_bad_npz_and_arguments(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 8, 8), np.uint8), labels=[0, 1, -1, 2])
    with pytest.raises(ConfigError, match="labels must be one integer >= 0"):
        prepare(str(tmp_path / "x.npz"), str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="--input='nowhere' does not exist"):
        prepare("nowhere", str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="--crop only beside --image_size"):
        prepare(str(tmp_path / "x.npz"), str(tmp_path / "out"), crop=10)


def test_two_processes_read_disjoint_rows_that_cover_each_epoch_once():
    """Split the 4 devices into two 'processes': their rows of every batch are disjoint and
    together the whole batch; over an epoch every example is read exactly once."""
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    devices = list(mesh.devices.flat)
    halves = [local_rows(sharding, 8, devices[:2]), local_rows(sharding, 8, devices[2:])]
    np.testing.assert_array_equal(np.sort(np.concatenate(halves)), np.arange(8))
    x = np.arange(32)
    seen = [np.concatenate([StepRows({"x": x}, rows, batch_size=8, seed=3)(step)["x"]
                            for step in range(4)]) for rows in halves]
    assert not set(seen[0]) & set(seen[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), x)
    np.testing.assert_array_equal(StepRows({"x": x}, np.arange(8), batch_size=8, seed=3)(2)["x"],
                                  batch_indices(2, n=32, batch_size=8, seed=3))


OVERRIDES = {"data.name": "records", "training.batch_size": 8, "training.log_every": 5,
             "training.checkpoint_every": 5, "training.eval_every": 0,
             "model.ncsnpp.ch_mult": (1,), "model.ncsnpp.nf": 8}  # one resolution: fast compiles


def records_config(path, n_steps, workers=0):
    config = default.get_config()
    for field, value in {**OVERRIDES, "data.path": str(path), "data.num_workers": workers,
                         "training.n_steps": n_steps}.items():
        *sections, name = field.split(".")
        parent = config
        for section in sections:
            parent = parent[section]
        parent[name] = value
    return config


def launch_pair(workdir, path, n_steps):
    """Two train.py processes with 2 CPU devices each, on the records in `path`."""
    port, procs = free_port(), []
    flags = [f"--config.{k}={v}".replace(" ", "") for k, v in OVERRIDES.items()]
    for i in range(2):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        procs.append(subprocess.Popen(
            [sys.executable, "train.py", f"--workdir={workdir}", *flags,
             f"--config.data.path={path}", f"--config.training.n_steps={n_steps}",
             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    return procs


def test_streamed_records_train_as_in_memory_and_resume_on_two_processes(digits_npz, tmp_path):
    """5 steps on records (a grain worker process), resumed to 10 in this process, then to 20
    by two train.py processes of 2 devices each: the losses of 20 uninterrupted steps of the
    .npz in memory on 4 devices, bit for bit on one process count, to float rounding across
    counts (reductions split differently)."""
    prepare(str(digits_npz), str(tmp_path / "rec"))
    memory = records_config(digits_npz, 20)
    memory.data.name = "npz"
    train(memory, tmp_path / "memory")
    whole = losses(tmp_path / "memory")
    for n_steps in (5, 10):
        train(records_config(tmp_path / "rec", n_steps, workers=1), tmp_path / "streamed")
    assert losses(tmp_path / "streamed") == {k: v for k, v in whole.items() if k <= 10}
    codes, outs = finish(launch_pair(tmp_path / "streamed", tmp_path / "rec", 20))
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outs)
    resumed = losses(tmp_path / "streamed")
    assert list(resumed) == [5, 10, 15, 20]
    np.testing.assert_allclose([resumed[k] for k in (15, 20)], [whole[k] for k in (15, 20)],
                               rtol=1e-6)


def test_no_worker_outlives_a_sigkilled_run(digits_npz, tmp_path):
    prepare(str(digits_npz), str(tmp_path / "rec"))
    proc = subprocess.Popen(
        [sys.executable, "train.py", f"--workdir={tmp_path / 'run'}",
         "--config.data.name=records", f"--config.data.path={tmp_path / 'rec'}",
         "--config.data.num_workers=2", "--config.training.n_steps=100000",
         "--config.training.eval_every=0"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline, children = time.time() + 120, []
    while time.time() < deadline and len(children) < 2:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(p) == proc.pid]
        time.sleep(0.2)
    assert len(children) >= 2, "the workers never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def _parent(pid: str) -> int:
    try:
        return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("name", ["cifar10", "celeba", "lsun_church", "lsun_bedroom", "ffhq"])
def test_presets_build_on_small_stand_ins_of_their_shape(name, tmp_path):
    """Each preset reads records of its image size: the config checks, the data, the network's
    shapes (traced, no FLOPs) and one streamed batch."""
    from configs import records_presets
    size = records_presets.PREPARE[name][0]
    records.write(tmp_path / name, lambda i: np.full((size, size, 3), i, np.uint8), None,
                  image_shape=(size, size, 3), preprocessing={"count": 12}, source="stand-in")
    config = getattr(records_presets, name)()
    config.data.path = str(tmp_path / name)
    run = build(config)
    assert run.dataset.data_shape == (size, size, 3) and len(run.dataset.train) == 11
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:1])
    batches = data.DeviceBatches(run.dataset, mesh, start=0, batch_size=4, seed=0)
    try:
        assert next(batches)["x"].shape == (4, size, size, 3)
    finally:
        batches.close()


def test_a_folder_streams_without_preparing(tmp_path):
    """data.stream decodes a folder's images as batches ask: the same pixels and split as the
    folder read at start, and it pickles as file names (for grain's workers)."""
    import pickle

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), np.uint8)).save(
            tmp_path / f"{i:02d}.png")
    whole = data.load("folder", path=str(tmp_path), image_size=8)
    streamed = data.load("folder", path=str(tmp_path), image_size=8, stream=True)
    assert isinstance(streamed.train, images.FolderImages)
    assert streamed.train.shape == (11, 8, 8, 3)  # 12 images, 1 held out
    np.testing.assert_array_equal(streamed.train[:], whole.train)
    np.testing.assert_array_equal(streamed.test[:], whole.test)
    assert len(pickle.dumps(streamed.train)) < 2000
    rows = np.array([3, 1, 3])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(streamed.train))[rows],
                                  whole.train[rows])


def test_a_hugging_face_data_set_is_prepared_with_its_class_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    pictures = [Image.fromarray(np.full((6, 5, 3), i * 20, np.uint8)) for i in range(10)]
    features = datasets.Features({"img": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    ds = datasets.Dataset.from_dict({"img": pictures, "label": [i % 3 for i in range(10)]},
                                    features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    meta = prepare(f"hf:{tmp_path / 'hf'}", str(tmp_path / "out"))
    loaded = data.load("records", path=str(tmp_path / "out"))
    assert meta["label_names"] == ["a", "b", "c"] and loaded.train.shape == (9, 6, 5, 3)
    order = np.concatenate(records.split_order(10))
    np.testing.assert_array_equal(np.concatenate([loaded.train[:, 0, 0, 0],
                                                  loaded.test[:, 0, 0, 0]]) // 20, order)
    np.testing.assert_array_equal(np.concatenate([loaded.train_labels, loaded.test_labels]),
                                  order % 3)
    with pytest.raises(ConfigError, match="has splits \\['train'\\], not 'test'"):
        prepare(f"hf:{tmp_path / 'hf'}:test", str(tmp_path / "out2"))
