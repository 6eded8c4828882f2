"""A small CNN trained in-project on the digits' training split: features for a Frechet
distance and predicted classes for coverage, with no downloaded weights (no Inception here)."""
import hashlib
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from scorelab import distributed
from scorelab.data.pipeline import to_host, to_uint8
from scorelab.metrics import fid

CACHE = pathlib.Path.home() / ".cache" / "score_sde_jax"


class DigitClassifier(nn.Module):
    """(n, H, W, 1) images in [0, 1] -> (64-d features, 10 logits)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
        feats = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
        return feats, nn.Dense(10)(feats)


def train_classifier(images: np.ndarray, labels: np.ndarray, *, steps: int = 800, seed: int = 0):
    """Adam on cross-entropy with small random shifts; a few seconds on a CPU."""
    model = DigitClassifier()
    x_all = jnp.asarray(images, jnp.float32) / 255.0
    y_all = jnp.asarray(labels)
    params = model.init(jax.random.key(seed), x_all[:1])["params"]
    tx = optax.adam(2e-3)

    @jax.jit
    def step(params, opt_state, key):
        k_idx, k_shift = jax.random.split(key)
        idx = jax.random.randint(k_idx, (128,), 0, len(x_all))
        shift = jax.random.randint(k_shift, (2,), -1, 2)
        x = jnp.roll(x_all[idx], shift, axis=(1, 2))

        def loss(p):
            logits = model.apply({"params": p}, x)[1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y_all[idx]).mean()
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for i in range(steps):
        params, opt_state = step(params, opt_state, jax.random.fold_in(jax.random.key(seed), i))
    return params


_LOADED: dict = {}  # path -> parameters, so evaluations after the first read nothing
_apply = jax.jit(DigitClassifier().apply)


def load_or_train(images: np.ndarray, labels: np.ndarray):
    """The classifier for this training set, trained once (a few seconds; it says so) and cached
    under ~/.cache; the file is written whole or not at all. With several processes, process 0
    loads or trains it and sends it to the others (hosts need not share a home directory)."""
    digest = hashlib.sha1(images.tobytes() + labels.tobytes()).hexdigest()[:12]
    path = CACHE / f"digit_classifier_{images.shape[1]}px_{digest}.msgpack"
    if path in _LOADED:
        return _LOADED[path]
    template = jax.eval_shape(lambda: DigitClassifier().init(
        jax.random.key(0), jnp.zeros((1,) + images.shape[1:])))["params"]

    def load_or_train_here():
        if path.exists():
            return serialization.from_bytes(template, path.read_bytes())
        print(f"training the in-project digit classifier (once; cached in {path})", flush=True)
        params = jax.device_get(train_classifier(images, labels))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(serialization.to_bytes(params))
        os.replace(partial, path)
        return params
    _LOADED[path] = distributed.on_writer(load_or_train_here, "training the digit classifier",
                                          like=template)
    return _LOADED[path]


def classify(params, images_uint8):
    """(features (n, 64), predicted labels (n,)) as numpy. Images that are a jax.Array sharded
    over several devices are classified where they are; only the features are gathered."""
    x = jnp.asarray(images_uint8).astype(jnp.float32) / 255.0
    feats, logits = _apply({"params": params}, x)
    return to_host(feats), to_host(jnp.argmax(logits, -1))


def digit_features(samples, dataset, *, centered: bool = True) -> dict:
    """The classifier's features and predicted classes of a batch of model-space `samples`."""
    params = load_or_train(dataset.train, dataset.train_labels)
    features, classes = classify(params, to_uint8(samples, centered=centered))
    return {"features": features, "classes": classes}


def digit_result(features: dict, dataset, key=None) -> dict:
    """Frechet distance (generated vs held-out) on the classifier's features, and class
    coverage, from `digit_features` of all samples."""
    params = load_or_train(dataset.train, dataset.train_labels)
    f_test, y_test = classify(params, dataset.test)
    share = np.bincount(features["classes"], minlength=10) / len(features["classes"])
    return {"eval/fd_digits": fid.frechet_distance(*fid.statistics(features["features"]),
                                                   *fid.statistics(f_test)),
            "eval/classes_covered": int(np.sum(share >= 0.05)),  # classes with >= 5% of samples
            "eval/class_share_min": float(share.min()),
            "eval/classifier_test_acc": float(np.mean(y_test == dataset.test_labels))}


def class_accuracy(samples, labels, dataset, *, centered: bool = True) -> float:
    """The share of model-space `samples` that the in-project classifier assigns to `labels`
    (the classes they were generated for)."""
    params = load_or_train(dataset.train, dataset.train_labels)
    _, predicted = classify(params, to_uint8(samples, centered=centered))
    return float(np.mean(predicted == np.asarray(labels)))
