"""Digits under the sub-VP SDE with the default DDPM++."""
from configs import default


def get_config():
    config = default.get_config()
    config.sde.name = "subvpsde"
    return config
