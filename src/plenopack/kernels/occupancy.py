"""Coarse occupancy field so ray marchers skip empty space.

The grid is split into cells of ``block``^3 voxels; a cell is marked when any voxel in it, or within one
voxel of it, has relu(density) > threshold, so that every trilinear corner of a sample in an unmarked cell
is empty (a sample in cell c has its corners in voxels c*block .. (c+1)*block). Marchers then jump over
unmarked cells while staying on their sample lattice, so rendering gives the same result with or without the
field.
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
                for i in range(max(ci * block - 1, 0), min((ci + 1) * block + 1, reso)):
                    for j in range(max(cj * block - 1, 0), min((cj + 1) * block + 1, reso)):
                        for k in range(max(ck * block - 1, 0), min((ck + 1) * block + 1, reso)):
                            row = links[i, j, k]
                            if row >= 0 and density[row] > threshold:
                                found = 1
                                break
                        if found:
                            break
                    if found:
                        break
                marks[ci, cj, ck] = found


def build_occupancy(links: np.ndarray, density: np.ndarray, block: int = 8, threshold: float = 0.0) -> Occupancy:
    """Occupancy field of a grid (see module docstring). ``block`` is in voxels."""
    reso = links.shape[0]
    block = max(1, min(int(block), reso))
    ncell = -(-reso // block)
    cells = np.zeros((ncell,) * 3, dtype=np.uint8)
    _mark_cells(links, density, block, np.float32(threshold), ncell, cells)
    return Occupancy(cells=cells, block=block)
