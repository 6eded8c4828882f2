"""scorelab.data: the sources table, the resumable batch order, process shares, preprocessing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scorelab import data
from scorelab.data import images
from scorelab.metrics import METRICS


def test_every_epoch_is_a_permutation_and_any_step_is_computed_alone():
    """n = 10, batches of 4 straddle epoch boundaries; positions 10 e .. 10 e + 9 of the stream
    of batches hold each example once, and batch k does not depend on the batches before it."""
    stream = np.concatenate([data.batch_indices(k, n=10, batch_size=4, seed=3) for k in range(10)])
    for e in range(4):
        assert sorted(stream[10 * e:10 * e + 10]) == list(range(10))
    np.testing.assert_array_equal(data.batch_indices(7, n=10, batch_size=4, seed=3), stream[28:32])
    assert not np.array_equal(stream[:10], stream[10:20])  # a new order every epoch
    other = np.concatenate([data.batch_indices(k, n=10, batch_size=4, seed=4) for k in range(3)])
    assert not np.array_equal(other, stream[:12])


def labelled(n=20):
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    return data.Dataset(x, x[:6], np.arange(n, dtype=np.int32), np.arange(6, dtype=np.int32))


def test_streamed_batch_is_placed_by_the_sharding_not_by_device_order():
    """Each device's block of a global batch holds the rows the sharding assigns it, also on a
    mesh whose device order is not the devices' own (as on some multi-host platforms)."""
    ds = labelled()
    whole = data.host_batch(ds, 5, batch_size=8, seed=0)
    np.testing.assert_array_equal(whole["x"][:, 0, 0, 0], whole["labels"])
    shuffled = np.array(jax.devices())[[2, 0, 3, 1]]
    mesh = jax.sharding.Mesh(shuffled, ("data",))
    batches = data.DeviceBatches(ds, mesh, start=5, batch_size=8, seed=0, resident_bytes=0)
    try:
        batch = next(batches)
    finally:
        batches.close()
    for key in ("x", "labels"):
        np.testing.assert_array_equal(data.to_host(batch[key]), whole[key])
        for shard in batch[key].addressable_shards:
            np.testing.assert_array_equal(shard.data, whole[key][shard.index])
    assert batch["x"].addressable_shards[0].device == shuffled[0]
    np.testing.assert_array_equal(batch["x"].addressable_shards[0].data, whole["x"][:2])
    test = data.host_batch(ds, 0, batch_size=6, seed=1, split="test")
    assert sorted(test["labels"]) == list(range(6))
    with pytest.raises(ValueError, match="split must be"):
        data.host_batch(ds, 0, batch_size=8, seed=0, split="val")


def test_preprocess_ranges_dequantisation_and_flips():
    x = np.array([0, 51, 255], np.uint8).reshape(3, 1, 1, 1)
    key = jax.random.key(0)
    np.testing.assert_allclose(data.preprocess(x, key, is_image=True).ravel(), [-1, -0.6, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(data.preprocess(x, key, is_image=True, centered=False).ravel(),
                               [0, 0.2, 1], rtol=1e-6)
    many = np.full((4096, 1, 1, 1), 100, np.uint8)
    u = data.preprocess(many, key, is_image=True, centered=False, dequantize=True) * 256 - 100
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.02
    rows = np.arange(4 * 3, dtype=np.uint8).reshape(1, 1, 12, 1).repeat(64, 0)
    flipped = np.asarray(data.preprocess(rows, key, is_image=True, random_flip=True))
    plain = np.asarray(data.preprocess(rows, key, is_image=True))
    same = np.all(flipped == plain, axis=(1, 2, 3))
    mirrored = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 16 < mirrored.sum() < 48
    points = jnp.ones((3, 2))
    assert data.preprocess(points, key, is_image=False) is points


@pytest.mark.parametrize("centered", [True, False])
def test_to_uint8_inverts_preprocess(centered):
    x = np.arange(256, dtype=np.uint8).reshape(16, 4, 4, 1)
    back = data.to_uint8(data.preprocess(x, jax.random.key(0), is_image=True, centered=centered),
                         centered=centered)
    np.testing.assert_array_equal(back, x)


def test_sources_name_known_metrics_and_the_digit_split_is_fixed():
    for name, source in data.SOURCES.items():
        assert set(source.metrics) <= set(METRICS), name
    a, b = data.load("digits", seed=0), data.load("digits", seed=5)
    assert a.train.shape == (1500, 8, 8, 1) and a.test.shape == (297, 8, 8, 1)
    np.testing.assert_array_equal(a.test, b.test)
    assert a.metrics == ("digit_classifier",) and a.is_image
    toy = data.load("moons", num_train=50, num_test=10, seed=1)
    assert toy.train.shape == (50, 2) and toy.train.dtype == np.float32 and not toy.is_image
    with pytest.raises(ValueError, match="data.name must be one of"):
        data.load("imagenet")


def test_resize_upsamples_by_integer_factors_only():
    x = np.arange(4, dtype=np.uint8).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(images.resize(x, 4)[0, :, :, 0],
                                  [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    assert images.resize(x, 0) is x
    with pytest.raises(ValueError, match="data.image_size=3 must be a multiple"):
        images.resize(x, 3)


# on the devices; streamed by grain in this process; in a spawned worker process
@pytest.mark.parametrize("resident_bytes,workers", [(2**30, 0), (0, 0), (0, 1)])
def test_device_batches_are_the_host_batches_sharded(resident_bytes, workers):
    ds = labelled(40)
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
    batches = data.DeviceBatches(ds, mesh, start=3, batch_size=8, seed=2, prefetch=2,
                                 resident_bytes=resident_bytes, workers=workers)
    assert batches.resident == bool(resident_bytes)
    try:
        for step in range(3, 9):
            batch, expected = next(batches), data.host_batch(ds, step, batch_size=8, seed=2)
            assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
            for key in ("x", "labels"):
                np.testing.assert_array_equal(np.asarray(batch[key]), expected[key])
    finally:
        batches.close()
    assert batches.wait_s >= 0
