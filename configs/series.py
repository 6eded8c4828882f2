"""A multivariate series (--config.data.path=FILE.csv: rows are time steps in order, the first
column the time stamp) with the series network, trained as a conditional imputer on windows of
`data.window` steps with CSDI's masks (random cells, or blocks of steps): for
`train.py impute`, which fills every empty cell of a series of any length and forecasts with
--horizon."""
from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "series"
    config.data.window = 32
    config.model.name = "series"
    config.model.conditional_cells = True
    config.training.update(n_steps=4000, batch_size=64, eval_every=0, checkpoint_every=1000,
                           select_every=200, cell_masks="blocks")
    config.optim.lr = 1e-3
    config.eval.num_likelihood = 0
    return config
