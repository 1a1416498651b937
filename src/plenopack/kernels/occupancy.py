"""Coarse occupancy field so ray marchers skip empty space.

The grid is split into cells of ``block``^3 voxels; a cell is marked when any voxel in it, or within one
voxel of it, has relu(density) > threshold, so that every trilinear corner of a sample in an unmarked cell
is empty (a sample in cell c has its corners in voxels c*block .. (c+1)*block). Marchers then jump over
unmarked cells while staying on their sample lattice, so rendering gives the same result with or without the
field.

Each cell also stores its chessboard distance (in cells) to the nearest marked cell, so a marcher in empty
space leaps over the whole empty box of cells around it in one step instead of crossing it cell by cell (a ray
that misses the object leaves the grid in a few steps; at 800 px this was most of a render's time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from scipy.ndimage import distance_transform_cdt

MAX_DISTANCE = 255  # distances are stored as uint8 and capped here (a shorter leap, never a wrong one)


@dataclass
class Occupancy:
    cells: np.ndarray  # (C, C, C) uint8, 1 = may hold density
    block: int  # voxels per cell edge, a power of two
    distance: np.ndarray  # (C, C, C) uint8 chessboard distance in cells to the nearest marked cell (0 = marked)

    @property
    def shift(self) -> int:
        """log2(block): marchers find a grid coordinate's cell with a shift, not a division."""
        return self.block.bit_length() - 1

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
    """Occupancy field of a grid (see module docstring). ``block`` is in voxels, rounded down to a power of two."""
    reso = links.shape[0]
    block = 1 << (max(1, min(int(block), reso)).bit_length() - 1)
    ncell = -(-reso // block)
    cells = np.zeros((ncell,) * 3, dtype=np.uint8)
    _mark_cells(links, density, block, np.float32(threshold), ncell, cells)
    return Occupancy(cells=cells, block=block, distance=empty_space_distance(cells))


def empty_space_distance(cells: np.ndarray) -> np.ndarray:
    """(C, C, C) uint8: for each cell the chessboard distance, in cells, to the nearest marked cell (0 for a
    marked cell; `MAX_DISTANCE` when none is marked or it is farther). Every cell within distance - 1 of a cell
    is empty, which is what the marchers' leap (`plenopack.kernels.device.skip_empty`) relies on."""
    if not cells.any():
        return np.full(cells.shape, MAX_DISTANCE, np.uint8)
    distance = distance_transform_cdt(cells == 0, metric="chessboard")
    return np.minimum(distance, MAX_DISTANCE).astype(np.uint8)
