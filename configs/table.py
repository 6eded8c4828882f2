"""A table (the bundled breast-cancer measurements, or --config.data.path=FILE.csv) with the
residual MLP conditioned on given cells (CSDI's random masks): for `train.py impute`, which then
samples the empty cells given the others (the best of our imputers in bench/bench_impute.py),
and `train.py score` (given no cell, the network is the unconditional score). Missing cells are
allowed in the file and left out of the loss."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "csv"
    config.model.name = "mlp"
    config.model.mlp.update(hidden=256, depth=4)
    config.model.conditional_cells = True
    # a small table overfits (held-out loss 0.211 at step 3,000, 0.251 at 6,000 on 350 rows):
    # the parameters of lowest held-out loss are kept and used
    config.training.update(n_steps=6000, eval_every=3000, checkpoint_every=3000,
                           select_every=200)
    # 1e-3 memorises faster: the held-out rows' likelihood falls by thousands of nats
    config.optim.lr = 3e-4
    config.eval.num_likelihood = 57  # every held-out row
    return config
