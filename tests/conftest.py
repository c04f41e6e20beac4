"""Shared fixtures: a local Ray for the Tune tests, and torch on one thread for tiny models.

Tiny models and byte-level data come from :mod:`hf_lrlaw.testing` (a module of the package, so
that Ray workers, ``torchrun`` scripts and benchmarks import it like any other).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

# Every Ray the suite starts (fixtures, Tuners, subprocesses that inherit this environment) stays
# on 127.0.0.1 and needs no token. Ray reads the first at import time: set before any import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="module")
def local_ray(request):
    """A local Ray with 2 CPUs (on loopback, token auth off: see above), its files in a short /tmp folder
    (Ray's socket paths are limited); shut down after the module. The test module's own
    functions (model and data factories) are shipped to the workers by value."""
    import ray

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[request.module.__name__])
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread: the runs are tiny, and with two threads on two cores shared with
    other work, OpenMP's waiting makes every step many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
