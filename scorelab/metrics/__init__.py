"""Sample-quality metrics.

A metric is two functions (`Metric`): `features(samples, dataset, *, centered) -> {name:
array}` of one batch of model-space samples (a jax.Array, possibly sharded over the devices of
several processes; the features come back to every process as numpy), and `result(features,
dataset, key) -> {"eval/...": number}` of all batches' features concatenated. So samples are
drawn and featurised in batches, and only features are kept. `METRICS` are those that need no
downloaded weights; a data set lists the ones that apply to it (`scorelab.data.SOURCES`). The
field's FID / IS / KID / precision-recall on the FID Inception network are
`scorelab.metrics.standard.InceptionMetrics`, built from weights the user has.
"""
from typing import Callable, NamedTuple

from scorelab.metrics import toy
from scorelab.metrics.classifier import digit_features, digit_result
from scorelab.metrics.distances import sliced_wasserstein


class Metric(NamedTuple):
    features: Callable
    result: Callable

    def __call__(self, samples, dataset, key=None, *, centered: bool = True) -> dict:
        """The metric of one set of samples, in one batch."""
        return self.result(self.features(samples, dataset, centered=centered), dataset, key)


METRICS = {
    "digit_classifier": Metric(digit_features, digit_result),  # Frechet distance, coverage
    "sliced_w2": Metric(toy.points, toy.sliced_w2_result),
    "mixture_density": Metric(toy.points, toy.mixture_density_result),
}

__all__ = ["METRICS", "Metric", "sliced_wasserstein"]
