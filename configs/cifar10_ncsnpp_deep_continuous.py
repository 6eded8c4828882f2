"""CIFAR-10 NCSN++ cont. deep (VE): twice the residual blocks. Not run in CI."""
from configs import cifar10_ncsnpp_continuous


def get_config():
    config = cifar10_ncsnpp_continuous.get_config()
    config.model.ncsnpp.num_res_blocks = 8
    return config
