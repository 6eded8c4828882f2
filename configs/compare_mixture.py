"""Comparing SDEs on the analytic 2-D mixture: VP, sub-VP, VE and the discrete DDPM and NCSN,
one MLP, every sampler at several NFE budgets, learned and exact scores.

    python train.py compare --config=configs/compare_mixture.py --workdir=runs/compare_mixture
    python train.py compare --config=configs/compare_mixture.py --workdir=runs/cmp_quick --quick
"""
import ml_collections

from configs import toy_vp


def sde_variants(ve):
    """Each variant as config overrides: VP, sub-VP, VE (with the overrides `ve`), and their
    discrete special cases DDPM and NCSN, trained with the discrete loss of their chains."""
    return {"vp": {"sde": {"name": "vpsde"}},
            "subvp": {"sde": {"name": "subvpsde"}},
            "ve": ve,
            "ddpm": {"sde": {"name": "vpsde"}, "training": {"loss": "discrete"}},
            "ncsn": {**ve, "training": {"loss": "discrete"}}}


# VE (and NCSN) with the VE settings of configs/toy_ve.py
VARIANTS = sde_variants({"sde": {"name": "vesde", "sigma_max": 10.0},
                         "model": {"parameterization": "scaled_score", "time_input": "log_std"}})


def compare_section(variants=VARIANTS):
    c = ml_collections.ConfigDict()
    c.variants = ml_collections.ConfigDict(variants)
    c.run_variants = tuple(variants)  # which of them to run
    c.seeds = (0,)
    c.samplers = ("pc", "pc_langevin", "ancestral", "ald", "sde_euler_maruyama", "ode_euler",
                  "ode_dpmpp_2m", "ode_adaptive")
    # NFE; DDPM's chain (predictors reverse_diffusion and ancestral) needs N > beta_max = 20
    # steps under VP and sub-VP, so those cells of smaller budgets are reported as n/a
    c.budgets = (10, 20, 50, 100, 200)
    c.num_samples = 10000  # samples per cell (sliced W2's noise floor falls as 1 / sqrt(n))
    c.num_likelihood = 2000  # held-out examples per run (all of the mixture's)
    c.exact_score = True  # the samplers also run on the exact mixture score
    c.grid_sampler = "pc"  # the samples picture: this sampler at the largest budget
    # --quick: a few minutes
    c.quick = ml_collections.ConfigDict(dict(n_steps=300, budgets=(10, 20), num_samples=500,
                                             num_likelihood=64, eval_steps=50))
    return c


def get_config():
    config = toy_vp.get_config()
    config.training.n_steps = 3000
    config.compare = compare_section()
    return config
