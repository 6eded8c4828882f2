"""28x28 MNIST digits (the 5,000 bundled) with a small DDPM++ of three levels (28, 14, 7): enough
pixels for Fourier undersampling (`train.py reconstruct --operator=fourier:0.25`). Its training
time and results: docs/observations.md#denoising-beside-classical-denoisers."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mnist"
    config.model.ncsnpp.update(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=())
    config.training.update(batch_size=64, n_steps=2500, eval_every=2500, checkpoint_every=500)
    config.sampling.pc.num_steps = 250
    config.eval.update(num_likelihood=16, num_metric_samples=256)
    return config
