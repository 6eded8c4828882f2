"""Commands that condition a trained run on observations of held-out images: complete (inpaint),
super-resolve, colorize, denoise and reconstruct (blur, random projections, Fourier rows).

Each takes the first `num` held-out images x0, observes them (y = A x0 + noise), draws from the
model's posterior with `samplers`, and writes `out`.png (rows: the observation shown as an image
| [the posterior mean] | a posterior draw | the original) and `out`.json (PSNR / SSIM against
the originals, NFE, seconds; for digits, the in-project classifier's accuracy on the
observation, the draws and the originals). Noise levels are given in pixel units of [0, 1]
images and converted to the model's data space.
"""
import json
import pathlib
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from models.score import bind
from samplers import (INVERSE_METHODS, colorize, denoise, inpaint, posterior_mean, solve_inverse,
                      super_resolve)
from samplers.operators import (BlockAverage, ChannelMean, FourierSampling, GaussianBlur, Mask,
                                RandomProjection)
from samplers.smc import NUM_PARTICLES
from scorelab import distributed
from scorelab.build import score_fn_for
from scorelab.commands import restore
from scorelab.compilation import enable_compilation_cache
from scorelab.config import ConfigError
from scorelab.data import preprocess, to_uint8
from scorelab.loop import check_workdir
from scorelab.metrics.classifier import class_accuracy
from scorelab.pictures import image_grid, save_png
from scorelab.step import make_mesh

TASKS = ("complete", "super-resolve", "colorize", "denoise", "reconstruct")
# "auto": DDRM where the operator has orthonormal rows (masks, averages, Fourier rows), Tweedie
# guidance otherwise (blur, projections). On the trained digits U-Net DDRM scored best and works
# at 1 evaluation a step from 20 steps up (docs/observations.md, "On trained models").
DEFAULT_METHOD = "auto"
METHODS = ("auto",) + INVERSE_METHODS
MASKS = ("center", "half", "random")


# ---- checks of the command line, before anything is loaded ----

def check_num_particles(method, num_particles) -> None:
    """--num_particles, of the commands that take --method=smc (the tasks and impute)."""
    if num_particles is not None and (method != "smc" or num_particles < 1):
        raise ConfigError(f"--num_particles={num_particles} needs --method=smc and a value "
                          f">= 1 (got --method={method})")


def check_task_args(task, *, num, mask, factor, noise_std, operator, num_steps,
                    method=DEFAULT_METHOD, num_particles=None):
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {list(METHODS)}, got {method!r}")
    check_num_particles(method, num_particles)
    if task not in TASKS:
        raise ConfigError(f"command must be one of {list(TASKS)}, got {task!r}")
    if num < 1:
        raise ConfigError(f"--num must be >= 1, got {num}")
    if task == "complete" and mask not in MASKS and not pathlib.Path(mask).is_file():
        raise ConfigError(f"--mask must be one of {list(MASKS)} or an existing .npy file, got "
                          f"{mask!r}")
    if task == "super-resolve" and factor < 2:
        raise ConfigError(f"--factor must be an integer >= 2, got {factor}")
    if task in ("denoise", "reconstruct") and not 0 <= noise_std <= 1:
        raise ConfigError(f"--noise_std must be in [0, 1] (pixel units of [0, 1] images), got "
                          f"{noise_std}")
    if task == "reconstruct":
        parse_operator(operator)
    if num_steps is not None and num_steps < 1:
        raise ConfigError(f"--num_steps must be >= 1, got {num_steps}")


def parse_operator(spec: str):
    """'blur:W' | 'fourier:FRACTION' | 'project:M' -> (kind, number)."""
    kinds = {"blur": float, "fourier": float, "project": int}
    kind, _, value = spec.partition(":")
    try:
        number = kinds[kind](value)
    except (KeyError, ValueError):
        raise ConfigError(f"--operator must be blur:WIDTH, fourier:FRACTION or project:M, got "
                          f"{spec!r}") from None
    return kind, number


def make_mask(kind: str, shape, seed: int) -> np.ndarray:
    """Observed pixels (True) of (n, H, W, C) images: 'center' hides the central half-size square,
    'half' the right half, 'random' half the pixels of each image; a .npy file gives its own."""
    n, h, w, c = shape
    if kind == "random":
        observed = np.random.default_rng(seed).random((n, h, w, 1)) < 0.5
    elif kind in MASKS:
        observed = np.ones((h, w, 1), bool)
        if kind == "center":
            observed[h // 4:h - h // 4, w // 4:w - w // 4] = False
        else:
            observed[:, w // 2:] = False
    else:
        observed = np.load(kind).astype(bool)
        if observed.ndim == 2:
            observed = observed[..., None]
        if observed.shape[:2] != (h, w):
            raise ConfigError(f"--mask={kind} has shape {observed.shape}, the images are "
                              f"{(h, w, c)}")
    return np.broadcast_to(observed, (n, h, w, c))


# ---- image-quality measures on [0, 1] pixels ----

def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean over images of 10 log10(1 / MSE), pixels in [0, 1]."""
    mse = np.mean(np.square(x - ref).reshape(len(x), -1), axis=1)
    return float(np.mean(10 * np.log10(1 / np.maximum(mse, 1e-12))))


def ssim(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window of std 1.5, K1 = 0.01, K2 = 0.03, data range
    1, mirror boundaries) over images and channels, images (n, H, W, C) in [0, 1]."""
    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0, 1.5, 1.5, 0), mode="mirror",
                                             truncate=3.5)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(ref)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(ref * ref) - my ** 2, blur(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(np.mean(s))


# ---- the tasks ----

def _method_for(operator, method: str) -> str:
    """`method`, where "auto" is DDRM for an operator with orthonormal rows (a cheap SVD) and
    Tweedie guidance for any other (blur, projections)."""
    if method != "auto":
        return method
    return "ddrm" if operator.gram is not None else "tweedie"


class Observed(NamedTuple):
    """A task's observation of images x0 and how to condition on it."""
    draw: Callable  # draw(sde, score) -> (draws, nfe): samples of p(x0 | observation)
    shown: jax.Array  # the observation as images, for the figure
    mean: Callable | None  # mean(sde, score) -> (E[x0 | observation], nfe); denoising only
    method: str  # the conditioning method run ("exact start" for denoising)


def observe(task, x0, key, *, mask, factor, noise_std, operator, seed, num_steps,
            method=DEFAULT_METHOD, num_particles=None) -> Observed:
    """`task`'s observation of the model-space images x0, the noise std in model units;
    `method` is `solve_inverse`'s or "auto" (`_method_for`), `num_particles` SMC's (default
    16); denoising uses its exact start."""
    shape, options = x0.shape, {"num_steps": num_steps}
    if num_particles is not None:
        options["num_particles"] = num_particles
    if task == "complete":
        m = jnp.asarray(make_mask(mask, shape, seed))
        method = _method_for(Mask.create(m, shape[1:]), method)
        return Observed(lambda sde, s: inpaint(sde, s, x0, m, key, method=method, **options),
                        jnp.where(m, x0, 0.0), None, method)
    if task == "super-resolve":
        if shape[1] % factor or shape[2] % factor:
            raise ConfigError(f"--factor={factor} must divide the image size {shape[1:3]}")
        op = BlockAverage.create(shape[1:], factor)
        low, method = op(x0), _method_for(op, method)
        return Observed(lambda sde, s: super_resolve(sde, s, low, key, factor=factor,
                                                     method=method, **options),
                        jnp.repeat(jnp.repeat(low, factor, 1), factor, 2), None, method)
    if task == "colorize":
        if shape[-1] != 3:
            raise ConfigError(f"colorize needs colour images, this run's have {shape[-1]} "
                              f"channel(s)")
        op = ChannelMean.create(shape[1:])
        gray, method = op(x0), _method_for(op, method)
        return Observed(lambda sde, s: colorize(sde, s, gray, key, method=method, **options),
                        jnp.repeat(gray, 3, -1), None, method)
    k_noise, _ = jax.random.split(jax.random.fold_in(key, 1))
    if task == "denoise":
        y = x0 + noise_std * jax.random.normal(k_noise, shape)
        return Observed(lambda sde, s: denoise(sde, s, y, noise_std, key, num_steps=num_steps), y,
                        lambda sde, s: posterior_mean(sde, s, y, noise_std), "exact start")
    kind, number = parse_operator(operator)
    op = {"blur": lambda: GaussianBlur.create(shape[1:], number),
          "fourier": lambda: FourierSampling.create(shape[1:], number, seed),
          "project": lambda: RandomProjection.create(shape[1:], number, seed)}[kind]()
    y = op(x0) + noise_std * jax.random.normal(k_noise, (shape[0],) + op.out_shape)
    # shown as an image: y itself for a blur, else the minimum-norm (or back-) projection
    shown = (y if op.out_shape == shape[1:] else op.pinv(y) if op.gram is not None
             else op.adjoint(y))
    method = _method_for(op, method)
    return Observed(lambda sde, s: solve_inverse(sde, s, y, op, noise_std, key, method=method,
                                                 **options),
                    shown, None, method)


def run_task(workdir: pathlib.Path, task: str, *, num: int = 16, seed: int = 0, out: str = "",
             mask: str = "center", factor: int = 2, noise_std: float = 0.1,
             operator: str = "blur:1.0", num_steps: int | None = None,
             method: str = DEFAULT_METHOD, num_particles: int | None = None) -> dict:
    """Runs `task` on the first `num` held-out images of the run in `workdir`; process 0 writes
    `out`.png, `out`.npz (model-space rows: observation, [mean], draws, x0) and `out`.json
    (default under `workdir`/tasks). Returns the figures. A class-conditional run is
    conditioned on the images' true classes as well."""
    check_task_args(task, num=num, mask=mask, factor=factor, noise_std=noise_std,
                    operator=operator, num_steps=num_steps, method=method,
                    num_particles=num_particles)
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    config, run, state, step = restore(workdir, make_mesh())
    if not run.dataset.is_image:
        raise ConfigError(f"{task} works on image runs; this run's data is "
                          f"{config.data.name!r} vectors")
    centered = config.data.centered
    x0 = preprocess(jnp.asarray(run.dataset.test[:num]), jax.random.key(0), is_image=True,
                    centered=centered)
    scale = 2.0 if centered else 1.0  # pixel units of [0, 1] -> model space
    draw, shown, mean, method = observe(
        task, x0, jax.random.key(seed), mask=mask, factor=factor, noise_std=scale * noise_std,
        operator=operator, seed=seed, num_steps=num_steps, method=method,
        num_particles=num_particles)
    labels = (jnp.asarray(run.dataset.test_labels[:num]) if config.model.conditional_classes
              else None)
    score = bind(score_fn_for(config, run.model, run.sde, labels=labels), state.ema_params)
    start = time.perf_counter()
    x, nfe = jax.jit(lambda: draw(run.sde, score))()
    pixels = lambda a: np.asarray(to_uint8(a, centered=centered), np.float64) / 255
    m = jax.jit(lambda: mean(run.sde, score))()[0] if mean else None
    rows = [shown] + ([m] if mean else []) + [x, x0]
    seconds = time.perf_counter() - start  # compilation included
    truth = pixels(x0)
    figures = {"task": task, "step": step, "num": num, "nfe": int(nfe),
               "method": method, **({"num_particles": num_particles or NUM_PARTICLES}
                                    if method == "smc" else {}),
               "conditioned_on_labels": labels is not None,
               "seconds": round(seconds, 2), "noise_std": noise_std if task in
               ("denoise", "reconstruct") else 0.0,
               "psnr_observation": psnr(pixels(shown), truth), "psnr_draw": psnr(pixels(x), truth),
               "ssim_draw": ssim(pixels(x), truth)}
    if mean:
        figures.update(psnr_mean=psnr(pixels(m), truth), ssim_mean=ssim(pixels(m), truth))
    if "digit_classifier" in run.dataset.metrics:  # is the digit still recognisable?
        accuracy = lambda x: class_accuracy(x, run.dataset.test_labels[:num], run.dataset,
                                            centered=centered)
        figures.update(class_accuracy_observation=accuracy(shown),
                       class_accuracy_draw=accuracy(x), class_accuracy_original=accuracy(x0))
    target = pathlib.Path(out) if out else workdir / "tasks" / f"{task}_step_{step}"
    if distributed.is_writer():
        save_rows([to_uint8(np.asarray(r), centered=centered) for r in rows], target)
        np.savez_compressed(target.with_suffix(".npz"), **dict(zip(
            ["observation"] + (["mean"] if mean else []) + ["draws", "original"],
            (np.asarray(r) for r in rows))))
        target.with_suffix(".json").write_text(json.dumps(figures, indent=1))
        print(f"{task} of {num} held-out images at step {step} (NFE {int(nfe)}, {seconds:.1f} s):"
              f" PSNR {figures['psnr_draw']:.2f} dB (observation {figures['psnr_observation']:.2f}"
              f" dB); {target}.png, {target}.json")
    return figures


def save_rows(rows, stem: pathlib.Path) -> None:
    """One PNG with each list of uint8 images (n, H, W, C) as a row, on white."""
    grid = image_grid(np.concatenate(rows), cols=len(rows[0]), fill=255)
    save_png(grid, stem.with_suffix(".png"))
