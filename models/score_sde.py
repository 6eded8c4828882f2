"""Checkpoints of Song et al.'s `score_sde` (JAX) as our SDE, U-Net and score function.

`score_sde` writes `checkpoint_<n>` files with `flax.training.checkpoints`: the msgpack of its
training `State` (`step`, `optimizer` = {`target`: parameters, `state`: Adam's}, `lr`,
`model_state`, `ema_rate`, `params_ema`, `rng`). Its networks are ours: model "ncsnpp"
(NCSN++ and DDPM++, every option of its configs) is `NCSNpp` with the same attributes, and model
"ddpm" is `NCSNpp` with DDPM residual blocks, no skip rescaling and GroupNorm(32). Parameters
are the same tensors under other module names (`convert_params`); the score follows the label
conventions of score_sde's `get_score_fn` (`models.score.make_score_sde_fn`).

    sde, score_fn, model, variables = load_score_sde("checkpoint_26", "configs/vp/cifar10_"
        "ddpmpp_continuous.py", root="path/to/score_sde")
"""
import importlib.util
import sys
import types
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from models.score import make_score_sde_fn
from models.unet import NCSNpp
from sde import VESDE, VPSDE, subVPSDE

MODELS = ("ncsnpp", "ddpm")
SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}
# score_sde module kinds -> ours; NIN (a dense layer with params W, b) and StyleGAN2's Conv2d
# (params weight, bias) are renamed by `_our_name`.
_KINDS = {"ResnetBlockBigGANpp": "ResnetBlockBigGAN", "ResnetBlockDDPMpp": "ResnetBlockDDPM",
          "ResnetBlockDDPM": "ResnetBlockDDPM", "AttnBlockpp": "AttnBlock",
          "AttnBlock": "AttnBlock", **{k: k for k in (
              "Dense", "Conv", "GroupNorm", "GaussianFourierProjection", "Combine", "Upsample",
              "Downsample")}}
_LEAF_NAMES = {"NIN": {"kernel": "W", "bias": "b"}, "Conv2d": {"kernel": "weight"}}  # ours: theirs
_STATE_KEYS = ("optimizer", "params_ema")


class ScoreSDEError(ValueError):
    """A checkpoint or config that this module cannot read; the message says which and why."""


def load_score_sde(checkpoint, config, *, root=None, ema: bool = True):
    """`(sde, score_fn, model, variables)` of a score_sde checkpoint.

    `config` is the run's `ConfigDict` (what its `get_config()` returns) or the path of its
    score_sde config file, whose `configs.*` imports come from `root` (the user's score_sde
    checkout). `sde` is our VP / sub-VP / VE SDE with the config's parameters and N; `model` our
    `NCSNpp`, `variables` its variables: the EMA parameters (`ema=True`) or the optimizer's
    target. `score_fn(x, t)` is score_sde's `get_score_fn(sde, model, params, states,
    train=False, continuous=config.training.continuous)` with x in the model's data space; it
    is a `jax.tree_util.Partial` whose leaves are the parameters, so a function jitted with it
    as an argument takes them as arguments, not constants.
    """
    config = read_config(config, root)
    sde, model = build_sde(config), build_network(config)
    state = read_checkpoint(checkpoint)
    variables = {"params": checkpoint_params(state, param_shapes(model, config), checkpoint,
                                             ema=ema)}
    score = score_fn_of(config, sde, model)
    return sde, jax.tree_util.Partial(score, variables["params"]), model, variables


# ---- configs ----

def read_config(config, root=None) -> ml_collections.ConfigDict:
    """The score_sde `ConfigDict`: `config` itself, or `get_config()` of the config file at that
    path, with `configs` meaning root/configs (not our own package) while it is imported."""
    if isinstance(config, ml_collections.ConfigDict):
        check_config(config)
        return config
    path = Path(config)
    if not path.is_file():
        raise ScoreSDEError(f"score_sde config: no file {str(path)!r}")
    if root is not None and not (Path(root) / "configs").is_dir():
        raise ScoreSDEError(f"score_sde root {str(root)!r} has no configs/ folder: pass the "
                            f"root of a score_sde checkout")
    # score_sde's configs/ has no __init__.py: a namespace package that our own (regular)
    # `configs` would shadow on sys.path, so it is put in place as the module itself.
    ours = {k: sys.modules.pop(k) for k in list(sys.modules)
            if k == "configs" or k.startswith("configs.")}
    if root is not None:
        package = types.ModuleType("configs")
        package.__path__ = [str(Path(root).resolve() / "configs")]
        sys.modules["configs"] = package
    try:
        spec = importlib.util.spec_from_file_location("_score_sde_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
    except ImportError as e:
        hint = "" if root else (" (pass the score_sde checkout its imports need: root=..., "
                                "or --score_sde_root with train.py)")
        raise ScoreSDEError(f"score_sde config {str(path)!r} does not import: {e}{hint}") from e
    finally:
        for k in [k for k in sys.modules if k == "configs" or k.startswith("configs.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    check_config(config)
    return config


def _refuse(name: str, value, allowed) -> None:
    raise ScoreSDEError(f"score_sde config: {name}={value!r} is not supported; supported: "
                        f"{list(allowed)}")


def check_config(config) -> None:
    """Refuses, by name, every option of a score_sde config that this module does not map."""
    m = config.model
    if m.name not in MODELS:
        _refuse("model.name", m.name, MODELS)
    if config.training.sde not in SDES:
        _refuse("training.sde", config.training.sde, SDES)
    for name, allowed in (("nonlinearity", ("swish",)), ("normalization", ("GroupNorm",)),
                          ("attention_type", ("ddpm",)), ("conv_size", (3,))):
        if name in m and m[name] not in allowed:
            _refuse(f"model.{name}", m[name], allowed)
    if m.name == "ncsnpp":
        for name, allowed in (("resblock_type", ("biggan", "ddpm")),
                              ("progressive", ("none", "output_skip", "residual")),
                              ("progressive_input", ("none", "input_skip", "residual")),
                              ("progressive_combine", ("sum", "cat")),
                              ("embedding_type", ("fourier", "positional"))):
            if m[name].lower() not in allowed:
                _refuse(f"model.{name}", m[name], allowed)
    try:  # the label conventions' own checks (VE with scale_by_sigma, Fourier needs continuous)
        make_score_sde_fn(None, build_sde(config), **conventions(config))
    except ValueError as e:
        raise ScoreSDEError(f"score_sde config: {e}") from None


def conventions(config) -> dict:
    """The keyword arguments of `make_score_sde_fn` for a score_sde config."""
    fourier = config.model.name == "ncsnpp" and config.model.embedding_type.lower() == "fourier"
    return dict(continuous=bool(config.training.continuous), centered=bool(config.data.centered),
                scale_by_sigma=bool(config.model.scale_by_sigma), fourier=fourier)


def build_sde(config):
    """Our SDE with the config's `model.beta_*` / `model.sigma_*` and N = `model.num_scales`."""
    m, cls = config.model, SDES[config.training.sde]
    if cls is VESDE:
        return VESDE(sigma_min=float(m.sigma_min), sigma_max=float(m.sigma_max), N=m.num_scales)
    return cls(beta_min=float(m.beta_min), beta_max=float(m.beta_max), N=m.num_scales)


def network_kwargs(config) -> dict:
    """Our `NCSNpp` attributes for the config's network."""
    m = config.model
    common = dict(nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                  attn_resolutions=tuple(m.attn_resolutions), dropout=float(m.dropout),
                  resamp_with_conv=bool(m.resamp_with_conv), conditional=bool(m.conditional))
    if m.name == "ddpm":
        return dict(common, resblock_type="ddpm", skip_rescale=False, fir=False,
                    progressive="none", progressive_input="none", embedding_type="positional",
                    init_scale=0.0, norm_groups=32)
    return dict(common, fir=bool(m.fir), fir_kernel=tuple(float(k) for k in m.fir_kernel),
                skip_rescale=bool(m.skip_rescale), resblock_type=m.resblock_type.lower(),
                progressive=m.progressive.lower(), progressive_input=m.progressive_input.lower(),
                progressive_combine=m.progressive_combine.lower(),
                embedding_type=m.embedding_type.lower(),
                fourier_scale=float(m.get("fourier_scale", 16.0)),
                init_scale=float(m.init_scale))


def build_network(config) -> NCSNpp:
    return NCSNpp(**network_kwargs(config))


def score_fn_of(config, sde, model):
    """`score_fn(params, x, t)` of the network, with the config's label conventions."""
    apply = lambda params, x, c: model.apply({"params": params}, x, c, train=False)
    return make_score_sde_fn(apply, sde, **conventions(config))


# ---- checkpoints ----

def read_checkpoint(path) -> dict:
    """The state dict of a score_sde `checkpoint_<n>` file (flax msgpack)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("checkpoint_*"))
        raise ScoreSDEError(f"score_sde checkpoint {str(path)!r} is a directory; pass one of its "
                            f"checkpoint_<n> files{': ' + ', '.join(found) if found else ''}")
    if not path.is_file():
        raise ScoreSDEError(f"score_sde checkpoint: no file {str(path)!r}")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        raise ScoreSDEError(f"{str(path)!r} is a PyTorch checkpoint (score_sde_pytorch's .pth); "
                            f"only score_sde's JAX checkpoints (flax msgpack) are read")
    try:
        state = flax.serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises its own types for every kind of malformed input
        raise ScoreSDEError(f"{str(path)!r} is not a score_sde checkpoint: not a flax msgpack "
                            f"file ({type(e).__name__}: {e})") from None
    missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing or "target" not in state["optimizer"]:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ScoreSDEError(f"{str(path)!r} is not a score_sde checkpoint: its msgpack has no "
                            f"{missing or ['optimizer.target']} (found {keys})")
    return state


def param_shapes(model: NCSNpp, config) -> dict:
    """The shapes of `model`'s parameters for the config's images (traced, no FLOPs)."""
    size = config.data.image_size
    x = jnp.zeros((1, size, size, config.data.num_channels))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, jnp.ones((1,))))["params"]


def checkpoint_params(state: dict, expected: dict, path, *, ema: bool = True) -> dict:
    """Our parameter tree from a score_sde state, checked tensor by tensor against `expected`
    (`param_shapes`)."""
    theirs = state["params_ema"] if ema else state["optimizer"]["target"]
    where = f"{str(path)!r} ({'params_ema' if ema else 'optimizer.target'})"
    ours, origin = convert_params(theirs, where=where)
    check_params(ours, expected, origin, where=where)
    return jax.tree_util.tree_map(jnp.asarray, ours)


def convert_params(theirs: dict, *, where: str = "checkpoint") -> tuple[dict, dict]:
    """score_sde's parameter tree -> (ours, {our path: their path}); the same tensors."""
    origin = {}

    def walk(tree, kind, our_prefix, their_prefix):
        out = {}
        for name, sub in tree.items():
            if not isinstance(sub, dict):  # a tensor, under our leaf name
                out[name] = np.asarray(sub)
                their_name = _LEAF_NAMES.get(kind, {}).get(name, name)
                origin[f"{our_prefix}{name}"] = f"{their_prefix}{their_name}"
                continue
            their_path = f"{their_prefix}{name}"
            sub_kind, new = _our_name(_KINDS.get(kind, kind), name, their_path, where)
            out[new] = walk(_our_leaves(sub_kind, new, sub), sub_kind, f"{our_prefix}{new}/",
                            f"{their_path}/")
        return out

    return walk(theirs, None, "", ""), origin


def _our_name(parent_kind, name: str, their_path: str, where: str) -> tuple[str, str]:
    kind, _, index = name.rpartition("_")
    if kind == "NIN" and parent_kind == "AttnBlock":  # q, k, v and the output projection
        return kind, f"Dense_{index}"
    if kind == "NIN" and parent_kind == "ResnetBlockDDPM":  # the 1x1 shortcut
        return kind, "Conv_2"
    if kind == "Conv2d" and parent_kind == "Upsample":  # StyleGAN2's fused upsampling conv
        return kind, f"FIRUpsampleConv_{index}"
    if kind == "Conv2d" and parent_kind == "Downsample":  # the conv after the FIR filter
        return kind, f"Conv_{index}"
    if kind not in _KINDS or not index.isdigit():
        raise ScoreSDEError(f"{where}: parameter {their_path!r} belongs to a module this loader "
                            f"does not know ({kind or name!r})")
    return kind, f"{_KINDS[kind]}_{index}"


def _our_leaves(kind: str, our_name: str, leaves: dict) -> dict:
    if kind not in _LEAF_NAMES:
        return leaves
    ours = {mine: leaves[theirs] for mine, theirs in
            {"bias": "bias", **_LEAF_NAMES[kind]}.items() if theirs in leaves}
    if kind == "NIN" and our_name.startswith("Conv"):  # a dense layer as a 1x1 conv
        ours["kernel"] = np.asarray(ours["kernel"])[None, None]
    return ours


def check_params(ours: dict, expected: dict, origin: dict, *, where: str) -> None:
    """Every tensor of `expected` present in `ours` with its shape, and nothing left over."""
    have = {"/".join(k.key for k in path): v for path, v in
            jax.tree_util.tree_flatten_with_path(ours)[0]}
    want = {"/".join(k.key for k in path): v for path, v in
            jax.tree_util.tree_flatten_with_path(expected)[0]}
    for path in sorted(want):
        if path not in have:
            raise ScoreSDEError(f"{where}: no parameter for {path!r} of the config's network; "
                                f"the checkpoint and the config disagree")
        if tuple(have[path].shape) != tuple(want[path].shape):
            raise ScoreSDEError(f"{where}: parameter {origin[path]!r} has shape "
                                f"{tuple(have[path].shape)}, the config's network expects "
                                f"{tuple(want[path].shape)}; the checkpoint and the config "
                                f"disagree")
    extra = sorted(set(have) - set(want))
    if extra:
        raise ScoreSDEError(f"{where}: parameter {origin[extra[0]]!r} has no place in the "
                            f"config's network ({len(extra)} left over)")
