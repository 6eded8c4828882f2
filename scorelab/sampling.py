"""Sampling from a config: `sampling.method` names a function of `SAMPLERS`, and the section of
the same name holds its keyword arguments, so a new sampler is one entry here and one section in
configs/default.py; the config check runs the sampler's own argument checks.
"""
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from models.score import bind
from samplers import ode_sample, pc_sample, sde_sample
from scorelab.build import score_fn_for
from scorelab.config import ConfigError

SAMPLERS = {"pc": pc_sample, "sde": sde_sample, "ode": ode_sample}


def sampler_kwargs(config) -> dict:
    s = config.sampling
    if s.method not in SAMPLERS:
        raise ConfigError(f"sampling.method must be one of {list(SAMPLERS)}, got {s.method!r}")
    if s.method not in s:
        raise ConfigError(f"sampling.{s.method} is missing: the keyword arguments of the "
                          f"{SAMPLERS[s.method].__name__} sampler")
    return {**s[s.method], "eps": s.eps}


def check_sampling(config, sde, data_shape) -> None:
    """Traces the configured sampler on one point with a zero score (no FLOPs), so a bad
    sampler option fails before training with the sampler's own message."""
    kwargs = sampler_kwargs(config)
    zero_score = lambda x, t: jnp.zeros_like(x)
    try:
        jax.eval_shape(lambda key: SAMPLERS[config.sampling.method](
            sde, zero_score, (1, *data_shape), key, **kwargs), jax.random.key(0))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampling.{config.sampling.method}: {e}") from e


def generate(config, sde, score_fn, key, num: int, data_shape):
    """`num` samples in model space with the configured sampler; returns (x, nfe)."""
    return SAMPLERS[config.sampling.method](sde, score_fn, (num, *data_shape), key,
                                            **sampler_kwargs(config))


def sample_labels(config, num: int):
    """Labels that cycle through the classes for a class-conditional model, else None."""
    n = config.model.conditional_classes
    return jnp.arange(num) % n if n else None


def make_sample_fn(config, model, sde, num: int, data_shape, mesh, *, score_of=None):
    """The jitted `sample(params, key) -> (x, nfe)`: `num` samples of the network with the
    configured sampler, drawn in parallel over the mesh's "data" axis (the count is padded up
    to a multiple of the devices; the extra samples are dropped, so the draw depends on the
    device count only when `num` does not divide by it). The parameters are an argument, not
    constants of the program, so one compilation serves every evaluation of a run.

    `score_of(params, n) -> score_fn(x, t)` builds the score for a batch of n (default: the
    network's, at `sample_labels`); a guided score takes a tuple of parameters, for example.
    """
    padded = -(-num // mesh.size) * mesh.size
    rows = NamedSharding(mesh, P("data"))
    if score_of is None:
        score_of = lambda params, n: bind(score_fn_for(config, model, sde,
                                                       labels=sample_labels(config, n)), params)

    def sample(params, key):
        score = score_of(params, padded)
        # Every evaluation of the network sees its batch split over the devices, and the
        # compiler carries that split through the sampler's loop.
        split = lambda x, t: score(jax.lax.with_sharding_constraint(x, rows), t)
        x, nfe = generate(config, sde, split, key, padded, data_shape)
        return x[:num], nfe
    return jax.jit(sample)
