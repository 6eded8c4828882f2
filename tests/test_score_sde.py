"""Loading Song et al.'s score_sde checkpoints (models/score_sde.py) against outputs of its code.

The fixtures under tests/fixtures/score_sde were written by its own code
(`tests/fixtures/score_sde/make_fixtures.py`): one shrunk network per model family and SDE,
every parameter redrawn at a normal scale, EMA parameters apart from the raw ones, each saved as
the msgpack of score_sde's training State. With $SCORE_SDE_ROOT naming a score_sde checkout,
`test_parity_with_a_fresh_score_sde_checkout` re-creates them from that code and checks again.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from models.score_sde import ScoreSDEError, load_score_sde, read_checkpoint, read_config
from samplers import ode_sample

FIXTURES = Path(__file__).parent / "fixtures" / "score_sde"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
TOLERANCE = 1e-4  # relative, per sample; measured at most 8.6e-6


def case_files(folder: Path):
    config = ml_collections.ConfigDict(json.loads((folder / "config.json").read_text()))
    return next(folder.glob("checkpoint_*")), config, np.load(folder / "scores.npz")


def relative_errors(ours, theirs):
    diff = np.linalg.norm((np.asarray(ours) - theirs).reshape(len(theirs), -1), axis=1)
    return diff / np.linalg.norm(theirs.reshape(len(theirs), -1), axis=1)


def check_parity(folder: Path):
    checkpoint, config, stored = case_files(folder)
    x, t = jnp.asarray(stored["x"]), jnp.asarray(stored["t"])
    scores = {}
    for ema in (True, False):
        sde, score_fn, _, _ = load_score_sde(checkpoint, config, ema=ema)
        scores[ema] = np.asarray(score_fn(x, t))
        reference = stored["score_ema" if ema else "score_raw"]
        assert relative_errors(scores[ema], reference).max() < TOLERANCE, (folder.name, ema)
    # EMA and raw parameters give scores further apart than the tolerance: the flag selects.
    assert relative_errors(scores[True], scores[False]).min() > 100 * TOLERANCE


def test_the_fixtures_cover_every_model_family_and_sde():
    kinds = set()
    for name in CASES:
        _, config, _ = case_files(FIXTURES / name)
        kinds.add((config.model.name, config.training.sde, config.training.continuous))
    assert {("ncsnpp", s, c) for s in ("vpsde", "vesde") for c in (True, False)} <= kinds
    assert {("ncsnpp", "subvpsde", True), ("ddpm", "vpsde", False),
            ("ddpm", "vesde", False)} <= kinds


@pytest.mark.parametrize("case", CASES)
def test_scores_equal_score_sde_get_score_fn(case):
    check_parity(FIXTURES / case)


def test_checkpoints_are_score_sde_training_states():
    state = read_checkpoint(next((FIXTURES / "vp_ddpmpp_continuous").glob("checkpoint_*")))
    assert sorted(state) == ["ema_rate", "lr", "model_state", "optimizer", "params_ema", "rng",
                             "step", ]
    assert sorted(state["optimizer"]) == ["state", "target"]
    moments = state["optimizer"]["state"]["param_states"]["Conv_0"]["kernel"]
    assert sorted(moments) == ["grad_ema", "grad_sq_ema"]


@pytest.mark.skipif(not os.environ.get("SCORE_SDE_ROOT"),
                    reason="set SCORE_SDE_ROOT to a score_sde checkout to re-run its code")
def test_parity_with_a_fresh_score_sde_checkout(tmp_path):
    root = Path(os.environ["SCORE_SDE_ROOT"])
    script = FIXTURES / "make_fixtures.py"
    subprocess.run([sys.executable, str(script), f"--root={root}", f"--out={tmp_path}"],
                   check=True, cwd=tmp_path)
    for name in CASES:
        check_parity(tmp_path / name)


def test_the_score_takes_its_parameters_as_arguments_under_jit():
    checkpoint, config, stored = case_files(FIXTURES / "ve_ncsnpp_continuous")
    _, score_fn, _, variables = load_score_sde(checkpoint, config)
    x, t = jnp.asarray(stored["x"]), jnp.asarray(stored["t"])
    jaxpr = jax.make_jaxpr(lambda score, x, t: score(x, t))(score_fn, x, t)
    n_params = sum(a.size for a in jax.tree_util.tree_leaves(variables))
    assert sum(np.size(c) for c in jaxpr.consts) < n_params // 100
    assert len(jaxpr.jaxpr.invars) == len(jax.tree_util.tree_leaves(variables)) + 2


def test_our_samplers_run_on_an_imported_score():
    checkpoint, config, _ = case_files(FIXTURES / "vp_ddpm")
    sde, score_fn, _, _ = load_score_sde(checkpoint, config)
    x, nfe = ode_sample(sde, score_fn, (2, 8, 8, 3), jax.random.key(0), solver="dpmpp_2m",
                        num_steps=5)
    assert x.shape == (2, 8, 8, 3) and bool(jnp.all(jnp.isfinite(x))) and int(nfe) == 5


def test_a_config_file_is_imported_from_the_score_sde_checkout(tmp_path):
    """score_sde's config files import `configs.default_*` by that absolute name: from the
    user's checkout, not ours, and our own `configs` package is back afterwards."""
    _, config, _ = case_files(FIXTURES / "vp_ddpmpp_continuous")
    (tmp_path / "configs" / "vp").mkdir(parents=True)
    (tmp_path / "configs" / "default_cifar10_configs.py").write_text(
        "import ml_collections\n\ndef get_default_configs():\n"
        f"    return ml_collections.ConfigDict({config.to_dict()!r})\n")
    path = tmp_path / "configs" / "vp" / "tiny.py"
    path.write_text("from configs.default_cifar10_configs import get_default_configs\n\n"
                    "def get_config():\n    return get_default_configs()\n")
    assert read_config(path, root=tmp_path).model.nf == config.model.nf
    import configs.default  # ours is still the package named configs
    assert hasattr(configs.default, "get_config")
    with pytest.raises(ScoreSDEError, match="root"):
        read_config(path)


# ---- bad input: a clear error naming the file and what is wrong, before any work ----

@pytest.fixture
def vp_case():
    return case_files(FIXTURES / "vp_ddpmpp_continuous")


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, vp_case):
    _, config, _ = vp_case
    junk = tmp_path / "checkpoint_1"
    junk.write_bytes(b"not msgpack at all \xc1")
    with pytest.raises(ScoreSDEError, match="checkpoint_1.*not a score_sde checkpoint"):
        load_score_sde(junk, config)
    torch_file = tmp_path / "checkpoint_8.pth"
    torch_file.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ScoreSDEError, match="PyTorch.*only score_sde's JAX"):
        load_score_sde(torch_file, config)
    with pytest.raises(ScoreSDEError, match="is a directory"):
        load_score_sde(tmp_path, config)


# Options the loader does not map are refused by name; a checkpoint that does not fit the
# config names the first parameter that differs (score_sde's name) or is missing or left over.
BAD_CONFIGS = [
    (dict(name="ncsnv2_64"), "model.name='ncsnv2_64' is not supported"),
    (dict(nonlinearity="elu"), "model.nonlinearity='elu' is not supported"),
    (dict(progressive="cascade"), "model.progressive='cascade' is not supported"),
    (dict(scale_by_sigma=True), "scale_by_sigma"),
    (dict(nf=16), r"parameter 'AttnBlockpp_0/NIN_0/b' has shape \(16,\).*expects \(32,\)"),
    (dict(attn_resolutions=()), r"parameter 'AttnBlockpp_\d+/NIN_0/b' has no place.*20 left"),
    (dict(num_res_blocks=2), r"no parameter for 'AttnBlock_3/Dense_0/bias' of the config's"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS,
                         ids=[str(change) for change, _ in BAD_CONFIGS])
def test_a_config_that_does_not_fit_is_refused_naming_the_option_or_parameter(vp_case, change,
                                                                              message):
    checkpoint, config, _ = vp_case
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.update(change)
    with pytest.raises(ScoreSDEError, match=message):
        load_score_sde(checkpoint, config)


# ---- train.py import-score-sde: an ordinary run directory ----

def score_sde_config_file(tmp_path, config) -> Path:
    """A score_sde-style config file (get_config()) for a fixture's config."""
    path = tmp_path / "score_sde_config.py"
    path.write_text("import ml_collections\n\ndef get_config():\n"
                    f"    return ml_collections.ConfigDict({config.to_dict()!r})\n")
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The grey-scale 8x8 DDPM++ fixture imported over the bundled digits (same shape)."""
    from configs import default
    from scorelab.score_sde import import_score_sde
    tmp_path = tmp_path_factory.mktemp("imported")
    checkpoint, config, stored = case_files(FIXTURES / "vp_ddpmpp_continuous")
    workdir = import_score_sde(checkpoint, score_sde_config_file(tmp_path, config), None,
                               tmp_path / "run", default.get_config())
    return workdir, checkpoint, config, stored


def test_an_imported_run_scores_as_score_sde_does(imported):
    from scorelab.build import score_fn_for
    from scorelab.commands import restore
    from scorelab.step import make_mesh
    workdir, _, _, stored = imported
    config, run, state, step = restore(workdir, make_mesh())
    assert step == 1300 and config.model.parameterization == "score_sde"
    score_fn = jax.jit(score_fn_for(config, run.model, run.sde))  # one program, both params
    x, t = jnp.asarray(stored["x"]), jnp.asarray(stored["t"])
    for params, key in ((state.ema_params, "score_ema"), (state.params, "score_raw")):
        assert relative_errors(score_fn(params, x, t), stored[key]).max() < TOLERANCE


def test_an_imported_run_carries_score_sde_adam_moments_and_trains_on(imported, tmp_path):
    import shutil

    import optax

    from configs import run as run_config
    from scorelab.loop import train
    workdir, checkpoint, _, _ = imported
    work = tmp_path / "run"
    shutil.copytree(workdir, work)
    from scorelab.commands import restore
    from scorelab.step import make_mesh
    moments = read_checkpoint(checkpoint)["optimizer"]["state"]["param_states"]
    _, _, state, _ = restore(work, make_mesh())
    adam = optax.tree_utils.tree_get(state.opt_state, "ScaleByAdamState")
    assert int(adam.count) == 1300
    for ours, theirs in (("mu", "grad_ema"), ("nu", "grad_sq_ema")):
        np.testing.assert_array_equal(getattr(adam, ours)["Conv_0"]["kernel"],
                                      moments["Conv_0"]["kernel"][theirs])
        np.testing.assert_array_equal(  # score_sde's NIN, our Dense
            getattr(adam, ours)["AttnBlock_0"]["Dense_3"]["kernel"],
            moments["AttnBlockpp_0"]["NIN_3"]["W"][theirs])
    config = run_config.get_config(str(work))
    config.training.update(n_steps=1302, eval_every=0)
    state = train(config, work)
    assert int(state.step) == 1302
    adam = optax.tree_utils.tree_get(state.opt_state, "ScaleByAdamState")
    assert int(adam.count) == 1302 and bool(jnp.all(jnp.isfinite(adam.mu["Conv_0"]["kernel"])))


def test_import_refuses_a_workdir_with_a_run_and_data_of_another_shape(imported, tmp_path):
    from configs import default
    from scorelab.config import ConfigError
    from scorelab.score_sde import import_score_sde
    workdir, checkpoint, config, _ = imported
    before = (workdir / "config.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        import_score_sde(checkpoint, score_sde_config_file(tmp_path, config), None, workdir,
                         default.get_config())
    assert (workdir / "config.json").read_text() == before
    colour, colour_config, _ = case_files(FIXTURES / "vp_ddpmpp")
    with pytest.raises(ConfigError, match=r"takes \(8, 8, 3\) images but data.name='digits' "
                                          r"gives \(8, 8, 1\)"):
        import_score_sde(colour, score_sde_config_file(tmp_path, colour_config), None,
                         tmp_path / "new", default.get_config())
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("case, preset", [
    ("vp_ddpmpp_continuous", dict(num_res_blocks=4)),
    ("vp_ddpmpp_deep_continuous", dict(num_res_blocks=8)),
    ("ve_ncsnpp_continuous", dict(num_res_blocks=4, fir=True, progressive_input="residual",
                                  embedding_type="fourier")),
])
def test_the_papers_cifar10_configs_are_our_presets(case, preset):
    """The fixtures keep every option of score_sde's CIFAR-10 config but the widths; at the
    paper's widths the network is our DDPM++ / NCSN++ preset (configs/cifar10_*.py)."""
    from models import unet
    from models.score_sde import network_kwargs
    _, config, _ = case_files(FIXTURES / case)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.update(nf=128, ch_mult=(1, 2, 2, 2), attn_resolutions=(16,),
                        num_res_blocks=preset["num_res_blocks"])
    expected = unet.ddpmpp_config(**preset)
    assert {k: network_kwargs(config).get(k, v) for k, v in expected.items()} == expected
