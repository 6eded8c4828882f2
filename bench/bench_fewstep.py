"""Accuracy per score evaluation: every sampler against the exact answer and against peers, on
the same exact Gaussian-mixture scores.

Problems: the toy data set's 2-D mixture and a 12-D mixture of five components, under VP,
sub-VP and VE. For each, with the same latents z:
  path error  RMS of x - x_ref, x_ref a float64 Dopri8 solve of the probability-flow ODE from
              the same z (rtol = atol = 1e-10), followed like every sampler here by a Tweedie
              step at eps (k-diffusion's last step to sigma = 0 is that same step);
  sliced W2   to exact draws of the mixture, beside the noise floor of two exact sets;
  likelihood  |log p_eps(x) - exact log p_eps(x)| in nats on exact data, and its NFE.
Budgets: 5, 10, 20, 35, 50, 100, 200 NFE; each fixed-step sampler's step count is the largest
that fits the budget (its final denoising step included).

Peers, in the same process on the same score:
  Song et al.'s score_sde: its ODE sampler and likelihood are scipy's RK45 (`solve_ivp`) on the
    flattened batch with rtol = atol = 1e-5, eps = 1e-3 (sampler) and 1e-5 (likelihood); their
    update rules are written out below (`rk45_sample`, `rk45_likelihood`);
  k-diffusion's samplers (`sample_euler`, `sample_heun`, `sample_lms`, `sample_dpmpp_2m`,
    `sample_dpmpp_2m_sde`, `sample_euler_ancestral`) with its Karras grid, when torch and
    k-diffusion import (see `pip install` below; skipped otherwise, and the output says so).
    They take a denoiser D(y, sigma) of y = x / m; ours is the same Tweedie formula on the
    same score.

    pip install -e '.[bench]' && pip install --no-deps k-diffusion   # optional peers
    python -m bench.bench_fewstep             # writes bench/results/fewstep.json and .png
    python -m bench.bench_fewstep --quick     # 2-D VP only, fewer samples
    python -m bench.bench_fewstep --resume    # after a crash: only the cases not yet written
"""
import argparse
import importlib.util
import json
import pathlib
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from samplers import (FEW_STEP_SOLVERS, TIME_GRIDS, log_likelihood, log_likelihood_probes,
                      ode_sample, pc_sample, sde_sample)
from samplers.common import tweedie_denoise
from scorelab.data.toy import analytic_mixture
from scorelab.metrics import sliced_wasserstein
from sde import VESDE, VPSDE, GaussianMixture, subVPSDE

BUDGETS = (5, 10, 20, 35, 50, 100, 200)
EPS = 1e-3
ADAPTIVE = ("dopri5", "tsit5")  # ours: the default first
SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE()}


def mixture_12d() -> GaussianMixture:
    """Five 12-D components: separated means, unequal weights and spreads."""
    rng = np.random.default_rng(12)
    return GaussianMixture.create(weights=[1.0, 2.0, 3.0, 1.5, 2.5],
                                  means=1.5 * rng.standard_normal((5, 12)),
                                  stds=[0.15, 0.3, 0.5, 0.25, 0.4])


PROBLEMS = {"2-D": analytic_mixture, "12-D": mixture_12d}


# ---- Song et al.'s RK45 sampler and likelihood (score_sde/sampling.py, likelihood.py) ----

def rk45_sample(sde, score_fn, z, rtol=1e-5, atol=1e-5):
    """solve_ivp(RK45) of the probability-flow ODE from T to eps on the flattened batch."""
    shape = z.shape
    drift = jax.jit(lambda x, t: sde.reverse(score_fn, probability_flow=True).sde(
        x, jnp.full((shape[0],), t, x.dtype))[0])

    def f(t, y):
        return np.asarray(drift(jnp.asarray(y, jnp.float32).reshape(shape), t)).ravel()
    sol = integrate.solve_ivp(f, (sde.T, EPS), np.asarray(z).ravel(), rtol=rtol, atol=atol,
                              method="RK45")
    return jnp.asarray(sol.y[:, -1], jnp.float32).reshape(shape), sol.nfev


def rk45_likelihood(sde, score_fn, x, key, rtol=1e-5, atol=1e-5, eps=1e-5):
    """Their likelihood: [x, delta log p] solved from eps to T by RK45, Rademacher probe."""
    shape = x.shape
    v = jax.random.rademacher(key, shape, jnp.float32)
    drift = lambda x, t: sde.reverse(score_fn, probability_flow=True).sde(x, t)[0]

    @jax.jit
    def f_jax(x, t):
        t = jnp.full((shape[0],), t, x.dtype)
        fx, vjp = jax.vjp(lambda y: drift(y, t), x)
        return fx, jnp.sum(vjp(v)[0] * v, axis=-1)

    def f(t, y):
        fx, div = f_jax(jnp.asarray(y[:-shape[0]], jnp.float32).reshape(shape), t)
        return np.concatenate([np.asarray(fx).ravel(), np.asarray(div)])
    y0 = np.concatenate([np.asarray(x).ravel(), np.zeros(shape[0])])
    sol = integrate.solve_ivp(f, (eps, sde.T), y0, rtol=rtol, atol=atol, method="RK45")
    z = jnp.asarray(sol.y[:-shape[0], -1], jnp.float32).reshape(shape)
    return sde.prior_logp(z) + jnp.asarray(sol.y[-shape[0]:, -1], jnp.float32), sol.nfev


# ---- k-diffusion, optional ----

def load_k_diffusion():
    """k-diffusion's sampling module, or the reason it cannot run. Its package __init__
    imports training code (torchvision, kornia, wandb); the samplers need only torch,
    torchsde, torchdiffeq and one helper of its utils, `append_dims`, provided here."""
    try:
        import torch  # noqa: F401
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None:
            return None, "k-diffusion is not installed"
        path = pathlib.Path(spec.submodule_search_locations[0]) / "sampling.py"
        package = types.ModuleType("k_diffusion")
        package.__path__ = []
        utils = types.ModuleType("k_diffusion.utils")
        utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
        package.utils = utils
        sys.modules.setdefault("k_diffusion", package)
        sys.modules.setdefault("k_diffusion.utils", utils)
        mod_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module, None
    except Exception as e:  # torch missing, or an incompatible k-diffusion
        return None, f"{type(e).__name__}: {e}"


def k_diffusion_runner(kd, sde, score_fn):
    """fn(name, z, n_sigmas, key) -> (x, nfe) for k-diffusion's sampler `name`."""
    import torch

    @jax.jit
    def denoise_y(y, sigma):
        t = sde.time_of_sigma(sigma)
        m = sde.mean_coeff(t)
        return tweedie_denoise(sde, score_fn, y * m[:, None], t[0])

    calls = []

    def model(y, sigma, **_):
        calls.append(1)
        out = denoise_y(jnp.asarray(y.numpy(), jnp.float32),
                        jnp.asarray(sigma.numpy(), jnp.float32))
        return torch.from_numpy(np.array(out))

    def run(name, z, n_sigmas, seed):
        calls.clear()
        ends = sde.sigma(jnp.array([EPS, sde.T]))
        sigmas = kd.get_sigmas_karras(n_sigmas, float(ends[0]), float(ends[1]))
        m_t = float(sde.mean_coeff(jnp.array([sde.T]))[0])
        y = torch.from_numpy(np.array(z, np.float32) / m_t)
        torch.manual_seed(seed)
        sample = getattr(kd, name)
        with torch.no_grad():
            out = sample(model, y, sigmas, disable=True)
        m_eps = float(sde.mean_coeff(jnp.array([EPS]))[0])
        return jnp.asarray(out.numpy()) * m_eps, len(calls)
    return run


# ---- the table ----

def fit(budget, per_step, extra):
    """The most steps with per_step * steps + extra <= budget (None if not even one)."""
    steps = (budget - extra) // per_step
    return steps if steps >= 1 else None


def ours_ode(sde, score_fn, z):
    """name -> fn(budget) -> (x, nfe), every run ending with the Tweedie step at eps."""
    key = jax.random.key(0)

    def ode(solver, grid):
        def run(budget):
            n = fit(budget, FEW_STEP_SOLVERS[solver].evals_per_step if solver in
                    FEW_STEP_SOLVERS else {"euler": 1, "heun": 2}[solver], 1)
            return None if n is None else ode_sample(
                sde, score_fn, z.shape, key, z=z, solver=solver, num_steps=n, time_grid=grid,
                denoise=True)
        return run
    runs = {f"{s} {g}": ode(s, g) for s in FEW_STEP_SOLVERS for g in TIME_GRIDS}
    runs["euler uniform"] = ode("euler", "uniform")
    runs["heun (diffrax) logsnr"] = ode("heun", "logsnr")
    return runs


def path_rows(sde, score_fn, z, ref, kd):
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x - ref))))
    rows = []
    for name, run in ours_ode(sde, score_fn, z).items():
        for b in BUDGETS:
            out = run(b)
            if out is not None:
                rows.append(dict(sampler=name, peer=None, budget=b, nfe=int(out[1]),
                                 path_error=rms(out[0]), x=out[0]))
    for tol in (1e-2, 1e-3, 1e-4, 1e-5):
        for solver in ADAPTIVE:
            x, nfe = ode_sample(sde, score_fn, z.shape, jax.random.key(0), z=z, solver=solver,
                                rtol=tol, atol=tol, denoise=True)
            rows.append(dict(sampler=f"{solver} adaptive tol={tol:g}", peer=None, budget=None,
                             nfe=int(nfe), path_error=rms(x), x=x))
        x, nfe = rk45_sample(sde, score_fn, z, rtol=tol, atol=tol)
        x = tweedie_denoise(sde, score_fn, x, EPS)
        rows.append(dict(sampler=f"RK45 tol={tol:g}", peer="score_sde", budget=None,
                         nfe=int(nfe) + 1, path_error=rms(x), x=x))
    if kd is not None:
        run = k_diffusion_runner(kd, sde, score_fn)
        for name, per_step in (("sample_euler", 1), ("sample_heun", 2), ("sample_lms", 1),
                               ("sample_dpmpp_2m", 1)):
            for b in BUDGETS:
                # n sigmas + 0: n steps, the last (to sigma = 0) one evaluation for every one
                n = b if per_step == 1 else (b + 1) // 2
                if n < 2:
                    continue
                x, nfe = run(name, z, n, 0)
                rows.append(dict(sampler=f"{name} karras", peer="k-diffusion", budget=b,
                                 nfe=nfe, path_error=rms(x), x=x))
    return rows


def sde_rows(sde, score_fn, z, kd):
    key, rows = jax.random.key(5), []
    runs = {
        "pc ancestral logsnr": lambda b: pc_sample(sde, score_fn, z.shape, key,
                                                   predictor="ancestral", corrector=None,
                                                   num_steps=b - 1, time_grid="logsnr"),
        "sde euler_maruyama logsnr": lambda b: sde_sample(sde, score_fn, z.shape, key,
                                                          num_steps=b - 1, time_grid="logsnr"),
    }
    for name, run in runs.items():
        for b in BUDGETS:
            if b >= 3:
                x, nfe = run(b)
                rows.append(dict(sampler=name, peer=None, budget=b, nfe=int(nfe), x=x))
    if kd is not None:
        run = k_diffusion_runner(kd, sde, score_fn)
        for name in ("sample_euler_ancestral", "sample_dpmpp_2m_sde"):
            for b in BUDGETS:
                if b >= 2:
                    x, nfe = run(name, z, b, 1)
                    rows.append(dict(sampler=f"{name} karras", peer="k-diffusion", budget=b,
                                     nfe=nfe, x=x))
    return rows


def likelihood_rows(sde, score_fn, mixture, n):
    x = mixture.sample(jax.random.key(30), n)
    exact = mixture.log_prob(x, sde, jnp.full((n,), 1e-5))
    err = lambda logp: float(jnp.mean(jnp.abs(logp - exact)))
    rows = []
    for tol in (1e-3, 1e-4, 1e-5):
        for solver in ADAPTIVE:
            logp, _, nfe = log_likelihood(sde, score_fn, x, jax.random.key(31), solver=solver,
                                          rtol=tol, atol=tol)
            rows.append(dict(method=f"ours {solver} tol={tol:g}", nfe=int(nfe),
                             abs_error=err(logp)))
        logp, nfe = rk45_likelihood(sde, score_fn, x, jax.random.key(31), rtol=tol, atol=tol)
        rows.append(dict(method=f"score_sde RK45 tol={tol:g}", nfe=int(nfe), abs_error=err(logp)))
    probes, _, nfe = log_likelihood_probes(sde, score_fn, x, jax.random.key(31), num_probes=16)
    stderr = jnp.std(probes, axis=-1, ddof=1) / 4  # of the 16-probe mean, per sample
    rows.append(dict(method="ours dopri5 tol=1e-05, 16 probes", nfe=int(nfe),
                     abs_error=err(probes.mean(-1)), reported_stderr=float(jnp.mean(stderr))))
    logp, _, nfe = log_likelihood(sde, score_fn, x, jax.random.key(31), divergence="exact")
    rows.append(dict(method="ours dopri5 tol=1e-05 exact divergence", nfe=int(nfe),
                     abs_error=err(logp)))
    return rows


def reference(sde, mixture, z):
    """The float64 Dopri8 solve (rtol = atol = 1e-10) from z, then the Tweedie step at eps."""
    with jax.enable_x64(True):
        mix64 = GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in
                                  (mixture.weights, mixture.means, mixture.stds)))
        z64, f64 = jnp.asarray(z, jnp.float64), mix64.score_fn(sde)
        x, _ = ode_sample(sde, f64, z64.shape, jax.random.key(0), z=z64, solver="dopri8",
                          rtol=1e-10, atol=1e-10)
        return jnp.asarray(tweedie_denoise(sde, f64, x, EPS), jnp.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="2-D VP only, 1000 samples")
    parser.add_argument("--out", default="bench/results/fewstep.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cases already in --out (each case is written when done)")
    args = parser.parse_args()
    kd, kd_missing = load_k_diffusion()
    if kd is None:
        print(f"k-diffusion not run: {kd_missing}")
    problems = {"2-D": PROBLEMS["2-D"]} if args.quick else PROBLEMS
    sdes = {"vp": SDES["vp"]} if args.quick else SDES
    n = 1000 if args.quick else args.samples
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = dict(samples=n, k_diffusion=kd_missing or "run", cases=[])
    if args.resume and out.exists():
        saved = json.loads(out.read_text())
        if (saved["samples"], saved["k_diffusion"]) == (n, results["k_diffusion"]):
            results = saved
    done = {(c["problem"], c["sde"]) for c in results["cases"]}
    for pname, make in problems.items():
        mixture = make()
        exact = mixture.sample(jax.random.key(1), n)
        sw = lambda x: float(sliced_wasserstein(x, exact, jax.random.key(2), num_projections=512))
        floor = float(np.median([sw(mixture.sample(jax.random.key(10 + i), n))
                                 for i in range(5)]))
        for sname, sde in sdes.items():
            if (pname, sname) in done:
                continue
            start = time.perf_counter()
            score_fn = mixture.score_fn(sde)
            z = sde.prior_sampling(jax.random.key(3), (n,) + mixture.data_shape)
            ref = reference(sde, mixture, z)
            rows = path_rows(sde, score_fn, z, ref, kd) + sde_rows(sde, score_fn, z, kd)
            for r in rows:
                r["sliced_w2"] = sw(r.pop("x"))
            case = dict(problem=pname, sde=sname, floor=floor, ref_sliced_w2=sw(ref), rows=rows,
                        likelihood=likelihood_rows(sde, score_fn, mixture, min(n, 1024)))
            results["cases"].append(case)
            out.write_text(json.dumps(results, indent=1))
            print_case(case)
            print(f"  ({time.perf_counter() - start:.0f} s)")
    order = [(p, s) for p in problems for s in sdes]
    results["cases"].sort(key=lambda c: order.index((c["problem"], c["sde"])))
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def print_case(case):
    print(f"\n{case['problem']} mixture, {case['sde']}: sliced W2 floor {case['floor']:.4f} "
          f"(reference solve: {case['ref_sliced_w2']:.4f})")
    print(f"{'sampler':34s} {'peer':>11s} {'budget':>6s} {'NFE':>5s} {'path err':>9s} "
          f"{'sliced W2':>9s}")
    for r in case["rows"]:
        pe = "" if r.get("path_error") is None else f"{r['path_error']:9.2e}"
        print(f"{r['sampler']:34s} {r['peer'] or '':>11s} {r['budget'] or '':>6} "
              f"{r['nfe']:5d} {pe:>9s} {r['sliced_w2']:9.4f}")
    print(f"{'likelihood':42s} {'NFE':>5s} {'|error| nats':>12s}")
    for r in case["likelihood"]:
        spread = (f"  (probes' own standard error: {r['reported_stderr']:.2e})"
                  if "reported_stderr" in r else "")
        print(f"{r['method']:42s} {r['nfe']:5d} {r['abs_error']:12.2e}{spread}")


PLOTTED = {  # (sampler, peer) -> line style
    ("dpmpp_3m_pc logsnr", None): "-", ("dpmpp_3m logsnr", None): "-",
    ("dpmpp_2m logsnr", None): "-", ("edm_heun karras", None): "-",
    ("sample_dpmpp_2m karras", "k-diffusion"): "--", ("sample_lms karras", "k-diffusion"): "--",
    ("sample_heun karras", "k-diffusion"): "--",
}


def plot(results, path):
    """Path error against NFE, one panel per (problem, SDE): our few-step solvers, k-diffusion's
    best, and the adaptive solves (ours, Song et al.'s RK45) over their tolerances."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    cases = results["cases"]
    cols = 3
    rows_n = -(-len(cases) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.3 * cols, 3.4 * rows_n), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        for (name, peer), style in PLOTTED.items():
            pts = sorted((r["nfe"], r["path_error"]) for r in case["rows"]
                         if r["sampler"] == name and r["peer"] == peer)
            if pts:
                ax.loglog(*zip(*pts), style, marker=".",
                          label=f"{name} ({peer})" if peer else f"{name} (ours)")
        for label, prefix, mark in (("dopri5 adaptive (ours, default)", "dopri5 adaptive", "s"),
                                    ("tsit5 adaptive (ours)", "tsit5 adaptive", "D"),
                                    ("RK45 adaptive (score_sde)", "RK45", "^")):
            pts = sorted((r["nfe"], r["path_error"]) for r in case["rows"]
                         if r["sampler"].startswith(prefix))
            ax.loglog(*zip(*pts), ":", marker=mark, label=label)
        ax.set_title(f"{case['problem']} mixture, {case['sde']}", fontsize=10)
        ax.set_xlabel("NFE")
        ax.set_ylabel("path error (RMS)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[len(cases):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
