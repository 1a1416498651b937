"""Regularisers on a random subset of voxels: total variation and Cauchy sparsity.

TV of a voxel v (per column, forward differences to its +x, +y, +z neighbours) puts a gradient on v's row and
on its three neighbours' rows. To add these in parallel without races or atomics, the selected voxels are
first made unique (with their multiplicity), then added in four passes, one parallel iteration per unique
voxel: its own row, then its +x, +y and +z neighbours' rows (within one pass no two voxels write the same
row). Each row receives its terms in a fixed order, so results do not depend on the thread count. The NumPy
references are `plenopack.kernels.reference.tv_loss` / ``tv_grad`` / ``sparsity_grad``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.counter_rng import below

TV_EPS = 1e-9
TV_RUN = 64  # drawn rows come in runs of this many consecutive rows (neighbouring voxels along z in one row of
# the grid): each row is as likely as with independent draws, and the kernel reads memory in runs instead of
# jumping to a random row (and its random neighbours) 12,000 times a step (lego 800 px, 1.2M voxels: 12.5 ->
# 6.5 ms a step)
_NO_FLAGS = np.zeros(0, np.uint8)
_NO_COLUMNS = np.zeros((0, 0), np.float32)


@njit(inline="always", fastmath=True, cache=True)
def _tv_voxel(values, grad, scale, r0, rx, ry, rz, terms, first_term):
    """TV of one voxel (rows r0 and its +x, +y, +z neighbours rx, ry, rz; -1 = empty) over the columns of
    values: adds the voxel's own gradient into grad[r0] and stores its neighbours' into terms[first_term + col];
    returns the loss."""
    loss = 0.0
    for col in range(values.shape[1]):
        v0 = values[r0, col] if r0 >= 0 else 0.0
        ddx = (values[rx, col] if rx >= 0 else 0.0) - v0
        ddy = (values[ry, col] if ry >= 0 else 0.0) - v0
        ddz = (values[rz, col] if rz >= 0 else 0.0) - v0
        norm = math.sqrt(ddx * ddx + ddy * ddy + ddz * ddz + TV_EPS)
        loss += scale * norm
        g = scale / norm
        if r0 >= 0:
            grad[r0, col] -= g * (ddx + ddy + ddz)
        terms[first_term + col, 0] = g * ddx
        terms[first_term + col, 1] = g * ddy
        terms[first_term + col, 2] = g * ddz
    return loss


@njit(parallel=True, fastmath=True, cache=True)
def _tv_passes(links, flat_ids, mult, values_a, grad_a, scale_a, values_b, grad_b, scale_b, sparsity_scale, terms,
               neighbours, row_flags, out_loss):
    """TV with weight scale_a on the columns of values_a and scale_b on those of values_b (per draw: the caller
    divides by the number of draws), voxel flat_ids[u] counted mult[u] times (flat_ids[u] < 0: none), and
    Cauchy sparsity with weight ``sparsity_scale`` (per unique voxel) on column 0 of values_a (the density).
    terms (U, Ca + Cb, 3) and neighbours (U, 3) are scratch; out_loss[u] gets voxel u's TV loss."""
    reso = links.shape[0]
    ca = values_a.shape[1]
    ncols = ca + values_b.shape[1]
    use_flags = row_flags.shape[0] > 0
    for u in prange(flat_ids.shape[0]):
        out_loss[u] = 0.0
        neighbours[u, 0] = -1
        neighbours[u, 1] = -1
        neighbours[u, 2] = -1
        flat = flat_ids[u]
        if flat < 0:
            continue
        i = flat // (reso * reso)
        j = (flat // reso) % reso
        k = flat % reso
        r0 = links[i, j, k]
        if sparsity_scale != 0.0 and r0 >= 0:
            s = max(values_a[r0, 0], 0.0)
            grad_a[r0, 0] += sparsity_scale * 4.0 * s / (1.0 + 2.0 * s * s)
            if use_flags:
                row_flags[r0] = 1
        if i >= reso - 1 or j >= reso - 1 or k >= reso - 1:
            continue
        rx = links[i + 1, j, k]
        ry = links[i, j + 1, k]
        rz = links[i, j, k + 1]
        neighbours[u, 0] = rx
        neighbours[u, 1] = ry
        neighbours[u, 2] = rz
        m = mult[u]
        loss = _tv_voxel(values_a, grad_a, m * scale_a, r0, rx, ry, rz, terms[u], 0)
        loss += _tv_voxel(values_b, grad_b, m * scale_b, r0, rx, ry, rz, terms[u], ca)
        out_loss[u] = loss
        if use_flags and r0 >= 0:
            row_flags[r0] = 1
    for axis in range(3):
        for u in prange(flat_ids.shape[0]):
            row = neighbours[u, axis]
            if row < 0:
                continue
            for col in range(ca):
                grad_a[row, col] += terms[u, col, axis]
            for col in range(ncols - ca):
                grad_b[row, col] += terms[u, ca + col, axis]
            if use_flags:
                row_flags[row] = 1


@njit(parallel=True, cache=True)
def _unique_rows(draws, owners, mult, unique, unique_mult):
    """Distinct values of ``draws`` (rows in [0, N)) into ``unique`` (-1 in unused slots) with their counts in
    ``unique_mult``; returns how many. Owner o handles rows [N o / owners, N (o + 1) / owners) and scans every
    draw, so the per-row counters ``mult`` (N,), zero on entry and on exit, are never shared."""
    n_rows = mult.shape[0]
    n = draws.shape[0]
    ends = np.zeros(owners + 1, np.int64)
    for o in prange(owners):
        lo = n_rows * o // owners
        hi = n_rows * (o + 1) // owners
        count = 0
        for i in range(n):
            if lo <= draws[i] < hi:
                count += 1
        ends[o + 1] = count
    for o in range(owners):
        ends[o + 1] += ends[o]
    found = np.zeros(owners, np.int64)
    for o in prange(owners):
        lo = n_rows * o // owners
        hi = n_rows * (o + 1) // owners
        p = ends[o]
        for i in range(n):
            r = draws[i]
            if lo <= r < hi:
                if mult[r] == 0:
                    unique[p] = r
                    p += 1
                mult[r] += 1
        found[o] = p - ends[o]
        for q in range(p, ends[o + 1]):
            unique[q] = -1
    for u in prange(n):
        r = unique[u]
        if r >= 0:
            unique_mult[u] = mult[r]
            mult[r] = 0
    return found.sum()


@njit(parallel=True, fastmath=True, cache=True)
def _regularise_kernel(links, flat_of_row, draw, key, draws, owners, mult, unique, unique_mult, flat_ids, density,
                       grad_density, tv_scale, sh, grad_sh, tv_sh_scale, sparsity_weight, terms, neighbours, row_flags,
                       out_loss):
    if draw:
        n_rows = mult.shape[0]
        for j in prange(draws.shape[0]):
            draws[j] = (below(key, j // TV_RUN, n_rows) + j % TV_RUN) % n_rows
    n_unique = _unique_rows(draws, owners, mult, unique, unique_mult)
    for u in prange(draws.shape[0]):
        flat_ids[u] = flat_of_row[unique[u]] if unique[u] >= 0 else -1
    sparsity_scale = sparsity_weight / max(n_unique, 1)
    _tv_passes(links, flat_ids, unique_mult, density, grad_density, tv_scale, sh, grad_sh, tv_sh_scale,
               sparsity_scale, terms, neighbours, row_flags, out_loss)


class Regulariser:
    """TV on density and SH plus Cauchy sparsity on ``draws`` random rows per step, for one grid (scratch kept
    across steps). ``flat_of_row``: each row's flat index into the (R, R, R) grid."""

    def __init__(self, links: np.ndarray, flat_of_row: np.ndarray, num_sh: int, draws: int):
        self.links, self.flat_of_row = links, np.ascontiguousarray(flat_of_row, np.int64)
        n = len(flat_of_row)
        self.draws = np.empty(draws, np.int64)
        self.mult = np.zeros(n, np.int32)
        self.unique = np.empty(draws, np.int64)
        self.unique_mult = np.empty(draws, np.float32)
        self.flat_ids = np.empty(draws, np.int64)
        self.terms = np.empty((draws, 1 + num_sh, 3), np.float32)
        self.neighbours = np.empty((draws, 3), np.int64)
        self.loss = np.empty(draws, np.float64)

    def __call__(self, rows: np.ndarray | np.uint64, density: np.ndarray, grad_density: np.ndarray, lambda_tv: float,
                 sh: np.ndarray, grad_sh: np.ndarray, lambda_tv_sh: float, lambda_sparsity: float,
                 row_flags: np.ndarray | None = None) -> float:
        """Add the gradients of lambda_tv TV(density) + lambda_tv_sh TV(SH) (each a mean over the drawn
        ``rows``, with repeats; see `tv_grad`) + lambda_sparsity Cauchy(density) (a mean over the distinct
        rows; see `reference.sparsity_grad`) into grad_density (N,) and grad_sh (N, C); set ``row_flags`` on
        every row given a gradient. ``rows``: the drawn rows (int array), or a counter-based stream key
        (`plenopack.kernels.counter_rng`) to draw them in the kernel: runs of `TV_RUN` consecutive rows (with
        wrap-around) from uniform starts, so every row is equally likely. Returns the TV loss."""
        draw = np.isscalar(rows)
        if not draw:
            if len(rows) != len(self.draws):
                raise ValueError(f"expected {len(self.draws)} rows, got {len(rows)}")
            self.draws[:] = rows
        n = density.shape[0]
        values_sh, grad_sh = (sh, grad_sh) if lambda_tv_sh else (_NO_COLUMNS, _NO_COLUMNS)
        scale = 1.0 / len(self.draws)
        _regularise_kernel(self.links, self.flat_of_row, draw, np.uint64(rows if draw else 0), self.draws,
                           numba.get_num_threads(), self.mult, self.unique, self.unique_mult, self.flat_ids,
                           density.reshape(n, 1), grad_density.reshape(n, 1), np.float32(lambda_tv * scale), values_sh,
                           grad_sh, np.float32(lambda_tv_sh * scale), np.float32(lambda_sparsity), self.terms,
                           self.neighbours, _NO_FLAGS if row_flags is None else row_flags, self.loss)
        return float(self.loss.sum())


def tv_grad(links, values, voxel_flat_ids, weight, grad, row_flags=None) -> float:
    """Total variation on a subset of voxels; adds its gradient into ``grad`` and returns the loss.

    values, grad: (N, C) float32 (or (N,) for density). voxel_flat_ids: int64 indices into the flattened
    (R, R, R) grid (row-major), repeats allowed. Per column, each selected voxel contributes
    sqrt(dx^2 + dy^2 + dz^2 + 1e-9) with forward differences to its +x, +y, +z neighbours (voxels on the
    far faces are skipped; empty neighbours count as 0). Loss = weight * mean over the subset, summed over
    columns. ``row_flags``: optional uint8 (N,) set to 1 on every row that receives a gradient.
    """
    v2 = values.reshape(values.shape[0], -1)
    g2 = grad.reshape(grad.shape[0], -1)
    ids = np.ascontiguousarray(voxel_flat_ids, dtype=np.int64)
    if ids.size == 0 or weight == 0.0:
        return 0.0
    flat_ids, counts = np.unique(ids, return_counts=True)
    u = len(flat_ids)
    loss = np.empty(u, np.float64)
    _tv_passes(links, flat_ids, counts.astype(np.float32), v2, g2, np.float32(weight / ids.size), _NO_COLUMNS,
               _NO_COLUMNS, np.float32(0.0), np.float32(0.0), np.empty((u, v2.shape[1], 3), np.float32),
               np.empty((u, 3), np.int64), _NO_FLAGS if row_flags is None else row_flags, loss)
    return float(loss.sum())
