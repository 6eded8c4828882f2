"""Several processes benchmark: train.py steps per second as 1 process x 4 CPU devices and as
2 processes x 2 CPU devices (gloo collectives over localhost), same global batch and config.

On one machine both layouts share its cores, so the difference is mostly the cost of running
two XLA runtimes on them and of gloo's cross-process all-reduce, not what a cluster would show.
Each figure is the median of the logged steps-per-second intervals after the first (which
includes compilation).

    python -m bench.bench_hosts          # from the repository root; writes
                                         # bench/results/hosts.json
"""
import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {  # name: (config file, overrides)
    "toy MLP (batch 512)": ("configs/toy_vp.py", ["--config.training.batch_size=512"]),
    "default DDPM++ digits (batch 128)": ("configs/default.py", []),
}
CHEAP_EVAL = ["--config.sampling.num_samples=16", "--config.sampling.pc.num_steps=25",
              "--config.eval.num_likelihood=4", "--config.eval.num_metric_samples=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(config_file, overrides, n_steps, processes) -> float:
    """Median steps per second of one train.py run with `processes` x (4 / processes) devices."""
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count="
               f"{4 // processes}"}
        port, procs = free_port(), []
        for i in range(processes):
            launch = ([f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}",
                       f"--process_id={i}"] if processes > 1 else [])
            procs.append(subprocess.Popen(
                [sys.executable, "train.py", f"--config={config_file}", f"--workdir={workdir}",
                 f"--config.training.n_steps={n_steps}", "--config.training.log_every=10",
                 f"--config.training.checkpoint_every={n_steps}", *CHEAP_EVAL, *overrides,
                 *launch], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True))
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                raise RuntimeError(err[-3000:])
        lines = [json.loads(ln) for ln in (pathlib.Path(workdir) / "metrics.jsonl").open()]
        rates = [ln["steps_per_sec"] for ln in lines if "steps_per_sec" in ln][1:]
        return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="bench/results/hosts.json")
    args = parser.parse_args()
    rows = []
    for name, (config_file, overrides) in CONFIGS.items():
        one, two = (run(config_file, overrides, args.steps, n) for n in (1, 2))
        rows.append(dict(config=name, one_by_four_steps_per_s=one, two_by_two_steps_per_s=two,
                         ratio=two / one))
    print(f"{'config':36s} {'1 x 4 steps/s':>13s} {'2 x 2 steps/s':>13s} {'2x2 / 1x4':>9s}")
    for r in rows:
        print(f"{r['config']:36s} {r['one_by_four_steps_per_s']:13.2f} "
              f"{r['two_by_two_steps_per_s']:13.2f} {r['ratio']:9.2f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(cpu_cores=os.cpu_count(), steps=args.steps, rows=rows),
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
