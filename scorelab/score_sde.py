"""`train.py import-score-sde`: a score_sde checkpoint as an ordinary run directory.

The run's config takes the SDE, network, EMA rate, optimiser and loss from the score_sde config
(`models.score_sde`), records its label conventions (`model.parameterization = "score_sde"`,
`model.score_sde`), and keeps the data section of our `--config` (default: the bundled
digits), which must give the network's image shape. The checkpoint holds the raw parameters,
the EMA parameters as the EMA, and score_sde's Adam moments and step when the file has them
(else a fresh optimiser state at that step). Then `sample`, the tasks, `score` and training
(`--config=configs/run.py:WORKDIR`) work on it like on any run.
"""
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp

from models import score_sde as ssde
from scorelab.config import ConfigError
from scorelab.loop import build, check_workdir, load_data
from scorelab.step import TrainState, with_profiles
from scorelab.workdir import checkpoint_manager, resolve_config_file

PREDICTORS = {"euler_maruyama": "euler_maruyama", "reverse_diffusion": "reverse_diffusion",
              "ancestral_sampling": "ancestral"}  # score_sde's names -> ours
CORRECTORS = {"langevin": "langevin", "ald": "ald", "none": "none"}


def import_score_sde(checkpoint, score_sde_config, root, workdir, config) -> pathlib.Path:
    """Writes `workdir` (which must hold no run) from a score_sde checkpoint; `config` is ours,
    of which the data section is kept. Everything is read and checked before anything is
    written. Returns the workdir."""
    workdir = check_workdir(workdir)
    if (workdir / "config.json").exists() or (workdir / "checkpoints").exists():
        raise ConfigError(f"--workdir={workdir} already holds a run; import into a new one "
                          f"(nothing was written)")
    theirs = ssde.read_config(score_sde_config, root)
    state_dict = ssde.read_checkpoint(checkpoint)
    config = run_config(theirs, config)
    shape = (theirs.data.image_size,) * 2 + (theirs.data.num_channels,)
    data_shape = tuple(load_data(config).data_shape)  # before the network meets the data
    if data_shape != shape:
        raise ConfigError(f"the score_sde network takes {shape} images but "
                          f"data.name={config.data.name!r} gives {data_shape}: choose its data "
                          f"with --config.data.name (and data.path, data.image_size)")
    run = build(config)
    expected = ssde.param_shapes(run.model, theirs)
    params, ema = (ssde.checkpoint_params(state_dict, expected, checkpoint, ema=e)
                   for e in (False, True))
    step = int(state_dict["step"])
    opt_state, imported = optimizer_state(state_dict, run.tx, params, checkpoint)
    key = jax.random.key_data(jax.random.split(jax.random.key(config.seed))[1])
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params, ema_params=ema,
                       opt_state=opt_state, key=key)
    # post-hoc EMA profiles start here, from the imported parameters (docs/training.md)
    state = with_profiles(config, state, lambda: jax.tree_util.tree_map(jnp.copy, params))
    resolve_config_file(workdir, config)
    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    print(f"imported {checkpoint} (step {step}) into {workdir}: "
          f"{sum(a.size for a in jax.tree_util.tree_leaves(params)):,} parameters, EMA as the "
          f"EMA, {'its Adam moments' if imported else 'a fresh Adam state (none in the file)'}")
    return workdir


def run_config(theirs, ours) -> ml_collections.ConfigDict:
    """Our run config for a score_sde config: its SDE, network, conventions and optimiser;
    `ours`'s data (with score_sde's centring, flips and dequantisation) and evaluation."""
    config = ml_collections.ConfigDict(ours.to_dict())
    m, t, o = theirs.model, theirs.training, theirs.optim
    sde = ssde.build_sde(theirs)
    config.sde.name = t.sde
    for name in ("beta_min", "beta_max", "sigma_min", "sigma_max"):
        config.sde[name] = float(getattr(sde, name, config.sde[name]))
    config.sde.N = sde.N
    config.model.name = "ncsnpp"
    config.model.ncsnpp = ml_collections.ConfigDict(ssde.network_kwargs(theirs))
    config.model.parameterization = "score_sde"
    config.model.score_sde = ml_collections.ConfigDict(ssde.conventions(theirs))
    config.model.conditional_classes, config.model.label_dropout = 0, 0.0
    config.model.ema_rate, config.model.ema_warmup = float(m.ema_rate), False
    config.data.centered = bool(theirs.data.centered)
    config.data.random_flip = bool(theirs.data.random_flip)
    config.data.dequantize = bool(theirs.data.uniform_dequantization)
    config.training.loss = "continuous" if t.continuous else "discrete"
    config.training.reduce_mean = bool(t.reduce_mean)
    config.training.likelihood_weighting = bool(t.likelihood_weighting)
    config.training.batch_size = int(t.batch_size)
    if o.optimizer != "Adam" or o.weight_decay:
        raise ConfigError(f"score_sde config: optim.optimizer={o.optimizer!r} with weight_decay="
                          f"{o.weight_decay!r}; only Adam without weight decay is mapped")
    config.optim.update(lr=float(o.lr), warmup=int(o.warmup), grad_clip=float(o.grad_clip),
                        beta1=float(o.beta1), eps=float(o.eps))
    s = theirs.sampling
    pc = config.sampling.pc
    pc.predictor = PREDICTORS.get(s.get("predictor", ""), pc.predictor)
    pc.corrector = CORRECTORS.get(s.get("corrector", ""), pc.corrector)
    pc.snr, pc.n_corrector_steps = float(s.snr), int(s.n_steps_each)
    return config


def optimizer_state(state_dict, tx, params, path):
    """(our optimiser state, whether score_sde's Adam moments were imported)."""
    fresh = tx.init(params)
    adam = state_dict["optimizer"].get("state") or {}
    if not adam.get("param_states"):
        return fresh, False
    moments = {}
    for theirs_name, ours_name in (("grad_ema", "mu"), ("grad_sq_ema", "nu")):
        tree = _moment(adam["param_states"], theirs_name)
        converted, origin = ssde.convert_params(tree, where=f"{str(path)!r} (Adam {theirs_name})")
        ssde.check_params(converted, params, origin, where=f"{str(path)!r} (Adam {theirs_name})")
        moments[ours_name] = jax.tree_util.tree_map(jnp.asarray, converted)
    count = jnp.asarray(int(adam["step"]), jnp.int32)
    return optax.tree_utils.tree_set(fresh, count=count, **moments), True


def _moment(param_states, name):
    """score_sde's per-parameter Adam states {grad_ema, grad_sq_ema} -> one tree of `name`."""
    if "grad_ema" in param_states and "grad_sq_ema" in param_states:
        return param_states[name]
    return {k: _moment(v, name) for k, v in param_states.items()}
