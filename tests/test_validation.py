"""Every bad argument of the public sampler API fails at once with a message naming it."""
import jax
import jax.numpy as jnp
import pytest

from samplers import (bits_per_dim, classifier_free_guidance, classifier_guidance, colorize,
                      denoise, edit, inpaint, log_likelihood, ode_sample, pc_sample,
                      posterior_mean, sde_sample, solve_inverse, super_resolve)
from samplers.operators import BlockAverage, FourierSampling, GaussianBlur, Mask, RandomProjection
from sde import VESDE, VPSDE

SDE = VPSDE()
KEY = jax.random.key(0)
SCORE = lambda x, t: -x
SHAPE = (4, 2)
X = jnp.ones(SHAPE)
IMAGES = jnp.ones((2, 4, 4, 3))
PROJ = RandomProjection.create((2,), 1, 0)

CASES = [
    # (call, exception, text the message must contain)
    (lambda: pc_sample("vp", SCORE, SHAPE, KEY), TypeError, "sde must be an SDE"),
    (lambda: pc_sample(SDE, "score", SHAPE, KEY), TypeError, "score_fn must be a callable"),
    (lambda: pc_sample(SDE, lambda x, t: x[:, :1], SHAPE, KEY), ValueError,
     "score_fn(x, t) must return an array shaped like x"),
    (lambda: pc_sample(SDE, SCORE, (4,), KEY), ValueError, "shape must be a tuple"),
    (lambda: pc_sample(SDE, SCORE, (4, -2), KEY), ValueError, "shape must be a tuple"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, 0), TypeError, "key must be one jax.random key"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, jax.random.split(KEY, 2)), TypeError, "key must be"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, predictor="heun"), ValueError, "predictor"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, corrector="hmc"), ValueError, "corrector"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, predictor=None, corrector=None), ValueError,
     "both 'none'"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, snr=-0.1), ValueError, "snr"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, n_corrector_steps=1.5), TypeError,
     "n_corrector_steps"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, num_steps=0), ValueError, "num_steps"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, num_steps=10), ValueError,
     "num_steps=10 does not give a valid discrete chain"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, eps=1.0), ValueError, "eps must be"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, eps=float("nan")), ValueError, "eps must be"),
    (lambda: pc_sample(SDE, SCORE, SHAPE, KEY, denoise=1), TypeError, "denoise must be a bool"),
    (lambda: sde_sample(SDE, SCORE, SHAPE, KEY, solver="tsit5"), ValueError, "solver"),
    (lambda: sde_sample(SDE, SCORE, SHAPE, KEY, num_steps=None), TypeError, "num_steps"),
    (lambda: sde_sample(SDE, SCORE, SHAPE, KEY, eps=0.0), ValueError, "eps must be"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, solver="rk45"), ValueError, "solver"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, solver="euler"), ValueError,
     "solver 'euler' has no error estimate"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, rtol=0.0), ValueError, "rtol"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, atol=-1.0), ValueError, "atol"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, z=jnp.ones((3, 2))), ValueError, "z must have shape"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, z=jnp.ones(SHAPE, jnp.int32)), TypeError,
     "z must have a floating dtype"),
    (lambda: log_likelihood(SDE, SCORE, X, KEY, divergence="hutch"), ValueError, "divergence"),
    (lambda: log_likelihood(SDE, SCORE, X, KEY, num_probes=0), ValueError,
     "num_probes must be an integer >= 1, got 0"),
    (lambda: log_likelihood(SDE, SCORE, X, KEY, divergence="exact", num_probes=4), ValueError,
     "num_probes=4 needs a Hutchinson divergence"),
    (lambda: ode_sample(SDE, SCORE, SHAPE, KEY, step_control="lane"), ValueError,
     "step_control"),
    (lambda: log_likelihood(SDE, SCORE, jnp.ones(4), KEY), ValueError, "x must have shape"),
    (lambda: log_likelihood(SDE, SCORE, [[1.0]], KEY), TypeError, "x must be an array"),
    (lambda: log_likelihood(SDE, SCORE, X, KEY, eps=0.0), ValueError, "eps must be"),
    (lambda: log_likelihood(VESDE(), SCORE, X, KEY, solver="midpoint"), ValueError,
     "no error estimate"),
    (lambda: bits_per_dim(SDE, SCORE, jnp.ones((2, 3)), KEY), TypeError, "images must be"),
    (lambda: bits_per_dim(SDE, SCORE, jnp.ones((2, 3), jnp.uint8), KEY, data_range=(1, -1)),
     ValueError, "data_range"),
    (lambda: bits_per_dim(SDE, SCORE, jnp.ones((2, 3), jnp.uint8), KEY, num_bits=0), ValueError,
     "num_bits"),
    # sampling under observations
    (lambda: denoise(SDE, SCORE, X, -0.1, KEY), ValueError, "noise_std must be 0 or within"),
    (lambda: denoise(VESDE(), SCORE, X, 1e-4, KEY), ValueError,
     "noise_std must be 0 or within [0.01, 50]"),
    (lambda: posterior_mean(VESDE(), SCORE, X, 80.0), ValueError, "noise_std must be 0 or within"),
    (lambda: denoise(SDE, SCORE, X, jnp.ones(3), KEY), ValueError,
     "noise_std must be a scalar or of shape (batch,) = (4,)"),
    (lambda: denoise(SDE, SCORE, X, 0.1, KEY, num_steps=0), ValueError, "num_steps"),
    (lambda: denoise(SDE, SCORE, X, 0.1, KEY, predictor="none"), ValueError, "predictor"),
    (lambda: posterior_mean(SDE, SCORE, jnp.ones(4), 0.1), ValueError, "y must have shape"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 2)), PROJ, 0.1, KEY), ValueError,
     "y must have shape (batch, *(1,))"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, float("nan"), KEY), ValueError,
     "noise_std must be finite and >= 0"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, method="dps"),
     ValueError, "method must be one of"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, method="projection"),
     ValueError, "method='projection' needs an operator with orthogonal rows"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, method="ddrm"),
     ValueError, "method='ddrm' needs an operator with orthogonal rows"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, eta=1.5),
     ValueError, "eta"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 2)), lambda x: x + 1.0, 0.1, KEY,
                           shape=SHAPE), ValueError, "is not linear"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 2)), lambda x: x, 0.1, KEY), ValueError,
     "operator is a plain function: give shape"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, shape=(4, 3)),
     ValueError, "does not fit operator RandomProjection"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), "blur", 0.1, KEY), TypeError,
     "operator must be an Operator"),
    (lambda: solve_inverse(SDE, SCORE, jnp.ones((4, 1)), PROJ, 0.1, KEY, cg_steps=0), ValueError,
     "cg_steps"),
    (lambda: inpaint(SDE, SCORE, X, jnp.ones(3), KEY), ValueError, "mask must have the shape"),
    (lambda: inpaint(SDE, SCORE, X, jnp.full(SHAPE, 0.5), KEY), ValueError,
     "mask must hold only 0 and 1"),
    (lambda: colorize(SDE, SCORE, IMAGES, KEY), ValueError,
     "gray must have shape (batch, H, W, 1)"),
    (lambda: super_resolve(SDE, SCORE, IMAGES, KEY, factor=1), ValueError, "factor"),
    (lambda: super_resolve(SDE, SCORE, IMAGES, KEY, factor=2.0), TypeError, "factor"),
    (lambda: super_resolve(SDE, SCORE, jnp.ones((2, 4, 4)), KEY, factor=2), ValueError,
     "low must have shape (batch, H, W, C)"),
    (lambda: edit(SDE, SCORE, X, KEY, t_start=1.5), ValueError, "t_start must be"),
    (lambda: edit(SDE, SCORE, X, KEY, t_start=1e-4), ValueError, "t_start must be"),
    (lambda: edit(SDE, SCORE, X, 0), TypeError, "key must be one jax.random key"),
    (lambda: classifier_guidance(SCORE, None), TypeError, "log_prob_fn must be a callable"),
    (lambda: classifier_guidance(SCORE, lambda x, t: x[:, 0], scale=float("inf")), ValueError,
     "scale must be a finite number"),
    (lambda: classifier_free_guidance(SCORE, SCORE, "2"), TypeError, "scale must be a real"),
    (lambda: Mask.create(jnp.ones(3), (2,)), ValueError, "mask must have shape (2,)"),
    (lambda: BlockAverage.create((5, 4, 1), 2), ValueError, "factor 2 must divide"),
    (lambda: GaussianBlur.create((4, 4, 1), 0.0), ValueError, "width must be"),
    (lambda: FourierSampling.create((16,), 0.5, 0), ValueError, "needs (H, W, C) images"),
    (lambda: FourierSampling.create((8, 8, 1), 1.5, 0), ValueError, "fraction must be"),
    (lambda: RandomProjection.create((4,), 0, 0), ValueError, "num_measurements"),
]


@pytest.mark.parametrize("call, error, text", CASES, ids=[c[2] for c in CASES])
def test_bad_argument(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value)
