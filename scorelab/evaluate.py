"""Evaluation of a train state: held-out loss, samples, the data set's metrics, likelihoods.

`Evaluator` compiles each of its functions once per run, with the parameters as arguments (a
closure over them would make every parameter a constant of the program and recompile at every
evaluation), and runs each over the same mesh as training. Each stage prints one line with its
time, and its time goes into the results.
"""
import pathlib
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from models.score import bind
from samplers import bits_per_dim, log_likelihood
from scorelab.build import is_classifier, logits_fn_for, score_fn_for
from scorelab.data import host_batch, preprocess, shard_batch, to_host
from scorelab.metrics import METRICS
from scorelab.metrics.standard import inception_metrics
from scorelab.pictures import save_samples
from sde import batch_mul
from scorelab.sampling import make_sample_fn
from scorelab.workdir import best_manager, restore_best


def say(message: str) -> None:
    """A line on process 0's stdout, printed above the progress bar rather than through it."""
    if jax.process_index() == 0:
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


class Evaluator:
    """`evaluator(params, step=, eval_key=)` -> {"eval/...": number}, with the EMA parameters:

    - the held-out DSM loss on up to 256 test examples;
    - `max(sampling.num_samples, eval.num_metric_samples)` samples with the configured sampler,
      `eval.batch_size` at a time, the first `sampling.num_samples` written to
      `workdir`/samples/step_<n>.{png,npz};
    - the data set's sample metrics (`dataset.metrics`), and FID / IS / KID / precision-recall
      when `eval.inception_path` is set, from the features of each batch;
    - bits/dim (images) or NLL in nats (points) of `eval.num_likelihood` test examples.
    """

    def __init__(self, config, run, workdir: pathlib.Path, mesh):
        self.config, self.dataset, self.workdir = config, run.dataset, pathlib.Path(workdir)
        model, sde, dataset = run.model, run.sde, run.dataset
        self.mesh, devices = mesh, mesh.size
        conditional = bool(config.model.conditional_classes)
        self.test, self.loss = held_out_loss(config, run, mesh)
        self.test_labels = self.test.get("labels")

        self.metrics = {name: METRICS[name] for name in dataset.metrics}
        if config.eval.inception_path:
            self.metrics["inception"] = inception_metrics(config, dataset, workdir, mesh)
        self.num_saved = config.sampling.num_samples
        self.num = max(self.num_saved, config.eval.num_metric_samples if self.metrics else 0)
        self.batch = min(self.num, config.eval.batch_size)
        self.sample = make_sample_fn(config, model, sde, self.batch, dataset.data_shape, mesh)

        # complete rows: a table's held-out rows may have missing cells, which have no density
        complete = np.flatnonzero(np.isfinite(dataset.test.reshape(len(dataset.test), -1))
                                  .all(axis=1))
        self.num_ll = min(config.eval.num_likelihood, len(complete))
        if self.num_ll:
            rows = complete[np.minimum(np.arange(-(-self.num_ll // devices) * devices),
                                       self.num_ll - 1)]
            self.ll_batch = shard_batch({"x": dataset.test[rows], "labels": (
                dataset.test_labels[rows] if conditional else None)}, mesh)

        def likelihood(params, x, labels, key):
            score = bind(score_fn_for(config, model, sde, labels=labels), params)
            if dataset.is_image:
                lo = -1.0 if config.data.centered else 0.0
                return bits_per_dim(sde, score, x, key, data_range=(lo, 1.0))
            logp, _, nfe = log_likelihood(sde, score, x, key)
            return -logp, nfe
        self.likelihood = jax.jit(likelihood)

    def __call__(self, params, *, step: int, eval_key) -> dict:
        """Every process calls it (its stages are collectives); process 0 writes the files."""
        k_loss, k_sample, k_ll = jax.random.split(eval_key, 3)
        out = {"eval/loss": float(self.loss(params, self.test["x"], self.test_labels, k_loss))}
        c, data = self.config, self.dataset

        tic = time.perf_counter()
        saved, features, nfes, seconds = [], [], [], 0.0
        for i, count in enumerate(batch_sizes(self.num, self.batch)):
            x, nfe = self.sample(params, jax.random.fold_in(k_sample, i))
            x, nfes = x[:count], nfes + [int(nfe)]
            if sum(map(len, saved)) < self.num_saved:
                saved.append(to_host(x[:self.num_saved - sum(map(len, saved))]))
            seconds -= time.perf_counter()
            features.append({name: metric.features(x, data, centered=c.data.centered)
                             for name, metric in self.metrics.items()})
            seconds += time.perf_counter()
        nfe = nfes[0] if len(set(nfes)) == 1 else float(np.mean(nfes))  # adaptive: the mean
        out.update({"eval/sample_nfe": nfe, "eval/time_sampling_s": _since(tic) - seconds})
        stem = self.workdir / "samples" / f"step_{step:07d}"
        if jax.process_index() == 0:
            save_samples(np.concatenate(saved), stem, is_image=data.is_image,
                         centered=c.data.centered)
        say(f"  eval step {step}: {self.num} samples, {c.sampling.method} sampler, NFE "
            f"{nfe:g}: {out['eval/time_sampling_s']:.1f} s -> {stem}.png")

        if self.metrics:
            tic = time.perf_counter()
            for name, metric in self.metrics.items():
                out.update(metric.result(concatenate([f[name] for f in features]), data,
                                         jax.random.fold_in(eval_key, 1)))
            out["eval/time_metrics_s"] = _since(tic) + seconds
            say(f"  eval step {step}: metrics {', '.join(self.metrics)}: "
                f"{out['eval/time_metrics_s']:.1f} s")

        if self.num_ll:
            tic = time.perf_counter()
            nll, nfe = self.likelihood(params, self.ll_batch["x"], self.ll_batch["labels"], k_ll)
            name = "eval/bpd" if data.is_image else "eval/nll_nats"
            out.update({name: float(np.mean(to_host(nll)[:self.num_ll])),
                        "eval/time_likelihood_s": _since(tic)})
            say(f"  eval step {step}: {name[5:]} {out[name]:.4f} on {self.num_ll} test "
                f"examples, NFE {int(nfe)}: {out['eval/time_likelihood_s']:.1f} s")
        return out


class ClassifierEvaluator:
    """`evaluator(params, step=, eval_key=)` for a classifier run: the held-out cross-entropy
    (t ~ U(eps, T), as in training) and the accuracy on held-out data perturbed to each of
    `TIMES` (fractions of T), with the EMA parameters."""

    TIMES = (0.0, 0.25, 0.5, 0.75)

    def __init__(self, config, run, workdir: pathlib.Path, mesh):
        self.test, self.loss = held_out_loss(config, run, mesh)
        logits_fn = logits_fn_for(config, run.model, run.sde)
        times = np.maximum(np.array(self.TIMES) * run.sde.T, config.training.eps)

        def accuracy(params, x, labels, key):
            x0 = preprocess(x, key, is_image=run.dataset.is_image, centered=config.data.centered)
            out = []
            for t in times:
                mean, std = run.sde.marginal_prob(x0, np.full(len(x0), t, np.float32))
                xt = mean + batch_mul(std, jax.random.normal(jax.random.fold_in(key, 1), x0.shape))
                out.append((logits_fn(params, xt, np.full(len(x0), t, np.float32)).argmax(-1)
                            == labels).mean())
            return out
        self.accuracy = jax.jit(accuracy)

    def __call__(self, params, *, step: int, eval_key) -> dict:
        args = (params, self.test["x"], self.test["labels"], eval_key)
        out = {"eval/loss": float(self.loss(*args))}
        for frac, acc in zip(self.TIMES, self.accuracy(*args)):
            out[f"eval/accuracy_t{frac:g}"] = float(acc)
        say(f"  eval step {step}: held-out accuracy at t/T = " + ", ".join(
            f"{frac:g}: {out[f'eval/accuracy_t{frac:g}']:.3f}" for frac in self.TIMES))
        return out


def make_evaluator(config, run, workdir: pathlib.Path, mesh):
    """The evaluator of a run: `Evaluator`, or `ClassifierEvaluator` for a classifier run."""
    cls = ClassifierEvaluator if is_classifier(config) else Evaluator
    return cls(config, run, workdir, mesh)


class Selection:
    """Model selection by held-out loss (`training.select_every`): `selection(params, step)`
    computes the held-out loss of the EMA parameters with the same times, noise and cell masks
    at every call (common random numbers: differences come from the parameters), over the
    held-out batch repeated to at least 1,024 examples, and keeps the parameters of the lowest
    so far in <workdir>/best. A resumed run first recomputes the loss of the kept ones."""

    MIN_EXAMPLES = 1024

    def __init__(self, config, run, workdir: pathlib.Path, mesh, abstract_params):
        self.test, loss = held_out_loss(config, run, mesh)
        repeats = -(-self.MIN_EXAMPLES // len(self.test["x"]))
        keys = jax.random.split(jax.random.key(config.seed + 2), repeats)
        self.loss = jax.jit(lambda params, x, labels: jax.lax.map(
            lambda k: loss(params, x, labels, k), keys).mean())
        self.manager, self.workdir, self.abstract = best_manager(workdir), workdir, abstract_params
        params, self.step = restore_best(workdir, abstract_params)
        self.best = np.inf if params is None else self._loss(params)

    def _loss(self, params) -> float:
        return float(self.loss(params, self.test["x"], self.test.get("labels")))

    def __call__(self, params, step: int) -> dict:
        loss = self._loss(params)
        if loss < self.best:
            self.best, self.step = loss, step
            self.manager.save(step, args=ocp.args.StandardSave(params), force=True)
        return {"select/loss": loss, "select/best_loss": self.best,
                "select/best_step": self.step}

    def params(self):
        """The kept parameters, once saved."""
        self.manager.wait_until_finished()
        return restore_best(self.workdir, self.abstract)[0]

    def close(self):
        self.manager.wait_until_finished()


def held_out_loss(config, run, mesh):
    """(the held-out batch, sharded over `mesh`'s "data" axis, and the jitted
    `loss(params, x, labels, key)` of the run's objective on it): up to 256 test examples, a
    multiple of the device count (at least one each)."""
    devices, dataset = mesh.size, run.dataset
    # fewer test examples than devices (a small table): some are counted twice
    num_test = max(min(len(dataset.test), 256) // devices, 1) * devices
    test = shard_batch(host_batch(dataset, 0, batch_size=num_test, seed=1, split="test"), mesh)

    def loss(params, x, labels, key):
        x0 = preprocess(x, key, is_image=dataset.is_image, centered=config.data.centered)
        return run.objective(params, x0, labels, key)
    return test, jax.jit(loss)


def batch_sizes(num: int, batch: int) -> list[int]:
    """The sizes of the batches that draw `num` samples `batch` at a time (the last may be
    smaller; it is drawn whole, with its own key, and cut)."""
    return [min(batch, num - i) for i in range(0, num, batch)]


def concatenate(batches: list[dict]) -> dict:
    """One dict of arrays from per-batch dicts with the same names."""
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _since(tic: float) -> float:
    return time.perf_counter() - tic
