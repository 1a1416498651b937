"""Point sampling of the grid and per-voxel maximum ray weight (for "weight" pruning)."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import cell_corners, grid_coord, next_sample, ray_cube_interval
from plenopack.kernels.render import _occupancy_args

MAX_WEIGHT_BUFFER_BYTES = 1 << 28  # per-chunk maxima of max_ray_weights (fewer chunks on very large grids)


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
def _max_weight_kernel(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift,
                       use_occupancy, buf, out):
    """Chunk k of the rays (one per parallel iteration) keeps its maxima in buf[k]; then out = max(out, buf)."""
    nchunks = buf.shape[0]
    nrays = origins.shape[0]
    for k in prange(nchunks):
        buf[k] = 0.0
        rows = np.empty(8, dtype=np.int32)
        weights = np.empty(8, dtype=np.float32)
        for r in range(nrays * k // nchunks, nrays * (k + 1) // nchunks):
            _max_weight_ray(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift,
                            use_occupancy, buf[k], rows, weights, r)
    for n in prange(out.shape[0]):
        best = out[n]
        for k in range(nchunks):
            best = max(best, buf[k, n])
        out[n] = best


@njit(inline="always", fastmath=True, cache=True)
def _max_weight_ray(links, density, origins, dirs, step_size, stop_thresh, near, occupancy, block_shift, use_occupancy,
                    buf, rows, weights, r):
    """Ray r's sample weights into buf (N,) (maximum per voxel)."""
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
                if row >= 0 and w > buf[row]:
                    buf[row] = w
            trans *= 1.0 - alpha
            if trans < stop_thresh:
                break
        t += dt


def max_ray_weights(links, density, origins, dirs, step_size=0.5, stop_thresh=1e-4, occupancy=None, near=0.0,
                    out: np.ndarray | None = None):
    """Per-voxel maximum sample weight w_k = T_k alpha_k over all given rays (N,) float32.

    A sample's weight is credited to the 8 voxels of its trilinear cell. Pass ``out`` (from a previous
    call) to accumulate the maximum over several batches of rays. The rays are split into one chunk per
    thread, each with an (N,) buffer, as many as fit in `MAX_WEIGHT_BUFFER_BYTES`.
    """
    result = np.zeros(density.shape[0], np.float32) if out is None else out
    budget = max(1, MAX_WEIGHT_BUFFER_BYTES // max(1, 4 * density.shape[0]))
    chunks = max(1, min(numba.get_num_threads(), budget, origins.shape[0]))
    buf = np.empty((chunks, density.shape[0]), dtype=np.float32)
    distance, block_shift, use = _occupancy_args(occupancy)
    if origins.shape[0]:
        _max_weight_kernel(links, density, np.ascontiguousarray(origins, np.float32),
                           np.ascontiguousarray(dirs, np.float32), np.float32(step_size), np.float32(stop_thresh),
                           np.float32(near), distance, block_shift, use, buf, result)
    return result
