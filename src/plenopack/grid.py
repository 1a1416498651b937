"""The sparse Plenoxels voxel grid over the unit cube [-1, 1]^3.

Layout and conventions (every stage relies on these):
- ``links``: int32 array (R, R, R) in axis order (x, y, z): ``links[i, j, k]`` is the row of voxel
  (i, j, k) in the compact arrays, or -1 where the voxel is empty. Voxel (i, j, k) has its centre at
  ``-1 + (i + 0.5) * 2 / R`` along x (likewise y, z); values live at voxel centres and are
  interpolated trilinearly between them. A point p in [-1, 1] has grid coordinate
  ``g = (p + 1) * R / 2 - 0.5``.
- ``density``: float32 (N,), raw density; the activation is ReLU. Units: optical density per unit
  length of the unit-cube frame (the cube has side 2), so thresholds such as PeRFception's
  ``sigma >= 20`` mean the same thing at every resolution.
- ``sh``: float32 (N, 3 * (deg + 1)^2), channel-major: the first (deg+1)^2 columns are the red
  channel's SH coefficients in the usual real-SH order (l = 0; l = 1: y, z, x; ...), then green,
  then blue. Colour = clamp(0.5 + sum_b sh[c, b] * Y_b(d), 0, 1) with d the unit ray direction
  (svox2's convention).
- ``background`` (optional): a `SphereBackground`, svox2's multi-sphere image (MSI) outside the cube.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plenopack.errors import PlenopackError


def sh_basis_count(sh_degree: int) -> int:
    """Number of real SH basis functions per colour channel for a degree (0..3)."""
    if not 0 <= sh_degree <= 3:
        raise PlenopackError(f"SH degree must be 0..3, got {sh_degree}")
    return (sh_degree + 1) ** 2


@dataclass
class SphereBackground:
    """Multi-sphere image background outside the unit cube (svox2 / PeRFception "3D-BKGD").

    ``layers``: float32 (L, H, W, 4), raw (r, g, b, sigma) per texel of L concentric spheres; colour
    activation sigmoid, density ReLU. ``radii``: float32 (L,), increasing, all > sqrt(3) so every sphere
    encloses the cube. Equirectangular maps: row v spans the polar angle from +z in [0, pi], column u the
    azimuth atan2(y, x) in [-pi, pi). Composited front (inner) to back after the foreground, then onto
    ``brightness`` grey where transmittance remains.

    ``turntable``: None for a background fixed in the world (cameras move around a static object, CO3D),
    or float32 (2, 3) = (unit axis, point on the axis) for turntable captures, where the object turns in
    front of a fixed camera so the room turns with the cameras: each ray is first rotated about the axis
    by minus its camera's azimuth (`to_frame`), which brings every camera back to one place in the room.
    """

    layers: np.ndarray
    radii: np.ndarray
    brightness: float = 0.5
    turntable: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.layers.ndim != 4 or self.layers.shape[3] != 4 or self.layers.dtype != np.float32:
            raise PlenopackError(f"background layers must be float32 (L, H, W, 4), got {self.layers.dtype} {self.layers.shape}")
        if self.radii.shape != (self.layers.shape[0],):
            raise PlenopackError("background radii must have one entry per layer")
        if self.turntable is not None:
            self.turntable = np.asarray(self.turntable, np.float32)
            if self.turntable.shape != (2, 3) or not np.isfinite(self.turntable).all():
                raise PlenopackError("background turntable must be a finite (2, 3) array: axis, point")
            axis_norm = float(np.linalg.norm(self.turntable[0]))
            if abs(axis_norm - 1.0) > 1e-3:
                raise PlenopackError(f"background turntable axis must be a unit vector, has length {axis_norm:.4f}")

    def to_frame(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays (B, 3) from the unit-cube frame into the background's frame (identity unless turntable).

        Turntable: rotate origin and direction about the axis by minus the azimuth of the origin (the
        camera centre), azimuth measured from the direction perpendicular to the axis nearest to +x."""
        if self.turntable is None:
            return origins, dirs
        axis, point = self.turntable.astype(np.float64)
        ref = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e1 = ref - ref.dot(axis) * axis
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        rel = origins.astype(np.float64) - point
        angle = -np.arctan2(rel @ e2, rel @ e1)[:, None]
        cos, sin = np.cos(angle), np.sin(angle)

        def rotate(v):  # Rodrigues, per row
            return v * cos + np.cross(axis, v) * sin + (v @ axis)[:, None] * axis * (1.0 - cos)

        return ((rotate(rel) + point).astype(np.float32), rotate(dirs.astype(np.float64)).astype(np.float32))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 10 bits of v (uint64)."""
    v = v & np.uint64(0x3FF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
    return (v | (v << np.uint64(2))) & np.uint64(0x09249249)


def morton_order(coords: np.ndarray) -> np.ndarray:
    """Permutation that sorts voxel coordinates (N, 3), each in 0..1023, along a Z-order (Morton) curve.

    Rows in this order keep voxels that are close in space close in memory in every direction, so a ray
    marching through the grid touches fewer cache lines than with row-major order.
    """
    c = np.asarray(coords).astype(np.uint64)
    code = (_spread_bits(c[:, 0]) << np.uint64(2)) | (_spread_bits(c[:, 1]) << np.uint64(1)) | _spread_bits(c[:, 2])
    return np.argsort(code, kind="stable")


@dataclass
class Grid:
    """Sparse voxel grid (see the module docstring for conventions)."""

    links: np.ndarray  # (R, R, R) int32, -1 = empty
    density: np.ndarray  # (N,) float32
    sh: np.ndarray  # (N, 3 * (deg+1)^2) float32
    sh_degree: int
    background: SphereBackground | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def resolution(self) -> int:
        return int(self.links.shape[0])

    @property
    def num_voxels(self) -> int:
        return int(self.density.shape[0])

    @property
    def voxel_size(self) -> float:
        """Edge length of one voxel in unit-cube units."""
        return 2.0 / self.resolution

    def validate(self) -> None:
        r = self.links.shape
        if len(r) != 3 or len(set(r)) != 1:
            raise PlenopackError(f"grid links must be a cubic (R, R, R) array, got {r}")
        if self.links.dtype != np.int32:
            raise PlenopackError(f"grid links must be int32, got {self.links.dtype}")
        n = self.density.shape[0]
        if self.density.shape != (n,) or self.density.dtype != np.float32:
            raise PlenopackError(f"density must be float32 (N,), got {self.density.dtype} {self.density.shape}")
        c = 3 * sh_basis_count(self.sh_degree)
        if self.sh.shape != (n, c) or self.sh.dtype != np.float32:
            raise PlenopackError(f"sh must be float32 ({n}, {c}), got {self.sh.dtype} {self.sh.shape}")

    def subset(self, rows: np.ndarray) -> "Grid":
        """A grid holding only the given rows (voxels), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Grid.from_coords(self.resolution, self.occupied_coords()[rows], self.density[rows], self.sh[rows],
                                self.sh_degree, self.background)

    def raster_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The row order that sorts voxels by flat index i*R*R + j*R + k (the order of `.plen` files), and the
        sorted flat indices (both int64 (N,))."""
        coords = self.occupied_coords().astype(np.int64)
        flat = np.ravel_multi_index(tuple(coords.T), self.links.shape) if len(coords) else np.zeros(0, np.int64)
        order = np.argsort(flat, kind="stable")
        return order, flat[order]

    def occupied_coords(self) -> np.ndarray:
        """(N, 3) int32 voxel coordinates (i, j, k) ordered by their row in the compact arrays."""
        idx = np.flatnonzero(self.links.reshape(-1) >= 0)
        rows = self.links.reshape(-1)[idx]
        coords = np.stack(np.unravel_index(idx, self.links.shape), axis=-1).astype(np.int32)
        out = np.empty_like(coords)
        out[rows] = coords
        return out

    def voxel_centres(self) -> np.ndarray:
        """(N, 3) float32 centres of the occupied voxels in unit-cube coordinates."""
        return (-1.0 + (self.occupied_coords() + 0.5) * self.voxel_size).astype(np.float32)

    @classmethod
    def dense(cls, resolution: int, sh_degree: int, density: float = 0.0) -> "Grid":
        """A fully occupied grid with constant density and zero SH (grey)."""
        n = resolution ** 3
        links = np.arange(n, dtype=np.int32).reshape(resolution, resolution, resolution)
        return cls(
            links=links,
            density=np.full(n, density, dtype=np.float32),
            sh=np.zeros((n, 3 * sh_basis_count(sh_degree)), dtype=np.float32),
            sh_degree=sh_degree,
        )

    @classmethod
    def from_coords(cls, resolution: int, coords: np.ndarray, density: np.ndarray, sh: np.ndarray,
                    sh_degree: int, background: SphereBackground | None = None) -> "Grid":
        """Build a grid from occupied voxel coordinates (N, 3) and their values (rows in that order)."""
        links = np.full((resolution,) * 3, -1, dtype=np.int32)
        c = np.asarray(coords, dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= resolution):
            raise PlenopackError("voxel coordinate outside the grid")
        links[c[:, 0], c[:, 1], c[:, 2]] = np.arange(c.shape[0], dtype=np.int32)
        return cls(links=links, density=np.ascontiguousarray(density, dtype=np.float32),
                   sh=np.ascontiguousarray(sh, dtype=np.float32), sh_degree=sh_degree, background=background)
