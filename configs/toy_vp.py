"""The analytic 2-D Gaussian mixture with an MLP under the VP SDE (exact NLL to compare with)."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mixture"  # or moons | swiss_roll | checkerboard
    config.model.name = "mlp"
    config.model.ema_rate = 0.99
    config.training.batch_size = 512
    config.training.n_steps = 3000
    config.training.eval_every = 3000
    config.sampling.num_samples = 2000
    config.eval.num_likelihood = 256
    config.eval.num_metric_samples = 2000
    return config
