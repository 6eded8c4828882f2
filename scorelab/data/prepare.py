"""`train.py prepare-data`: a folder of images or an .npz of uint8 images into ArrayRecord shards
(`scorelab.data.records`), decoded one image at a time, never all at once.

A folder: every .png / .jpg / .jpeg under it (sorted paths); images in first-level subfolders
get the subfolder's label (sorted names), images directly in the folder none (both at once is
refused). Files with other suffixes are skipped and counted (a README, a .DS_Store); an image
file that does not decode is refused by name, since dropping it silently would change the data
set. Grey-scale folders stay one channel, anything else becomes RGB. Without --image_size the
images must share one size; with it, each is resized as score_sde prepares CelebA, LSUN and
FFHQ: an optional central crop (--crop), the shorter side resized to S (bilinear,
antialiased), then the central S x S crop.
"""
import pathlib
import shutil

import numpy as np

from scorelab.config import ConfigError
from scorelab.data import records
from scorelab.data.images import IMAGE_SUFFIXES


def prepare(input: str, output: str, *, image_size: int = 0, crop: int = 0) -> dict:
    """Writes the prepared directory `output` from `input`; returns its metadata."""
    src, out = pathlib.Path(input), pathlib.Path(output)
    if not input or not src.exists():
        raise ConfigError(f"--input={input!r} does not exist (a folder of images or an .npz)")
    if not output:
        raise ConfigError("--output is required (a directory to create)")
    if out.exists():
        raise ConfigError(f"--output={output} exists: give a new directory (nothing is "
                          f"overwritten)")
    if image_size < 0 or crop < 0 or (crop and not image_size):
        raise ConfigError(f"--image_size must be >= 0 and --crop >= 0, with --crop only beside "
                          f"--image_size; got {image_size} and {crop}")
    if src.is_dir():
        read, labels, names, shape, info = _folder(src, image_size, crop)
    elif src.suffix == ".npz":
        read, labels, names, shape, info = _npz(src, image_size, crop)
    else:
        raise ConfigError(f"--input={input!r} must be a folder of images or an .npz file")
    preprocessing = {"count": info.pop("count"), "image_size": image_size, "crop": crop,
                     "resize": "score_sde: central crop, shorter side to S (bilinear, "
                               "antialiased), central S x S" if image_size else "none", **info}
    try:
        meta = records.write(out, read, labels, image_shape=shape, label_names=names,
                             preprocessing=preprocessing, source=str(src.resolve()))
    except BaseException:
        for tmp in out.parent.glob(f".{out.name}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = {s: meta["splits"][s]["count"] for s in ("train", "test")}
    print(f"{sum(counts.values())} images {tuple(shape)} -> {out} ({counts['train']} train, "
          f"{counts['test']} test{', %d classes' % len(names) if names else ''}"
          f"{', %d other files skipped' % info['skipped'] if info.get('skipped') else ''})")
    return meta


def transform(image, image_size: int, crop: int):
    """score_sde's preparation of a PIL image: central crop `crop` (if any), shorter side to
    `image_size`, central square."""
    from PIL import Image

    if crop:
        image = _central_crop(image, crop, crop)
    w, h = image.size
    ratio = image_size / min(w, h)
    image = image.resize((max(image_size, round(w * ratio)), max(image_size, round(h * ratio))),
                         Image.BILINEAR)
    return _central_crop(image, image_size, image_size)


def _central_crop(image, width: int, height: int):
    w, h = image.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def _folder(root: pathlib.Path, image_size: int, crop: int):
    from PIL import Image, UnidentifiedImageError

    everything = sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in everything if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = len(everything) - len(files)
    if not files:
        raise ConfigError(f"--input={root} holds no .png, .jpg or .jpeg files")
    depth = {len(p.relative_to(root).parts) for p in files}
    if depth - {1, 2} or len(depth) > 1:
        raise ConfigError(f"--input={root}: images must all sit in the folder itself or all in "
                          f"its first-level subfolders (one per class), not both or deeper")
    names, labels = None, None
    if depth == {2}:
        names = sorted({p.parent.name for p in files})
        labels = np.array([names.index(p.parent.name) for p in files], np.int32)
    sizes, modes = {}, set()
    for p in files:  # headers only: the size and mode, not the pixels
        try:
            with Image.open(p) as im:
                sizes.setdefault(im.size, p)
                modes.add(im.mode)
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"{p} is not a readable image ({e}); remove or repair it") from None
    channels = 1 if modes <= {"L", "1"} else 3
    if image_size:
        shape = (image_size, image_size, channels)
    elif len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise ConfigError(f"--input={root}: images differ in size ({pa} is {a[0]} x {a[1]}, "
                          f"{pb} is {b[0]} x {b[1]}): give --image_size")
    else:
        (w, h), = sizes
        shape = (h, w, channels)

    def read(i):
        try:
            with Image.open(files[i]) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size:
                    im = transform(im, image_size, crop)
                return np.asarray(im).reshape(shape)
        except OSError as e:
            raise ConfigError(f"{files[i]} does not decode ({e}); remove or repair it") from None
    return read, labels, names, shape, {"count": len(files), "skipped": skipped}


def _npz(path: pathlib.Path, image_size: int, crop: int):
    from PIL import Image

    from scorelab.data.images import npz

    try:
        images, labels = npz(str(path))  # memory-mapped reading is not possible in an .npz
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e).replace("data.path", "--input")) from None
    if labels is not None and (len(labels) != len(images) or labels.min(initial=0) < 0):
        raise ConfigError(f"--input={path}: labels must be one integer >= 0 per image, got "
                          f"{len(labels)} labels (min {labels.min(initial=0)}) for "
                          f"{len(images)} images")
    names = None if labels is None else [str(c) for c in range(int(labels.max()) + 1)]
    shape = (image_size, image_size, images.shape[-1]) if image_size else images.shape[1:]

    def read(i):
        if not image_size:
            return images[i]
        im = Image.fromarray(images[i][..., 0] if images.shape[-1] == 1 else images[i])
        return np.asarray(transform(im, image_size, crop)).reshape(shape)
    return read, labels, names, shape, {"count": len(images)}
