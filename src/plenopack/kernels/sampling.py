"""Point sampling of the grid and per-voxel ray weights: maximum (for "weight" pruning and importance pruning)
and total (the codebooks' weights)."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import cell_corners, grid_coord, next_sample, ray_cube_interval
from plenopack.kernels.render import _occupancy_args

MAX_WEIGHT_BUFFER_BYTES = 1 << 28  # per-chunk buffers of ray_weights (fewer chunks on very large grids)


@njit(parallel=True, fastmath=True, cache=True)
def _trilinear_kernel(links, density, sh, points, out_density, out_sh):
    reso = links.shape[0]
    ncols = sh.shape[1]
    for p in prange(points.shape[0]):
        rows = np.empty(8, dtype=np.int32)
        weights = np.empty(8, dtype=np.float32)
        gx = grid_coord(points[p, 0], reso)
        gy = grid_coord(points[p, 1], reso)
        gz = grid_coord(points[p, 2], reso)
        cell_corners(links, gx, gy, gz, rows, weights)
        d = 0.0
        for j in range(ncols):
            out_sh[p, j] = 0.0
        for c in range(8):
            r = rows[c]
            if r >= 0:
                w = weights[c]
                d += w * density[r]
                for j in range(ncols):
                    out_sh[p, j] += w * sh[r, j]
        out_density[p] = d


def trilinear_sample(links, density, sh, points):
    """Trilinearly interpolated raw density (M,) and SH (M, C) at unit-cube points (M, 3).

    Empty voxels count as zero; points are clamped to the lattice of voxel centres (edge values extend
    over the outer half voxel).
    """
    pts = np.ascontiguousarray(points, dtype=np.float32)
    out_d = np.empty(pts.shape[0], dtype=np.float32)
    out_s = np.empty((pts.shape[0], sh.shape[1]), dtype=np.float32)
    if pts.shape[0]:
        _trilinear_kernel(links, density, sh, pts, out_d, out_s)
    return out_d, out_s


@njit(parallel=True, fastmath=True, cache=True)
def _ray_weight_kernel(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift,
                       use_occupancy, buf_max, buf_sum, out_max, out_sum, with_sum):
    """Chunk k of the rays (one per parallel iteration) keeps its maxima in buf_max[k] (and, ``with_sum``, its
    trilinear-weighted sums in buf_sum[k]); then out_max = max(out_max, buf_max), out_sum += buf_sum."""
    nchunks = buf_max.shape[0]
    nrays = origins.shape[0]
    for k in prange(nchunks):
        buf_max[k] = 0.0
        if with_sum:
            buf_sum[k] = 0.0
        rows = np.empty(8, dtype=np.int32)
        weights = np.empty(8, dtype=np.float32)
        for r in range(nrays * k // nchunks, nrays * (k + 1) // nchunks):
            _ray_weights(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift,
                         use_occupancy, buf_max[k], buf_sum[k], with_sum, rows, weights, r)
    for n in prange(out_max.shape[0]):
        best = out_max[n]
        for k in range(nchunks):
            best = max(best, buf_max[k, n])
        out_max[n] = best
        if with_sum:
            total = 0.0
            for k in range(nchunks):
                total += buf_sum[k, n]
            out_sum[n] += total


@njit(inline="always", fastmath=True, cache=True)
def _ray_weights(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift, use_occupancy,
                 buf_max, buf_sum, with_sum, rows, weights, r):
    """Ray r's sample weights into buf_max (N,) (maximum per voxel) and, ``with_sum``, each sample's weight times
    its trilinear weight on the voxel into buf_sum (N,)."""
    reso = links.shape[0]
    dt = step_size * 2.0 / reso
    ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
    dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
    t_in, t_out = ray_cube_interval(ox, oy, oz, dx, dy, dz, near)
    if not t_in < t_out:
        return
    trans = 1.0
    t = t_in + 0.5 * dt
    while True:
        t, gx, gy, gz = next_sample(occupancy, block_shift, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t, dt,
                                    t_out)
        if t >= t_out:
            break
        cell_corners(links, gx, gy, gz, rows, weights)
        sigma = 0.0
        for c in range(8):
            if rows[c] >= 0:
                sigma += weights[c] * density[rows[c]]
        if sigma > 0.0:
            alpha = 1.0 - math.exp(-sigma * dt)
            w = trans * alpha
            for c in range(8):
                row = rows[c]
                if row >= 0:
                    if w > buf_max[row]:
                        buf_max[row] = w
                    if with_sum:
                        buf_sum[row] += w * weights[c]
            trans *= 1.0 - alpha
            if trans < stop_thresh:
                break
        t += dt


def ray_weights(links, density, origins, dirs, step_size=0.5, stop_thresh=1e-4, occupancy=None, near=0.0,
                out_max: np.ndarray | None = None, out_sum: np.ndarray | None = None):
    """Per-voxel (maximum, total) sample weight over all given rays: ((N,) float32, (N,) float64 or None).

    A sample's weight w_k = T_k alpha_k; its maximum is credited to the 8 voxels of its trilinear cell, its
    total to each in proportion to the voxel's trilinear weight (so a voxel's total is the colour weight it
    carries, summed over the rays: pixels' worth). ``out_max``: maxima of a previous call to raise (None: new);
    ``out_sum``: an (N,) float64 array the totals are added to (None: totals not computed). The rays are split
    into one chunk per thread, each with (N,) buffers, as many as fit in `MAX_WEIGHT_BUFFER_BYTES`.
    """
    n = density.shape[0]
    with_sum = out_sum is not None
    result_max = np.zeros(n, np.float32) if out_max is None else out_max
    per_chunk = 4 * n * (2 if with_sum else 1)
    budget = max(1, MAX_WEIGHT_BUFFER_BYTES // max(1, per_chunk))
    chunks = max(1, min(numba.get_num_threads(), budget, origins.shape[0]))
    buf_max = np.empty((chunks, n), dtype=np.float32)
    buf_sum = np.empty((chunks, n if with_sum else 0), dtype=np.float32)
    distance, block_shift, use = _occupancy_args(occupancy)
    if origins.shape[0]:
        _ray_weight_kernel(links, density, np.ascontiguousarray(origins, np.float32),
                           np.ascontiguousarray(dirs, np.float32), np.float32(step_size), np.float32(stop_thresh),
                           np.float32(near), distance, block_shift, use, buf_max, buf_sum, result_max,
                           out_sum if with_sum else np.zeros(0), with_sum)
    return result_max, out_sum
