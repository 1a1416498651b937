"""Writes the version-1 `.plen` fixtures in this folder and what they decode to (expected.npz).

Run once at commit 3d44d98 (plenopack 0.1.0, before the codec registry and the hardened reader) with
    PYTHONPATH=src python tests/data/plen_v1/make_fixtures.py
so that tests/test_fileformat_v1.py checks later readers against files and values of that writer. Re-running
it with a later plenopack rewrites the fixtures with that version: don't, unless the format changes on purpose.
The grid is synthetic (seeded random voxels, density and SH; a two-layer turntable background).
"""

from pathlib import Path

import numpy as np

from plenopack.codecs import CodecConfig
from plenopack.fileformat import read_plen, write_plen
from plenopack.grid import Grid, SphereBackground

HERE = Path(__file__).resolve().parent
CODECS = {
    "float32": CodecConfig(),
    "sh8_zstd": CodecConfig("sh", 8, "zstd"),
    "shd16": CodecConfig("sh+d", 16),
    "clip6": CodecConfig("clip", 6),
    "kmeans3_zstd": CodecConfig("kmeans", 3, "zstd"),
    "vq16": CodecConfig("vq", 4, codebook=16, keep_exact=0.1, entropy="zstd"),
}


def synthetic_grid() -> Grid:
    rng = np.random.default_rng(16)
    reso, n = 12, 300
    flat = np.sort(rng.choice(reso ** 3, n, replace=False))
    coords = np.stack(np.unravel_index(flat, (reso,) * 3), axis=-1)
    density = (rng.gamma(2.0, 20.0, n) - 10.0).astype(np.float32)
    sh = (rng.normal(0.0, 0.3, (n, 12)) * np.repeat([1.0, 0.2, 0.2, 0.2], 3)).astype(np.float32)
    layers = rng.normal(0.0, 1.0, (2, 4, 8, 4)).astype(np.float32)
    background = SphereBackground(layers, np.array([3.0, 6.0], np.float32), 0.4,
                                  np.array([[0.0, 0.0, 1.0], [0.0, 0.1, 0.0]], np.float32))
    return Grid.from_coords(reso, coords, density, sh, 1, background)


def main() -> None:
    grid = synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    expected = {"links": grid.links}
    for name, codec in CODECS.items():
        path = HERE / f"{name}.plen"
        write_plen(path, grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}, "fixture": name}, codec,
                   importance=importance)
        f = read_plen(path)
        assert np.array_equal(f.grid.links, grid.links)
        expected[f"{name}/density"] = f.grid.density
        expected[f"{name}/sh"] = f.grid.sh
        expected[f"{name}/background"] = f.grid.background.layers
    np.savez_compressed(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
