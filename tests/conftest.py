from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


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
