"""Train a score model, checkpoint, resume, sample and evaluate: the command line.

    python train.py                                      # default config, workdir runs/default
    python train.py --config=configs/digits_ve.py --workdir=runs/ve --config.training.n_steps=500
    python train.py sample --workdir=runs/ve --sampler=ode --num=64
    python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=0  # per host

Re-running the same command resumes from the newest checkpoint in the workdir, along the same
trajectory as an uninterrupted run. The work is done by the `scorelab` package; this file only
parses flags.
"""
import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

import scorelab
import scorelab.distributed
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
# Several processes (one per host): the keywords of jax.distributed.initialize, or --multihost
# for JAX's own detection of a SLURM, Cloud TPU or Open MPI cluster.
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Several processes: HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Several processes: how many.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Several processes: this one's index.")
_MULTIHOST = flags.DEFINE_bool("multihost", False,
                               "Several processes, found from the cluster's environment.")
_INIT_TIMEOUT = flags.DEFINE_integer("initialization_timeout", 300,
                                     "Several processes: seconds to wait for all to connect.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "Several processes: seconds after which a silent process is "
    "taken as lost and the others are stopped.")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    command = argv[1] if len(argv) > 1 else "train"
    if command not in ("train", "sample"):
        raise app.UsageError(f"command must be 'train' or 'sample', got {command!r}")
    scorelab.distributed.start(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value, multihost=_MULTIHOST.value,
        initialization_timeout=_INIT_TIMEOUT.value, heartbeat_timeout=_HEARTBEAT_TIMEOUT.value)
    workdir = pathlib.Path(_WORKDIR.value)
    if command == "train":
        scorelab.train(_CONFIG.value, workdir)
    elif command == "sample":
        scorelab.sample(workdir, method=_SAMPLER.value, num=_NUM.value, seed=_SEED.value,
                        out=_OUT.value)


if __name__ == "__main__":
    app.run(main)
