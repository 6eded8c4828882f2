"""The train state, one optimiser step, and the device mesh it runs on.

Data parallel over every device: the batch is sharded over a 1-D mesh, the state replicated, and
`jax.jit` inserts the gradient all-reduce. A step's randomness is `fold_in(base key, step)`, so a
resumed run draws the same noise and dropout as an uninterrupted one.
"""
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scorelab import posthoc_ema
from scorelab.data import preprocess


@struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    key: jax.Array  # the run's base key (raw uint32 data); per-step keys are fold_in(key, step)


@struct.dataclass
class ProfiledTrainState(TrainState):
    """A train state that also tracks power-function EMAs of the parameters, one per
    training.ema_profiles sigma_rel (keyed by it), for post-hoc EMA (scorelab.posthoc_ema).
    Runs without profiles keep `TrainState`, whose checkpoints older versions wrote."""
    ema_profiles: dict = None


def init_state(config, model, tx, dataset, key) -> TrainState:
    """A fresh state: the network's initial parameters (and an EMA copy), Adam's state, the
    run's base key. Built by one compiled program: eagerly, a U-Net's initialisers take
    seconds op by op. The program runs once, so on CPU it is compiled without XLA's backend
    optimisations: a quarter of the compile time for the same bits (tests/test_train.py)."""
    def init(key):
        k_init, k_run = jax.random.split(key)
        x = jnp.zeros((1,) + dataset.data_shape, jnp.float32)
        labels = ({"labels": jnp.zeros((1,), jnp.int32)} if config.model.conditional_classes
                  else {})
        params = model.init(k_init, x, jnp.zeros((1,)), **labels)["params"]
        copy = lambda: jax.tree_util.tree_map(jnp.copy, params)  # own buffers: state is donated
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=copy(),
                           opt_state=tx.init(params), key=jax.random.key_data(k_run))
        return with_profiles(config, state, copy)
    program = jax.jit(init)
    if isinstance(key, jax.core.Tracer):  # inside eval_shape or another transformation
        return program(key)
    return program.lower(key).compile(INIT_COMPILER_OPTIONS.get(jax.default_backend()))(key)


# Random initialisers are integer hashing and exact float conversions: optimising them changes
# how long XLA compiles (8 s for the suite's tiny U-Net on CPU, 2 s without), not their values.
INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def train_step(state: TrainState, batch, *, config, tx, objective, is_image):
    """One optimiser step on a (global) batch of `objective` (`scorelab.build.build_objective`);
    non-finite loss or gradients leave the state as it was (only the step advances) and are
    reported in the metrics."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    k_pre, k_loss, k_drop = jax.random.split(key, 3)
    x0 = preprocess(batch["x"], k_pre, is_image=is_image, centered=config.data.centered,
                    dequantize=config.data.dequantize, random_flip=config.data.random_flip)
    loss, grads = jax.value_and_grad(lambda p: objective(
        p, x0, batch.get("labels"), k_loss, dropout_key=k_drop,
        precision=config.training.precision))(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    rate = ema_decay(config, state.step)
    ema = jax.tree_util.tree_map(lambda e, p: rate * e + (1 - rate) * p, state.ema_params, params)
    new = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
    if isinstance(state, ProfiledTrainState):
        new = new.replace(ema_profiles=update_profiles(config, state.ema_profiles, params,
                                                       state.step + 1))
    kept = state.replace(step=state.step + 1)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, kept)
    return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def ema_decay(config, step):
    """The EMA's decay at `step`: `model.ema_rate`, or with `model.ema_warmup` the smaller
    (1 + step) / (10 + step), so that the initial parameters' weight in the average vanishes
    instead of lingering as ema_rate^step (13% after 2000 steps at 0.999: a network whose last
    layer starts at zero then predicts scores 13% too small, which the probability-flow ODE
    amplifies into diverging samples)."""
    rate = config.model.ema_rate
    if not config.model.ema_warmup:
        return rate
    step = step.astype(jnp.float32)
    return jnp.minimum(rate, (1.0 + step) / (10.0 + step))


def profile_names(config) -> list[str]:
    """The keys of `TrainState.ema_profiles`: each tracked sigma_rel, as written."""
    return [f"{s:g}" for s in config.training.ema_profiles]


def with_profiles(config, state: TrainState, copy) -> TrainState:
    """`state` with freshly started profiles (`copy()` of the parameters each) when the config
    tracks any, else unchanged."""
    names = profile_names(config)
    if not names:
        return state
    return ProfiledTrainState(**{f: getattr(state, f) for f in
                                 ("step", "params", "ema_params", "opt_state", "key")},
                              ema_profiles={name: copy() for name in names})


def update_profiles(config, profiles, params, count):
    """The power-function EMAs after update number `count` (1, 2, ...): beta = (1 - 1 /
    count)^(gamma + 1), so the first update copies the parameters."""
    count = count.astype(jnp.float32)
    out = {}
    for name, sigma_rel in zip(profile_names(config), config.training.ema_profiles):
        rate = posthoc_ema.beta(posthoc_ema.sigma_rel_to_gamma(sigma_rel), count)
        out[name] = jax.tree_util.tree_map(lambda e, p: rate * e + (1 - rate) * p,
                                           profiles[name], params)
    return out


def replicated(abstract, mesh):
    """`abstract`'s shapes and dtypes, placed whole on every device of `mesh` (what a
    checkpoint restores into)."""
    sharding = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)


def make_mesh():
    # Auto axes: the compiler propagates shardings (jax.make_mesh defaults to Explicit ones).
    return jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
