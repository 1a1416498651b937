"""Coarse-to-fine resampling with progressive scaling (PeRFception's pruning between resolutions).

At each new resolution the grid is resampled trilinearly at the new voxel centres, keeping the voxels that
"sigma" (density > T) or "weight" (maximum ray weight over the training pixels >= T / R_new) pruning keeps,
dilated ``dilate`` times (3x3x3). Rows are kept in Morton order for memory locality in the kernels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from plenopack import kernels
from plenopack.errors import PlenopackError
from plenopack.fit.config import FitConfig
from plenopack.fit.rays import TrainingRays
from plenopack.grid import Grid, morton_order, sh_basis_count


def voxel_centres(coords: np.ndarray, reso: int) -> np.ndarray:
    """(N, 3) float32 unit-cube centres of voxel coordinates at resolution ``reso``."""
    return (-1.0 + (coords + 0.5) * (2.0 / reso)).astype(np.float32)


def grid_from_mask(old: Grid | None, mask: np.ndarray, sh_degree: int, init_density: float) -> Grid:
    """A grid occupying ``mask`` (R^3 bool), values resampled from ``old`` (or initialised); rows in Morton
    order (memory locality for the kernels)."""
    reso = mask.shape[0]
    coords = np.argwhere(mask).astype(np.int32)
    coords = coords[morton_order(coords)]
    if old is None:
        n = len(coords)
        density = np.full(n, init_density, np.float32)
        sh = np.zeros((n, 3 * sh_basis_count(sh_degree)), np.float32)
    else:
        density, sh = kernels.trilinear_sample(old.links, old.density, old.sh, voxel_centres(coords, reso))
    return Grid.from_coords(reso, coords, density, sh, sh_degree)


def _candidate_mask(old: Grid, reso: int) -> np.ndarray:
    """New-resolution voxels whose centre falls in or next to an occupied old voxel."""
    occupied = ndimage.binary_dilation(old.links >= 0, iterations=1)
    idx = np.minimum(((np.arange(reso) + 0.5) * old.resolution / reso).astype(np.int64), old.resolution - 1)
    return occupied[np.ix_(idx, idx, idx)]


def _no_columns(grid: Grid) -> np.ndarray:
    return np.empty((grid.num_voxels, 0), np.float32)


def max_weights_over_rays(grid: Grid, rays: TrainingRays, config: FitConfig, chunk: int = 1 << 16) -> np.ndarray:
    """Per-voxel max ray weight over every ``weight_prune_stride``-th training pixel."""
    occ = kernels.build_occupancy(grid.links, grid.density)
    out = np.zeros(grid.num_voxels, np.float32)
    flat_all = np.arange(0, rays.count, max(1, config.weight_prune_stride), dtype=np.int64)
    for s in range(0, len(flat_all), chunk):
        o, d = rays.rays(flat_all[s:s + chunk])
        kernels.max_ray_weights(grid.links, grid.density, o, d, config.step_size, config.stop_thresh, occ,
                                near=config.near_clip, out=out)
    return out


def prune_mask(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None) -> np.ndarray:
    """Boolean R_new^3 mask of the voxels progressive scaling keeps when moving ``grid`` to ``reso``."""
    coords = np.argwhere(_candidate_mask(grid, reso))
    centres = voxel_centres(coords, reso)
    if config.prune == "none":
        keep = np.ones(len(coords), bool)
    elif config.prune == "sigma":
        density, _ = kernels.trilinear_sample(grid.links, grid.density, _no_columns(grid), centres)
        keep = density > config.prune_threshold
    else:
        if rays is None:
            raise PlenopackError("weight pruning needs the training rays")
        weights = max_weights_over_rays(grid, rays, config)
        w_new, _ = kernels.trilinear_sample(grid.links, weights, _no_columns(grid), centres)
        keep = w_new >= config.prune_threshold / reso
    mask = np.zeros((reso,) * 3, bool)
    mask[tuple(coords[keep].T)] = True
    if config.dilate > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool), iterations=config.dilate)
    return mask


def resample(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None = None) -> Grid:
    """Upsample ``grid`` to ``reso`` with progressive-scaling pruning (see the module docstring); the
    background model is carried over."""
    new = grid_from_mask(grid, prune_mask(grid, reso, config, rays), grid.sh_degree, config.init_density)
    new.background = grid.background
    return new
