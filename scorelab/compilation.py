"""JAX's persistent compilation cache, on by default for runs and tests.

Compiled programs are stored under a user-level directory and reused by later processes with the
same program, shapes, devices and JAX version, so a second run (or a re-run test suite) skips
XLA compilation (docs/benchmarks.md#training has the default U-Net's train step cold and warm).

    SCORELAB_COMPILATION_CACHE unset     ~/.cache/score_sde_jax/xla
    SCORELAB_COMPILATION_CACHE=<dir>     that directory
    SCORELAB_COMPILATION_CACHE=off (or 0, or empty)   no persistent cache

The directory holds at most 4 GiB (the least recently read programs go first); deleting it at
any time is safe (programs are compiled again).
"""
import os
import pathlib

import jax

ENV = "SCORELAB_COMPILATION_CACHE"
DEFAULT = pathlib.Path.home() / ".cache" / "score_sde_jax" / "xla"
OFF = ("", "0", "off", "false", "no")
MAX_BYTES = 4 * 2**30


def enable_compilation_cache() -> pathlib.Path | None:
    """Points JAX at the cache directory that `SCORELAB_COMPILATION_CACHE` names (see above);
    returns it, or None when the cache is off. A directory the user gave JAX already is kept
    when the variable is unset. `scorelab.train` and `scorelab.sample` call this."""
    setting = os.environ.get(ENV)
    if setting is not None and setting.strip().lower() in OFF:
        return None
    if setting is None and jax.config.jax_compilation_cache_dir:
        return pathlib.Path(jax.config.jax_compilation_cache_dir)
    path = pathlib.Path(setting).expanduser() if setting else DEFAULT
    jax.config.update("jax_compilation_cache_dir", str(path))
    # A bounded cache is one JAX guards with a file lock around every read and write (the
    # filelock package). Unbounded, it writes entries in place and reads them unlocked, so a
    # process can load an entry that another is still writing (several runs of one config side
    # by side, the test suite's two workers; a suite worker once died without a word, which
    # this would explain). Past MAX_BYTES the least recently read entries go first.
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    _date_undated_entries(path)
    # JAX's default threshold of 1 s would leave this project's many small programs out.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path


def _date_undated_entries(path: pathlib.Path) -> None:
    """Gives every entry of an unbounded cache (ours before 0.4) the access-time file that a
    bounded one keeps beside it (`<key>-cache`, `<key>-atime`): without it JAX's size check
    fails on that entry, and every later write with it."""
    for entry in path.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            atime.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))
