"""The config a run directory was trained with (its config.json), to go on training it:

    python train.py --config=configs/run.py:runs/imported --workdir=runs/imported \
        --config.training.n_steps=2000

Useful for a run written by `train.py import-score-sde`, whose config is not a file here.
"""
import pathlib

from scorelab.workdir import read_config


def get_config(workdir: str):
    return read_config(pathlib.Path(workdir))
