"""Linear SDEs for score-based generative modelling (Song et al., ICLR 2021)."""
from sde.base import SDE, ReverseSDE, batch_mul, register_sde
from sde.losses import (CELL_MASKS, discrete_dsm_loss, dsm_loss, noisy_classifier_loss,
                        target_cells)
from sde.mixture import GaussianMixture
from sde.ve import VESDE
from sde.vp import VPSDE, subVPSDE

__all__ = ["SDE", "ReverseSDE", "VPSDE", "subVPSDE", "VESDE", "GaussianMixture", "batch_mul",
           "register_sde", "dsm_loss", "discrete_dsm_loss", "noisy_classifier_loss",
           "target_cells", "CELL_MASKS"]
