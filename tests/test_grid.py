import numpy as np
import pytest

from plenopack.errors import PlenopackError
from plenopack.grid import Grid, morton_order


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


def test_morton_order_interleaves_bits():
    rng = np.random.default_rng(0)
    coords = rng.integers(0, 1024, size=(500, 3))

    def code(i, j, k):  # bit b of i, j, k lands at bits 3b + 2, 3b + 1, 3b
        return sum(((int(i) >> b & 1) << (3 * b + 2)) | ((int(j) >> b & 1) << (3 * b + 1)) | ((int(k) >> b & 1) << (3 * b))
                   for b in range(10))

    expected = np.argsort([code(*c) for c in coords], kind="stable")
    np.testing.assert_array_equal(morton_order(coords), expected)
    # the eight voxels of a 2x2x2 block are consecutive
    block = np.argwhere(np.ones((4, 4, 4), bool))
    first = block[morton_order(block)][:8]
    assert first.max() == 1
