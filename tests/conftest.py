import os

# Four CPU devices for the data-parallel tests; must be set before JAX starts its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
# XLA:CPU sizes the thread pool that runs each device's share of a program by the cores it sees.
# On 2 cores, 4 devices and back-to-back sharded steps, participants of an all-reduce can wait
# behind each other in that pool until the rendezvous aborts the process after 40 s (measured:
# every time on 1 core, now and then under load on 2; docs/training.md#several-devices). Eight
# workers, two steps' worth, removed it; train.py subprocesses inherit the setting.
os.environ.setdefault("PJRT_NPROC", "8")

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


# Under pytest-xdist (-n 2, whole files per worker) the files are handed out in collection
# order; the longest go first, so that the two workers finish together rather than one running
# a long file alone at the end. Measured serial totals on 2 CPU cores, longest first.
LONGEST_FILES = ("test_train.py", "test_observe.py", "test_distributed.py", "test_score_sde.py",
                 "test_conditional.py", "test_step.py", "test_reliability.py", "test_samplers.py",
                 "test_compare.py", "test_docs.py", "test_likelihood.py", "test_fewstep.py",
                 "test_tasks.py", "test_smc.py", "test_unet.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
