import os

# Four CPU devices for the data-parallel tests; must be set before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

# JAX 0.10's asynchronous CPU dispatch can hang when jitted programs with LAPACK calls (the
# mixture posterior's Cholesky solves) are queued without blocking; measured here, not seen
# with synchronous dispatch.
jax.config.update("jax_cpu_enable_async_dispatch", False)
import pytest  # noqa: E402

from scorelab.compilation import enable_compilation_cache  # noqa: E402
from scorelab.data.toy import analytic_mixture  # noqa: E402
from sde import VESDE, VPSDE, subVPSDE  # noqa: E402

# The suite's programs are compiled once per machine and reused by later runs (and by the
# train.py subprocesses, which inherit SCORELAB_COMPILATION_CACHE's default).
enable_compilation_cache()

SDES = {"vp": lambda: VPSDE(), "subvp": lambda: subVPSDE(), "ve": lambda: VESDE(sigma_max=50.0)}


@pytest.fixture(params=list(SDES))
def sde(request):
    return SDES[request.param]()


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def mixture():
    """The toy data set's analytic mixture: two separated, unequal 2-D components (weights,
    locations and spreads all differ)."""
    return analytic_mixture()


def times(*values):
    return jnp.asarray(values)
