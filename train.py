"""Train a score model, checkpoint, resume, sample and evaluate: the command line.

    python train.py                                      # default config, workdir runs/default
    python train.py --config=configs/digits_ve.py --workdir=runs/ve --config.training.n_steps=500
    python train.py sample --workdir=runs/ve --sampler=ode --num=64

Re-running the same command resumes from the newest checkpoint in the workdir, along the same
trajectory as an uninterrupted run. The work is done by the `scorelab` package; this file only
parses flags.
"""
import pathlib

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import scorelab
from scorelab.sampling import SAMPLERS

ROOT = pathlib.Path(__file__).resolve().parent

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "default.py"),
                                          "Config file (get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (checkpoints, metrics).")
_SAMPLER = flags.DEFINE_enum("sampler", "", ["", *SAMPLERS],
                             "sample: sampler (default: the run's).")
_NUM = flags.DEFINE_integer("num", 64, "sample: number of samples.")
_SEED = flags.DEFINE_integer("sample_seed", 0, "sample: seed of the sampler's key.")
_OUT = flags.DEFINE_string("out", "", "sample: output path without extension.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _MULTIHOST.value:
        jax.distributed.initialize()
    command = argv[1] if len(argv) > 1 else "train"
    workdir = pathlib.Path(_WORKDIR.value)
    if command == "train":
        scorelab.train(_CONFIG.value, workdir)
    elif command == "sample":
        scorelab.sample(workdir, method=_SAMPLER.value, num=_NUM.value, seed=_SEED.value,
                        out=_OUT.value)
    else:
        raise app.UsageError(f"command must be 'train' or 'sample', got {command!r}")


if __name__ == "__main__":
    app.run(main)
