"""DDPM exactly: the discrete noise-prediction loss on VPSDE(N=1000), ancestral sampling."""
from configs import default


def get_config():
    config = default.get_config()
    config.training.loss = "discrete"
    config.sampling.pc.predictor = "ancestral"
    config.sampling.pc.corrector = "none"
    return config
