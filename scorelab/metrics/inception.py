"""The Inception-v3 network of the standard FID weights, in Flax, as pytorch-fid runs it.

The weights are TensorFlow's Inception graph of 2015-12-05 in pytorch-fid's port
(`pt_inception-2015-12-05-6726825d.pth`): torchvision's Inception-v3 with a 1008-way `fc` and
the graph's own pooling (average pooling in the A, C and first E blocks leaves padded zeros out
of the mean; the last E block max-pools). `apply` returns the 2048 pool features (FID, KID,
precision / recall) and the logits of `fc` without its bias (the Inception Score, as the
original IS code and torch-fidelity compute it).

Images are resized to 299 x 299 in one of two ways:

- "pytorch-fid": bilinear with half-pixel centres (torch's align_corners=False), without
  antialiasing, also when shrinking; pytorch-fid's and clean-fid's legacy mode.
- "tf1": TensorFlow 1's `resize_bilinear` (corner-aligned source grid, no half-pixel offset),
  with which the TF Inception graph, TF-GAN and so score_sde's and EDM's statistics were made.

The weights are read from a file the user has (`load_params`): nothing is ever downloaded.
"""
import os
import pathlib
import warnings
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scorelab.data.records import sha256
from scorelab.metrics import torchfile

FILENAME = "pt_inception-2015-12-05-6726825d.pth"
SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name carries its hash's start
ENV = "SCORELAB_INCEPTION"  # environment variable naming the file
SEARCHED = (pathlib.Path.home() / ".cache" / "torch" / "hub" / "checkpoints" / FILENAME,)
RESIZE = ("pytorch-fid", "tf1")
SIZE = 299
POOL_DIM, NUM_LOGITS = 2048, 1008
# float32 convolutions at full precision on every backend (GPUs would otherwise use TF32)
HIGHEST = jax.lax.Precision.HIGHEST


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (running statistics, eps 1e-3), ReLU."""
    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        (ph, pw), s = self.padding, self.strides
        x = nn.Conv(self.features, self.kernel, (s, s), [(ph, ph), (pw, pw)], use_bias=False,
                    precision=HIGHEST, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool(x):
    """3 x 3 average pooling, stride 1, padded by 1, padded zeros left out of the mean."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride: int = 2, pad: int = 0):
    return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c, **row, name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, **col, name="branch7x7_3")(b7)
        bd = BasicConv2d(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c, **col, name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c, **row, name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c, **col, name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, **row, name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """`max_pool`: the graph's last block pools its pool branch by max, the one before by mean."""
    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv2d(384, **row, name="branch3x3_2a")(b3),
                              BasicConv2d(384, **col, name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv2d(384, **row, name="branch3x3dbl_3a")(bd),
                              BasicConv2d(384, **col, name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = _max_pool(x, stride=1, pad=1) if self.max_pool else _avg_pool(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """(n, 299, 299, 3) images scaled to [-1, 1] -> (pool features (n, 2048), fc(pool) without
    its bias (n, 1008)). Module names are the torch state dict's."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                        ("Mixed_6e", 192)):
            x = InceptionC(c, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        return pool, UnbiasedDense(name="fc")(pool)


class UnbiasedDense(nn.Module):
    """The 1008-way `fc`; the logits leave out its bias (kept in the variables as read)."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], NUM_LOGITS))
        self.param("bias", nn.initializers.zeros, (NUM_LOGITS,))
        return jnp.dot(x, kernel, precision=HIGHEST)


# ---- resizing ----

def resize_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """The (n_out, n_in) matrix of 1-D bilinear interpolation in `mode` (see the module's
    docstring); applied along height and width it is the 2-D resize, without antialiasing."""
    scale = n_in / n_out
    dst = np.arange(n_out, dtype=np.float64)
    if mode == "pytorch-fid":
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    else:
        src = dst * scale
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m.astype(np.float32)


def preprocess(images, resize: str = "pytorch-fid"):
    """uint8 (n, H, W, 3) images (or (n, H, W, 1), repeated to RGB) -> float32 (n, 299, 299, 3)
    in [-1, 1]: resized in [0, 1] by `resize`, then 2 x - 1, as pytorch-fid does."""
    if resize not in RESIZE:
        raise ValueError(f"resize must be one of {list(RESIZE)}, got {resize!r}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (n, H, W, 3) or (n, H, W, 1), got {images.shape}")
    x = jnp.asarray(images, jnp.float32) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    rows = resize_matrix(x.shape[1], SIZE, resize)
    cols = resize_matrix(x.shape[2], SIZE, resize)
    x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=HIGHEST)
    x = jnp.einsum("pw,nowc->nopc", cols, x, precision=HIGHEST)
    return 2 * x - 1


@partial(jax.jit, static_argnames="resize")
def apply(params, images, resize: str = "pytorch-fid") -> dict:
    """{"pool": (n, 2048), "logits": (n, 1008)} float32 features of uint8 (n, H, W, 3) images
    with the variables of `load_params`. Jitted with the parameters as an argument: one
    compilation per image shape and resize mode."""
    pool, logits = FIDInceptionV3().apply(params, preprocess(images, resize))
    return {"pool": pool, "logits": logits}


# ---- weights ----

def init_params(key=None):
    """The variables' structure (shapes and dtypes only, unless `key` is given)."""
    init = lambda k: FIDInceptionV3().init(k, jnp.zeros((1, SIZE, SIZE, 3)))
    return init(key) if key is not None else jax.eval_shape(init, jax.random.key(0))


def from_state_dict(state: dict) -> dict:
    """Flax variables from the torch state dict of pytorch-fid's `fid_inception_v3()` (numpy
    arrays by name): conv weights (O, I, kh, kw) -> kernels (kh, kw, I, O), batch norm's
    weight / bias / running statistics -> scale / bias / mean / var, fc's weight transposed.
    Every variable must be present with its shape; extra names other than batch norm's step
    counters are refused."""
    template = init_params()
    out, used = {"params": {}, "batch_stats": {}}, set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        collection, *modules, name = [p.key for p in path]
        prefix = ".".join(modules)
        layer = modules[-1]
        if collection == "batch_stats":
            key, value = f"{prefix}.running_{name}", lambda a: a
        elif name == "kernel" and layer == "conv":
            key, value = f"{prefix}.weight", lambda a: a.transpose(2, 3, 1, 0)
        elif name == "kernel":
            key, value = f"{prefix}.weight", lambda a: a.T
        else:
            key, value = f"{prefix}.{'weight' if name == 'scale' else name}", lambda a: a
        if key not in state:
            raise ValueError(f"the state dict has no {key!r}: not pytorch-fid's Inception-v3 "
                             f"(fid_inception_v3)")
        array = value(np.asarray(state[key], np.float32))
        if array.shape != leaf.shape:
            raise ValueError(f"{key!r} has shape {state[key].shape}; pytorch-fid's Inception-v3 "
                             f"has {value(np.zeros(leaf.shape)).shape}")
        node = out[collection]
        for m in modules:
            node = node.setdefault(m, {})
        node[name] = jnp.asarray(array)
        used.add(key)
    extra = sorted(k for k in state if k not in used and not k.endswith(".num_batches_tracked"))
    if extra:
        raise ValueError(f"the state dict has names pytorch-fid's Inception-v3 lacks: "
                         f"{extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return out


def weights_path(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The weights file: `path`, else the environment variable SCORELAB_INCEPTION, else torch
    hub's cache where pytorch-fid and torch-fidelity keep it. A missing file is an error that
    says how to get it."""
    candidates = [pathlib.Path(p) for p in (path, os.environ.get(ENV)) if p]
    for candidate in candidates or SEARCHED:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in (candidates or SEARCHED))
    raise FileNotFoundError(
        f"the FID Inception weights {FILENAME} (sha256 beginning {SHA256_PREFIX}) are "
        f"not at {tried}. They are the asset of pytorch-fid's GitHub release 'fid_weights' "
        f"(mseitzer/pytorch-fid); pytorch-fid and torch-fidelity save it under "
        f"~/.cache/torch/hub/checkpoints/ on first use. Give its path as the `path` argument, "
        f"eval.inception_path or --inception_path, or in ${ENV}; nothing is downloaded here.")


def load_params(path: str | os.PathLike | None = None) -> dict:
    """The Flax variables of pytorch-fid's weights file (found by `weights_path`), read without
    torch (`scorelab.metrics.torchfile`). Every name and shape is checked; a file whose sha256
    does not begin with 6726825d (other weights of this network: a fine-tuned or damaged file)
    loads with a warning, since its figures compare with no paper's."""
    path = weights_path(path)
    digest = sha256(path)
    if not digest.startswith(SHA256_PREFIX):
        warnings.warn(f"{path}: sha256 {digest[:16]}... does not begin with {SHA256_PREFIX}: "
                      f"not pytorch-fid's {FILENAME}; its FID is not comparable with papers'",
                      stacklevel=2)
    return from_state_dict(torchfile.load(path))
