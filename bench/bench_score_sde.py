"""NFE at equal end-point error on an imported score_sde model: our samplers against score_sde's.

The model: the tests' shrunk DDPM++ (VP, continuous; 8x8 grey-scale) in score_sde's format,
imported by `train.py import-score-sde` and trained on by our loop for 4000 steps on the
bundled digits (its config with lr 2e-3, warm-up 200 and EMA 0.999, so that a few minutes
give a working network), then exported back into score_sde's checkpoint layout (same
tensors, score_sde's names), so that score_sde's own code samples the same network. From the
same latents z (batch 64):
  reference    our adaptive Dopri8, rtol = atol = 1e-7, of the probability-flow ODE;
  end-point    RMS of x - x_ref at eps = 1e-3 (no final denoising step anywhere);
  score_sde    its `get_ode_sampler` (scipy RK45; its default rtol = atol = 1e-5, and 1e-3,
               1e-4) and its `get_pc_sampler` on the probability-flow ODE (reverse-diffusion
               predictor, no corrector, N steps), run from a score_sde checkout in a
               subprocess (its `models` and `configs` packages would clash with ours);
  ours         `ode_sample` adaptive (its default dopri5, and tsit5; rtol = atol = 1e-5 is the
               default) and the few-step solvers on the logsnr grid at 5 ... 100 NFE.
Reported: each sampler's NFE and error, and the fewest NFE of ours at or below each of
score_sde's errors.

    python -m bench.bench_score_sde --score_sde_root=/path/to/score_sde
        # makes runs/bench_score_sde first (about 5 minutes on 2 CPU cores); writes
        # bench/results/score_sde.json and .png. --run=RUN --checkpoint=CKPT: another
        # imported run and the score_sde checkpoint it came from (its config.json beside it).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from models.score import bind
from models.score_sde import convert_params, read_checkpoint
from samplers import ode_sample
from scorelab.build import score_fn_for
from scorelab.commands import restore
from scorelab.step import make_mesh

BATCH, EPS, SEED = 64, 1e-3, 0
ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "score_sde" / "vp_ddpmpp_continuous"
STEPS = 4000
BUDGETS = (5, 10, 20, 35, 50, 100)
FEW_STEP = ("ddim", "dpmpp_2m", "dpmpp_3m", "edm_heun")
RK45_TOLERANCES = (1e-3, 1e-4, 1e-5)
ADAPTIVE_TOLERANCES = (1e-3, 1e-4, 3e-5, 1e-5)  # ours: dopri5 and tsit5 (1e-5: the default)

# Runs in a subprocess with only score_sde on the path: its samplers on its own network.
PEER = r"""
import json, sys
from pathlib import Path
import numpy as np
fixtures, root, checkpoint, config_json, z_path, out = sys.argv[1:7]
steps = [int(n) for n in sys.argv[7].split(",")]
tolerances = [float(x) for x in sys.argv[8].split(",")]
sys.path.insert(0, fixtures)
import make_fixtures  # score_sde's code imported with its stubs, and its SDEs
mutils, sde_lib = make_fixtures.import_score_sde(Path(root))
import flax, jax, jax.numpy as jnp, ml_collections
import sampling
config = ml_collections.ConfigDict(json.load(open(config_json)))
state = flax.serialization.msgpack_restore(open(checkpoint, "rb").read())
model = mutils.get_model(config.model.name)(config=config)
@flax.struct.dataclass
class State:  # what its samplers read of a training state
    params_ema: dict
    model_state: dict
pstate = flax.jax_utils.replicate(State(
    params_ema=jax.tree_util.tree_map(jnp.asarray, state["params_ema"]), model_state={}))
z = np.load(z_path)
shape = z.shape
results = {}
for tol in tolerances:
    sampler = sampling.get_ode_sampler(make_fixtures.make_sde(sde_lib, config), model, shape,
                                       lambda x: x, denoise=False, rtol=tol, atol=tol, eps=1e-3)
    x, nfe = sampler(flax.jax_utils.replicate(jax.random.PRNGKey(0)), pstate,
                     z=jnp.asarray(z)[None])
    results[f"rk45_{tol:g}"] = (np.asarray(x)[0], int(nfe))
key = jax.random.PRNGKey(int(sys.argv[9]))
for n in steps:
    predictor = sampling.get_predictor("reverse_diffusion")
    corrector = sampling.get_corrector("none")
    sampler = sampling.get_pc_sampler(make_fixtures.make_sde(sde_lib, config, n), model, shape,
                                      predictor, corrector, lambda x: x, snr=0.16, n_steps=1,
                                      probability_flow=True,
                                      continuous=config.training.continuous, denoise=False,
                                      eps=1e-3)
    x, nfe = sampler(key[None], pstate)
    results[f"pc_ode_{n}"] = (np.asarray(x)[0], int(np.asarray(nfe).ravel()[0]))
np.savez(out, **{k: v[0] for k, v in results.items()},
         nfe=json.dumps({k: v[1] for k, v in results.items()}))
"""


def export(params, template: dict) -> dict:
    """Our parameters written back into score_sde's tree `template` (its names and shapes)."""
    _, origin = convert_params(template)
    flat = {"/".join(k.key for k in path): np.asarray(v) for path, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}
    out = jax.tree_util.tree_map(np.asarray, template)
    for ours, theirs in origin.items():
        *parents, leaf = theirs.split("/")
        node = out
        for p in parents:
            node = node[p]
        node[leaf] = flat[ours].reshape(node[leaf].shape)
    return out


def latents(sde, shape):
    """z exactly as score_sde's PC sampler draws its prior sample from PRNGKey(SEED)."""
    _, step_key = jax.random.split(jax.random.PRNGKey(SEED))
    return np.asarray(sde.prior_sampling(step_key, shape))


def run_peer(root, state, run_config_json, z, workdir: pathlib.Path):
    checkpoint = workdir / "checkpoint_exported"
    checkpoint.write_bytes(flax.serialization.msgpack_serialize(state))
    np.save(workdir / "z.npy", z)
    out = workdir / "peer.npz"
    steps = ",".join(str(n) for n in BUDGETS)
    tolerances = ",".join(f"{t:g}" for t in RK45_TOLERANCES)
    done = subprocess.run([sys.executable, "-c", PEER, str(FIXTURE.parent), str(root),
                           str(checkpoint), str(run_config_json), str(workdir / "z.npy"),
                           str(out), steps, tolerances, str(SEED)], cwd=workdir)
    if done.returncode:
        sys.exit(f"score_sde's samplers failed (exit {done.returncode}; its output is above)")
    data = np.load(out)
    nfe = json.loads(str(data["nfe"]))
    return {k: (data[k], nfe[k]) for k in nfe}


def plot(rows, path: pathlib.Path):
    """End-point error against NFE: a line per sampler family."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    families = {}
    for r in rows:
        name = r["sampler"].split(" rtol")[0].split(", N=")[0]
        if np.isfinite(r["error"]) and r["error"] < 1:
            families.setdefault(name, []).append((r["nfe"], r["error"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in families.items():
        nfe, err = zip(*sorted(points))
        peer = name.startswith("score_sde")
        ax.plot(nfe, err, "s--" if peer else "o-", label=name, color="black" if peer and
                "RK45" in name else None)
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="end-point RMS error",
           title="probability-flow ODE on an imported score_sde DDPM++ (8x8 digits)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def prepare_run(workdir: pathlib.Path) -> None:
    """Imports the fixture into `workdir` and trains it STEPS steps on the bundled digits."""
    import ml_collections

    from configs import default, run
    from scorelab.loop import train
    from scorelab.score_sde import import_score_sde
    config = ml_collections.ConfigDict(json.loads((FIXTURE / "config.json").read_text()))
    config.optim.lr, config.optim.warmup, config.model.ema_rate = 2e-3, 200, 0.999
    checkpoint = next(FIXTURE.glob("checkpoint_*"))
    import_score_sde(checkpoint, config, None, workdir, default.get_config())
    ours = run.get_config(str(workdir))
    ours.training.n_steps = int(read_checkpoint(checkpoint)["step"]) + STEPS
    ours.training.eval_every = ours.training.n_steps
    train(ours, workdir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=pathlib.Path, default=pathlib.Path("runs/bench_score_sde"),
                        help="a run written by train.py import-score-sde (made from the "
                             "fixture when it does not exist)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="the score_sde checkpoint the run was imported from (its layout; "
                             "default: the fixture's)")
    parser.add_argument("--score_sde_config", type=pathlib.Path, default=None,
                        help="its config as JSON (default: config.json beside the checkpoint)")
    parser.add_argument("--score_sde_root", type=pathlib.Path, default=None,
                        help="a score_sde checkout (without one, only our samplers run)")
    parser.add_argument("--params", choices=("ema", "raw"), default="ema",
                        help="the run's EMA or raw parameters")
    parser.add_argument("--out", default="bench/results/score_sde.json")
    args = parser.parse_args()
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if args.checkpoint is None:
        args.checkpoint = next(FIXTURE.glob("checkpoint_*"))
        if not (args.run / "config.json").exists():
            prepare_run(args.run.resolve())

    config, run, state, step = restore(args.run.resolve(), make_mesh())
    if config.model.parameterization != "score_sde":
        sys.exit(f"--run={args.run}: not an imported score_sde run")
    sde = run.sde
    params = state.ema_params if args.params == "ema" else state.params
    score = bind(score_fn_for(config, run.model, sde), params)
    shape = (BATCH, *run.dataset.data_shape)
    z = latents(sde, shape)
    key = jax.random.key(SEED)
    solve = jax.jit(lambda z, **kw: ode_sample(sde, score, shape, key, z=z, eps=EPS, **kw),
                    static_argnames=("solver", "rtol", "atol", "num_steps", "time_grid"))
    reference, ref_nfe = solve(z, solver="dopri8", rtol=1e-7, atol=1e-7)
    error = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(jnp.asarray(x) - reference))))
    rows = []
    for solver in ("dopri5", "tsit5"):  # the default first
        for tol in ADAPTIVE_TOLERANCES:
            x, nfe = solve(z, solver=solver, rtol=tol, atol=tol)
            rows.append(dict(sampler=f"ours: {solver} adaptive rtol=atol={tol:g}",
                             nfe=int(nfe), error=error(x)))
    for solver in FEW_STEP:
        for budget in BUDGETS:
            steps = budget // 2 if solver == "edm_heun" else budget
            x, nfe = solve(z, solver=solver, num_steps=max(steps, 1), time_grid="logsnr")
            rows.append(dict(sampler=f"ours: {solver} (logsnr)", nfe=int(nfe), error=error(x)))
    peer = {}
    if args.score_sde_root is None:
        print("score_sde not run: pass --score_sde_root (a checkout of its code)")
    else:
        template = read_checkpoint(args.checkpoint)
        exported = dict(template, params_ema=export(params, template["params_ema"]))
        config_json = (args.score_sde_config or args.checkpoint.parent / "config.json").resolve()
        with tempfile.TemporaryDirectory() as tmp:
            peer = run_peer(args.score_sde_root.resolve(), exported, config_json, z,
                            pathlib.Path(tmp))
        for name, (x, nfe) in peer.items():
            label = (f"score_sde: RK45 rtol=atol={name.split('_')[1]}" if name.startswith("rk45")
                     else f"score_sde: PC (probability flow, reverse diffusion), N={nfe}")
            rows.append(dict(sampler=label, nfe=nfe, error=error(x)))
    ours = [r for r in rows if r["sampler"].startswith("ours")]
    matches = []
    for r in rows:
        if r["sampler"].startswith("score_sde"):
            good = [o for o in ours if o["error"] <= r["error"]]
            best = min(good, key=lambda o: o["nfe"]) if good else None
            matches.append(dict(peer=r["sampler"], peer_nfe=r["nfe"], peer_error=r["error"],
                                ours=best and best["sampler"], ours_nfe=best and best["nfe"],
                                ours_error=best and best["error"]))
    print(f"run {args.run} at step {step}; reference: dopri8 1e-7 ({int(ref_nfe)} NFE); "
          f"end-point RMS error over {BATCH} samples")
    print(f"{'sampler':58s} {'NFE':>5s} {'error':>9s}")
    for r in rows:
        print(f"{r['sampler']:58s} {r['nfe']:5d} {r['error']:9.2e}")
    for m in matches:
        ours = (f"{m['ours']} at {m['ours_nfe']} NFE ({m['ours_error']:.2e})" if m["ours"]
                else "none of ours reaches it")
        print(f"{m['peer']} ({m['peer_nfe']} NFE, {m['peer_error']:.2e}): {ours}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, out.with_suffix(".png"))
    out.write_text(json.dumps(dict(run=str(args.run), step=step, params=args.params,
                                   batch=BATCH, eps=EPS,
                                   reference_nfe=int(ref_nfe), rows=rows, matches=matches),
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
