"""The field's sample metrics of a run: FID, Inception Score, KID and precision / recall on the
FID Inception network's features, against a reference file of a data set's features.

A reference file (`write_reference`, `train.py fid-stats`) is an .npz with the raw pool features
`pool_3` (n, 2048) float32, as score_sde's `assets/stats/*_stats.npz` keep them, their float64
`mu` and `sigma`, as pytorch-fid's .npz keep them, and `meta`, a JSON string: resize mode,
count, image shape, the images' sha256, the source and the images' own Inception Score.
`load_reference` reads all three kinds: score_sde's files (pool_3 only; TF-GAN resized them as
"tf1") and pytorch-fid's (mu and sigma only: FID, but no KID or precision / recall).
"""
import hashlib
import json
import os
import pathlib

import jax
import numpy as np

from scorelab.data.pipeline import to_host, to_uint8
from scorelab.data.records import sha256
from scorelab.metrics import fid, inception

KID_SUBSET_SIZE = 1000  # torch-fidelity's; smaller sample sets use all their samples
CHUNK = 50  # images per Inception call (pytorch-fid's batch): 299 x 299 activations are large
PR_SEED = 2020  # the reference's subsample for precision / recall


def write_reference(path, pool: np.ndarray, meta: dict) -> dict:
    """Writes the reference file of features `pool` with `meta` (its provenance) atomically: a
    failed run leaves no file. Returns the meta written."""
    pool = np.asarray(pool, np.float32)
    mu, sigma = fid.statistics(pool)
    meta = {"format": "scorelab-fid-reference-1", "count": len(pool),
            "network": inception.FILENAME, **meta}
    path = pathlib.Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "wb") as f:
        np.savez(f, pool_3=pool, mu=mu, sigma=sigma, meta=np.array(json.dumps(meta)))
    os.replace(partial, path)
    return meta


def load_reference(path) -> dict:
    """{"mu", "sigma", "pool" (None when the file has no raw features), "meta", "sha256"} of a
    reference file of ours, score_sde's or pytorch-fid's."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the reference file {path} does not exist (write one with "
                                f"`train.py fid-stats`)")
    with np.load(path) as f:
        keys = set(f.files)
        pool = f["pool_3"] if "pool_3" in keys else None
        if {"mu", "sigma"} <= keys:
            mu, sigma = f["mu"], f["sigma"]
        elif pool is not None:
            mu, sigma = fid.statistics(pool)
        else:
            raise ValueError(f"{path} has neither raw features (pool_3) nor mu and sigma: not a "
                             f"reference file (it holds {sorted(keys)})")
        meta = json.loads(str(f["meta"])) if "meta" in keys else {
            "format": "score_sde" if pool is not None else "pytorch-fid",
            "resize": "tf1" if pool is not None else "pytorch-fid",
            "count": None if pool is None else len(pool)}
    return {"mu": mu, "sigma": sigma, "pool": pool, "meta": meta,
            "sha256": sha256(path)}


class InceptionMetrics:
    """A `scorelab.metrics.Metric` of the FID Inception: `features` of a batch of model-space
    samples are their pool features and unbiased logits (computed where the samples are, with
    the parameters as an argument: one compilation per batch shape); `result` is FID, IS, KID
    and precision / recall against `reference` (`load_reference`)."""

    def __init__(self, params, reference: dict, *, resize: str = "pytorch-fid"):
        if resize not in inception.RESIZE:
            raise ValueError(f"resize must be one of {list(inception.RESIZE)}, got {resize!r}")
        self.params, self.reference, self.resize = params, reference, resize

    def features(self, samples, dataset=None, *, centered: bool = True) -> dict:
        return inception_features(self.params, to_uint8(samples, centered=centered),
                                  self.resize)

    def result(self, features: dict, dataset=None, key=None) -> dict:
        pool, logits, ref = features["pool"], features["logits"], self.reference
        n = len(pool)
        out = {"eval/fid": fid.frechet_distance(*fid.statistics(pool), ref["mu"], ref["sigma"])}
        splits = 10 if n >= 10 else 1
        out["eval/inception_score"], out["eval/inception_score_std"] = fid.inception_score(
            logits, splits=splits)
        if ref["pool"] is not None:
            size = min(KID_SUBSET_SIZE, n, len(ref["pool"]))
            out["eval/kid"], out["eval/kid_std"] = fid.kid(ref["pool"], pool, subset_size=size)
            out["eval/kid_subset_size"] = size
            # equal-size sets, as Kynkaanniemi et al.: the reference subsampled to n
            rows = np.random.RandomState(PR_SEED).permutation(len(ref["pool"]))[:n]
            out["eval/precision"], out["eval/recall"] = fid.precision_recall(
                ref["pool"][np.sort(rows)], pool)
        return out


def inception_features(params, images, resize: str, chunk: int = CHUNK) -> dict:
    """{"pool", "logits"} as numpy of uint8 images, `chunk` at a time (fewer images: all at
    once; the last chunk is padded, so every call has one shape and one compilation)."""
    out, chunk = {"pool": [], "logits": []}, min(chunk, len(images))
    for i in range(0, len(images), chunk):
        part = images[i:i + chunk]
        if len(part) < chunk:
            part = np.concatenate([to_host(part), np.zeros((chunk - len(part),) + part.shape[1:],
                                                           np.uint8)])
        features = inception.apply(params, part, resize)
        for name in out:
            out[name].append(to_host(features[name])[:len(images) - i])
    return {name: np.concatenate(parts) for name, parts in out.items()}


def load_inception(path, mesh=None):
    """load_params(path), replicated over `mesh` when given."""
    params = inception.load_params(path or None)
    if mesh is not None:
        params = jax.device_put(params, jax.sharding.NamedSharding(mesh,
                                                                   jax.sharding.PartitionSpec()))
    return params


def dataset_reference(params, images: np.ndarray, *, resize: str, source: str,
                      path=None, progress=None) -> dict:
    """The reference of uint8 `images` (every one, in order, as stored: no dequantisation, no
    dropped batch), as `load_reference` returns it, with the images' own Inception Score in
    its meta; written to `path` when given (by process 0 only). `progress(count)` is called
    after each chunk."""
    parts, digest = [], hashlib.sha256()
    for i in range(0, len(images), CHUNK):
        chunk = np.asarray(images[i:i + CHUNK])  # prepared records: read chunk by chunk
        digest.update(np.ascontiguousarray(chunk).tobytes())
        parts.append(inception_features(params, chunk, resize))
        if progress is not None:
            progress(len(parts[-1]["pool"]))
    pool = np.concatenate([p["pool"] for p in parts])
    score = fid.inception_score(np.concatenate([p["logits"] for p in parts]),
                                splits=10 if len(pool) >= 10 else 1)
    meta = {"count": len(pool), "resize": resize, "image_shape": list(images.shape[1:]),
            "images_sha256": digest.hexdigest(),
            "source": source, "inception_score": list(score)}
    if path is not None and jax.process_index() == 0:
        meta = write_reference(path, pool, meta)
    mu, sigma = fid.statistics(pool)
    return {"mu": mu, "sigma": sigma, "pool": pool, "meta": meta, "sha256": None}


def inception_metrics(config, dataset, workdir, mesh) -> InceptionMetrics:
    """The `InceptionMetrics` of a run's evaluation: weights from `eval.inception_path`, the
    reference from `eval.inception_reference`, or else from the run's training images (made
    once, kept as <workdir>/fid_reference_<resize>.npz)."""
    e = config.eval
    params = load_inception(e.inception_path, mesh)
    if e.inception_reference:
        reference = load_reference(e.inception_reference)
    else:
        path = pathlib.Path(workdir) / f"fid_reference_{e.inception_resize}.npz"
        reference = load_reference(path) if path.exists() else dataset_reference(
            params, dataset.train, resize=e.inception_resize, path=path,
            source=f"{config.data.name} training split")
    return InceptionMetrics(params, reference, resize=e.inception_resize)
