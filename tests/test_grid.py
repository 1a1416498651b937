import numpy as np
import pytest

from plenopack.errors import PlenopackError
from plenopack.grid import Grid


def test_from_coords_round_trip():
    rng = np.random.default_rng(0)
    coords = np.unique(rng.integers(0, 8, size=(40, 3)), axis=0)
    rng.shuffle(coords)
    n = len(coords)
    g = Grid.from_coords(8, coords, rng.random(n), rng.random((n, 27)), sh_degree=2)
    assert np.array_equal(g.occupied_coords(), coords)
    assert g.num_voxels == n
    centres = g.voxel_centres()
    assert np.all(np.abs(centres) < 1.0)
    assert np.allclose(centres[0], -1 + (coords[0] + 0.5) * 0.25)


def test_bad_sh_shape_rejected():
    with pytest.raises(PlenopackError, match="sh must be"):
        Grid(np.zeros((2, 2, 2), np.int32), np.zeros(8, np.float32), np.zeros((8, 5), np.float32), 1)
