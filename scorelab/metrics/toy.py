"""Metrics for toy points: sliced W2 to held-out points, and the analytic mixture's own density.
Their features are the points themselves."""
import jax.numpy as jnp

from scorelab.data.pipeline import to_host
from scorelab.data.toy import analytic_mixture
from scorelab.metrics.distances import sliced_wasserstein


def points(samples, dataset, **_) -> dict:
    return {"points": to_host(samples)}


def sliced_w2_result(features: dict, dataset, key) -> dict:
    """Sliced W2 between the samples and as many held-out points."""
    samples = features["points"]
    n = min(len(samples), len(dataset.test))
    x, y = jnp.asarray(samples[:n]), jnp.asarray(dataset.test[:n])
    return {"eval/sliced_w2": float(sliced_wasserstein(x, y, key))}


def mixture_density_result(features: dict, dataset, key) -> dict:
    """The best NLL any model can reach on the held-out points (the data's own density), and how
    likely the samples are under it."""
    mix = analytic_mixture()
    mean_log_p = lambda x: float(jnp.mean(mix.log_prob(jnp.asarray(x))))
    return {"eval/nll_true_density_nats": -mean_log_p(dataset.test),
            "eval/sample_logp_true_density": mean_log_p(features["points"])}
