"""CIFAR-10 NCSN++ (cont.), VE SDE: the paper's hyper-parameters (Song et al. 2021, app. H).
`configs/cifar10_ncsnpp_deep_continuous.py` is NCSN++ cont. deep. Not run in CI."""
import ml_collections

from configs import cifar10_ddpmpp_continuous
from models import unet


def get_config():
    config = cifar10_ddpmpp_continuous.get_config()
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 50.0
    config.model.parameterization = "scaled_score"
    config.model.time_input = "log_std"
    config.model.ncsnpp = ml_collections.ConfigDict(unet.ncsnpp_config())
    return config
