"""Sample-quality metrics that need no downloaded weights.

Every entry of `METRICS` is `metric(samples, dataset, key, *, centered) -> {name: float}` with
`samples` in model space (a jax.Array, possibly sharded over the devices of several processes:
`scorelab.data.to_host` gathers it, and every process calls every metric); a data set lists the ones that apply to it (`scorelab.data.SOURCES`).
A new metric is one function and one entry here.
"""
from scorelab.metrics.classifier import digit_classifier_metrics
from scorelab.metrics.distances import sliced_wasserstein
from scorelab.metrics.toy import mixture_density, sliced_w2_to_test

METRICS = {
    "digit_classifier": digit_classifier_metrics,  # Frechet distance and class coverage
    "sliced_w2": sliced_w2_to_test,
    "mixture_density": mixture_density,
}

__all__ = ["METRICS", "sliced_wasserstein"]
