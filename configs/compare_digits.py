"""Comparing SDEs on the bundled 8x8 digits: VP, sub-VP, VE, DDPM and NCSN with the default
DDPM++ U-Net, scored by the in-project digit classifier (Frechet distance, classes covered)
and bits/dim.

    python train.py compare --config=configs/compare_digits.py --workdir=runs/compare_digits
"""
from configs import compare_mixture, default

# VE (and NCSN) with the NCSN++ output and time input (configs/digits_ve.py), same U-Net layout.
VARIANTS = compare_mixture.sde_variants({
    "sde": {"name": "vesde", "sigma_max": 25.0},
    "model": {"parameterization": "scaled_score", "time_input": "log_std"}})


def get_config():
    config = default.get_config()
    config.sampling.pc.num_steps = 100  # the runs' own evaluation; the cells are below
    config.compare = c = compare_mixture.compare_section(VARIANTS)
    c.samplers = ("pc", "pc_langevin", "ancestral", "ald", "sde_euler_maruyama",
                  "ode_dpmpp_2m", "ode_adaptive")
    c.budgets = (20, 100)
    c.num_samples = 256
    c.num_likelihood = 64
    c.exact_score = False  # no closed form for digits
    c.quick.update(n_steps=200, budgets=(25,), num_samples=64, num_likelihood=16)
    return config
