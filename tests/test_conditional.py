"""Conditional generation from trained networks: label dropout (one network, two scores), the
noise-conditional classifier, and `train.py sample --class --guidance [--classifier]`."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_cfg, digits_classifier
from models.score import bind
from scorelab import data
from scorelab.build import build_objective, class_log_prob, logits_fn_for, null_label, \
    score_fn_for
from scorelab.commands import conditioning, sample
from scorelab.config import ConfigError
from scorelab.data import to_uint8
from scorelab.loop import build, train
from scorelab.metrics.classifier import classify, load_or_train
from scorelab.sampling import make_sample_fn
from scorelab.step import init_state, make_mesh
from sde import GaussianMixture, VPSDE, noisy_classifier_loss
from tests.test_layout import ROOT, copy_fixture

TINY_UNET = dict(nf=8, ch_mult=(1,), num_res_blocks=1, dropout=0.0)


def tiny(config, **training):
    config.model.ncsnpp.update(TINY_UNET)
    config.model.classifier.update(nf=8, ch_mult=(1,), dropout=0.0)
    config.sampling.pc.update(num_steps=25, corrector="none")
    config.training.update({**dict(batch_size=32, n_steps=4, log_every=2, eval_every=0,
                                   checkpoint_every=10**6), **training})
    config.eval.update(num_likelihood=0, num_metric_samples=0)
    config.sampling.num_samples = 8
    return config


def perturbed_state(config, run, scale=0.05):
    """A freshly initialised state with every parameter moved off its initial value (the U-Net
    starts its last layers at zero, which would hide the labels' effect)."""
    state = init_state(config, run.model, run.tx, run.dataset, jax.random.key(0))
    leaves, tree = jax.tree_util.tree_flatten(state.ema_params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return state.replace(ema_params=tree.unflatten(
        [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]))


# ---- the noise-conditional classifier's loss ----

def test_classifier_loss_is_the_cross_entropy_at_perturbed_points():
    """Rebuilt by hand from the documented recipe (t ~ U(eps, T), x_t = m x0 + std z)."""
    sde, key = VPSDE(), jax.random.key(3)
    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    labels = jnp.arange(64) % 4
    w = jax.random.normal(jax.random.key(1), (3, 4))
    logits = lambda w, x, t: x @ w + t[:, None]
    loss = noisy_classifier_loss(sde, logits, w, x0, labels, key, eps=1e-3)
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (64,), minval=1e-3, maxval=1.0)
    xt = sde.mean_coeff(t)[:, None] * x0 + sde.std(t)[:, None] * jax.random.normal(k_z, x0.shape)
    expected = -jnp.mean(jax.nn.log_softmax(logits(w, xt, t))[jnp.arange(64), labels])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_the_exact_noisy_posterior_minimises_the_classifier_loss():
    """The loss's minimiser is log p_t(y | x_t): for a mixture whose components are the
    classes, the exact responsibilities beat any tempered or shifted version of them (the same
    draws for all, 20000 points)."""
    sde = VPSDE()
    mixture = GaussianMixture.create([0.3, 0.7], [[-1.0], [1.5]], [0.5, 0.8])
    key, n = jax.random.key(0), 20000
    labels = (jax.random.uniform(jax.random.key(1), (n,)) < 0.7).astype(jnp.int32)
    x0 = mixture.means[labels] + mixture.stds[labels, None] * jax.random.normal(
        jax.random.key(2), (n, 1))
    exact = lambda p, x, t: jnp.log(mixture.responsibilities(x, sde, t))
    best = noisy_classifier_loss(sde, exact, None, x0, labels, key)
    for name, other in [
            ("sharper", lambda p, x, t: 1.3 * exact(p, x, t)),
            ("flatter", lambda p, x, t: 0.7 * exact(p, x, t)),
            ("shifted", lambda p, x, t: exact(p, x, t) + jnp.array([0.3, 0.0])),
            ("at x0 noise level", lambda p, x, t: exact(p, x, 0.5 * t))]:
        assert float(best) < float(noisy_classifier_loss(sde, other, None, x0, labels, key)), name


# ---- label dropout: one network, the conditional and the unconditional score ----

@pytest.fixture(scope="module")
def cfg_run():
    config = tiny(digits_cfg.get_config())
    run = build(config)
    return config, run, perturbed_state(config, run)


def test_label_dropout_adds_a_null_class_and_replaces_that_share_of_labels(cfg_run):
    config, run, state = cfg_run
    assert run.model.num_classes == 11 and null_label(config) == 10
    x0 = jnp.asarray(run.dataset.train[:32], jnp.float32) / 127.5 - 1
    labels = jnp.asarray(run.dataset.train_labels[:32])
    key, drop_key = jax.random.key(0), jax.random.key(1)
    loss = lambda labels, rate: build_objective(_with_dropout(config, rate), run.sde, run.model)(
        state.ema_params, x0, labels, key, dropout_key=drop_key)
    kept, nulls = loss(labels, 1e-9), loss(jnp.full(32, 10), 1e-9)
    assert float(kept) != float(nulls)  # the labels matter to this network
    assert float(loss(labels, 0.999999)) == float(nulls)  # every label dropped
    halfway = float(loss(labels, 0.5))
    assert halfway not in (float(kept), float(nulls))
    evaluation = build_objective(config, run.sde, run.model)(state.ema_params, x0, labels, key)
    assert float(evaluation) == float(kept)  # no dropout without a dropout key


def _with_dropout(config, rate):
    config = config.copy_and_resolve_references()
    config.model.label_dropout = rate
    return config


def test_classifier_free_guidance_of_one_network(cfg_run):
    """Scale 0 samples the null label's score and scale 1 the conditional one, bit for bit;
    scale 2 guides with 2 cond - uncond."""
    config, run, state = cfg_run
    mesh, key = make_mesh(), jax.random.key(5)
    draw = lambda score_of, params: make_sample_fn(
        config, run.model, run.sde, 8, run.dataset.data_shape, mesh, score_of=score_of)(
            params, key)[0]
    score = lambda labels: (lambda params, n: bind(score_fn_for(
        config, run.model, run.sde, labels=jnp.full((n,), labels)), params))
    guided = {w: conditioning(config, run, state, mesh, label="3", guidance=w, classifier="")
              for w in (0.0, 1.0, 2.0)}
    for w, reference in ((0.0, 10), (1.0, 3)):
        g = guided[w]
        np.testing.assert_array_equal(draw(g.score_of, g.params), draw(score(reference), g.params))
    score_of, params, labels_of, how, calls, _ = guided[2.0]
    assert how["method"] == "classifier-free guidance" and list(labels_of(3)) == [3, 3, 3]
    assert (guided[1.0].network_calls, calls) == (1, 2)  # the conditional score alone: one call
    x = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
    t = jnp.linspace(0.1, 0.9, 8)
    cond, uncond = score(3)(params, 8)(x, t), score(10)(params, 8)(x, t)
    np.testing.assert_allclose(score_of(params, 8)(x, t), 2 * cond - uncond, rtol=1e-5,
                               atol=1e-5)


# ---- the classifier run and classifier guidance ----

@pytest.fixture(scope="module")
def classifier_workdir(tmp_path_factory):
    """400 steps without warm-up at lr 5e-3: enough for the tiny classifier to beat chance on
    clean digits (the compiled step takes milliseconds; compiling dominates the setup)."""
    workdir = tmp_path_factory.mktemp("classifier") / "run"
    config = tiny(digits_classifier.get_config(), n_steps=400, eval_every=400, log_every=200)
    config.optim.update(warmup=0, lr=5e-3)
    train(config, workdir)
    return workdir


def test_classifier_run_trains_and_evaluates_accuracy_by_noise_level(classifier_workdir):
    """On the 256 held-out digits the evaluator uses, always answering the commonest class
    scores 0.145 and guessing 0.10 +- 0.019; the trained classifier scores about 0.43 on clean
    digits (t = 0), 0.27 at t = T / 4, and chance at t = 0.75 T, where the VP SDE keeps
    m(t) = 0.06 of the signal under noise of std 1."""
    lines = [json.loads(s) for s in (classifier_workdir / "metrics.jsonl").read_text().splitlines()]
    final = [m for m in lines if "eval/loss" in m][-1]
    assert final["step"] == 400 and final["eval/loss"] < np.log(10)  # below the uniform guess
    acc = {frac: final[f"eval/accuracy_t{frac}"] for frac in ("0", "0.25", "0.5", "0.75")}
    assert acc["0"] > 0.3, acc  # 10 standard errors above guessing, twice the commonest class
    assert acc["0"] > acc["0.75"] + 0.15, acc  # the noise level is where it is said to be
    assert not (classifier_workdir / "samples").exists()


def test_classifier_guidance_by_a_classifier_run(classifier_workdir):
    config = tiny(digits_cfg.get_config())
    config.model.update(conditional_classes=0, label_dropout=0.0)
    run = build(config)
    state = perturbed_state(config, run)
    mesh = make_mesh()
    score_of, params, labels_of, how, calls, gradients = conditioning(
        config, run, state, mesh, label="all", guidance=2.0, classifier=str(classifier_workdir))
    assert how["method"] == "classifier guidance" and list(labels_of(12)[9:]) == [9, 0, 1]
    assert (calls, gradients) == (1, 1)
    c_config = tiny(digits_classifier.get_config())
    c_run = build(c_config)
    logits_fn = logits_fn_for(c_config, c_run.model, c_run.sde)
    x = jax.random.normal(jax.random.key(0), (12, 8, 8, 1))
    t = jnp.linspace(0.1, 0.9, 12)
    # the classifier sees time as t * 999 (model.time_input = "time"), like the score network
    direct = lambda x: jax.nn.log_softmax(c_run.model.apply(
        {"params": params[1]}, x, t * 999.0))[jnp.arange(12), labels_of(12)]
    np.testing.assert_allclose(class_log_prob(logits_fn, params[1], labels_of(12))(x, t),
                               direct(x), rtol=1e-6)
    unguided = bind(score_fn_for(config, run.model, run.sde), params[0])(x, t)
    expected = unguided + 2.0 * jax.grad(lambda x: direct(x).sum())(x)
    np.testing.assert_allclose(score_of(params, 12)(x, t), expected, rtol=1e-5, atol=1e-5)

    ve = config.copy_and_resolve_references()
    ve.sde.name = "vesde"
    with pytest.raises(ConfigError, match="another sde section"):
        conditioning(ve, build(ve), state, mesh, label="1", guidance=None,
                     classifier=str(classifier_workdir))


# ---- the command line, on the v0.1 class-conditional digits run ----

@pytest.fixture(scope="module")
def conditional_workdir(tmp_path_factory):
    return copy_fixture("digits_v0_1", tmp_path_factory.mktemp("conditional"))


def test_sample_one_class_through_the_command_line(conditional_workdir):
    proc = subprocess.run([sys.executable, "train.py", "sample", f"--workdir={conditional_workdir}",
                           "--class=7", "--num=8", "--sampler=ode"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = conditional_workdir / "samples" / "sample_step_2_ode_class_7_guidance_1"
    figures = json.loads(stem.with_suffix(".json").read_text())
    assert figures["method"] == "conditional score" and figures["classes"] == "7"
    assert figures["network_calls"] == figures["nfe"] > 0  # one network call per evaluation
    samples = np.load(stem.with_suffix(".npz"))["samples"]
    assert samples.shape == (8, 8, 8, 1)
    # After 2 training steps the draws are noise to the digit classifier (it reads 1 of these 8
    # as a 7, and guessing gets 0.1), so no threshold can hold; instead the figure must be the
    # in-project classifier's share of *these* samples read as the requested class.
    digits = data.load("digits")
    _, predicted = classify(load_or_train(digits.train, digits.train_labels),
                            to_uint8(samples, centered=True))
    assert figures["class_accuracy"] == pytest.approx(np.mean(predicted == 7), abs=1e-9), \
        (figures["class_accuracy"], predicted)
    assert f"class accuracy {np.mean(predicted == 7):.3f}" in proc.stdout


@pytest.mark.parametrize("options, message", [
    (dict(label="ten"), "--class must be a class index"),
    (dict(label="10"), "--class must be in [0, 10)"),
    (dict(label="1", guidance=-1.0), "--guidance must be a finite number >= 0"),
    (dict(label="1", guidance=2.0), "trained without label dropout"),
    (dict(label="1", classifier="."), "--classifier guides an unconditional run"),
])
def test_bad_class_arguments_are_named(conditional_workdir, options, message):
    with pytest.raises(ConfigError) as info:
        sample(conditional_workdir, method="", num=4, seed=0, out="", **options)
    assert message in str(info.value)


def test_config_errors_of_conditional_training():
    for change, message in [
            (dict(label_dropout=0.1), "model.label_dropout=0.1 needs a class-conditional"),
            (dict(label_dropout=1.0, conditional_classes=10), "must be in [0, 1)"),
            (dict(name="classifier", conditional_classes=10), "not itself class-conditional")]:
        config = tiny(digits_cfg.get_config())
        config.model.update(conditional_classes=0, label_dropout=0.0)
        config.model.update(change)
        with pytest.raises(ConfigError) as info:
            build(config)
        assert message in str(info.value)
