"""models/score.py: every parameterisation and time input, against an oracle network.

The oracle is a "network" that returns what a perfectly trained model would output: it reads
its conditioning input back into a time (or chain index), takes the analytic mixture's exact
score there and encodes it in the parameterisation. `make_score_fn` must then return the exact
score; reading the oracle with the wrong parameterisation must not.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.score import PARAMETERIZATIONS, TIME_INPUTS, bind, make_score_fn
from sde import VESDE, VPSDE, subVPSDE

SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=50.0)}


def time_of_std(sde, std):
    """The inverse of std(t) in closed form: B(t) = beta_min t + (beta_max - beta_min) t^2 / 2
    is -log(1 - std^2) for VP and -log(1 - std) for sub-VP; VE's std is geometric in t."""
    if isinstance(sde, VESDE):
        return jnp.log(std / sde.sigma_min) / jnp.log(sde.sigma_max / sde.sigma_min)
    b = -jnp.log1p(-jnp.square(std)) if isinstance(sde, VPSDE) else -jnp.log1p(-std)
    lo, d = sde.beta_min, sde.beta_max - sde.beta_min
    return (-lo + jnp.sqrt(lo**2 + 2 * d * b)) / d


class AtIndex:
    """The discrete chain's marginal at index i, in the form GaussianMixture.score reads."""

    def __init__(self, sde):
        self.sde = sde

    def mean_coeff(self, i):
        return self.sde.discrete_marginal(i)[0]

    def std(self, i):
        return self.sde.discrete_marginal(i)[1]


def encode(score, std, parameterization):
    """What a network of this parameterisation outputs for a given score."""
    s = std.reshape(-1, *(1,) * (score.ndim - 1))
    return {"noise": -s * score, "scaled_score": s * score, "score": score}[parameterization]


def continuous_oracle(mixture, sde, parameterization, time_input):
    def apply(params, x, c):
        t = c / 999.0 if time_input == "time" else time_of_std(sde, jnp.exp(c))
        return encode(mixture.score(x, t, sde), sde.std(t), parameterization)
    return apply


def discrete_oracle(mixture, sde, parameterization, time_input):
    table = jnp.log(sde.discrete_marginal(jnp.arange(sde.N))[1])

    def apply(params, x, c):
        if time_input == "time":
            i = c.astype(jnp.int32)
        else:
            i = jnp.argmin(jnp.abs(table[None] - c[:, None]), axis=1)
        return encode(mixture.score(x, i, AtIndex(sde)), AtIndex(sde).std(i), parameterization)
    return apply


def points(mixture, n=64):
    x = 2.5 * jax.random.normal(jax.random.key(0), (n, 2))
    t = jax.random.uniform(jax.random.key(1), (n,), minval=1e-3, maxval=1.0)
    return x, t


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
@pytest.mark.parametrize("time_input", TIME_INPUTS)
def test_continuous_model_gives_the_exact_score(name, parameterization, time_input, mixture, x64):
    sde = SDES[name]
    x, t = points(mixture)
    score = make_score_fn(continuous_oracle(mixture, sde, parameterization, time_input), sde,
                          parameterization=parameterization, time_input=time_input)
    np.testing.assert_allclose(score(None, x, t), mixture.score(x, t, sde), rtol=1e-6, atol=1e-8)
    wrong = [p for p in PARAMETERIZATIONS if p != parameterization][0]
    misread = make_score_fn(continuous_oracle(mixture, sde, parameterization, time_input), sde,
                            parameterization=wrong, time_input=time_input)
    assert not np.allclose(misread(None, x, t), mixture.score(x, t, sde), rtol=1e-2)


@pytest.mark.parametrize("name", ["vp", "ve"])
@pytest.mark.parametrize("parameterization, time_input", [("noise", "time"),
                                                          ("scaled_score", "log_std")])
def test_discrete_model_uses_the_chain_index_and_std(name, parameterization, time_input,
                                                     mixture, x64):
    """DDPM's / SMLD's discrete models: conditioned on i = floor(t (N - 1)), scaled by std_i."""
    sde = SDES[name]
    x, t = points(mixture)
    i = sde.time_index(t)
    score = make_score_fn(discrete_oracle(mixture, sde, parameterization, time_input), sde,
                          parameterization=parameterization, time_input=time_input,
                          continuous=False)
    np.testing.assert_allclose(score(None, x, t), mixture.score(x, i, AtIndex(sde)), rtol=1e-6,
                               atol=1e-8)


def test_kwargs_reach_the_network_and_bind_fixes_parameters(mixture):
    sde = VPSDE()
    seen = {}

    def apply(params, x, c, *, labels):
        seen.update(labels=labels, params=params)
        return jnp.zeros_like(x)
    labels = jnp.arange(4)
    score = bind(make_score_fn(apply, sde, labels=labels), {"w": 1.0})
    out = score(jnp.ones((4, 2)), jnp.full((4,), 0.5))
    assert out.shape == (4, 2) and seen["params"] == {"w": 1.0}
    np.testing.assert_array_equal(seen["labels"], labels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(parameterization="eps"), "parameterization must be one of"),
    (dict(time_input="sigma"), "time_input must be one of"),
    (dict(continuous=1), "continuous must be a bool"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_score_fn(lambda p, x, c: x, VPSDE(), **kwargs)
