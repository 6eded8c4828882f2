"""Config checks that need nothing built, and the upgrade of run configs saved by older
versions (v0.1 on) to today's layout.

Everything in `scorelab` that reads a config takes the `ml_collections.ConfigDict` of
`configs/default.py` (or a file built on it); the library (`sde`, `samplers`, `models`) never
sees one.
"""
import copy
import json
import pathlib

from models.unet import ddpmpp_config

# Fields that may change between the runs of one workdir (they do not change the trajectory).
RESUMABLE_CHANGES = ("data.num_workers", "data.stream", "model.remat",
                     "training.ema_snapshot_every", "training.n_steps",
                     "training.log_every", "training.eval_every", "training.checkpoint_every",
                     "training.max_to_keep", "training.select_every", "sampling", "eval")

PRECISIONS = ("float32", "bfloat16")  # the train step's compute dtype


class ConfigError(ValueError):
    """A config value that cannot work; raised before any training step."""


def check_training(config, num_devices: int) -> None:
    """Training-loop values that would only fail later."""
    t = config.training
    for name in ("batch_size", "n_steps", "log_every", "checkpoint_every", "max_to_keep"):
        if not isinstance(t[name], int) or t[name] < 1:
            raise ConfigError(f"training.{name} must be a positive integer, got {t[name]!r}")
    for name, what in (("eval_every", "evaluation"), ("select_every", "model selection")):
        if not isinstance(t[name], int) or t[name] < 0:
            raise ConfigError(f"training.{name} must be a positive integer, or 0 for no "
                              f"{what}, got {t[name]!r}")
    for sigma_rel in t.ema_profiles:
        if not 0 < sigma_rel < 0.28:
            raise ConfigError(f"training.ema_profiles must hold relative lengths in (0, 0.28), "
                              f"got {tuple(t.ema_profiles)}")
    if not isinstance(t.ema_snapshot_every, int) or t.ema_snapshot_every < 0 or (
            t.ema_profiles and not t.ema_snapshot_every):
        raise ConfigError(f"training.ema_snapshot_every must be a positive integer when "
                          f"training.ema_profiles are tracked (0 without), got "
                          f"{t.ema_snapshot_every!r}")
    workers = config.data.num_workers
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"data.num_workers must be an integer >= 0, got {workers!r}")
    if t.batch_size % num_devices:
        raise ConfigError(f"training.batch_size={t.batch_size} must be divisible by the number "
                          f"of devices ({num_devices})")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"training.precision must be one of {list(PRECISIONS)}, got "
                          f"{t.precision!r}")
    if t.nonfinite not in ("error", "skip"):
        raise ConfigError(f"training.nonfinite must be 'error' or 'skip', got {t.nonfinite!r}")
    if not 0 <= config.model.ema_rate < 1:
        raise ConfigError(f"model.ema_rate must be in [0, 1), got {config.model.ema_rate!r}")


def check_eval(config) -> None:
    """Evaluation values, and the files they name, before training starts."""
    from scorelab.metrics import inception

    e = config.eval
    if not isinstance(e.batch_size, int) or e.batch_size < 1:
        raise ConfigError(f"eval.batch_size must be a positive integer, got {e.batch_size!r}")
    if e.inception_resize not in inception.RESIZE:
        raise ConfigError(f"eval.inception_resize must be one of {list(inception.RESIZE)}, got "
                          f"{e.inception_resize!r}")
    if e.inception_path:
        try:
            inception.weights_path(e.inception_path)
        except FileNotFoundError as err:
            raise ConfigError(f"eval.inception_path: {err}") from None
    if e.inception_reference and not pathlib.Path(e.inception_reference).is_file():
        raise ConfigError(f"eval.inception_reference={e.inception_reference!r} is not a file "
                          f"(write one with `train.py fid-stats`)")


# v0.1 kept the U-Net's and the MLP's attributes, and every sampler's options, flat.
_V01_UNET = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resblock_type",
             "embedding_type", "fourier_scale", "fir", "skip_rescale", "progressive",
             "progressive_input", "init_scale")


# Every field added to configs/default.py since v0.1: dotted path -> the value that reproduces
# a run saved without it. Adding a field is its line in default.py and its entry here;
# tests/test_layout.py fails, naming the field, when an entry is missing.
_ADDED = {
    "training.precision": "float32",
    "model.label_dropout": 0.0,
    "model.ema_warmup": False,  # the plain EMA
    "model.classifier": dict(nf=32, ch_mult=[1, 2], num_res_blocks=1, dropout=0.1,
                             embedding_type="positional", fourier_scale=16.0),
    "sampling.pc.time_grid": "uniform",
    "sampling.sde.time_grid": "uniform",
    "sampling.ode.time_grid": "uniform",
    "model.ncsnpp.conditional": True,
    "model.ncsnpp.norm_groups": None,
    "model.conditional_cells": False,
    "training.cell_masks": "random",
    "training.select_every": 0,
    "model.mlp.dropout": 0.0,
    "data.window": 32,
    "model.series": dict(channels=64, depth=3, heads=4, embed_dim=64),
    "model.remat": "none",
    "training.ema_profiles": [],  # runs before 0.4 tracked none
    "training.ema_snapshot_every": 0,
    "data.num_workers": 0,
    "data.stream": False,
    "eval.batch_size": 256,
    "eval.inception_path": "",
    "eval.inception_resize": "pytorch-fid",
    "eval.inception_reference": "",
}


def upgrade(saved: dict) -> dict:
    """A run config as saved in `config.json`, in today's layout: v0.1's flat layout is
    converted, and each field of _ADDED that the file lacks gets the value runs had
    before it (same network, same sampler, same evaluation); today's files come back
    unchanged."""
    new = _from_v01(saved) if "ncsnpp" not in saved["model"] else copy.deepcopy(saved)
    for path, value in _ADDED.items():
        *sections, name = path.split(".")
        parent = new
        for section in sections:
            parent = parent[section]
        parent.setdefault(name, copy.deepcopy(value))  # the table's dicts stay unshared
    return new


def _from_v01(saved: dict) -> dict:
    new = copy.deepcopy(saved)
    m, s, e = new["model"], new["sampling"], new["eval"]
    m["ncsnpp"] = ddpmpp_config(**{k: m.pop(k) for k in _V01_UNET})
    m["mlp"] = dict(hidden=m.pop("hidden"), depth=m.pop("depth"), embed_dim=64)
    steps, solver = s.pop("num_steps"), s.pop("solver")
    s["pc"] = dict(predictor=s.pop("predictor"), corrector=s.pop("corrector"), snr=s.pop("snr"),
                   n_corrector_steps=s.pop("n_corrector_steps"), num_steps=steps or None)
    s["sde"] = dict(solver=solver if s["method"] == "sde" and solver else "euler_maruyama",
                    num_steps=steps or 1000)
    s["ode"] = dict(solver=solver if s["method"] == "ode" and solver else "tsit5",
                    num_steps=s.pop("ode_num_steps") or None, rtol=s.pop("rtol"),
                    atol=s.pop("atol"), denoise=True)
    # v0.1 drew eval.num_fid samples for the digit metrics only; toy metrics used the saved ones.
    num_fid = e.pop("num_fid")
    e["num_metric_samples"] = num_fid if new["data"]["name"] == "digits" else 0
    return json.loads(json.dumps(new))  # tuples as lists, as in every saved file
