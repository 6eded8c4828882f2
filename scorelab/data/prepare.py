"""`train.py prepare-data`: a folder of images or an .npz of uint8 images into ArrayRecord shards
(`scorelab.data.records`), decoded one image at a time, never all at once.

A folder: every .png / .jpg / .jpeg under it (sorted paths); images in first-level subfolders
get the subfolder's label (sorted names), images directly in the folder none (both at once is
refused). Files with other suffixes are skipped and counted (a README, a .DS_Store); an image
file that does not decode is refused by name, since dropping it silently would change the data
set. Grey-scale folders stay one channel, anything else becomes RGB. Without --image_size the
images must share one size; with it, each is resized as score_sde prepares CelebA, LSUN and
FFHQ: an optional central crop (--crop: 140 for CelebA), the central square, then a resize to
S x S with antialiasing (--filter: bicubic as its LSUN and FFHQ, bilinear as its CelebA).
"""
import pathlib
import shutil

import numpy as np

from scorelab.config import ConfigError
from scorelab.data import records
from scorelab.data.images import IMAGE_SUFFIXES


FILTERS = ("bicubic", "bilinear")


def prepare(input: str, output: str, *, image_size: int = 0, crop: int = 0,
            filter: str = "bicubic") -> dict:
    """Writes the prepared directory `output` from `input`; returns its metadata."""
    src, out = pathlib.Path(input), pathlib.Path(output)
    hf = input.startswith("hf:")
    if not input or not (hf or src.exists()):
        raise ConfigError(f"--input={input!r} does not exist (a folder of images or an .npz)")
    if not output:
        raise ConfigError("--output is required (a directory to create)")
    if out.exists():
        raise ConfigError(f"--output={output} exists: give a new directory (nothing is "
                          f"overwritten)")
    if filter not in FILTERS:
        raise ConfigError(f"--filter must be one of {list(FILTERS)}, got {filter!r}")
    if image_size < 0 or crop < 0 or (crop and not image_size):
        raise ConfigError(f"--image_size must be >= 0 and --crop >= 0, with --crop only beside "
                          f"--image_size; got {image_size} and {crop}")
    if hf:
        read, labels, names, shape, info = _huggingface(input[3:], image_size, crop, filter)
    elif src.is_dir():
        read, labels, names, shape, info = _folder(src, image_size, crop, filter)
    elif src.suffix == ".npz":
        read, labels, names, shape, info = _npz(src, image_size, crop, filter)
    else:
        raise ConfigError(f"--input={input!r} must be a folder of images, an .npz file or "
                          f"hf:NAME")
    preprocessing = {"count": info.pop("count"), "image_size": image_size, "crop": crop,
                     "resize": f"central crop {crop or 'none'}, central square, {filter} to S "
                               f"(antialiased)" if image_size else "none", **info}
    try:
        meta = records.write(out, read, labels, image_shape=shape, label_names=names,
                             preprocessing=preprocessing,
                             source=input if hf else str(src.resolve()))
    except BaseException:
        for tmp in out.parent.glob(f".{out.name}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = {s: meta["splits"][s]["count"] for s in ("train", "test")}
    print(f"{sum(counts.values())} images {tuple(shape)} -> {out} ({counts['train']} train, "
          f"{counts['test']} test{', %d classes' % len(names) if names else ''}"
          f"{', %d other files skipped' % info['skipped'] if info.get('skipped') else ''})")
    return meta


def transform(image, image_size: int, crop: int, filter: str = "bicubic"):
    """score_sde's preparation of a PIL image: central crop `crop` (if any), the central
    square, resized to `image_size` with `filter` (PIL antialiases when shrinking)."""
    from PIL import Image

    if crop:
        image = _central_crop(image, crop, crop)
    side = min(image.size)
    image = _central_crop(image, side, side)
    return image.resize((image_size, image_size),
                        Image.BICUBIC if filter == "bicubic" else Image.BILINEAR)


def _central_crop(image, width: int, height: int):
    w, h = image.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def _folder(root: pathlib.Path, image_size: int, crop: int, filter: str):
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
                    im = transform(im, image_size, crop, filter)
                return np.asarray(im).reshape(shape)
        except OSError as e:
            raise ConfigError(f"{files[i]} does not decode ({e}); remove or repair it") from None
    return read, labels, names, shape, {"count": len(files), "skipped": skipped}


def _npz(path: pathlib.Path, image_size: int, crop: int, filter: str):
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
        return np.asarray(transform(im, image_size, crop, filter)).reshape(shape)
    return read, labels, names, shape, {"count": len(images)}


def _huggingface(spec: str, image_size: int, crop: int, filter: str):
    """A Hugging Face `datasets` data set: `hf:PATH` saved with `save_to_disk`, or `hf:NAME`
    for `load_dataset` (which downloads, where that is possible), `:SPLIT` appended to choose
    a split of several (default train). The images are its first Image column, the labels its
    first ClassLabel column (with their names), if any."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("--input=hf:... needs the Hugging Face datasets package: pip install "
                          "-e '.[hf]'") from None
    name, _, split = spec.partition(":")
    try:
        ds = (datasets.load_from_disk(name) if pathlib.Path(name).exists()
              else datasets.load_dataset(name))
    except Exception as e:  # noqa: BLE001 (a missing name, no network, a damaged directory)
        raise ConfigError(f"--input=hf:{spec}: {type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        split = split or "train"
        if split not in ds:
            raise ConfigError(f"--input=hf:{spec} has splits {sorted(ds)}, not {split!r}")
        ds = ds[split]
    kinds = {k: type(f).__name__ for k, f in ds.features.items()}
    image_col = next((k for k, kind in kinds.items() if kind == "Image"), None)
    label_col = next((k for k, kind in kinds.items() if kind == "ClassLabel"), None)
    if image_col is None or not len(ds):
        raise ConfigError(f"--input=hf:{spec} has no Image column or no rows (its columns: "
                          f"{kinds})")
    first = ds[0][image_col]
    channels = 1 if first.mode in ("L", "1") else 3
    shape = ((image_size, image_size) if image_size else first.size[::-1]) + (channels,)
    names = ds.features[label_col].names if label_col else None
    labels = np.asarray(ds[label_col], np.int32) if label_col else None
    column = ds.select_columns([image_col])

    def read(i):
        im = column[i][image_col].convert("L" if channels == 1 else "RGB")
        if image_size:
            im = transform(im, image_size, crop, filter)
        if im.size[::-1] != shape[:2]:
            raise ConfigError(f"--input=hf:{spec}: row {i} is {im.size[0]} x {im.size[1]}, row "
                              f"0 {shape[1]} x {shape[0]}: give --image_size")
        return np.asarray(im).reshape(shape)
    return read, labels, names, shape, {"count": len(ds)}
