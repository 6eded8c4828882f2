"""A noise-conditional classifier of the digits under the default VP SDE: it trains
log p_t(y | x_t), and guides an unconditional run of the same SDE and data
(`train.py sample --workdir=runs/default --classifier=runs/digits_classifier --class=K`)."""
from configs import default


def get_config():
    config = default.get_config()
    config.model.name = "classifier"
    config.training.n_steps = 1500
    config.training.eval_every = 500
    return config
