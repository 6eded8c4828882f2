"""28x28 MNIST digits (the 5,000 bundled) with a DDPM++ of three levels: enough pixels for
Fourier undersampling (`train.py reconstruct --operator=fourier:0.25`)."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "mnist"
    config.model.ncsnpp.update(nf=32, ch_mult=(1, 2, 2), num_res_blocks=1,
                               attn_resolutions=(7,))
    config.training.update(batch_size=64, n_steps=6000, eval_every=3000, checkpoint_every=1000)
    config.sampling.pc.num_steps = 250
    config.eval.update(num_likelihood=16, num_metric_samples=256)
    return config
