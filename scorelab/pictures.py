"""Writing samples: an .npz of the raw arrays and a PNG (image grid or 2-D scatter)."""
import math
import pathlib

import numpy as np

from scorelab.data.pipeline import to_uint8


def image_grid(images: np.ndarray, *, pad: int = 1, cols: int | None = None,
               fill: int = 0) -> np.ndarray:
    """uint8 (n, H, W, C) -> one uint8 (rows (H + pad), cols (W + pad), C) grid filled row by
    row, near square unless `cols` is given; `fill` is the padding's grey level."""
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n)) if cols is None else cols
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h,
             pad + q * (w + pad):pad + q * (w + pad) + w] = im
    return grid


def scatter_image(points: np.ndarray, *, size: int = 256, extent: float = 4.0) -> np.ndarray:
    """2-D points on [-extent, extent]^2 rendered as a dark-on-white density image."""
    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size,
                                range=[[-extent, extent], [-extent, extent]])
    shade = 1 - np.minimum(hist / max(np.percentile(hist[hist > 0], 95), 1), 1) \
        if (hist > 0).any() else np.ones_like(hist)
    return np.round(255 * shade[::-1]).astype(np.uint8)[..., None]


def save_png(picture: np.ndarray, path: pathlib.Path) -> None:
    """A uint8 (H, W, C) picture as a PNG; small ones (8x8 digits) are enlarged by an integer
    factor to about 256 pixels high so that they are readable."""
    from PIL import Image

    scale = max(1, 256 // picture.shape[0])
    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)


def save_samples(x, stem: pathlib.Path, *, is_image: bool, centered: bool = True) -> None:
    """Writes `stem`.npz (model-space floats, and uint8 images) and `stem`.png."""
    stem = pathlib.Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x)
    if is_image:
        images = to_uint8(x, centered=centered)
        np.savez_compressed(stem.with_suffix(".npz"), samples=x, images=images)
        picture = image_grid(images)
    else:
        np.savez_compressed(stem.with_suffix(".npz"), samples=x)
        if x.ndim == 3:  # series windows (n, steps, features): each a heat map, +-3 stds
            heat = np.clip((x.transpose(0, 2, 1) + 3) / 6 * 255, 0, 255).astype(np.uint8)
            picture = image_grid(heat[..., None])
        else:
            picture = scatter_image(x)  # 256 pixels high: not enlarged
    save_png(picture, stem.with_suffix(".png"))
