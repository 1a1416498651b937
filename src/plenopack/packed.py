"""Opening a scene file for use: `plenopack.open(path)` -> `PackedScene`.

A PackedScene reads and validates the header at once, refuses a file whose decoding would need more memory
than its budget (``memory_budget``: bytes or "8G"; default PLENOPACK_MEMORY_BUDGET or 4 GiB; see
docs/format.md, "Memory"), and decodes the arrays on first use (then keeps the decoded grid).
Coordinates: renders take cameras in the unit-cube frame (OpenCV camera-to-world); ``frame="world"`` maps
exported points back to the capture's world frame with the stored ``world_to_unit`` similarity.
Colours from SH are evaluated at a view direction (default: the DC term only, i.e. view-independent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plenopack.cameras import orbit_poses
from plenopack.errors import PlenopackError
from plenopack.fileformat import check_memory, read_plen, read_plen_header, resolve_memory_budget
from plenopack.grid import Grid
from plenopack.kernels.device import SH_C0, sh_basis
from plenopack.render import occupancy_for, orbit_intrinsics, recorded_render_options, render_view


@dataclass
class Render:
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) opacity-weighted distance (unit-cube units)
    acc: np.ndarray  # (H, W) accumulated opacity (foreground mask)


@dataclass
class Voxels:
    coords: np.ndarray  # (N, 3) int32 voxel indices (i, j, k) at ``resolution``
    features: np.ndarray  # (N, C) float32
    resolution: int
    names: list[str]  # feature column names


class PackedScene:
    """A lazily decoded `.plen` scene (see the module docstring)."""

    def __init__(self, path: str | Path, memory_budget: int | str | None = None):
        self.path = Path(path)
        self.memory_budget = resolve_memory_budget(memory_budget)
        self.header = read_plen_header(self.path, self.memory_budget)
        check_memory(self.header, self.memory_budget, self.path)
        self._grid: Grid | None = None
        self._occupancy = None

    # ---------------------------------------------------------------- facts
    @property
    def metadata(self) -> dict:
        return self.header["metadata"]

    @property
    def resolution(self) -> int:
        return int(self.header["resolution"])

    @property
    def num_voxels(self) -> int:
        return int(self.header["num_voxels"])

    @property
    def nbytes(self) -> int:
        return int(self.header["nbytes"])

    @property
    def world_to_unit(self) -> np.ndarray:
        return np.asarray(self.metadata.get("scene", {}).get("world_to_unit", np.eye(4)), np.float64)

    @property
    def background(self) -> tuple[float, float, float]:
        return tuple(self.metadata.get("eval_background") or (1.0, 1.0, 1.0))

    @property
    def grid(self) -> Grid:
        if self._grid is None:
            self._grid = read_plen(self.path, self.memory_budget).grid
        return self._grid

    # ---------------------------------------------------------------- rendering
    def render(self, c2w: np.ndarray, intrinsics, height: int, width: int, background=None) -> Render:
        """Render a pinhole view; c2w is OpenCV camera-to-world in the unit-cube frame. Rendered as ``eval``
        scores the file: at the fit's render step, rays starting at its near clip (`recorded_render_options`).

        ``background``: None = the scene's background model (MSI) if it has one, else its evaluation colour;
        False = the foreground object alone, on the evaluation colour (``acc`` is its mask); or an RGB colour.
        """
        if self._occupancy is None:
            self._occupancy = occupancy_for(self.grid)
        colour = self.background if background is None or background is False else background
        rgb, depth, acc = render_view(self.grid, np.asarray(c2w, np.float64), intrinsics, height, width, colour,
                                      occupancy=self._occupancy, use_background_model=background is None,
                                      **recorded_render_options(self.metadata))
        return Render(rgb, depth, acc)

    def render_orbit(self, n: int, radius: float = 3.2, elevation: float = 25.0, size: int = 256,
                     fov_deg: float = 40.0, background=None) -> list[Render]:
        k = orbit_intrinsics(size, fov_deg)
        return [self.render(pose, k, size, size, background) for pose in orbit_poses(n, radius, elevation)]

    # ---------------------------------------------------------------- 3D export
    def voxels(self, features: str = "sh+density", resolution: int | None = None,
               direction: np.ndarray | None = None) -> Voxels:
        """Occupied voxels with features "sh", "density", "sh+density", "rgb" (at ``direction``, or DC), or "none".

        ``resolution``: a coarser power-of-two fraction of the grid (PeRFception keeps even coordinates to go
        from 256 to 128): voxels whose coordinates are multiples of the ratio are kept, divided by it.
        """
        g = self.grid
        coords = g.occupied_coords()
        rows = np.arange(g.num_voxels)
        res = g.resolution
        if resolution is not None and resolution != res:
            ratio = res // resolution
            if ratio < 1 or res % resolution:
                raise PlenopackError(f"resolution {resolution} must divide the grid resolution {res}", self.path)
            keep = np.all(coords % ratio == 0, axis=1)
            coords, rows, res = coords[keep] // ratio, rows[keep], resolution
        cols, names = [], []
        if features in ("sh", "sh+density"):
            cols.append(g.sh[rows])
            names += [f"sh{i}" for i in range(g.sh.shape[1])]
        if features in ("density", "sh+density"):
            cols.append(g.density[rows, None])
            names.append("density")
        if features == "rgb":
            cols.append(self.colours(rows, direction))
            names += ["r", "g", "b"]
        if features not in ("sh", "density", "sh+density", "rgb", "none"):
            raise PlenopackError(f"unknown voxel features {features!r} (sh, density, sh+density, rgb, none)")
        feats = np.concatenate(cols, axis=1).astype(np.float32) if cols else np.zeros((len(rows), 0), np.float32)
        return Voxels(coords.astype(np.int32), feats, res, names)

    def colours(self, rows: np.ndarray | None = None, direction: np.ndarray | None = None) -> np.ndarray:
        """RGB in [0, 1] of voxels (N, 3): the SH at a unit ``direction``, or the DC term alone."""
        g = self.grid
        rows = np.arange(g.num_voxels) if rows is None else rows
        b = (g.sh_degree + 1) ** 2
        sh = g.sh[rows].reshape(len(rows), 3, b)
        if direction is None:
            raw = 0.5 + SH_C0 * sh[:, :, 0]
        else:
            basis = sh_basis(g.sh_degree, np.asarray(direction, np.float64).reshape(1, 3))[0]
            raw = 0.5 + sh @ basis
        return np.clip(raw, 0.0, 1.0).astype(np.float32)

    def points(self, threshold: float = 20.0, frame: str = "unit") -> tuple[np.ndarray, np.ndarray]:
        """Coloured point cloud: centres (M, 3) float32 of voxels with density > threshold, and RGB (M, 3).

        ``frame``: "unit" (the grid's cube) or "world" (the capture's frame, via world_to_unit).
        """
        g = self.grid
        rows = np.flatnonzero(g.density > threshold)
        centres = g.voxel_centres()[rows].astype(np.float64)
        if frame == "world":
            m = self.world_to_unit
            centres = (centres - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
        elif frame != "unit":
            raise PlenopackError(f"unknown frame {frame!r} (unit or world)")
        return centres.astype(np.float32), self.colours(rows)
