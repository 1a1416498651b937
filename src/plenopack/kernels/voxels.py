"""Parallel voxel bookkeeping for resampling a grid between stages: occupied voxels in Morton order, links,
flat indices of rows, box dilation and pruning masks of a trilinearly sampled field.

They replace serial NumPy / SciPy steps (``np.argwhere`` + an argsort of Morton codes, fancy-index
assignment, ``ndimage.binary_dilation``) that would otherwise dominate a fit's time at many threads. The
NumPy references are in `plenopack.kernels.reference` (``morton_coords``, ``box_dilate``, ``prune_mask``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import cell_corners, grid_coord

_BLOCK_BITS = 3  # Morton codes are scanned in blocks of 8^3 voxels (the low 9 bits)


def _inner_offsets() -> np.ndarray:
    """(512, 3) voxel offsets of the Morton codes 0..511 inside an 8^3 block (x holds the top bit of each
    triplet, as `plenopack.grid.morton_order`)."""
    codes = np.arange(1 << (3 * _BLOCK_BITS))
    out = np.zeros((codes.size, 3), np.int64)
    for bit in range(_BLOCK_BITS):
        for axis in range(3):
            out[:, axis] |= ((codes >> (3 * bit + 2 - axis)) & 1) << bit
    return out


_INNER = _inner_offsets()


@njit(inline="always", cache=True)
def _block_origin(code, bits):
    """Voxel origin of top-level Morton block ``code`` (its coordinates times 8)."""
    x = 0
    y = 0
    z = 0
    for bit in range(bits):
        x |= ((code >> (3 * bit + 2)) & 1) << bit
        y |= ((code >> (3 * bit + 1)) & 1) << bit
        z |= ((code >> (3 * bit)) & 1) << bit
    return x << _BLOCK_BITS, y << _BLOCK_BITS, z << _BLOCK_BITS


@njit(parallel=True, cache=True)
def _morton_kernel(mask, inner, bits, nchunks, counts, coords, links):
    """Two passes over the top-level blocks, split into nchunks contiguous ranges of codes: count the set
    voxels of each range, then write them (coords, and their row into links when links is not empty)."""
    reso = mask.shape[0]
    nblocks = 1 << (3 * bits)
    write = coords.shape[0] > 0
    for k in prange(nchunks):
        row = counts[k] if write else 0
        n = 0
        for code in range(nblocks * k // nchunks, nblocks * (k + 1) // nchunks):
            x0, y0, z0 = _block_origin(code, bits)
            if x0 >= reso or y0 >= reso or z0 >= reso:
                continue
            for q in range(inner.shape[0]):
                x = x0 + inner[q, 0]
                y = y0 + inner[q, 1]
                z = z0 + inner[q, 2]
                if x < reso and y < reso and z < reso and mask[x, y, z]:
                    if write:
                        coords[row + n, 0] = x
                        coords[row + n, 1] = y
                        coords[row + n, 2] = z
                        if links.shape[0] > 0:
                            links[x, y, z] = row + n
                    n += 1
        if not write:
            counts[k] = n


def morton_coords(mask: np.ndarray, links: np.ndarray | None = None) -> np.ndarray:
    """Coordinates (N, 3) int32 of the set voxels of a cubic bool mask (R, R, R), in Morton order (the order of
    ``morton_order(np.argwhere(mask))``). With ``links`` ((R, R, R) int32, all -1), also fill in each voxel's
    row."""
    reso = mask.shape[0]
    blocks = -(-reso // (1 << _BLOCK_BITS))
    bits = max(0, int(blocks - 1).bit_length())
    nchunks = max(1, min(4 * numba.get_num_threads(), 1 << (3 * bits)))
    counts = np.zeros(nchunks, np.int64)
    no_links = np.full((0, 0, 0), -1, np.int32)
    _morton_kernel(mask, _INNER, bits, nchunks, counts, np.empty((0, 3), np.int32), no_links)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    coords = np.empty((int(counts.sum()), 3), np.int32)
    _morton_kernel(mask, _INNER, bits, nchunks, starts, coords, no_links if links is None else links)
    return coords


@njit(parallel=True, cache=True)
def _fill(values, value):
    flat = values.reshape(-1)
    for i in prange(flat.shape[0]):
        flat[i] = value


def empty_links(reso: int) -> np.ndarray:
    """(R, R, R) int32 filled with -1, in parallel (a 512^3 grid's links are half a gigabyte)."""
    links = np.empty((reso,) * 3, np.int32)
    _fill(links, -1)
    return links


@njit(parallel=True, cache=True)
def _flat_of_row_kernel(links, out):
    flat_links = links.reshape(-1)
    for f in prange(flat_links.shape[0]):
        row = flat_links[f]
        if row >= 0:
            out[row] = f


def flat_of_row(links: np.ndarray, num_rows: int) -> np.ndarray:
    """Each row's flat index into the (R, R, R) grid (row-major), int64 (N,)."""
    out = np.empty(num_rows, np.int64)
    _flat_of_row_kernel(np.ascontiguousarray(links), out)
    return out


@njit(parallel=True, cache=True)
def _dilate_axis(src, dst, radius, axis):
    """dst = max of src over a window of 2 radius + 1 voxels along ``axis`` (clipped at the borders)."""
    reso = src.shape[0]
    for i in prange(reso):
        for j in range(reso):
            for k in range(reso):
                pos = i if axis == 0 else (j if axis == 1 else k)
                lo = max(pos - radius, 0)
                hi = min(pos + radius + 1, reso)
                hit = False
                for t in range(lo, hi):
                    if axis == 0:
                        v = src[t, j, k]
                    elif axis == 1:
                        v = src[i, t, k]
                    else:
                        v = src[i, j, t]
                    if v:
                        hit = True
                        break
                dst[i, j, k] = hit


def box_dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, np.ones((3, 3, 3)), iterations)`` of a cubic bool mask: a box of
    2 iterations + 1 voxels per side, done as three separable passes."""
    src = np.ascontiguousarray(mask, dtype=np.bool_)
    if iterations <= 0:
        return src.copy()
    a, b = np.empty_like(src), np.empty_like(src)
    _dilate_axis(src, a, iterations, 0)
    _dilate_axis(a, b, iterations, 1)
    _dilate_axis(b, a, iterations, 2)
    return a


@njit(inline="always", cache=True)
def _near_occupied(links, a, b, c):
    """Whether old voxel (a, b, c) or one of its 6 face neighbours is occupied."""
    old = links.shape[0]
    if links[a, b, c] >= 0:
        return True
    for axis in range(3):
        for step in (-1, 1):
            x, y, z = a, b, c
            if axis == 0:
                x += step
            elif axis == 1:
                y += step
            else:
                z += step
            if 0 <= x < old and 0 <= y < old and 0 <= z < old and links[x, y, z] >= 0:
                return True
    return False


@njit(parallel=True, fastmath=True, cache=True)
def _prune_mask_kernel(links, values, reso, threshold, inclusive, out):
    old = links.shape[0]
    for i in prange(reso):
        rows = np.empty(8, np.int32)
        weights = np.empty(8, np.float32)
        a = min(int((i + 0.5) * old / reso), old - 1)
        for j in range(reso):
            b = min(int((j + 0.5) * old / reso), old - 1)
            for k in range(reso):
                c = min(int((k + 0.5) * old / reso), old - 1)
                out[i, j, k] = False
                if not _near_occupied(links, a, b, c):
                    continue
                if values.shape[0] == 0:
                    out[i, j, k] = True
                    continue
                # the new voxel's centre (float32, as voxel_centres) in the old grid's coordinates
                gx = grid_coord(np.float32(-1.0 + (i + 0.5) * (2.0 / reso)), old)
                gy = grid_coord(np.float32(-1.0 + (j + 0.5) * (2.0 / reso)), old)
                gz = grid_coord(np.float32(-1.0 + (k + 0.5) * (2.0 / reso)), old)
                cell_corners(links, gx, gy, gz, rows, weights)
                v = 0.0
                for q in range(8):
                    if rows[q] >= 0:
                        v += weights[q] * values[rows[q]]
                v32 = np.float32(v)
                out[i, j, k] = v32 >= threshold if inclusive else v32 > threshold


def prune_mask(links: np.ndarray, reso: int, values: np.ndarray | None = None, threshold: float = 0.0,
               inclusive: bool = False) -> np.ndarray:
    """(R', R', R') bool mask at the new resolution ``reso``: the voxels whose centre falls in an occupied old
    voxel (``links``) or one of its 6 face neighbours, and, with ``values`` (N,), where that field trilinearly
    sampled at the centre (float32) is above ``threshold`` (at least, with ``inclusive``)."""
    out = np.empty((reso,) * 3, np.bool_)
    field = np.zeros(0, np.float32) if values is None else np.ascontiguousarray(values, np.float32)
    _prune_mask_kernel(links, field, reso, np.float32(threshold), inclusive, out)
    return out
