"""The analytic mixture under the VE SDE: scaled-score output, log-std conditioning."""
from configs import toy_vp


def get_config():
    config = toy_vp.get_config()
    config.sde.name = "vesde"
    config.sde.sigma_max = 10.0  # about the largest distance between points of the mixture
    config.model.parameterization = "scaled_score"
    config.model.time_input = "log_std"
    return config
