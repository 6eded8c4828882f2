"""Metrics for toy points: sliced W2 to held-out points, and the analytic mixture's own density."""
import jax.numpy as jnp

from scorelab.data.pipeline import to_host
from scorelab.data.toy import analytic_mixture
from scorelab.metrics.distances import sliced_wasserstein


def sliced_w2_to_test(samples, dataset, key, **_) -> dict:
    """Sliced W2 between the samples and as many held-out points."""
    n = min(len(samples), len(dataset.test))
    x, y = jnp.asarray(to_host(samples)[:n]), jnp.asarray(dataset.test[:n])
    return {"eval/sliced_w2": float(sliced_wasserstein(x, y, key))}


def mixture_density(samples, dataset, key, **_) -> dict:
    """The best NLL any model can reach on the held-out points (the data's own density), and how
    likely the samples are under it."""
    mix = analytic_mixture()
    return {"eval/nll_true_density_nats": -float(jnp.mean(mix.log_prob(jnp.asarray(dataset.test)))),
            "eval/sample_logp_true_density": float(jnp.mean(mix.log_prob(
                jnp.asarray(to_host(samples)))))}
