"""Commands on a trained run: sampling from its newest checkpoint."""
import pathlib

import jax

from scorelab.compilation import enable_compilation_cache
from scorelab import distributed
from scorelab.data import to_host
from scorelab.loop import build, check_workdir
from scorelab.pictures import save_samples
from scorelab.sampling import make_sample_fn
from scorelab.step import make_mesh, replicated
from scorelab.workdir import checkpoint_manager, read_config, restore_latest_valid


def restore(workdir: pathlib.Path, mesh, *, method: str = ""):
    """(config, Run, state, step) of the newest valid checkpoint in `workdir`, replicated over
    `mesh`, with the sampler switched to `method` when given (and checked)."""
    config = read_config(workdir)
    if method:
        config.sampling.method = method
    run = build(config)
    manager = checkpoint_manager(workdir, config.training.max_to_keep)
    state, step = restore_latest_valid(manager, replicated(run.abstract, mesh), workdir)
    if state is None:
        raise FileNotFoundError(f"--workdir={workdir} holds no checkpoint")
    return config, run, state, step


def sample(workdir: pathlib.Path, *, method: str, num: int, seed: int, out: str) -> pathlib.Path:
    """`num` samples from the EMA parameters with `method` (or the run's sampler), drawn over
    every device (of every process); process 0 writes `out`.npz and `out`.png (by default
    under `workdir`/samples). Returns that stem."""
    workdir = check_workdir(workdir)
    enable_compilation_cache()
    mesh = make_mesh()
    config, run, state, step = restore(workdir, mesh, method=method)
    sample_fn = make_sample_fn(config, run.model, run.sde, num, run.dataset.data_shape, mesh)
    x, nfe = sample_fn(state.ema_params, jax.random.key(seed))
    name = f"sample_step_{step}_{config.sampling.method}"
    target = pathlib.Path(out) if out else workdir / "samples" / name
    x = to_host(x)
    if distributed.is_writer():
        save_samples(x, target, is_image=run.dataset.is_image, centered=config.data.centered)
        print(f"{num} samples from step {step} with {config.sampling.method} (NFE {int(nfe)}): "
              f"{target}.npz, {target}.png")
    return target
