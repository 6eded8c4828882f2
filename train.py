"""Train a score model, checkpoint, resume, sample and evaluate: the command line.

    python train.py                                      # default config, workdir runs/default
    python train.py --config=configs/digits_ve.py --workdir=runs/ve --config.training.n_steps=500
    python train.py sample --workdir=runs/ve --sampler=ode --num=64
    python train.py sample --workdir=runs/cfg --class=3 --guidance=2   # configs/digits_cfg.py
    python train.py complete --mask=center        # also super-resolve, colorize, denoise,
    python train.py denoise --noise_std=0.2       # reconstruct --operator=blur:1.0
    python train.py impute --workdir=runs/table --input=t.csv --output=filled.csv
    python train.py score --workdir=runs/default --input=images.npz --output=nll.csv
    python train.py evaluate --workdir=runs/default --num=10000 --sampler=ode
    python train.py fid-stats --config=configs/cifar10_ddpmpp_continuous.py --output=c10.npz \
        --inception_path=pt_inception-2015-12-05-6726825d.pth
    python train.py prepare-data --input=images/ --output=data/church --image_size=256
    python train.py compare --config=configs/compare_mixture.py --workdir=runs/compare
    python train.py import-score-sde --checkpoint=ckpt/checkpoint_26 --workdir=runs/imported \
        --score_sde_config=score_sde/configs/vp/cifar10_ddpmpp_continuous.py \
        --score_sde_root=score_sde --config.data.name=cifar10
    python train.py sample --help                        # one command's flags and defaults

Re-running the same command resumes from the newest checkpoint in the workdir, along the same
trajectory as an uninterrupted run. Each command takes only its own flags (`scorelab.cli`
refuses the others by name); the work is done by the `scorelab` package.
"""
import pathlib
import sys

from absl import logging

import scorelab
import scorelab.commands
import scorelab.distributed
from samplers import INVERSE_METHODS, smc
from scorelab.cli import Command, Flag, main
from scorelab.compare import compare
from scorelab.config import ConfigError
from scorelab.distributed import LaunchError
from scorelab.inputs import IMPUTE_METHODS, impute, score
from scorelab.data.prepare import prepare
from scorelab.measure import SPLITS, evaluate, fid_stats
from scorelab.metrics.inception import RESIZE
from scorelab.sampling import SAMPLERS
from scorelab.score_sde import import_score_sde
from scorelab.tasks import DEFAULT_METHOD, MASKS, TASKS, run_task

ROOT = pathlib.Path(__file__).resolve().parent

CONFIG = Flag("config", "config", str(ROOT / "configs" / "default.py"),
              "Config file with get_config().")
WORKDIR = Flag("workdir", "string", "runs/default", "Run directory (checkpoints, metrics).")
NUM = Flag("num", "integer", 64, "Number of samples.")
SEED = Flag("seed", "integer", 0, "Seed of this command's random draws (the run's training "
            "seed is its config's `seed`).")
OUT = Flag("out", "string", "", "Output path without extension (default: under the workdir).")
NUM_STEPS = Flag("num_steps", "integer", None, "Reverse-chain steps (default: the SDE's N, or "
                 "N t* / T from the noise level t*).")
NOISE_STD = Flag("noise_std", "float", 0.1, "Observation noise std in pixel units of [0, 1] "
                 "images.")
METHOD = Flag("method", "enum", DEFAULT_METHOD, "solve_inverse's method; auto is ddrm for "
              "operators with orthonormal rows, else tweedie.", ("auto", *INVERSE_METHODS))
NUM_PARTICLES = Flag("num_particles", "integer", None, "Particles per image or row for "
                     f"--method=smc (default {smc.NUM_PARTICLES}; each costs the chain's NFE).")
INCEPTION_PATH = Flag("inception_path", "string", "", "pytorch-fid's weights file "
                      "pt_inception-2015-12-05-6726825d.pth (default: $SCORELAB_INCEPTION).")
RESIZE_FLAG = Flag("resize", "enum", "pytorch-fid", "How images are resized to 299 x 299: "
                   "pytorch-fid (torch's bilinear) or tf1 (TensorFlow 1's, as TF-GAN, score_sde "
                   "and EDM).", RESIZE)
# Several processes (one per host): the keywords of jax.distributed.initialize, or --multihost
# for JAX's own detection of a SLURM, Cloud TPU or Open MPI cluster.
HOSTS = (
    Flag("coordinator_address", "string", None, "Several processes: HOST:PORT of process 0."),
    Flag("num_processes", "integer", None, "Several processes: how many."),
    Flag("process_id", "integer", None, "Several processes: this one's index."),
    Flag("multihost", "bool", False, "Several processes, found from the cluster's environment."),
    Flag("initialization_timeout", "integer", 300, "Several processes: seconds to wait for all "
         "to connect."),
    Flag("heartbeat_timeout", "integer", 100, "Several processes: seconds after which a silent "
         "process is taken as lost and the others are stopped."),
)


def start(f):
    """Connects the processes of a multi-process launch (nothing for a single process)."""
    scorelab.distributed.start(
        coordinator_address=f.coordinator_address, num_processes=f.num_processes,
        process_id=f.process_id, multihost=f.multihost,
        initialization_timeout=f.initialization_timeout, heartbeat_timeout=f.heartbeat_timeout)
    return pathlib.Path(f.workdir)


def train(f):
    scorelab.train(f.config, start(f))


def sample(f):
    scorelab.sample(start(f), method=f.sampler, num=f.num, seed=f.seed, out=f.out,
                    label=getattr(f, "class"), guidance=f.guidance, classifier=f.classifier)


def task(name):
    def run(f):
        options = {k: getattr(f, k) for k in ("mask", "factor", "noise_std", "operator",
                                              "method", "num_particles") if k in f}
        run_task(start(f), name, num=f.num, seed=f.seed, out=f.out, num_steps=f.num_steps,
                 **options)
    return run


TASK_FLAGS = {
    "complete": (Flag("mask", "string", "center", f"One of {list(MASKS)} or a .npy file of the "
                      "image's height and width, nonzero = observed."), METHOD, NUM_PARTICLES),
    "super-resolve": (Flag("factor", "integer", 2, "The upsampling factor."), METHOD,
                      NUM_PARTICLES),
    "colorize": (METHOD, NUM_PARTICLES),
    "denoise": (NOISE_STD,),
    "reconstruct": (NOISE_STD, Flag("operator", "string", "blur:1.0", "blur:WIDTH (pixels), "
                                    "fourier:FRACTION (of the frequencies) or project:M "
                                    "(Gaussian rows)."), METHOD, NUM_PARTICLES),
}
TASK_SUMMARY = {
    "complete": "Inpaint masked held-out images.",
    "super-resolve": "Super-resolve block-averaged held-out images.",
    "colorize": "Colorize the channel mean of held-out images.",
    "denoise": "Denoise held-out images with Gaussian noise (exact posterior sampling).",
    "reconstruct": "Reconstruct held-out images from blurred, Fourier-undersampled or projected "
                   "noisy observations.",
}

COMMANDS = {
    "train": Command(
        "Train a run, or resume it from its newest checkpoint; evaluates along the way and "
        "writes samples, metrics and checkpoints to the workdir.",
        (CONFIG, WORKDIR, *HOSTS), train),
    "sample": Command(
        "Samples from a run's newest checkpoint (EMA parameters), unconditional or by class. "
        "Writes NPZ, PNG and JSON.",
        (WORKDIR, Flag("sampler", "enum", "", "Sampler (default: the run's).", ("", *SAMPLERS)),
         NUM, SEED, OUT,
         Flag("class", "string", "", "A class index or 'all' (the classes in turn), for a "
              "class-conditional run or with --classifier."),
         Flag("guidance", "float", None, "Guidance scale (classifier-free for a run trained "
              "with label dropout, else with --classifier; default 1: the conditional score)."),
         Flag("classifier", "string", "", "Workdir of a classifier run (model.name="
              "'classifier') that guides this unconditional run."), *HOSTS), sample),
    **{name: Command(
        f"{TASK_SUMMARY[name]} Writes the rows observation | [mean] | draw | original as PNG, "
        f"NPZ and JSON (PSNR, SSIM, NFE).",
        (WORKDIR, NUM(16, "Number of held-out images."), SEED, OUT, NUM_STEPS, *TASK_FLAGS[name],
         *HOSTS), task(name)) for name in TASKS},
    "impute": Command(
        "Fill the empty cells of a CSV table or series with the model's conditional (a table "
        "or series run); forecast a series.",
        (WORKDIR, Flag("input", "string", "", "A CSV with the run's columns, empty cells "
                       "missing."),
         Flag("output", "string", "", "The filled CSV."),
         Flag("draws", "integer", 8, "Draws averaged per empty cell (1: one posterior draw)."),
         Flag("method", "enum", "auto", "conditional (a run trained with "
              "model.conditional_cells), projection (one chain per draw) or smc "
              "(--num_particles weighted chains per draw); auto: the first that applies.",
              IMPUTE_METHODS),
         Flag("quantiles", "string", "", "Also write the draws' quantiles per empty cell, "
              "e.g. 0.05,0.95: one file each, OUTPUT_q0.05.csv."),
         Flag("horizon", "integer", 0, "A series run: also forecast this many steps past the "
              "file's end."),
         NUM_PARTICLES, SEED, NUM_STEPS, *HOSTS),
        lambda f: impute(start(f), input=f.input, output=f.output, draws=f.draws, seed=f.seed,
                         num_steps=f.num_steps, method=f.method,
                         num_particles=f.num_particles, quantiles=f.quantiles,
                         horizon=f.horizon)),
    "score": Command(
        "Per-example anomaly scores of a user's file: negative log-likelihood (nats, bits/dim "
        "for images), score norms, a likelihood ratio, reconstruction error.",
        (WORKDIR, Flag("input", "string", "", "A CSV with the run's columns, or an .npz of "
                       "uint8 `images`."),
         Flag("output", "string", "", "The CSV of per-example scores."),
         Flag("method", "string", "auto", "likelihood (bits/dim or nats), msma (score norms "
              "across noise levels), ratio (likelihood minus input complexity), "
              "reconstruction (SDEdit round trips), several joined by commas, or all; "
              "auto: msma."),
         Flag("maps", "string", "", "An .npz for the reconstruction's per-pixel maps."),
         SEED, *HOSTS),
        lambda f: score(start(f), input=f.input, output=f.output, seed=f.seed,
                        method=f.method, maps=f.maps)),
    "evaluate": Command(
        "Sample metrics of a run's EMA parameters at scale: the data set's own (the digit "
        "classifier's Frechet distance) and, with Inception weights, FID, IS, KID and "
        "precision / recall; in batches, resumable. Writes metrics.json.",
        (WORKDIR, NUM(10000, "Number of samples."),
         Flag("sampler", "enum", "", "Sampler (default: the run's).", ("", *SAMPLERS)),
         SEED, Flag("batch_size", "integer", 256, "Samples per sampler call (and per file)."),
         INCEPTION_PATH, Flag("reference", "string", "", "A reference file of `fid-stats` "
                              "(default: made from the run's training images)."),
         RESIZE_FLAG, Flag("out", "string", "", "Output directory (default: "
                           "<workdir>/eval/<sampler>_n<num>_seed<seed>)."), *HOSTS),
        lambda f: evaluate(start(f), num=f.num, sampler=f.sampler, seed=f.seed,
                           batch_size=f.batch_size, inception_path=f.inception_path,
                           reference=f.reference, resize=f.resize, out=f.out)),
    "fid-stats": Command(
        "Write a data set's reference file for FID and the others: Inception features of "
        "every image of a split, in order, as stored (no dequantisation, no dropped batch).",
        (CONFIG(help="Config whose data section names the data set."),
         Flag("output", "string", "", "The reference file (.npz)."),
         Flag("split", "enum", "train", "Which split.", SPLITS), INCEPTION_PATH, RESIZE_FLAG),
        lambda f: fid_stats(f.config, output=f.output, split=f.split,
                            inception_path=f.inception_path, resize=f.resize)),
    "prepare-data": Command(
        "Write a folder of images (class subfolders as labels) or an .npz of uint8 `images` "
        "(and `labels`) as ArrayRecord shards that training streams (data.name='records').",
        (Flag("input", "string", "", "A folder of .png / .jpg images, or an .npz."),
         Flag("output", "string", "", "The directory to create."),
         Flag("image_size", "integer", 0, "Resize to S x S as score_sde: the central square, "
              "resized (0: keep; the images must then share one size)."),
         Flag("crop", "integer", 0, "A central crop before resizing (score_sde's CelebA: "
              "140)."),
         Flag("filter", "enum", "bicubic", "The resize's filter, antialiased (score_sde: "
              "bicubic for LSUN and FFHQ, bilinear for CelebA).", ("bicubic", "bilinear"))),
        lambda f: prepare(f.input, f.output, image_size=f.image_size, crop=f.crop,
                          filter=f.filter)),
    "ema": Command(
        "Rebuild the EMA of any length after training (EDM2's post-hoc EMA) from the run's "
        "snapshots of its tracked profiles; every command then uses it.",
        (WORKDIR, Flag("sigma_rel", "float", 0.05, "The EMA's relative length: the averaging "
                       "profile's std over the training length (EDM2; 0.05 to 0.2 typical).")),
        lambda f: scorelab.commands.posthoc_ema(pathlib.Path(f.workdir), sigma_rel=f.sigma_rel)),
    "compare": Command(
        "Train SDE variants side by side and run every sampler at NFE budgets; resumable "
        "cell by cell.",
        (CONFIG, WORKDIR, Flag("quick", "bool", False, "The config's quick settings "
                               "(minutes).")),
        lambda f: compare(f.config, pathlib.Path(f.workdir), quick=f.quick)),
    "import-score-sde": Command(
        "Turn a score_sde checkpoint (Song et al.'s code) into an ordinary run directory.",
        (CONFIG(help="Config whose data section the imported run gets."), WORKDIR,
         Flag("checkpoint", "string", "", "A score_sde checkpoint file (checkpoint_<n>)."),
         Flag("score_sde_config", "string", "", "That run's score_sde config file."),
         Flag("score_sde_root", "string", None, "The score_sde checkout whose configs/ the "
              "config file imports.")),
        lambda f: import_score_sde(f.checkpoint, f.score_sde_config, f.score_sde_root,
                                   pathlib.Path(f.workdir), f.config)),
}


def run(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        return main(argv, COMMANDS, default="train")
    except (ConfigError, LaunchError) as e:  # bad input, found before any expensive work
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv))
