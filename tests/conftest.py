import os
from pathlib import Path

import pytest

# `make test` runs two pytest workers on two cores: one BLAS thread each, or OpenBLAS's spinning threads
# oversubscribe the cores (small matrix products then take 10x longer)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

DATA = Path(__file__).resolve().parents[1] / "data"


def pytest_configure(config):
    """On a clean clone the numba cache is empty: compile every kernel once here, in the process that starts
    the xdist workers, so that the workers load the cache instead of each compiling the same kernels at the
    same time on the same two cores (the compile is most of a cold run)."""
    if hasattr(config, "workerinput") or config.getoption("collectonly", False):
        return
    from plenopack.build.warmup import compile_kernels

    compile_kernels()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def lego():
    from plenopack.scene import load_scene

    return load_scene(DATA / "scenes" / "lego")


@pytest.fixture(scope="session")
def ethiopian_head():
    from plenopack.scene import load_scene

    return load_scene(DATA / "scenes" / "ethiopianHead")


@pytest.fixture(scope="session")
def lego_small():
    """lego at 40x40 pixels: a real scene small enough to fit in a second."""
    from plenopack.scene import load_scene

    return load_scene(DATA / "scenes" / "lego", max_side=40)


@pytest.fixture(scope="session")
def tiny_fit(lego_small):
    from plenopack.fit import fit, load_preset

    return fit(lego_small, load_preset("tiny"))
