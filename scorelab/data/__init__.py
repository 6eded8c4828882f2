"""Data sets: one table of sources, each loading host numpy arrays.

`load(name, ...)` returns a `Dataset`: uint8 images (n, H, W, C) or float32 points (n, d), with
integer labels where the source has them, the names of the sample-quality metrics
(`scorelab.metrics.METRICS`) that apply to it, and for a table its column standardisation
(missing cells are NaN). A new data set is one entry in `SOURCES`. What
happens to a batch on the way to the accelerator is `scorelab.data.pipeline`.
"""
import dataclasses
from collections.abc import Callable

import numpy as np

from scorelab.data import images, records, series, tables, toy
from scorelab.data.pipeline import (DeviceBatches, batch_indices, host_batch,
                                     preprocess, put_global, shard_batch, to_host, to_uint8)


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    metrics: tuple[str, ...] = ()  # names in scorelab.metrics.METRICS
    table: tables.Standardizer | None = None  # a CSV table's columns and their statistics

    @property
    def is_image(self) -> bool:
        return self.train.dtype == np.uint8

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


@dataclasses.dataclass(frozen=True)
class Source:
    """`load(path=, image_size=, seed=, num_train=, num_test=)` -> (train, test, train labels,
    test labels[, table standardizer]); `metrics` name the sample metrics that apply to this
    data."""

    load: Callable[..., tuple]
    metrics: tuple[str, ...] = ()


def _fixed_split(x: np.ndarray, y: np.ndarray | None, n_test: int):
    """The last `n_test` of one permutation fixed for all runs (seed 0), whatever the seed."""
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:-n_test], order[-n_test:]
    take = getattr(x, "subset", x.__getitem__)  # streamed images stay unread
    labels = (None, None) if y is None else (y[train], y[test])
    return take(train), take(test), *labels


def _digits(*, image_size, **_):
    x, y = images.digits()
    return _fixed_split(images.resize(x, image_size), y, 297)


def _mnist(*, image_size, **_):
    x, y = images.mnist()
    return _fixed_split(images.resize(x, image_size), y, 500)


def _npz(*, path, image_size, **_):
    x, y = images.npz(path)
    x = images.resize(x, image_size)
    return _fixed_split(x, y, max(1, len(x) // 10))


def _folder(*, path, image_size, stream, **_):
    x, y = images.folder(path, image_size or None, stream=stream)
    return _fixed_split(x, y, max(1, len(x) // 10))


def _records(*, path, image_size, **_):
    arrays = records.load(path)
    if image_size and image_size != arrays[0].shape[1]:
        raise ValueError(f"data.image_size={image_size}: the records in data.path={path!r} "
                         f"were prepared at {arrays[0].shape[1]} (set 0, or prepare again)")
    return arrays


def _cifar10(*, image_size, **_):
    (x, y), (xt, yt) = images.cifar10("train"), images.cifar10("test")
    return images.resize(x, image_size), images.resize(xt, image_size), y, yt


def _csv(*, path, **_):
    train, test, stats = tables.load_csv(path)
    return train, test, None, None, stats


def _series(*, path, window, **_):
    train, test, stats = series.load(path, window)
    return train, test, None, None, stats


def _toy(generator):
    def load(*, seed, num_train, num_test, **_):
        rng = np.random.default_rng(seed)
        return (generator(rng, num_train).astype(np.float32),
                generator(rng, num_test).astype(np.float32), None, None)
    return load


SOURCES = {
    # digits: 1,500 train / 297 test; npz / folder: the last 10% (at least one image) held out.
    "digits": Source(_digits, metrics=("digit_classifier",)),
    # mnist: 28x28, 4,500 train / 500 test.
    "mnist": Source(_mnist, metrics=("digit_classifier",)),
    "npz": Source(_npz),
    "folder": Source(_folder),
    # records: a directory of `train.py prepare-data` (ArrayRecord shards, read as needed)
    "records": Source(_records),
    "cifar10": Source(_cifar10),
    # csv: numeric columns, empty cells missing; data.path empty = the bundled breast-cancer
    # table. 10% of the complete rows held out.
    "csv": Source(_csv, metrics=("sliced_w2",)),
    # series: windows of data.window steps of one or more CSV series (data.path, commas
    # between files; first column the time stamp); the last 10% of each series held out.
    "series": Source(_series),
    # Toy sets: fresh draws of num_train / num_test points from the generator.
    "mixture": Source(_toy(toy.mixture), metrics=("sliced_w2", "mixture_density")),
    "moons": Source(_toy(toy.moons), metrics=("sliced_w2",)),
    "swiss_roll": Source(_toy(toy.swiss_roll), metrics=("sliced_w2",)),
    "checkerboard": Source(_toy(toy.checkerboard), metrics=("sliced_w2",)),
}


def load(name: str, *, path: str = "", image_size: int = 0, seed: int = 0,
         num_train: int = 10000, num_test: int = 2000, window: int = 32,
         stream: bool = False) -> Dataset:
    """The data set `name` of `SOURCES`; `path` is the file or folder of "npz" / "folder",
    `image_size` an integer upsampling of images (0 keeps them), `seed` and the sizes are for
    the toy generators."""
    if name not in SOURCES:
        raise ValueError(f"data.name must be one of {list(SOURCES)}, got {name!r}")
    source = SOURCES[name]
    arrays = source.load(path=path, image_size=image_size, seed=seed, num_train=num_train,
                         num_test=num_test, window=window, stream=stream)
    return Dataset(*arrays[:4], metrics=source.metrics, table=arrays[4] if len(arrays) > 4
                   else None)


__all__ = ["Dataset", "Source", "SOURCES", "load", "DeviceBatches", "batch_indices",
           "host_batch", "preprocess", "put_global", "shard_batch", "to_host",
           "to_uint8"]
