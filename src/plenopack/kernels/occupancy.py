"""Coarse occupancy field so ray marchers skip empty space.

The grid is split into cells of ``block``^3 voxels; a cell is marked when any voxel in it has
relu(density) > threshold, then the marks are dilated by one cell (3x3x3) so that every trilinear
corner of a sample in an unmarked cell is empty. Marchers then jump over unmarked cells while staying
on their sample lattice, so rendering gives the same result with or without the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange


@dataclass
class Occupancy:
    cells: np.ndarray  # (C, C, C) uint8, 1 = may hold density
    block: int  # voxels per cell edge

    @property
    def fraction_occupied(self) -> float:
        return float(self.cells.mean())


@njit(parallel=True, fastmath=True, cache=True)
def _mark_cells(links, density, block, threshold, ncell, marks):
    reso = links.shape[0]
    for ci in prange(ncell):
        for cj in range(ncell):
            for ck in range(ncell):
                found = 0
                for i in range(ci * block, min((ci + 1) * block, reso)):
                    for j in range(cj * block, min((cj + 1) * block, reso)):
                        for k in range(ck * block, min((ck + 1) * block, reso)):
                            row = links[i, j, k]
                            if row >= 0 and density[row] > threshold:
                                found = 1
                                break
                        if found:
                            break
                    if found:
                        break
                marks[ci, cj, ck] = found


@njit(parallel=True, cache=True)
def _dilate(marks, out):
    n = marks.shape[0]
    for i in prange(n):
        for j in range(n):
            for k in range(n):
                v = 0
                for a in range(max(i - 1, 0), min(i + 2, n)):
                    for b in range(max(j - 1, 0), min(j + 2, n)):
                        for c in range(max(k - 1, 0), min(k + 2, n)):
                            if marks[a, b, c]:
                                v = 1
                out[i, j, k] = v


def build_occupancy(links: np.ndarray, density: np.ndarray, block: int = 8, threshold: float = 0.0) -> Occupancy:
    """Occupancy field of a grid (see module docstring). ``block`` is in voxels."""
    reso = links.shape[0]
    block = max(1, min(int(block), reso))
    ncell = -(-reso // block)
    marks = np.zeros((ncell,) * 3, dtype=np.uint8)
    _mark_cells(links, density, block, np.float32(threshold), ncell, marks)
    cells = np.empty_like(marks)
    _dilate(marks, cells)
    return Occupancy(cells=cells, block=block)
