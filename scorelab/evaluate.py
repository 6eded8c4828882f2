"""Evaluation of a train state: held-out loss, samples, the data set's metrics, likelihoods."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from models.score import bind
from samplers import bits_per_dim, log_likelihood
from scorelab.build import score_fn_for
from scorelab.data import host_batch, preprocess
from scorelab.metrics import METRICS
from scorelab.pictures import save_samples
from scorelab.sampling import generate, sample_labels


def evaluate(config, state, *, model, sde, loss_fn, dataset, workdir: pathlib.Path, step: int,
             eval_key) -> dict:
    """With the EMA parameters: the held-out loss, `sampling.num_samples` samples written as a
    PNG and an npz, the data set's sample metrics on `max(sampling.num_samples,
    eval.num_metric_samples)` samples, and bits/dim (images) or NLL in nats (points) of
    `eval.num_likelihood` held-out examples."""
    k_loss, k_sample, k_ll = jax.random.split(eval_key, 3)
    conditional = bool(config.model.conditional_classes)
    test = host_batch(dataset, 0, batch_size=min(len(dataset.test), 256), seed=1, split="test")
    x0 = preprocess(jnp.asarray(test["x"]), k_loss, is_image=dataset.is_image,
                    centered=config.data.centered)
    eval_score = score_fn_for(config, model, sde, labels=test["labels"] if conditional else None)
    out = {"eval/loss": float(loss_fn(eval_score, state.ema_params, x0, k_loss))}

    num = config.sampling.num_samples
    total = max(num, config.eval.num_metric_samples if dataset.metrics else 0)
    score = bind(score_fn_for(config, model, sde, labels=sample_labels(config, total)),
                 state.ema_params)
    x, nfe = jax.jit(lambda k: generate(config, sde, score, k, total, dataset.data_shape))(
        k_sample)
    out["eval/sample_nfe"] = int(nfe)
    save_samples(x[:num], workdir / "samples" / f"step_{step:07d}", is_image=dataset.is_image,
                 centered=config.data.centered)
    for name in dataset.metrics:
        out.update(METRICS[name](np.asarray(x), dataset, jax.random.fold_in(eval_key, 1),
                                   centered=config.data.centered))

    n_ll = min(config.eval.num_likelihood, len(dataset.test))
    if n_ll:
        labels = jnp.asarray(dataset.test_labels[:n_ll]) if conditional else None
        ll_score = bind(score_fn_for(config, model, sde, labels=labels), state.ema_params)
        test_x = jnp.asarray(dataset.test[:n_ll])
        if dataset.is_image:
            data_range = (-1.0, 1.0) if config.data.centered else (0.0, 1.0)
            bpd, _ = bits_per_dim(sde, ll_score, test_x, k_ll, data_range=data_range)
            out["eval/bpd"] = float(jnp.mean(bpd))
        else:
            logp, _, _ = log_likelihood(sde, ll_score, test_x, k_ll)
            out["eval/nll_nats"] = -float(jnp.mean(logp))
    return out
