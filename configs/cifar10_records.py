"""cifar10 from prepared records: score_sde's network and preprocessing for it
(configs/records_presets.py). Not run in CI."""
from configs import records_presets


def get_config():
    return records_presets.cifar10()
