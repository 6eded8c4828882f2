"""The score networks (DDPM++ / NCSN++ U-Net, MLP), their parameterisations, and loading of
Song et al.'s score_sde checkpoints (`load_score_sde`)."""
from models.score_sde import load_score_sde

__all__ = ["load_score_sde"]
