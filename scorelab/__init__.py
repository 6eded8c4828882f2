"""The application around the library: data sets, training, checkpoints, evaluation, commands.

The library (`sde`, `samplers`, `models`) knows nothing of this package or of configs. Here,
data flow one way:

    config.py   checks and the upgrade of saved run configs
    compilation.py  JAX's persistent compilation cache
    distributed.py  several processes: the launch, one writer, agreed decisions
    data/       data sets (one table of sources) and the input pipeline
    build.py    config -> SDE, network, optimiser, objective, score (or logits) function
    step.py     the train state and one sharded optimiser step
    workdir.py  config.json, orbax checkpoints, metrics.jsonl
    sampling.py config -> sampler call;  metrics/ sample metrics;  pictures.py PNG grids
    evaluate.py held-out loss, samples, metrics, bits/dim
    loop.py     train(config, workdir): build, restore, step, log, checkpoint, evaluate
    commands.py commands on a trained run (sampling, guided by class)
"""
from scorelab.commands import sample
from scorelab.loop import train

__all__ = ["train", "sample"]
