"""Evaluation of a train state: held-out loss, samples, the data set's metrics, likelihoods.

`Evaluator` compiles each of its functions once per run, with the parameters as arguments (a
closure over them would make every parameter a constant of the program and recompile at every
evaluation). Each stage prints one line with its time, and its time goes into the results.
"""
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from models.score import bind
from samplers import bits_per_dim, log_likelihood
from scorelab.build import score_fn_for
from scorelab.data import host_batch, preprocess
from scorelab.metrics import METRICS
from scorelab.pictures import save_samples
from scorelab.sampling import make_sample_fn


def say(message: str) -> None:
    """A line on process 0's stdout, printed above the progress bar rather than through it."""
    if jax.process_index() == 0:
        try:
            from tqdm import tqdm
            tqdm.write(message)
        except ImportError:
            print(message, flush=True)


class Evaluator:
    """`evaluator(params, step=, eval_key=)` -> {"eval/...": number}, with the EMA parameters:

    - the held-out DSM loss on up to 256 test examples;
    - `max(sampling.num_samples, eval.num_metric_samples)` samples with the configured sampler,
      the first `sampling.num_samples` written to `workdir`/samples/step_<n>.{png,npz};
    - the data set's sample metrics (`dataset.metrics`) on all of them;
    - bits/dim (images) or NLL in nats (points) of `eval.num_likelihood` test examples.
    """

    def __init__(self, config, *, model, sde, loss_fn, dataset, workdir: pathlib.Path):
        self.config, self.dataset, self.workdir = config, dataset, pathlib.Path(workdir)
        conditional = bool(config.model.conditional_classes)
        self.test = host_batch(dataset, 0, batch_size=min(len(dataset.test), 256), seed=1,
                               split="test")
        self.test_labels = self.test["labels"] if conditional else None

        def held_out_loss(params, x, labels, key):
            x0 = preprocess(x, key, is_image=dataset.is_image, centered=config.data.centered)
            return loss_fn(score_fn_for(config, model, sde, labels=labels), params, x0, key)
        self.loss = jax.jit(held_out_loss)

        self.num_saved = config.sampling.num_samples
        num = max(self.num_saved, config.eval.num_metric_samples if dataset.metrics else 0)
        self.sample = make_sample_fn(config, model, sde, num, dataset.data_shape)

        self.num_ll = min(config.eval.num_likelihood, len(dataset.test))
        self.ll_labels = (jnp.asarray(dataset.test_labels[:self.num_ll]) if conditional
                          else None)

        def likelihood(params, x, labels, key):
            score = bind(score_fn_for(config, model, sde, labels=labels), params)
            if dataset.is_image:
                lo = -1.0 if config.data.centered else 0.0
                return bits_per_dim(sde, score, x, key, data_range=(lo, 1.0))
            logp, _, nfe = log_likelihood(sde, score, x, key)
            return -logp, nfe
        self.likelihood = jax.jit(likelihood)

    def __call__(self, params, *, step: int, eval_key) -> dict:
        k_loss, k_sample, k_ll = jax.random.split(eval_key, 3)
        out = {"eval/loss": float(self.loss(params, jnp.asarray(self.test["x"]),
                                            self.test_labels, k_loss))}
        c, data = self.config, self.dataset

        tic = time.perf_counter()
        x, nfe = self.sample(params, k_sample)
        x = np.asarray(x)
        out.update({"eval/sample_nfe": int(nfe), "eval/time_sampling_s": _since(tic)})
        stem = self.workdir / "samples" / f"step_{step:07d}"
        save_samples(x[:self.num_saved], stem, is_image=data.is_image,
                     centered=c.data.centered)
        say(f"  eval step {step}: {len(x)} samples, {c.sampling.method} sampler, NFE {int(nfe)}: "
            f"{out['eval/time_sampling_s']:.1f} s -> {stem}.png")

        if data.metrics:
            tic = time.perf_counter()
            for name in data.metrics:
                out.update(METRICS[name](x, data, jax.random.fold_in(eval_key, 1),
                                         centered=c.data.centered))
            out["eval/time_metrics_s"] = _since(tic)
            say(f"  eval step {step}: metrics {', '.join(data.metrics)}: "
                f"{out['eval/time_metrics_s']:.1f} s")

        if self.num_ll:
            tic = time.perf_counter()
            nll, nfe = self.likelihood(params, jnp.asarray(data.test[:self.num_ll]),
                                       self.ll_labels, k_ll)
            name = "eval/bpd" if data.is_image else "eval/nll_nats"
            out.update({name: float(jnp.mean(nll)), "eval/time_likelihood_s": _since(tic)})
            say(f"  eval step {step}: {name[5:]} {out[name]:.4f} on {self.num_ll} test "
                f"examples, NFE {int(nfe)}: {out['eval/time_likelihood_s']:.1f} s")
        return out


def _since(tic: float) -> float:
    return time.perf_counter() - tic
