"""Digits under the VE SDE with a small NCSN++ (Fourier features, FIR, output skips)."""
from configs import default


def get_config():
    config = default.get_config()
    config.sde.name = "vesde"
    config.sde.sigma_max = 25.0  # about the largest distance between 8x8 digits in [-1, 1]
    config.model.parameterization = "scaled_score"
    config.model.time_input = "log_std"
    config.model.ncsnpp.update(embedding_type="fourier", fir=True, progressive="output_skip",
                               progressive_input="input_skip")
    return config
