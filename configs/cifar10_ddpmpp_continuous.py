"""CIFAR-10 DDPM++ (cont.), VP SDE: the paper's hyper-parameters (Song et al. 2021, app. H).
Needs tensorflow-datasets with CIFAR-10 and accelerators; not run in CI."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.random_flip = True
    config.model.nf = 128
    config.model.ch_mult = (1, 2, 2, 2)
    config.model.num_res_blocks = 4
    config.model.attn_resolutions = (16,)
    config.model.dropout = 0.1
    config.model.ema_rate = 0.9999
    config.model.resblock_type = "biggan"
    config.model.embedding_type = "positional"
    config.model.init_scale = 0.0
    config.training.batch_size = 128
    config.training.n_steps = 1_300_001
    config.training.log_every = 50
    config.training.eval_every = 50_000
    config.training.checkpoint_every = 10_000
    config.training.max_to_keep = 5
    config.optim.lr = 2e-4
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.sampling.num_samples = 64
    config.sampling.num_steps = 0  # the paper's N = 1000
    config.eval.num_likelihood = 0
    config.eval.num_fid = 0
    return config
