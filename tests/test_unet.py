"""Tests for models/layers.py and models/unet.py (DDPM++ / NCSN++).

Most tests fill the variables from numpy (`random_variables`) instead of running `model.init`:
on CPU, `jax.random` initialisers compile once per parameter shape, which would dominate the
run time. Real `init` runs once, on a one-level network, and the big presets only through
`jax.eval_shape`, which costs no FLOPs.
"""
import dataclasses
import importlib
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import layers
from models.unet import NCSNpp, ddpmpp_config, ncsnpp_config
from scorelab.build import build_model

TINY = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.1)
VARIANTS = {
    "ddpmpp": dict(),
    "ncsnpp": dict(fir=True, progressive_input="residual", embedding_type="fourier"),
    "output_skip+input_skip": dict(fir=True, progressive="output_skip",
                                   progressive_input="input_skip"),
    "residual+residual": dict(progressive="residual", progressive_input="residual",
                              skip_rescale=False),
    "ddpm_blocks": dict(resblock_type="ddpm"),
    "ddpm_blocks+fir+cat": dict(resblock_type="ddpm", fir=True, progressive_input="input_skip",
                                progressive_combine="cat", resamp_with_conv=False),
}


def inputs(batch=2, size=8, channels=1, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, size, size, channels))
    return jnp.asarray(x, jnp.float32), jnp.asarray(np.linspace(1.0, 900.0, batch), jnp.float32)


def random_variables(model, x, t, labels=None, seed=0):
    """Variables shaped like `model.init`'s, drawn from numpy: N(0, 1 / fan_in) kernels, N(0, 1)
    vectors, so that every layer (also the near-zero-init ones) does something visible."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, t, labels=labels))
    rng = np.random.default_rng(seed)

    def fill(s):
        fan_in = math.prod(s.shape[:-1]) if len(s.shape) > 1 else 1
        return jnp.asarray(rng.normal(0.0, 1.0 / math.sqrt(fan_in), s.shape), s.dtype)

    return jax.tree.map(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
    """The DDPM++-style tiny model, its variables and inputs (shared: building costs time)."""
    model = NCSNpp(**TINY)
    x, t = inputs()
    return model, random_variables(model, x, t), x, t


# ---- the network ----

@pytest.mark.parametrize("name", list(VARIANTS))
def test_output_shape_and_dtype_match_input(name):
    model = NCSNpp(**TINY, **VARIANTS[name])
    x, t = inputs()
    out = model.apply(random_variables(model, x, t), x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool(jnp.all(jnp.isfinite(out)))


def test_non_square_multichannel_images():
    model = NCSNpp(**TINY, **VARIANTS["ncsnpp"])
    x = jnp.zeros((1, 8, 12, 3))
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, jnp.ones(1))[0])
    assert out.shape == x.shape


def test_jit_matches_eager(tiny):
    model, variables, x, t = tiny
    eager = model.apply(variables, x, t)
    jitted = jax.jit(model.apply)(variables, x, t)
    np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp"])
def test_output_depends_on_time_input(name):
    model = NCSNpp(**TINY, **VARIANTS[name])
    x, t = inputs()
    variables = random_variables(model, x, t)
    a = model.apply(variables, x, t)
    b = model.apply(variables, x, t + 0.5)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-4


def test_an_unconditional_network_ignores_time_and_has_no_embedding():
    model = NCSNpp(**TINY, conditional=False)
    x, t = inputs()
    variables = random_variables(model, x, t)
    assert not any(k.startswith("Dense") for k in variables["params"])
    np.testing.assert_array_equal(model.apply(variables, x, t), model.apply(variables, x, t + 9))


def test_norm_groups_fixes_the_group_count():
    """DDPM's U-Net normalises with GroupNorm(32) whatever the width; NCSN++ with
    min(channels / 4, 32) groups. Same parameters, different normalisation."""
    x, t = inputs(channels=3)
    ours, fixed = NCSNpp(**{**TINY, "nf": 32}), NCSNpp(**{**TINY, "nf": 32}, norm_groups=32)
    variables = random_variables(ours, x, t)
    assert layers.num_groups(32) == 8 and layers.num_groups(32, 32) == 32
    a, b = ours.apply(variables, x, t), fixed.apply(variables, x, t)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_fused_fir_upsampling_conv_is_fir_upsampling_then_the_conv_inside_the_image():
    """StyleGAN2's fused op (transposed conv, then the filter) and FIR upsampling followed by
    the same conv are both the filter and the conv applied to the zero-inserted image, which
    commute: they agree except within the conv's reach of the border."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), jnp.float32)
    fused = layers.FIRUpsampleConv(5)
    params = fused.init(jax.random.key(0), x)["params"]
    params = {"kernel": params["kernel"], "bias": jnp.arange(5.0)}
    w = params["kernel"]
    separate = jax.lax.conv_general_dilated(
        layers.fir_upsample(x), w, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["bias"]
    out = fused.apply({"params": params}, x)
    assert out.shape == (2, 12, 12, 5)
    np.testing.assert_allclose(out[:, 3:-3, 3:-3], separate[:, 3:-3, 3:-3], atol=1e-5)
    assert float(jnp.max(jnp.abs(out - separate))) > 1e-2  # the borders differ


def test_class_conditional_output_depends_on_labels():
    model = NCSNpp(**TINY, num_classes=3)
    x, t = inputs()
    labels = jnp.array([0, 1])
    variables = random_variables(model, x, t, labels)
    assert "Embed_0" in variables["params"]
    a = model.apply(variables, x, t, labels=labels)
    b = model.apply(variables, x, t, labels=jnp.array([2, 1]))
    assert float(jnp.max(jnp.abs(a[0] - b[0]))) > 1e-4
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-6)


def test_dropout_only_when_training(tiny):
    model, variables, x, t = tiny
    # rbg keys: threefry's bernoulli compiles once per shape, which dominates the CPU time here.
    k1, k2 = jax.random.key(1, impl="rbg"), jax.random.key(2, impl="rbg")

    def run(train, key):
        return model.apply(variables, x, t, train=train, rngs={"dropout": key})

    assert float(jnp.max(jnp.abs(run(True, k1) - run(True, k2)))) > 1e-4
    np.testing.assert_array_equal(run(True, k1), run(True, k1))
    np.testing.assert_array_equal(run(False, k1), run(False, k2))
    np.testing.assert_array_equal(run(False, k1), model.apply(variables, x, t))


@pytest.mark.parametrize("name", ["ddpmpp", "ddpm_blocks"])
def test_remat_keeps_parameters_and_gradients(name):
    """Rematerialised blocks (dropout on, train mode) keep every parameter's name and give the
    same loss and gradients to float rounding; every residual and attention block is a remat
    in the traced program (XLA:CPU does not turn that into fewer temporaries: docs/training.md
    #memory)."""
    attrs = {**TINY, **VARIANTS[name], "attn_resolutions": (8, 4)}
    plain, remat = NCSNpp(**attrs), NCSNpp(**attrs, remat="blocks")
    x, t = inputs(batch=8)
    variables = random_variables(plain, x, t)
    shapes = jax.eval_shape(lambda: remat.init(jax.random.key(0), x, t))
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    key = jax.random.key(3, impl="rbg")

    def grad(model):
        loss = lambda v: jnp.mean(model.apply(v, x, t, train=True, rngs={"dropout": key}) ** 2)
        return jax.value_and_grad(loss)

    (l0, g0), (l1, g1) = jax.jit(grad(plain))(variables), jax.jit(grad(remat))(variables)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    blocks = sum(1 for p in variables["params"] if p.startswith(("ResnetBlock", "AttnBlock")))
    jaxpr = str(jax.make_jaxpr(grad(remat))(variables))
    assert jaxpr.count("remat") == blocks and "remat" not in str(
        jax.make_jaxpr(grad(plain))(variables))


def test_real_init_starts_near_zero_output():
    """init_scale=0: every residual branch and the output conv start near zero (DDPM, NCSN++)."""
    model = NCSNpp(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(),
                   embedding_type="fourier")
    x, t = inputs(size=4)
    # One jitted init with an rbg key: threefry's kernels compile once per parameter shape.
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x, t)
    out = model.apply(variables, x, t)
    assert out.shape == x.shape and 0 < float(jnp.max(jnp.abs(out))) < 1e-3
    assert variables["params"]["GaussianFourierProjection_0"]["W"].shape == (8,)


# ---- validation: each bad attribute fails at init and names itself ----

BAD_ATTRIBUTES = [
    (dict(nf=16.0), TypeError, "nf"),
    (dict(nf=0), ValueError, "nf"),
    (dict(ch_mult=()), ValueError, "ch_mult"),
    (dict(ch_mult=(1, 0)), ValueError, "ch_mult"),
    (dict(ch_mult="12"), TypeError, "ch_mult"),
    (dict(ch_mult=(1, 2, 2, 2), attn_resolutions=()), ValueError, "ch_mult"),
    (dict(num_res_blocks=0), ValueError, "num_res_blocks"),
    (dict(num_res_blocks=True), TypeError, "num_res_blocks"),
    (dict(attn_resolutions=(16,)), ValueError, "attn_resolutions"),
    (dict(attn_resolutions=(4.0,)), TypeError, "attn_resolutions"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(dropout="0.1"), TypeError, "dropout"),
    (dict(fir="yes"), TypeError, "fir"),
    (dict(skip_rescale=None), TypeError, "skip_rescale"),
    (dict(fir_kernel=()), ValueError, "fir_kernel"),
    (dict(fir_kernel=(1, -1)), ValueError, "fir_kernel"),
    (dict(fir_kernel=("a",)), TypeError, "fir_kernel"),
    (dict(resblock_type="resnet"), ValueError, "resblock_type"),
    (dict(resblock_type=1), TypeError, "resblock_type"),
    (dict(progressive="input_skip"), ValueError, "progressive"),
    (dict(progressive_input="output_skip"), ValueError, "progressive_input"),
    (dict(progressive_combine="mean"), ValueError, "progressive_combine"),
    (dict(embedding_type="sinusoidal"), ValueError, "embedding_type"),
    (dict(fourier_scale=0.0), ValueError, "fourier_scale"),
    (dict(init_scale=-1.0), ValueError, "init_scale"),
    (dict(num_classes=0), ValueError, "num_classes"),
    (dict(norm_groups=0), ValueError, "norm_groups"),
    (dict(conditional="yes"), TypeError, "conditional"),
    (dict(num_classes=2.5), TypeError, "num_classes"),
]


@pytest.mark.parametrize("bad, error, name", BAD_ATTRIBUTES,
                         ids=[f"{k}={v!r}" for bad, _, _ in BAD_ATTRIBUTES
                              for k, v in list(bad.items())[:1]])
def test_bad_attribute_raises_naming_it(bad, error, name):
    model = NCSNpp(**{**TINY, **bad})
    x, t = inputs(size=12 if "ch_mult" in bad else 8)
    with pytest.raises(error, match=name) as info:
        jax.eval_shape(lambda: model.init(jax.random.key(0), x, t))
    value = bad.get(name)
    if name != "ch_mult" or "attn_resolutions" not in bad:
        assert repr(value) in str(info.value)


def test_image_size_message_says_what_is_allowed():
    model = NCSNpp(**{**TINY, "ch_mult": (1, 2, 2, 2), "attn_resolutions": ()})
    x, t = inputs(size=30)
    with pytest.raises(ValueError, match=r"30 is not divisible by 2\*\*3 = 8") as info:
        jax.eval_shape(lambda: model.init(jax.random.key(0), x, t))
    assert "ch_mult" in str(info.value) and "multiple of 8" in str(info.value)


BAD_INPUTS = [
    (dict(num_classes=3), dict(), ValueError, "labels"),
    (dict(), dict(labels=jnp.array([0, 1])), ValueError, "num_classes"),
    (dict(num_classes=3), dict(labels=jnp.array([0.0, 1.0])), TypeError, "labels"),
    (dict(num_classes=3), dict(labels=jnp.array([0, 1, 2])), ValueError, "labels"),
    (dict(), dict(t=jnp.ones((2, 1))), ValueError, "time_input"),
    (dict(), dict(x=jnp.ones((2, 8, 8))), ValueError, "x must have shape"),
    (dict(), dict(x=jnp.ones((2, 8, 8, 1), dtype=jnp.int32)), TypeError, "floating"),
]


@pytest.mark.parametrize("attrs, call, error, name", BAD_INPUTS)
def test_bad_call_arguments_raise(attrs, call, error, name):
    model = NCSNpp(**TINY, **attrs)
    x, t = inputs()
    x, t = call.get("x", x), call.get("t", t)
    with pytest.raises(error, match=name):
        jax.eval_shape(lambda: model.init(jax.random.key(0), x, t, labels=call.get("labels")))


# ---- presets ----

# The exact parameter counts of score_sde's own networks for its config files of the same names
# (configs/vp/cifar10_ddpmpp_continuous.py, configs/ve/cifar10_ncsnpp_continuous.py,
# configs/ve/cifar10_ncsnpp_deep_continuous.py at yang-song/score_sde 0acb9e0), counted with its
# models/ncsnpp.py under jax.eval_shape, imported with the stubs of
# tests/fixtures/score_sde/make_fixtures.py (`import_score_sde`, then `mutils.get_model(
# config.model.name)(config=config).init` on a (1, 32, 32, 3) batch, summing the "params"
# leaves). Ours must be the same network: equal counts, not merely near the paper's sizes.
SCORE_SDE_PARAMETERS = {
    "cifar10_ddpmpp_continuous": 61_804_419,
    "cifar10_ncsnpp_continuous": 62_758_915,  # + FIR, residual input pyramid, Fourier features
    "cifar10_ncsnpp_deep_continuous": 107_587_075,  # 8 residual blocks per resolution, not 4
}


@pytest.mark.parametrize("name", list(SCORE_SDE_PARAMETERS))
def test_cifar10_presets_have_score_sde_parameter_counts(name):
    """Our configs of the same names build (as `scorelab.build.build_model` does for CIFAR-10:
    unconditional images) networks with exactly score_sde's parameter counts."""
    config = importlib.import_module(f"configs.{name}").get_config()
    model = build_model(config, types.SimpleNamespace(is_image=True, train_labels=None))
    assert model.num_classes is None  # score_sde's `conditional` is on noise level, not class
    shapes = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))))
    n = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes["params"]))
    assert n == SCORE_SDE_PARAMETERS[name], f"{name}: {n:,} parameters"


def test_presets_name_every_attribute_and_refuse_unknown_ones():
    # num_classes comes from the data, remat from the run (model.remat)
    attributes = {f.name for f in dataclasses.fields(NCSNpp)} - {"parent", "name", "num_classes",
                                                                  "remat"}
    assert set(ncsnpp_config()) == attributes == set(ddpmpp_config())
    assert ddpmpp_config()["num_res_blocks"] == 4 and ncsnpp_config()["fir"]
    assert ncsnpp_config(num_res_blocks=8)["num_res_blocks"] == 8
    with pytest.raises(ValueError, match="nf_"):
        ncsnpp_config(nf_=64)


# ---- layers ----

def test_sinusoidal_embedding_values():
    t = jnp.array([0.0, 1.0, 7.0])
    emb = layers.sinusoidal_embedding(t, 9)
    assert emb.shape == (3, 9)
    np.testing.assert_allclose(emb[0], [0] * 4 + [1] * 4 + [0], atol=1e-7)
    # frequency 0 is 1 and the last one is 1 / max_positions
    np.testing.assert_allclose(emb[:, 0], jnp.sin(t), rtol=1e-6)
    np.testing.assert_allclose(emb[:, 7], jnp.cos(t / 10000.0), rtol=1e-6)


def test_fourier_frequencies_are_fixed_and_have_scale_std():
    proj = layers.GaussianFourierProjection(embedding_size=2048, scale=16.0)
    t = jnp.array([0.3, -1.2])
    variables = proj.init(jax.random.key(0), t)
    w = variables["params"]["W"]
    assert proj.apply(variables, t).shape == (2, 4096)
    assert abs(float(jnp.std(w)) / 16.0 - 1.0) < 0.1
    grads = jax.grad(lambda v: jnp.sum(proj.apply(v, t) ** 2))(variables)
    np.testing.assert_array_equal(grads["params"]["W"], 0.0)


def reference_upfirdn2d(x, kernel, up, down, pad):
    """Direct loops over one (h, w) channel: zero-insert, pad, true convolution, decimate."""
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x
    z = np.pad(z, [pad, pad])
    kh, kw = kernel.shape
    out = np.array([[np.sum(z[i:i + kh, j:j + kw] * kernel[::-1, ::-1])
                     for j in range(z.shape[1] - kw + 1)] for i in range(z.shape[0] - kh + 1)])
    return out[::down, ::down]


@pytest.mark.parametrize("up, down, pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2))])
def test_upfirdn2d_matches_direct_convolution(up, down, pad):
    x = np.random.default_rng(0).normal(size=(5, 6))
    kernel = np.outer([1.0, 2.0, 4.0], [1.0, 5.0])  # asymmetric: catches a missing flip
    out = layers.upfirdn2d(jnp.asarray(x)[None, :, :, None], kernel, up=up, down=down, pad=pad)
    np.testing.assert_allclose(out[0, :, :, 0], reference_upfirdn2d(x, kernel, up, down, pad),
                               rtol=1e-5, atol=1e-5)


def test_fir_resampling_of_a_constant_is_constant_away_from_borders():
    """The kernel sums to 1 (k k^T / sum); borders see StyleGAN2's zero padding."""
    x = jnp.full((1, 8, 8, 2), 3.0)
    down = layers.fir_downsample(x, (1, 3, 3, 1))
    up = layers.fir_upsample(x, (1, 3, 3, 1))
    assert down.shape == (1, 4, 4, 2) and up.shape == (1, 16, 16, 2)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 3.0, rtol=1e-6)
    np.testing.assert_allclose(up[:, 1:-1, 1:-1], 3.0, rtol=1e-6)
    np.testing.assert_allclose(down[0, 0, 0, 0], 3.0 * (7 / 8) ** 2, rtol=1e-6)


def test_fir_up_then_down_of_a_smooth_image_is_close_to_it():
    i = jnp.arange(32.0)
    image = jnp.sin(2 * jnp.pi * i / 32)[:, None] * jnp.cos(2 * jnp.pi * i / 32)[None, :]
    x = image[None, :, :, None]
    back = layers.fir_downsample(layers.fir_upsample(x))
    assert back.shape == x.shape
    np.testing.assert_allclose(back[0, 2:-2, 2:-2, 0], image[2:-2, 2:-2], atol=0.02)


@pytest.mark.parametrize("fir", [False, True])
@pytest.mark.parametrize("with_conv", [False, True])
def test_resampling_modules_shapes(fir, with_conv):
    x = jnp.ones((2, 8, 8, 4))
    out_ch = 6 if with_conv else None
    for cls, size in ((layers.Upsample, 16), (layers.Downsample, 4)):
        module = cls(out_ch=out_ch, with_conv=with_conv, fir=fir)
        out = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), x)[0])
        assert out.shape == (2, size, size, out_ch or 4)


def test_biggan_block_resamples_and_projects_the_skip():
    block = layers.ResnetBlockBigGAN(out_ch=8, down=True, fir=True)
    x, temb = jnp.ones((2, 8, 8, 4)), jnp.ones((2, 16))
    out, variables = jax.eval_shape(lambda: block.init_with_output(jax.random.key(0), x, temb))
    assert out.shape == (2, 4, 4, 8)
    assert variables["params"]["Conv_2"]["kernel"].shape == (1, 1, 4, 8)  # 1x1 shortcut
