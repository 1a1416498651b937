"""Coarse-to-fine resampling with progressive scaling (PeRFception's pruning between resolutions).

At each new resolution the grid is resampled trilinearly at the new voxel centres, keeping the voxels that
"sigma" (density > T) or "weight" (maximum ray weight over the training pixels >= T / R_new) pruning keeps,
dilated ``dilate`` times (3x3x3). Rows are kept in Morton order for memory locality in the kernels. Every step
is a parallel kernel (`plenopack.kernels.voxels`).
"""

from __future__ import annotations

import numpy as np

from plenopack import kernels
from plenopack.errors import PlenopackError
from plenopack.fit.config import FitConfig
from plenopack.fit.rays import TrainingRays
from plenopack.grid import Grid, sh_basis_count


def voxel_centres(coords: np.ndarray, reso: int) -> np.ndarray:
    """(N, 3) float32 unit-cube centres of voxel coordinates at resolution ``reso``."""
    return (-1.0 + (coords + 0.5) * (2.0 / reso)).astype(np.float32)


def grid_from_mask(old: Grid | None, mask: np.ndarray, sh_degree: int, init_density: float) -> Grid:
    """A grid occupying ``mask`` (R^3 bool), values resampled from ``old`` (or initialised); rows in Morton
    order (memory locality for the kernels)."""
    reso = mask.shape[0]
    links = kernels.empty_links(reso)
    coords = kernels.morton_coords(mask, links)
    if old is None:
        density = np.full(len(coords), init_density, np.float32)
        sh = np.zeros((len(coords), 3 * sh_basis_count(sh_degree)), np.float32)
    else:
        density, sh = kernels.trilinear_sample(old.links, old.density, old.sh, voxel_centres(coords, reso))
    return Grid(links=links, density=density, sh=sh, sh_degree=sh_degree)


def weights_over_rays(grid: Grid, rays: TrainingRays, config: FitConfig, totals: bool = False,
                      chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-voxel (max ray weight (N,) float32, total ray weight (N,) float64 or None unless ``totals``) over
    every ``weight_prune_stride``-th training pixel (see `plenopack.kernels.ray_weights`)."""
    occ = kernels.build_occupancy(grid.links, grid.density)
    out_max = np.zeros(grid.num_voxels, np.float32)
    out_sum = np.zeros(grid.num_voxels, np.float64) if totals else None
    flat_all = np.arange(0, rays.count, max(1, config.weight_prune_stride), dtype=np.int64)
    for s in range(0, len(flat_all), chunk):
        o, d = rays.rays(flat_all[s:s + chunk])
        kernels.ray_weights(grid.links, grid.density, o, d, config.step_size, config.stop_thresh, occ,
                            near=config.near_clip, out_max=out_max, out_sum=out_sum)
    return out_max, out_sum


def max_weights_over_rays(grid: Grid, rays: TrainingRays, config: FitConfig) -> np.ndarray:
    """Per-voxel max ray weight over every ``weight_prune_stride``-th training pixel."""
    return weights_over_rays(grid, rays, config)[0]


def prune_mask(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None) -> np.ndarray:
    """Boolean R_new^3 mask of the voxels progressive scaling keeps when moving ``grid`` to ``reso``: those whose
    centre falls in or next to an occupied old voxel and that the pruning mode keeps, dilated."""
    if config.prune == "none":
        mask = kernels.prune_mask(grid.links, reso)
    elif config.prune == "sigma":
        mask = kernels.prune_mask(grid.links, reso, grid.density, config.prune_threshold)
    else:
        if rays is None:
            raise PlenopackError("weight pruning needs the training rays")
        weights = max_weights_over_rays(grid, rays, config)
        mask = kernels.prune_mask(grid.links, reso, weights, config.prune_threshold / reso, inclusive=True)
    if config.dilate > 0 and mask.any():
        mask = kernels.box_dilate(mask, config.dilate)
    return mask


def resample(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None = None) -> Grid:
    """Upsample ``grid`` to ``reso`` with progressive-scaling pruning (see the module docstring); the
    background model is carried over."""
    new = grid_from_mask(grid, prune_mask(grid, reso, config, rays), grid.sh_degree, config.init_density)
    new.background = grid.background
    return new
