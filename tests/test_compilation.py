"""scorelab.compilation: the persistent cache's switch, and a second process compiling nothing."""
import os
import subprocess
import sys

PROGRAM = """
import os, time, jax, jax.numpy as jnp
from scorelab.compilation import enable_compilation_cache
print(enable_compilation_cache())
def f(x):  # about half a second of XLA compilation on a CPU core
    for i in range(150):
        x = jnp.tanh(x @ x.T + i) if i % 3 else jnp.sort(x, axis=i % 2)
    return x
tic = time.perf_counter()
jax.jit(f).lower(jnp.ones((int(os.environ.get("SIZE", 64)),) * 2)).compile()
print(time.perf_counter() - tic)
"""


def run(env):
    out = subprocess.run([sys.executable, "-c", PROGRAM], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300, check=True)
    path, seconds = out.stdout.split()
    return path, float(seconds)


def test_second_process_reads_the_cache_and_off_means_off(tmp_path):
    cache = tmp_path / "xla"
    path, cold = run({"SCORELAB_COMPILATION_CACHE": str(cache)})
    assert path == str(cache) and any(cache.iterdir())
    # bounded, so JAX locks the directory around each read and write (scorelab.compilation)
    assert (cache / ".lockfile").exists()
    _, warm = run({"SCORELAB_COMPILATION_CACHE": str(cache)})
    assert warm < cold / 2, (cold, warm)
    # A cache written unbounded (before 0.4) has no access times; new programs are still stored.
    for atime in cache.glob("*-atime"):
        atime.unlink()
    before = len(list(cache.glob("*-cache")))
    run({"SCORELAB_COMPILATION_CACHE": str(cache), "SIZE": "32"})
    assert len(list(cache.glob("*-cache"))) > before
    path, _ = run({"SCORELAB_COMPILATION_CACHE": "off"})
    assert path == "None"
