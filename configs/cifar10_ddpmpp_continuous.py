"""CIFAR-10 DDPM++ (cont.), VP SDE: the paper's hyper-parameters (Song et al. 2021, app. H).
Needs tensorflow-datasets with CIFAR-10 and accelerators; not run in CI."""
import ml_collections

from configs import default
from models import unet


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.random_flip = True
    config.model.ncsnpp = ml_collections.ConfigDict(unet.ddpmpp_config())
    config.model.ema_rate = 0.9999
    config.training.batch_size = 128
    config.training.n_steps = 1_300_001
    config.training.log_every = 50
    config.training.eval_every = 50_000
    config.training.checkpoint_every = 10_000
    config.training.max_to_keep = 5
    # post-hoc EMA snapshots: 2 x 236 MB every 50,000 steps, 26 over the run (12 GB)
    config.training.ema_snapshot_every = 50_000
    config.optim.lr = 2e-4
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.sampling.pc.num_steps = None  # the paper's N = 1000
    config.eval.num_likelihood = 0
    config.eval.num_metric_samples = 0
    return config
