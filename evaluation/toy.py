"""Metrics for 2-D toy data: sliced W2 to held-out points, and the analytic mixture's exact NLL."""
import jax.numpy as jnp
import numpy as np

from evaluation.distances import sliced_wasserstein


def toy_metrics(name: str, samples: np.ndarray, test: np.ndarray, key) -> dict:
    n = min(len(samples), len(test))
    out = {"eval/sliced_w2": float(sliced_wasserstein(jnp.asarray(samples[:n]),
                                                      jnp.asarray(test[:n]), key))}
    if name == "mixture":
        from data.toy import analytic_mixture
        mix = analytic_mixture()
        # The best NLL any model can reach on the held-out points (the data's own density),
        # and how likely the samples are under it.
        out["eval/nll_true_density_nats"] = -float(jnp.mean(mix.log_prob(jnp.asarray(test))))
        out["eval/sample_logp_true_density"] = float(jnp.mean(mix.log_prob(jnp.asarray(samples))))
    return out
