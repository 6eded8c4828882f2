"""CIFAR-10 NCSN++ (cont.), VE SDE: the paper's hyper-parameters (Song et al. 2021, app. H).
`config.model.num_res_blocks = 8` gives NCSN++ cont. deep. Not run in CI."""
from configs import cifar10_ddpmpp_continuous


def get_config():
    config = cifar10_ddpmpp_continuous.get_config()
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 50.0
    config.model.parameterization = "scaled_score"
    config.model.time_input = "log_std"
    config.model.embedding_type = "fourier"
    config.model.fourier_scale = 16.0
    config.model.fir = True
    config.model.progressive = "none"
    config.model.progressive_input = "residual"  # as models.unet.ncsnpp_config()
    config.model.init_scale = 0.0
    config.sampling.predictor = "reverse_diffusion"
    config.sampling.corrector = "langevin"
    config.sampling.snr = 0.16
    return config
