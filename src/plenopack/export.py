"""Exports of a scene file: coloured point clouds (PLY, via plyfile) and voxel arrays (NPZ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.atomic import atomic_path, atomic_write
from plenopack.packed import PackedScene


def write_ply(scene: PackedScene, path: str | Path, threshold: float = 20.0, frame: str = "unit") -> int:
    """Binary PLY of voxel centres with density > threshold: x, y, z (float32), red, green, blue (uchar),
    density (float32). Readable by Open3D and MeshLab. Returns the number of points."""
    from plyfile import PlyData, PlyElement

    pts, rgb = scene.points(threshold, frame)
    dens = scene.grid.density[scene.grid.density > threshold]
    vertex = np.empty(len(pts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                        ("blue", "u1"), ("density", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = pts.T
    vertex["red"], vertex["green"], vertex["blue"] = (np.rint(rgb * 255).astype(np.uint8)).T
    vertex["density"] = dens
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))
    return len(pts)


def write_npz(scene: PackedScene, path: str | Path, resolution: int | None = None) -> int:
    """NPZ with coords (N, 3) int32, density (N,), sh (N, C), resolution, sh_degree and world_to_unit."""
    v = scene.voxels("sh+density", resolution)
    g = scene.grid

    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, coords=v.coords, density=v.features[:, -1], sh=v.features[:, :-1],
                            resolution=np.int32(v.resolution), sh_degree=np.int32(g.sh_degree),
                            world_to_unit=scene.world_to_unit)
    return len(v.coords)
