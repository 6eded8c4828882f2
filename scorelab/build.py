"""Config -> objects: the SDE, the network, the optimiser, the training objective, and the
functions of the parameters that the network defines (a score, or a classifier's logits).

Names in a config map to classes through the literal tables below; a class's keyword arguments
are the fields of its config section, so a new SDE or network is one entry here.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from models.classifier import NoisyClassifier
from models.mlp import MLP
from models.series import SeriesNet
from models.score import make_score_fn, make_score_sde_fn, time_conditioning
from models.unet import NCSNpp
from scorelab.config import ConfigError
from sde import (CELL_MASKS, VESDE, VPSDE, discrete_dsm_loss, dsm_loss, noisy_classifier_loss,
                 subVPSDE, target_cells)

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}
# name -> (module, whether it takes images); its attributes are config.model.<name>.
MODELS = {"ncsnpp": (NCSNpp, True), "mlp": (MLP, False), "series": (SeriesNet, False),
          "classifier": (NoisyClassifier, True)}
# Models whose run trains log p_t(y | x_t) (sde.noisy_classifier_loss) instead of a score.
CLASSIFIERS = ("classifier",)
LOSSES = ("continuous", "discrete")
MISSING_VALUES = ("csv", "series")
# model.conditional_cells: the share of training rows given no cell, so that the network given
# nothing is the unconditional score too (for `score`, the likelihood, projection and smc)
UNCONDITIONAL_SHARE = 0.1  # data sets whose rows may have missing (NaN) entries


def build_sde(config):
    """`SDES[sde.name]` with the fields it declares taken from the `sde` section."""
    if config.sde.name not in SDES:
        raise ConfigError(f"sde.name must be one of {list(SDES)}, got {config.sde.name!r}")
    cls = SDES[config.sde.name]
    try:
        return cls(**{f.name: config.sde[f.name] for f in dataclasses.fields(cls)})
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"sde: {e}") from e


def is_classifier(config) -> bool:
    return config.model.name in CLASSIFIERS


def null_label(config) -> int:
    """The label that stands for "no class" in a model trained with label dropout: one past
    the real classes, so the network's class embedding has one extra row."""
    return config.model.conditional_classes


def build_model(config, dataset):
    """`MODELS[model.name]` with the attributes of its section; class-conditional on
    `model.conditional_classes` labels when that is > 0 (plus the null label when
    `model.label_dropout` > 0); a classifier gets as many outputs as the data have classes."""
    m = config.model
    if m.name not in MODELS:
        raise ConfigError(f"model.name must be one of {list(MODELS)}, got {m.name!r}")
    cls, for_images = MODELS[m.name]
    if for_images != dataset.is_image:
        kind = "images" if for_images else "points (toy data)"
        others = [n for n, (_, images) in MODELS.items() if images == dataset.is_image]
        raise ConfigError(f"model.name={m.name!r} is for {kind}; use one of {others} for "
                          f"data.name={config.data.name!r}")
    if not 0 <= m.label_dropout < 1:
        raise ConfigError(f"model.label_dropout must be in [0, 1), got {m.label_dropout!r}")
    if m.label_dropout and not m.conditional_classes:
        raise ConfigError(f"model.label_dropout={m.label_dropout} needs a class-conditional "
                          f"model: set model.conditional_classes")
    needs_labels = m.conditional_classes or m.name in CLASSIFIERS
    if needs_labels and dataset.train_labels is None:
        what = ("model.name='classifier'" if m.name in CLASSIFIERS
                else f"model.conditional_classes={m.conditional_classes}")
        raise ConfigError(f"{what} needs labels, but data.name={config.data.name!r} has none")
    kwargs = dict(m[m.name])
    if m.conditional_cells:
        if "conditional_cells" not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"model.name={m.name!r} cannot be conditioned on given cells: "
                              f"set model.conditional_cells=False (the MLP can)")
        if m.conditional_classes:
            raise ConfigError("model.conditional_cells and model.conditional_classes cannot be "
                              "combined")
        if config.training.cell_masks not in CELL_MASKS:
            raise ConfigError(f"training.cell_masks must be one of {list(CELL_MASKS)}, got "
                              f"{config.training.cell_masks!r}")
        kwargs["conditional_cells"] = True
    if m.name in CLASSIFIERS:
        if m.conditional_classes:
            raise ConfigError("model.name='classifier' is not itself class-conditional: set "
                              "model.conditional_classes=0")
        if config.training.loss != "continuous":
            raise ConfigError("a classifier run trains on t ~ U(eps, T): set "
                              "training.loss='continuous'")
        kwargs["num_classes"] = int(dataset.train_labels.max()) + 1
    elif m.conditional_classes:
        if "num_classes" not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"model.name={m.name!r} cannot be class-conditional: set "
                              f"model.conditional_classes=0")
        kwargs["num_classes"] = m.conditional_classes + (1 if m.label_dropout else 0)
    if m.remat != "none":
        if "remat" not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"model.remat={m.remat!r}: model.name={m.name!r} has no "
                              f"rematerialisation; set model.remat='none'")
        kwargs["remat"] = m.remat
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


def build_objective(config, sde, model, columns=None):
    """`objective(params, x0, labels, key, *, dropout_key=None, precision="float32")`, the
    scalar a run minimises: the DSM loss of a score model, or a classifier's cross-entropy on
    noised data. `dropout_key` (training) turns on the network's dropout and, for a model with
    `model.label_dropout`, replaces that share of the labels by the null label. `columns`: a
    table's column of each entry where a column spans several (`Standardizer.dim_columns`)."""
    if is_classifier(config):
        eps = config.training.eps

        def classifier_objective(params, x0, labels, key, *, dropout_key=None,
                                 precision="float32"):
            logits = logits_fn_for(config, model, sde, dropout_key=dropout_key,
                                   precision=precision)
            return noisy_classifier_loss(sde, logits, params, x0, labels, key, eps=eps)
        return classifier_objective

    loss_fn, dropout = build_loss(config, sde), config.model.label_dropout
    conditional = bool(config.model.conditional_classes)
    missing = config.data.name in MISSING_VALUES
    cells = config.model.conditional_cells and config.training.cell_masks

    def score_objective(params, x0, labels, key, *, dropout_key=None, precision="float32"):
        labels = labels if conditional else None  # a labelled data set, an unconditional model
        kwargs, given = {}, None
        if missing:  # NaN cells: filled with the column mean (0) and left out of the loss
            kwargs["observed"] = jnp.isfinite(x0)
            x0 = jnp.where(kwargs["observed"], x0, 0.0)
        if cells:  # CSDI: learn the score of target cells given the other observed ones
            key, k_mask = jax.random.split(key)
            observed = kwargs.get("observed", jnp.ones(x0.shape, bool))
            kwargs["observed"] = target_cells(k_mask, observed, cells, columns,
                                              unconditional=UNCONDITIONAL_SHARE)
            given = (x0, observed & ~kwargs["observed"])
        if dropout and dropout_key is not None:
            drop = jax.random.bernoulli(jax.random.fold_in(dropout_key, 1), dropout,
                                        labels.shape)
            labels = jnp.where(drop, null_label(config), labels)
        score_fn = score_fn_for(config, model, sde, labels=labels, given=given,
                                dropout_key=dropout_key, precision=precision)
        return loss_fn(score_fn, params, x0, key, **kwargs)
    return score_objective


def score_fn_for(config, model, sde, *, labels=None, given=None, dropout_key=None,
                 precision="float32"):
    """`score_fn(params, x, t)` of the network (the parameterisation lives in models/score.py);
    in training mode, with dropout drawn from `dropout_key`, when that key is given. `labels`
    for a class-conditional network; `given` = (values, mask) for a `model.conditional_cells`
    one: the score of the cells where mask is False given `values` where it is True (none: the
    unconditional score).

    `precision="bfloat16"` runs the network in bfloat16: the float32 parameters and x are cast
    on the way in (gradients flow back to the float32 parameters through the cast), the time
    input stays float32, and the output is cast back to float32 before it becomes a score.
    """
    kwargs = {} if labels is None else {"labels": labels}
    if given is not None:
        kwargs.update(given_values=given[0], given_mask=given[1])
    if config.model.parameterization == "score_sde":  # an imported score_sde run
        return make_score_sde_fn(_apply(model, dropout_key, precision, kwargs), sde,
                                 **config.model.score_sde)
    return make_score_fn(_apply(model, dropout_key, precision, kwargs), sde,
                         parameterization=config.model.parameterization,
                         time_input=config.model.time_input,
                         continuous=config.training.loss == "continuous")


def logits_fn_for(config, model, sde, *, dropout_key=None, precision="float32"):
    """`logits_fn(params, x, t) -> (batch, classes)` of a classifier run's network, fed time
    like the score networks (`model.time_input`)."""
    apply = _apply(model, dropout_key, precision, {})
    time_input = config.model.time_input
    return lambda params, x, t: apply(params, x, time_conditioning(sde, t, time_input=time_input))


def class_log_prob(logits_fn, params, labels):
    """`log_prob_fn(x, t) -> (batch,)`: log p_t(labels | x) of a classifier, what
    `samplers.classifier_guidance` takes."""
    def log_prob(x, t):
        log_probs = jax.nn.log_softmax(logits_fn(params, x, t))
        return jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    return log_prob


def _apply(model, dropout_key, precision: str, kwargs: dict):
    """`apply(params, x, time_input)` of a Flax module in `precision` (see score_fn_for)."""
    if dropout_key is not None:
        kwargs = {**kwargs, "rngs": {"dropout": dropout_key}}
    compute = jnp.dtype(precision)

    def apply(params, x, c):
        if compute != x.dtype:
            params = jax.tree_util.tree_map(lambda a: a.astype(compute), params)
        out = model.apply({"params": params}, x.astype(compute), c,
                          train=dropout_key is not None, **kwargs)
        return out.astype(x.dtype)
    return apply
