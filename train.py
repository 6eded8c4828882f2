"""Train a score model, checkpoint, resume, sample and evaluate: the command line.

    python train.py                                      # default config, workdir runs/default
    python train.py --config=configs/digits_ve.py --workdir=runs/ve --config.training.n_steps=500
    python train.py sample --workdir=runs/ve --sampler=ode --num=64
    python train.py sample --workdir=runs/cfg --class=3 --guidance=2   # configs/digits_cfg.py
    python train.py sample --classifier=runs/digits_classifier --class=all   # classifier guidance
    python train.py complete --mask=center        # also super-resolve, colorize, denoise,
    python train.py denoise --noise_std=0.2       # reconstruct --operator=blur:1.0 (held-out
                                                  # images conditioned on observations)
    python train.py --config=configs/table.py --workdir=runs/table    # a CSV table
    python train.py impute --workdir=runs/table --input=t.csv --output=filled.csv
    python train.py score --workdir=runs/default --input=images.npz --output=nll.csv
    python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=0  # per host
    python train.py compare --config=configs/compare_mixture.py --workdir=runs/compare  # SDEs
    python train.py import-score-sde --checkpoint=ckpt/checkpoint_26 --workdir=runs/imported \
        --score_sde_config=score_sde/configs/vp/cifar10_ddpmpp_continuous.py \
        --score_sde_root=score_sde --config.data.name=cifar10    # Song et al.'s checkpoints

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
from scorelab.compare import compare
from scorelab.inputs import impute, score
from scorelab.score_sde import import_score_sde
from samplers import INVERSE_METHODS
from scorelab.tasks import DEFAULT_METHOD, MASKS, TASKS, run_task

ROOT = pathlib.Path(__file__).resolve().parent

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "default.py"),
                                          "Config file (get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (checkpoints, metrics).")
_SAMPLER = flags.DEFINE_enum("sampler", "", ["", *SAMPLERS],
                             "sample: sampler (default: the run's).")
_NUM = flags.DEFINE_integer("num", 64, "sample: number of samples.")
_SEED = flags.DEFINE_integer("sample_seed", 0, "sample: seed of the sampler's key.")
_CLASS = flags.DEFINE_string("class", "", "sample: a class index or 'all' (the classes in "
                             "turn), for a class-conditional run or with --classifier.")
_GUIDANCE = flags.DEFINE_float("guidance", None, "sample: guidance scale (classifier-free for a "
                               "run trained with label dropout, else with --classifier; "
                               "default 1: the conditional score).")
_CLASSIFIER = flags.DEFINE_string("classifier", "", "sample: workdir of a classifier run "
                                  "(model.name='classifier') that guides this unconditional run.")
_INPUT = flags.DEFINE_string("input", "", "impute: a CSV with the run's columns, empty cells "
                             "missing; score: that, or an .npz of uint8 `images`.")
_OUTPUT = flags.DEFINE_string("output", "", "impute: the filled CSV; score: the CSV of "
                              "per-example NLLs.")
_DRAWS = flags.DEFINE_integer("draws", 8, "impute: draws averaged per empty cell (1: write "
                              "one posterior draw).")
_OUT = flags.DEFINE_string("out", "", "sample and the tasks: output path without extension.")
_MASK = flags.DEFINE_string("mask", "center", f"complete: one of {list(MASKS)} or a .npy file "
                            "of the image's height and width, nonzero = observed.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", None, "the tasks: reverse-chain steps (default: "
                                   "the SDE's N, or N t* / T from the noise level t*).")
_METHOD = flags.DEFINE_string("method", DEFAULT_METHOD, "the tasks but denoise: "
                               f"solve_inverse's method, one of {list(INVERSE_METHODS)}, or auto "
                               "(ddrm for operators with orthonormal rows, else tweedie).")
_QUICK = flags.DEFINE_bool("quick", False, "compare: the config's quick settings (minutes).")
_FACTOR = flags.DEFINE_integer("factor", 2, "super-resolve: the upsampling factor.")
_NOISE_STD = flags.DEFINE_float("noise_std", 0.1, "denoise, reconstruct: observation noise std "
                                "in pixel units of [0, 1] images.")
_OPERATOR = flags.DEFINE_string("operator", "blur:1.0", "reconstruct: blur:WIDTH (pixels), "
                                "fourier:FRACTION (of the frequencies) or project:M (Gaussian "
                                "rows).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "import-score-sde: a score_sde checkpoint "
                                  "file (checkpoint_<n>).")
_SCORE_SDE_CONFIG = flags.DEFINE_string("score_sde_config", "", "import-score-sde: that run's "
                                        "score_sde config file.")
_SCORE_SDE_ROOT = flags.DEFINE_string("score_sde_root", None, "import-score-sde: the score_sde "
                                      "checkout whose configs/ the config file imports.")
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
    commands = ["train", "sample", *TASKS, "impute", "score", "compare", "import-score-sde"]
    if command not in commands:
        raise app.UsageError(f"command must be one of {commands}, got {command!r}")
    scorelab.distributed.start(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value, multihost=_MULTIHOST.value,
        initialization_timeout=_INIT_TIMEOUT.value, heartbeat_timeout=_HEARTBEAT_TIMEOUT.value)
    workdir = pathlib.Path(_WORKDIR.value)
    if command == "train":
        scorelab.train(_CONFIG.value, workdir)
    elif command == "sample":
        scorelab.sample(workdir, method=_SAMPLER.value, num=_NUM.value, seed=_SEED.value,
                        out=_OUT.value, label=_CLASS.value, guidance=_GUIDANCE.value,
                        classifier=_CLASSIFIER.value)
    elif command == "impute":
        impute(workdir, input=_INPUT.value, output=_OUTPUT.value, draws=_DRAWS.value,
               seed=_SEED.value, num_steps=_NUM_STEPS.value)
    elif command == "score":
        score(workdir, input=_INPUT.value, output=_OUTPUT.value, seed=_SEED.value)
    elif command == "compare":
        compare(_CONFIG.value, workdir, quick=_QUICK.value)
    elif command == "import-score-sde":
        import_score_sde(_CHECKPOINT.value, _SCORE_SDE_CONFIG.value, _SCORE_SDE_ROOT.value,
                         workdir, _CONFIG.value)
    else:
        run_task(workdir, command, num=_NUM.value if _NUM.present else 16, seed=_SEED.value,
                 out=_OUT.value, mask=_MASK.value, factor=_FACTOR.value,
                 noise_std=_NOISE_STD.value, operator=_OPERATOR.value,
                 num_steps=_NUM_STEPS.value, method=_METHOD.value)


if __name__ == "__main__":
    app.run(main)
