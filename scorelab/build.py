"""Config -> objects: the SDE, the network, the optimiser, the loss and the score function.

Names in a config map to classes through the literal tables below; a class's keyword arguments
are the fields of its config section, so a new SDE or network is one entry here.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from models.mlp import MLP
from models.score import make_score_fn
from models.unet import NCSNpp
from scorelab.config import ConfigError
from sde import VESDE, VPSDE, discrete_dsm_loss, dsm_loss, subVPSDE

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}
# name -> (module, whether it takes images); its attributes are config.model.<name>.
MODELS = {"ncsnpp": (NCSNpp, True), "mlp": (MLP, False)}
LOSSES = ("continuous", "discrete")


def build_sde(config):
    """`SDES[sde.name]` with the fields it declares taken from the `sde` section."""
    if config.sde.name not in SDES:
        raise ConfigError(f"sde.name must be one of {list(SDES)}, got {config.sde.name!r}")
    cls = SDES[config.sde.name]
    try:
        return cls(**{f.name: config.sde[f.name] for f in dataclasses.fields(cls)})
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"sde: {e}") from e


def build_model(config, dataset):
    """`MODELS[model.name]` with the attributes of its section; class-conditional on
    `model.conditional_classes` labels when that is > 0."""
    m = config.model
    if m.name not in MODELS:
        raise ConfigError(f"model.name must be one of {list(MODELS)}, got {m.name!r}")
    cls, for_images = MODELS[m.name]
    num_classes = m.conditional_classes or None
    if num_classes and dataset.train_labels is None:
        raise ConfigError(f"model.conditional_classes={m.conditional_classes} needs labels, but "
                          f"data.name={config.data.name!r} has none")
    if for_images != dataset.is_image:
        kind = "images" if for_images else "points (toy data)"
        others = [n for n, (_, images) in MODELS.items() if images == dataset.is_image]
        raise ConfigError(f"model.name={m.name!r} is for {kind}; use one of {others} for "
                          f"data.name={config.data.name!r}")
    kwargs = dict(m[m.name])
    if num_classes:
        if "num_classes" not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"model.name={m.name!r} cannot be class-conditional: set "
                              f"model.conditional_classes=0")
        kwargs["num_classes"] = num_classes
    try:
        return cls(**kwargs)
    except TypeError as e:  # an attribute the module does not have
        raise ConfigError(f"model.{m.name}: {e}") from e


def build_optimizer(config):
    """Adam with linear warm-up and global-norm clipping."""
    o = config.optim
    if not o.lr > 0 or not math.isfinite(o.lr):
        raise ConfigError(f"optim.lr must be a positive number, got {o.lr!r}")
    if o.warmup < 0 or o.grad_clip < 0:
        raise ConfigError(f"optim.warmup and optim.grad_clip must be >= 0, got "
                          f"{o.warmup!r} and {o.grad_clip!r}")
    schedule = optax.linear_schedule(0.0, o.lr, o.warmup) if o.warmup else o.lr
    adam = optax.adam(schedule, b1=o.beta1, eps=o.eps)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip else adam


def build_loss(config, sde):
    """loss(score_fn, params, x0, key) for the configured DSM variant."""
    t = config.training
    if t.loss == "continuous":
        return functools.partial(dsm_loss, sde, eps=t.eps, reduce_mean=t.reduce_mean,
                                 likelihood_weighting=t.likelihood_weighting,
                                 importance_sampling=t.importance_sampling)
    if t.loss == "discrete":
        return functools.partial(discrete_dsm_loss, sde, reduce_mean=t.reduce_mean)
    raise ConfigError(f"training.loss must be one of {list(LOSSES)}, got {t.loss!r}")


def score_fn_for(config, model, sde, *, labels=None, dropout_key=None, precision="float32"):
    """`score_fn(params, x, t)` of the network (the parameterisation lives in models/score.py);
    in training mode, with dropout drawn from `dropout_key`, when that key is given.

    `precision="bfloat16"` runs the network in bfloat16: the float32 parameters and x are cast
    on the way in (gradients flow back to the float32 parameters through the cast), the time
    input stays float32, and the output is cast back to float32 before it becomes a score.
    """
    kwargs = {} if labels is None else {"labels": labels}
    if dropout_key is not None:
        kwargs["rngs"] = {"dropout": dropout_key}
    compute = jnp.dtype(precision)

    def apply(params, x, c):
        if compute != x.dtype:
            params = jax.tree_util.tree_map(lambda a: a.astype(compute), params)
        out = model.apply({"params": params}, x.astype(compute), c,
                          train=dropout_key is not None, **kwargs)
        return out.astype(x.dtype)
    return make_score_fn(apply, sde, parameterization=config.model.parameterization,
                         time_input=config.model.time_input,
                         continuous=config.training.loss == "continuous")
