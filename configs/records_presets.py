"""The papers' image data sets read from prepared records (`train.py prepare-data`), with
score_sde's networks and hyper-parameters for them (its configs/ve/*_ncsnpp*.py). Not run in
CI beyond a few steps on small stand-ins (tests/test_records.py).

    python train.py prepare-data --input=church_outdoor_train/ --output=data/lsun_church \
        --image_size=256                        # central square, bicubic (score_sde's LSUN)
    python train.py --config=configs/lsun_church_records.py --config.data.path=data/lsun_church

How each is prepared (`prepare-data` flags) is `PREPARE` below; docs/data.md has the table.
"""
import ml_collections

from configs import cifar10_ddpmpp_continuous, default
from models import unet

# data set -> (image size, the prepare-data flags that reproduce score_sde's preprocessing)
PREPARE = {
    "cifar10": (32, "(none: CIFAR-10 is 32 x 32)"),
    "celeba": (64, "--image_size=64 --crop=140 --filter=bilinear"),
    "lsun_church": (256, "--image_size=256 --filter=bicubic"),
    "lsun_bedroom": (256, "--image_size=256 --filter=bicubic"),
    "ffhq": (256, "--image_size=256 --filter=bicubic"),
}


def cifar10():
    """DDPM++ cont. (VP) on CIFAR-10 records (`prepare-data` of an .npz of its 50,000 + 10,000
    images, or of a folder of them)."""
    config = cifar10_ddpmpp_continuous.get_config()
    config.data.update(name="records", path="data/cifar10")
    return config


def _high_resolution(name: str, sigma_max: float):
    """score_sde's NCSN++ cont. (VE) at 256 x 256 (LSUN church / bedroom, FFHQ)."""
    config = default.get_config()
    config.seed = 42
    config.data.update(name="records", path=f"data/{name}", random_flip=True, centered=False)
    config.sde.update(name="vesde", sigma_min=0.01, sigma_max=sigma_max, N=2000)
    config.model.update(parameterization="scaled_score", time_input="log_std", ema_rate=0.999)
    config.model.ncsnpp = ml_collections.ConfigDict(unet.ncsnpp_config(
        nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
        dropout=0.0, progressive="output_skip", progressive_input="input_skip"))
    # post-hoc EMA snapshots: 2 x about 250 MB every 100,000 steps, 24 over the run (12 GB)
    config.training.update(batch_size=64, n_steps=2_400_001, reduce_mean=False, log_every=50,
                           eval_every=50_000, checkpoint_every=5_000, max_to_keep=5,
                           ema_snapshot_every=100_000)
    config.optim.update(lr=2e-4, warmup=5000, grad_clip=1.0)
    config.sampling.pc.update(snr=0.075, num_steps=None)
    config.eval.update(num_likelihood=0, num_metric_samples=0)
    return config


def lsun_church():
    return _high_resolution("lsun_church", 380.0)


def lsun_bedroom():
    return _high_resolution("lsun_bedroom", 378.0)


def ffhq():
    return _high_resolution("ffhq", 348.0)


def celeba():
    """score_sde's NCSN++ on CelebA 64 x 64 (VE, its SMLD chain: discrete loss, N = 1000)."""
    config = default.get_config()
    config.seed = 42
    config.data.update(name="records", path="data/celeba", random_flip=True, centered=False)
    config.sde.update(name="vesde", sigma_min=0.01, sigma_max=90.0, N=1000)
    config.model.update(parameterization="scaled_score", time_input="log_std", ema_rate=0.999)
    config.model.ncsnpp = ml_collections.ConfigDict(unet.ncsnpp_config(
        nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.1,
        embedding_type="positional"))
    config.training.update(batch_size=128, n_steps=1_300_001, loss="discrete", reduce_mean=False,
                           log_every=50, eval_every=50_000, checkpoint_every=10_000,
                           max_to_keep=5, ema_snapshot_every=50_000)
    config.optim.update(lr=2e-4, warmup=5000, grad_clip=1.0)
    config.sampling.pc.update(snr=0.17, num_steps=None)
    config.eval.update(num_likelihood=0, num_metric_samples=0)
    return config
