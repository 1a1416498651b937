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
