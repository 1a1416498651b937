"""Device functions shared by every kernel: SH basis, ray/box clipping, trilinear cells, empty-space skipping.

Each is a small ``@njit(inline="always")`` helper written like a CUDA ``__device__`` function:
scalars in, scalars (or a caller-provided scratch array) out, no allocation.

Conventions (see plenopack.grid): a unit-cube point p maps to grid coordinate g = (p + 1) * R / 2 - 0.5,
clamped to [0, R - 1]; voxel values sit at integer g. Real SH basis in svox2/PlenOctrees order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


@njit(inline="always", fastmath=True, cache=True)
def eval_sh_basis(basis_count, x, y, z, out):
    """Fill out[:basis_count] with the real SH basis at unit direction (x, y, z); basis_count in 1, 4, 9, 16."""
    out[0] = SH_C0
    if basis_count > 1:
        out[1] = -SH_C1 * y
        out[2] = SH_C1 * z
        out[3] = -SH_C1 * x
        if basis_count > 4:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            out[4] = SH_C2[0] * xy
            out[5] = SH_C2[1] * yz
            out[6] = SH_C2[2] * (2.0 * zz - xx - yy)
            out[7] = SH_C2[3] * xz
            out[8] = SH_C2[4] * (xx - yy)
            if basis_count > 9:
                out[9] = SH_C3[0] * y * (3.0 * xx - yy)
                out[10] = SH_C3[1] * xy * z
                out[11] = SH_C3[2] * y * (4.0 * zz - xx - yy)
                out[12] = SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
                out[13] = SH_C3[4] * x * (4.0 * zz - xx - yy)
                out[14] = SH_C3[5] * z * (xx - yy)
                out[15] = SH_C3[6] * x * (xx - 3.0 * yy)


@njit(inline="always", fastmath=True, cache=True)
def ray_cube_interval(ox, oy, oz, dx, dy, dz, near):
    """Entry and exit distance of the ray o + t d through [-1, 1]^3, with t >= near. Empty if t0 >= t1."""
    t0 = near
    t1 = 1e30
    for axis in range(3):
        if axis == 0:
            o, d = ox, dx
        elif axis == 1:
            o, d = oy, dy
        else:
            o, d = oz, dz
        if abs(d) < 1e-12:
            if o < -1.0 or o > 1.0:
                return 1.0, 0.0
        else:
            inv = 1.0 / d
            ta = (-1.0 - o) * inv
            tb = (1.0 - o) * inv
            if ta > tb:
                ta, tb = tb, ta
            t0 = max(t0, ta)
            t1 = min(t1, tb)
    return t0, t1


@njit(inline="always", fastmath=True, cache=True)
def grid_coord(p, reso):
    """Grid coordinate of a unit-cube coordinate, clamped to [0, R - 1]."""
    g = (p + 1.0) * (0.5 * reso) - 0.5
    if g < 0.0:
        return 0.0
    if g > reso - 1.0:
        return reso - 1.0
    return g


@njit(inline="always", fastmath=True, cache=True)
def trilinear_cell(reso, gx, gy, gz, weights):
    """The trilinear cell of grid point g in a grid of side ``reso``: fills weights[8] and returns its lowest
    corner (i0, j0, k0); corner c = 4*a + 2*b + e is voxel (i0 + a, j0 + b, k0 + e)."""
    i0 = min(int(gx), reso - 2)
    j0 = min(int(gy), reso - 2)
    k0 = min(int(gz), reso - 2)
    fx = gx - i0
    fy = gy - j0
    fz = gz - k0
    for a in range(2):
        wx = fx if a == 1 else 1.0 - fx
        for b in range(2):
            wy = fy if b == 1 else 1.0 - fy
            for e in range(2):
                wz = fz if e == 1 else 1.0 - fz
                weights[4 * a + 2 * b + e] = wx * wy * wz
    return i0, j0, k0


@njit(inline="always", fastmath=True, cache=True)
def cell_rows(links, i0, j0, k0, rows):
    """The rows (or -1) of the 8 corners of the trilinear cell with lowest corner (i0, j0, k0) into rows[8]
    (corner c as in `trilinear_cell`)."""
    for c in range(8):
        rows[c] = links[i0 + (c >> 2), j0 + ((c >> 1) & 1), k0 + (c & 1)]


@njit(inline="always", fastmath=True, cache=True)
def face_neighbour(i0, j0, k0, last_i, last_j, last_k):
    """How trilinear cell (i0, j0, k0) meets the cell with lowest corner (last_i, last_j, last_k): (shared_bit,
    ahead), shared_bit 0 unless they are face neighbours, else the corner bit of the axis they differ on (4: i,
    2: j, 1: k) and ahead True when the new cell lies up that axis. See `shared_corner`."""
    if abs(i0 - last_i) + abs(j0 - last_j) + abs(k0 - last_k) != 1:
        return 0, False
    shared_bit = 4 if i0 != last_i else (2 if j0 != last_j else 1)
    return shared_bit, i0 + j0 + k0 > last_i + last_j + last_k


@njit(inline="always", fastmath=True, cache=True)
def shared_corner(c, shared_bit, ahead):
    """Whether corner c of the new cell (`face_neighbour`'s) is one the previous cell had: its corner
    c ^ shared_bit (the new cell's side facing the old cell is the old cell's far side)."""
    return shared_bit != 0 and ((c & shared_bit) == 0) == ahead


@njit(inline="always", fastmath=True, cache=True)
def cell_corners(links, gx, gy, gz, rows, weights):
    """The 8 voxels around grid point g: fills rows[8] (row or -1) and trilinear weights[8] (corner c as in
    `trilinear_cell`). Returns (i0, j0, k0)."""
    i0, j0, k0 = trilinear_cell(links.shape[0], gx, gy, gz, weights)
    cell_rows(links, i0, j0, k0, rows)
    return i0, j0, k0


@njit(inline="always", fastmath=True, cache=True)
def skip_empty(distance, block_shift, reso, ox, oy, oz, dx, dy, dz, t, dt, gx, gy, gz):
    """If the occupancy cell of grid point g is empty, return the next sample distance past the empty box
    of cells around it, on the same sample lattice (t + n * dt); otherwise return t unchanged.

    ``distance`` is the occupancy field's chessboard distance to the nearest marked cell (see
    `plenopack.kernels.occupancy`): k > 0 means every cell within k - 1 of cell c is empty, and marked cells
    cover the trilinear corners of every sample that could see density, so no such sample is skipped.
    """
    cx = np.int32(gx) >> block_shift  # g >= 0: a shift is the floor division by the block
    cy = np.int32(gy) >> block_shift
    cz = np.int32(gz) >> block_shift
    k = np.int32(distance[cx, cy, cz])
    if k == 0:
        return t
    ncell = distance.shape[0]
    half = 0.5 * reso
    t_exit = 1e30
    for axis in range(3):
        if axis == 0:
            o, d, c = ox, dx, cx
        elif axis == 1:
            o, d, c = oy, dy, cy
        else:
            o, d, c = oz, dz, cz
        if d > 1e-12 and c + k < ncell:
            g_bound = (c + k) << block_shift  # the empty box's upper face, in grid coordinates
            t_exit = min(t_exit, ((g_bound + 0.5) / half - 1.0 - o) / d)
        elif d < -1e-12 and c - k >= 0:
            g_bound = (c - k + 1) << block_shift  # its lower face
            t_exit = min(t_exit, ((g_bound + 0.5) / half - 1.0 - o) / d)
    if t_exit >= 1e29:
        return 1e30
    n = math.ceil((t_exit - t) / dt)
    if n < 1:
        n = 1
    return t + n * dt


@njit(inline="always", fastmath=True, cache=True)
def next_sample(occupancy, block_shift, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t, dt, t_out):
    """The first sample at or after distance t, on the lattice t + n dt, that is not inside an empty occupancy
    cell: (t, gx, gy, gz) with its grid coordinates; t >= t_out when the ray has none left."""
    while t < t_out:
        gx = grid_coord(ox + t * dx, reso)
        gy = grid_coord(oy + t * dy, reso)
        gz = grid_coord(oz + t * dz, reso)
        if use_occupancy:
            t_next = skip_empty(occupancy, block_shift, reso, ox, oy, oz, dx, dy, dz, t, dt, gx, gy, gz)
            if t_next != t:
                t = t_next
                continue
        return t, gx, gy, gz
    return t, 0.0, 0.0, 0.0


def sh_basis(sh_degree: int, dirs: np.ndarray) -> np.ndarray:
    """(M, (deg+1)^2) float32 real SH basis at unit directions (M, 3) (NumPy; for tests and callers)."""
    d = np.asarray(dirs, dtype=np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    cols = [np.full_like(x, SH_C0)]
    if sh_degree >= 1:
        cols += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if sh_degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                 SH_C2[4] * (xx - yy)]
    if sh_degree >= 3:
        xx, yy, zz = x * x, y * y, z * z
        cols += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                 SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                 SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return np.stack(cols, axis=-1).astype(np.float32)
