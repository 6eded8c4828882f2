"""Image data sets larger than memory: ArrayRecord shards written by `train.py prepare-data`, read
back as random-access arrays that decode only the rows asked for.

A prepared directory holds

    metadata.json                       shape, counts, label names, preprocessing, and each
                                        file's size and sha256
    train-00000-of-0000N.array_record   one record per image: its raw uint8 pixels (H, W, C)
    test-00000-of-00001.array_record    the held-out split
    train_labels.npy, test_labels.npy   int32 labels, when the input has classes

The split and the order are those of the in-memory `npz` and `folder` sources (one permutation
with seed 0, the last tenth held out), so a prepared .npz trains exactly as the .npz itself.
`Records` behaves as a read-only uint8 array (`len`, `shape`, indexing by an integer, a slice or
an integer array), so the batch order, each process's rows and the evaluation work on it
unchanged; it pickles as its file names (grain's worker processes reopen the files).
"""
import hashlib
import json
import os
import pathlib
from collections.abc import Iterator

import numpy as np

from scorelab.config import ConfigError

FORMAT, VERSION = "scorelab-records", 1
SHARD_BYTES = 256 * 2**20  # raw pixels per shard


class RecordsError(ConfigError):
    """A prepared directory that cannot be read as written (named file, what is wrong)."""


class LazyImages:
    """uint8 images read only when indexed, as a read-only array: `len`, `shape`, indexing by
    an integer, a slice or a 1-D integer array (`_decode(rows)` of a subclass reads them)."""

    def __init__(self, count: int, image_shape):
        self.image_shape = tuple(image_shape)
        self.shape = (count, *self.image_shape)
        self.dtype, self.ndim = np.dtype(np.uint8), len(self.shape)
        self.nbytes = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, tuple):  # a[rows][:, cols] style indexing: rows first
            return self[index[0]][(slice(None), *index[1:])]
        if isinstance(index, (int, np.integer)):
            return self._decode([int(index) % len(self)])[0]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"Records are indexed by an integer, a slice or a 1-D integer "
                             f"array, got {index!r}")
        return self._decode([int(i) for i in rows % len(self)])

    def _decode(self, rows: list[int]) -> np.ndarray:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class Records(LazyImages):
    """The uint8 images of one split of a prepared directory."""

    def __init__(self, files: list[pathlib.Path], image_shape: tuple[int, ...]):
        import grain

        self.files = [str(f) for f in files]
        self.source = grain.sources.ArrayRecordDataSource(self.files)
        super().__init__(len(self.source), image_shape)

    def _decode(self, rows: list[int]) -> np.ndarray:
        raw = self.source.__getitems__(rows)
        return np.frombuffer(b"".join(raw), np.uint8).reshape(len(rows), *self.image_shape)

    def __getstate__(self):
        return {"files": self.files, "image_shape": self.image_shape}

    def __setstate__(self, state):
        self.__init__([pathlib.Path(f) for f in state["files"]], state["image_shape"])


def read_metadata(root) -> dict:
    root = pathlib.Path(root)
    path = root / "metadata.json"
    if not path.is_file():
        raise RecordsError(f"data.path={str(root)!r} has no metadata.json: not a directory "
                           f"written by `train.py prepare-data`")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise RecordsError(f"{path} is format {meta.get('format')!r} version "
                           f"{meta.get('version')!r}; this version reads {FORMAT!r} version "
                           f"{VERSION}: prepare the data again")
    return meta


def load(root, *, verify: bool = True):
    """(train, test, train labels, test labels) of a prepared directory, the images as
    `Records`. `verify` checks every file's size and sha256 against the metadata first, naming
    the first one that differs (a truncated or changed shard)."""
    root = pathlib.Path(root)
    meta = read_metadata(root)
    if verify:
        for name, entry in meta["files"].items():
            check_file(root / name, entry)
    out = []
    for split in ("train", "test"):
        files = [root / name for name in meta["splits"][split]["shards"]]
        out.append(Records(files, meta["image_shape"]))
    for split in ("train", "test"):
        labels = root / f"{split}_labels.npy"
        out.append(np.load(labels) if meta["labels"] else None)
    return tuple(out)


def check_file(path: pathlib.Path, entry: dict) -> None:
    if not path.is_file():
        raise RecordsError(f"{path} is missing (metadata.json lists it)")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise RecordsError(f"{path} has {size} bytes, metadata.json says {entry['bytes']}: "
                           f"a truncated or changed file")
    if sha256(path) != entry["sha256"]:
        raise RecordsError(f"{path}: its sha256 differs from metadata.json's: a changed file")


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- writing ----

def split_order(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of n examples: the in-memory sources' fixed split."""
    order = np.random.default_rng(0).permutation(n)
    n_test = max(1, n // 10)
    return order[:-n_test], order[-n_test:]


def write(output, read_image, labels: np.ndarray | None, *, image_shape, label_names=None,
          preprocessing: dict, source: str) -> dict:
    """Writes a prepared directory from `read_image(i) -> uint8 (H, W, C)` for i < len(labels)
    or `count` images (decoded one at a time, in the split's order), atomically: the files go
    to a temporary directory renamed at the end, so a failed run leaves nothing half written.
    Returns the metadata."""
    output = pathlib.Path(output)
    count = preprocessing["count"]
    train, test = split_order(count)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True)
    per_shard = max(1, SHARD_BYTES // int(np.prod(image_shape)))
    meta = {"format": FORMAT, "version": VERSION, "image_shape": list(image_shape),
            "labels": labels is not None, "label_names": label_names,
            "preprocessing": {k: v for k, v in preprocessing.items() if k != "count"},
            "source": source, "splits": {}, "files": {}}
    for split, rows in (("train", train), ("test", test)):
        shards = [rows[i:i + per_shard] for i in range(0, len(rows), per_shard)]
        names = [f"{split}-{i:05d}-of-{len(shards):05d}.array_record" for i in range(len(shards))]
        for name, part in zip(names, shards):
            _write_shard(tmp / name, (read_image(int(i)) for i in part), image_shape)
        if labels is not None:
            np.save(tmp / f"{split}_labels.npy", labels[rows].astype(np.int32))
            names_all = names + [f"{split}_labels.npy"]
        else:
            names_all = names
        meta["splits"][split] = {"count": len(rows), "shards": names}
        meta["files"].update({n: {"bytes": (tmp / n).stat().st_size, "sha256": sha256(tmp / n)}
                              for n in names_all})
    (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, output)
    return meta


def _write_shard(path, images: Iterator[np.ndarray], image_shape) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")  # one record per chunk: random access
    try:
        for image in images:
            if image.shape != tuple(image_shape):
                raise RecordsError(f"an image has shape {image.shape}, the others "
                                   f"{tuple(image_shape)}")
            writer.write(np.ascontiguousarray(image, np.uint8).tobytes())
    finally:
        writer.close()
