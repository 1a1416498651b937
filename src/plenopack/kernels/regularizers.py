"""Regularisers on a random subset of voxels: total variation and Cauchy sparsity."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

TV_EPS = 1e-9


@njit(parallel=True, fastmath=True, cache=True)
def _tv_kernel(links, values, voxel_ids, scale, grad, col_start, col_end, groups, out_loss, row_flags):
    """Columns are split into ``groups`` contiguous blocks, one per parallel iteration, so the scattered
    gradient writes never race; each voxel's row is read once per block (the first block alone sets
    row_flags)."""
    reso = links.shape[0]
    use_flags = row_flags.shape[0] == values.shape[0]
    span = col_end - col_start
    for grp in prange(groups):
        c0 = col_start + span * grp // groups
        c1 = col_start + span * (grp + 1) // groups
        for n in range(voxel_ids.shape[0]):
            flat = voxel_ids[n]
            i = flat // (reso * reso)
            j = (flat // reso) % reso
            k = flat % reso
            if i >= reso - 1 or j >= reso - 1 or k >= reso - 1:
                continue
            r0 = links[i, j, k]
            rx = links[i + 1, j, k]
            ry = links[i, j + 1, k]
            rz = links[i, j, k + 1]
            if use_flags and grp == 0:
                for row in (r0, rx, ry, rz):
                    if row >= 0:
                        row_flags[row] = 1
            for col in range(c0, c1):
                v0 = values[r0, col] if r0 >= 0 else 0.0
                ddx = (values[rx, col] if rx >= 0 else 0.0) - v0
                ddy = (values[ry, col] if ry >= 0 else 0.0) - v0
                ddz = (values[rz, col] if rz >= 0 else 0.0) - v0
                norm = math.sqrt(ddx * ddx + ddy * ddy + ddz * ddz + TV_EPS)
                out_loss[col] += norm * scale
                g = scale / norm
                if r0 >= 0:
                    grad[r0, col] -= g * (ddx + ddy + ddz)
                if rx >= 0:
                    grad[rx, col] += g * ddx
                if ry >= 0:
                    grad[ry, col] += g * ddy
                if rz >= 0:
                    grad[rz, col] += g * ddz


def tv_grad(links, values, voxel_flat_ids, weight, grad, columns=None, row_flags=None) -> float:
    """Total variation on a subset of voxels; adds its gradient into ``grad`` and returns the loss.

    values, grad: (N, C) float32 (or (N,) for density). voxel_flat_ids: int64 indices into the flattened
    (R, R, R) grid (row-major). Per column, each selected voxel contributes
    sqrt(dx^2 + dy^2 + dz^2 + 1e-9) with forward differences to its +x, +y, +z neighbours (voxels on the
    far faces are skipped; empty neighbours count as 0). Loss = weight * mean over the subset, summed over
    columns. ``columns``: optional (start, end) column range. ``row_flags``: optional uint8 (N,) set to 1 on
    every row that receives a gradient.
    """
    v2 = values.reshape(values.shape[0], -1)
    g2 = grad.reshape(grad.shape[0], -1)
    start, end = columns if columns is not None else (0, v2.shape[1])
    ids = np.ascontiguousarray(voxel_flat_ids, dtype=np.int64)
    if ids.size == 0 or weight == 0.0:
        return 0.0
    out = np.zeros(v2.shape[1], dtype=np.float64)
    flags = np.zeros(0, np.uint8) if row_flags is None else row_flags
    groups = max(1, min(end - start, numba.get_num_threads()))
    _tv_kernel(links, v2, ids, np.float32(weight / ids.size), g2, start, end, groups, out, flags)
    return float(out.sum())


@njit(parallel=True, fastmath=True, cache=True)
def _sparsity_kernel(density, rows, scale, grad, out):
    for n in prange(rows.shape[0]):
        r = rows[n]
        s = max(density[r], 0.0)
        out[n] = math.log(1.0 + 2.0 * s * s)
        grad[r] += scale * 4.0 * s / (1.0 + 2.0 * s * s)


def sparsity_grad(density, rows, weight, grad) -> float:
    """Cauchy sparsity weight * mean over ``rows`` (unique voxel rows) of log(1 + 2 relu(sigma)^2)
    (svox2's lambda_sparsity); adds its gradient into grad (N,) and returns the loss."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0 or weight == 0.0:
        return 0.0
    out = np.empty(rows.size, dtype=np.float32)
    _sparsity_kernel(density, rows, np.float32(weight / rows.size), grad, out)
    return float(weight * out.mean())
