"""Class-conditional digits with label dropout: one network gives the conditional and the
unconditional score, for classifier-free guidance (`train.py sample --class=K --guidance=W`)."""
from configs import default


def get_config():
    config = default.get_config()
    config.model.conditional_classes = 10
    config.model.label_dropout = 0.2  # Ho & Salimans (2022) found 0.1-0.2 best
    return config
