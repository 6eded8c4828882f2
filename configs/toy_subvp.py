"""The analytic mixture under the sub-VP SDE."""
from configs import toy_vp


def get_config():
    config = toy_vp.get_config()
    config.sde.name = "subvpsde"
    return config
