"""Volume rendering of the sparse grid: forward, and fused forward + backward.

Ray marching (identical in every kernel, so forward and backward see the same samples):
- the ray o + t d (unit-cube frame, |d| = 1) is clipped to [-1, 1]^3 and t >= near;
- samples sit at t_k = t_entry + (k + 0.5) * dt with dt = step_size * 2 / R (step_size in voxels);
- sigma_k = relu(trilinear density), alpha_k = 1 - exp(-sigma_k dt), w_k = T_k alpha_k,
  T_{k+1} = T_k (1 - alpha_k); marching stops once T < stop_thresh;
- colour c_k = clamp(0.5 + sum_b Y_b(d) * trilinear sh, 0, 1) per channel;
- rgb = sum_k w_k c_k + T_final * background (per ray), depth = sum_k w_k t_k, acc = 1 - T_final.
Empty occupancy cells (see occupancy.py) are skipped on the same sample lattice, so results do not depend
on whether an occupancy field is given.

Gradients (backward) follow svox2: the forward march keeps each sample with sigma > 0 (raw colour, alpha,
trilinear weights), and a second pass over them with the running remainder ``rest = rgb - sum_{j<=k} w_j c_j``
gives d rgb / d sigma_k = dt * (T_{k+1} c_k - rest); each sample's d loss / d sigma and d loss / d raw colour,
times its trilinear weights, are summed into one record per (ray, voxel row), and the records are added into
the gradient arrays by `plenopack.kernels.scatter` (a sort by row, race-free and bit-identical for any thread
count). On a GPU the scatter becomes atomic adds and the samples per-thread local memory (or a second march,
as svox2 does).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import (cell_rows, eval_sh_basis, face_neighbour, next_sample, ray_cube_interval,
                                      shared_corner, trilinear_cell)
from plenopack.kernels.scatter import GradWorkspace, scatter_records

_EMPTY_OCCUPANCY = np.zeros((1, 1, 1), dtype=np.uint8)  # unused when use_occupancy is False
_NO_MIN_ACC = np.zeros(0, dtype=np.float32)
_NO_FLAGS = np.zeros(0, dtype=np.uint8)


@njit(inline="always", fastmath=True, cache=True)
def _load_cell(links, density, i0, j0, k0, corner_rows, corner_sigma):
    """The rows (or -1) and densities (0 where empty) of the 8 corners of the trilinear cell at (i0, j0, k0)
    (corner order of `trilinear_cell`) into corner_rows[8] and corner_sigma[8]."""
    cell_rows(links, i0, j0, k0, corner_rows)
    for c in range(8):
        row = corner_rows[c]
        corner_sigma[c] = density[row] if row >= 0 else 0.0


@njit(inline="always", fastmath=True, cache=True)
def _sample_colour(sh, basis_count, basis, corner_rows, weights, coeffs):
    """Raw colour 0.5 + Y(d) . (trilinear SH) of a sample in a cell with these corners and weights, as (r, g,
    b). The SH row is interpolated first (coeffs: scratch of one SH row), a contiguous loop over a row that
    vectorises, then dotted with the basis: cheaper than a dot per corner for one sample. The fits' march uses
    it; renders (`_march_ray`) dot each corner once per cell instead and blend the colours."""
    ncols = 3 * basis_count
    for j in range(ncols):
        coeffs[j] = 0.0
    for c in range(8):
        row = corner_rows[c]
        if row >= 0:
            wc = weights[c]
            for j in range(ncols):
                coeffs[j] += wc * sh[row, j]
    r = 0.5
    g = 0.5
    b = 0.5
    for q in range(basis_count):
        r += basis[q] * coeffs[q]
        g += basis[q] * coeffs[basis_count + q]
        b += basis[q] * coeffs[2 * basis_count + q]
    return r, g, b


FORWARD_RAYS_PER_TASK = 256  # rays per parallel task of the forward kernel: scratch is allocated once per task,
# and a load-balancing layer (tbb) deals out tasks of rays that hit the object (long) and rays that miss (short)


@njit(inline="always", fastmath=True, cache=True)
def _corner_colours(sh, basis_count, basis, corner_rows, i0, j0, k0, last_i, last_j, last_k, corner_rgb):
    """corner_rgb[c] = Y(d) . sh[row] per channel (0 for empty corners) for the 8 corners of cell (i0, j0, k0).
    corner_rgb holds those of cell (last_i, last_j, last_k) (or of none: last_i = -2); when that is a face
    neighbour, its 4 shared corners are moved over and only the other 4 are computed."""
    shared_bit, ahead = face_neighbour(i0, j0, k0, last_i, last_j, last_k)
    for c in range(8):
        if shared_corner(c, shared_bit, ahead):
            for ch in range(3):
                corner_rgb[c, ch] = corner_rgb[c ^ shared_bit, ch]
    for c in range(8):
        if shared_corner(c, shared_bit, ahead):
            continue
        row = corner_rows[c]
        if row < 0:
            for ch in range(3):
                corner_rgb[c, ch] = 0.0
        else:
            for ch in range(3):
                acc = 0.0
                for q in range(basis_count):
                    acc += basis[q] * sh[row, ch * basis_count + q]
                corner_rgb[c, ch] = acc


@njit(inline="always", fastmath=True, cache=True)
def _march_ray(links, density, sh, basis_count, ox, oy, oz, dx, dy, dz, dt, stop_thresh, near, occupancy,
               block_shift, use_occupancy, basis, weights, corner_rows, corner_sigma, corner_rgb):
    """Forward march of one ray (see the module docstring): (r, g, b, depth, final transmittance), the colour
    not yet composited on a background. basis (16,), weights (8,), corner_rows (8,), corner_sigma (8,),
    corner_rgb (8, 3): the caller's scratch.

    Consecutive samples in one trilinear cell (1.6 samples per cell on lego at half a voxel per step) reuse the
    cell's corner rows and densities (empty corners: density 0) instead of reading the links and 8 rows again.
    The SH of a corner is dotted with the ray's basis once per cell that has a sample with density, and a face
    neighbour of the previous such cell takes the 4 corner colours they share (`_corner_colours`); a sample's
    raw colour is then 0.5 + the trilinear blend of its corners' (the blend is linear: the same colour as
    blending the SH first, 3x fewer multiply-adds per sample)."""
    reso = links.shape[0]
    eval_sh_basis(basis_count, dx, dy, dz, basis)
    t_in, t_out = ray_cube_interval(ox, oy, oz, dx, dy, dz, near)
    cr = 0.0
    cg = 0.0
    cb = 0.0
    depth = 0.0
    trans = 1.0
    cell_i = -1
    cell_j = -1
    cell_k = -1
    coloured = False  # corner_rgb holds the current cell's colours
    last_i = -2  # the cell corner_rgb was last computed for (none yet)
    last_j = -2
    last_k = -2
    if t_in < t_out:
        t = t_in + 0.5 * dt
        while True:
            t, gx, gy, gz = next_sample(occupancy, block_shift, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t, dt,
                                        t_out)
            if t >= t_out:
                break
            i0, j0, k0 = trilinear_cell(reso, gx, gy, gz, weights)
            if i0 != cell_i or j0 != cell_j or k0 != cell_k:
                cell_i, cell_j, cell_k = i0, j0, k0
                coloured = False
                _load_cell(links, density, i0, j0, k0, corner_rows, corner_sigma)
            sigma = 0.0
            for c in range(8):
                sigma += weights[c] * corner_sigma[c]
            if sigma > 0.0:
                if not coloured:
                    _corner_colours(sh, basis_count, basis, corner_rows, i0, j0, k0, last_i, last_j, last_k,
                                    corner_rgb)
                    coloured = True
                    last_i, last_j, last_k = i0, j0, k0
                rr = 0.5
                rg = 0.5
                rb = 0.5
                for c in range(8):
                    wc = weights[c]
                    rr += wc * corner_rgb[c, 0]
                    rg += wc * corner_rgb[c, 1]
                    rb += wc * corner_rgb[c, 2]
                alpha = 1.0 - math.exp(-sigma * dt)
                w = trans * alpha
                cr += w * min(max(rr, 0.0), 1.0)
                cg += w * min(max(rg, 0.0), 1.0)
                cb += w * min(max(rb, 0.0), 1.0)
                depth += w * t
                trans *= 1.0 - alpha
                if trans < stop_thresh:
                    break
            t += dt
    return cr, cg, cb, depth, trans


@njit(parallel=True, fastmath=True, cache=True)
def _forward_kernel(links, density, sh, basis_count, origins, dirs, background, bg_stride, step_size,
                    stop_thresh, near, occupancy, block_shift, use_occupancy, out_rgb, out_depth, out_acc):
    dt = step_size * 2.0 / links.shape[0]
    n = origins.shape[0]
    tasks = (n + FORWARD_RAYS_PER_TASK - 1) // FORWARD_RAYS_PER_TASK
    for task in prange(tasks):
        basis = np.empty(16, dtype=np.float32)
        weights = np.empty(8, dtype=np.float32)
        corner_rows = np.empty(8, dtype=np.int32)
        corner_sigma = np.empty(8, dtype=np.float32)
        corner_rgb = np.empty((8, 3), dtype=np.float32)
        for r in range(task * FORWARD_RAYS_PER_TASK, min(n, (task + 1) * FORWARD_RAYS_PER_TASK)):
            cr, cg, cb, depth, trans = _march_ray(links, density, sh, basis_count, origins[r, 0], origins[r, 1],
                                                  origins[r, 2], dirs[r, 0], dirs[r, 1], dirs[r, 2], dt, stop_thresh,
                                                  near, occupancy, block_shift, use_occupancy, basis, weights,
                                                  corner_rows, corner_sigma, corner_rgb)
            bi = r * bg_stride
            out_rgb[r, 0] = cr + trans * background[bi, 0]
            out_rgb[r, 1] = cg + trans * background[bi, 1]
            out_rgb[r, 2] = cb + trans * background[bi, 2]
            out_depth[r] = depth
            out_acc[r] = 1.0 - trans


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _pinhole_kernel(links, density, sh, basis_count, c2w, fx, fy, cx, cy, tile, step_size, stop_thresh, near,
                    occupancy, block_shift, use_occupancy, out_rgb, out_depth, out_acc):
    """Every pixel of a pinhole view, one tile x tile block of pixels per parallel task (a compact bundle of
    rays reading the same voxels); each pixel's ray is made here, as `plenopack.cameras.pixel_rays` makes it
    (float64, rounded to float32), so no ray arrays are built. Colour without background (see `render_view`).
    Releases the GIL: other Python threads (an evaluation's scoring) run while it renders."""
    height, width = out_acc.shape
    dt = step_size * 2.0 / links.shape[0]
    tiles_x = (width + tile - 1) // tile
    tasks = ((height + tile - 1) // tile) * tiles_x
    ox = np.float32(c2w[0, 3])
    oy = np.float32(c2w[1, 3])
    oz = np.float32(c2w[2, 3])
    for task in prange(tasks):
        basis = np.empty(16, dtype=np.float32)
        weights = np.empty(8, dtype=np.float32)
        corner_rows = np.empty(8, dtype=np.int32)
        corner_sigma = np.empty(8, dtype=np.float32)
        corner_rgb = np.empty((8, 3), dtype=np.float32)
        v0 = (task // tiles_x) * tile
        u0 = (task % tiles_x) * tile
        for v in range(v0, min(height, v0 + tile)):
            y = (v + 0.5 - cy) / fy
            for u in range(u0, min(width, u0 + tile)):
                x = (u + 0.5 - cx) / fx
                wx = x * c2w[0, 0] + y * c2w[0, 1] + c2w[0, 2]
                wy = x * c2w[1, 0] + y * c2w[1, 1] + c2w[1, 2]
                wz = x * c2w[2, 0] + y * c2w[2, 1] + c2w[2, 2]
                norm = math.sqrt(wx * wx + wy * wy + wz * wz)
                cr, cg, cb, depth, trans = _march_ray(links, density, sh, basis_count, ox, oy, oz,
                                                      np.float32(wx / norm), np.float32(wy / norm),
                                                      np.float32(wz / norm), dt, stop_thresh, near, occupancy,
                                                      block_shift, use_occupancy, basis, weights, corner_rows,
                                                      corner_sigma, corner_rgb)
                out_rgb[v, u, 0] = cr
                out_rgb[v, u, 1] = cg
                out_rgb[v, u, 2] = cb
                out_depth[v, u] = depth
                out_acc[v, u] = 1.0 - trans


@njit(parallel=True, fastmath=True, cache=True)
def _march_records(links, density, sh, basis_count, origins, dirs, background, bg_stride, step_size, stop_thresh,
                   near, occupancy, block_shift, use_occupancy, vjp, target, beta_weight, min_acc, min_acc_weight,
                   grad_rgb, grad_acc, max_samples, rec_row, rec_vals, rec_ray, basis_of_ray, chunk_base, chunk_count,
                   counts, shift, out_rgb, out_acc, out_sqerr):
    """Forward + backward of every ray, chunk by chunk (one chunk of consecutive rays per parallel iteration),
    into (ray, row) gradient records (see `plenopack.kernels.scatter`); chunk_count[k] = -1 when chunk k ran
    out of room. Returns (chunks that ran out of room, sum of the squared errors in ray order).

    The forward march is `_march_ray`'s (a cell's corner rows and densities shared by its samples); it keeps
    each sample with sigma > 0 (raw colour, alpha, trilinear weights, and the record of each corner) in
    per-chunk scratch of ``max_samples`` samples. A cell that is a face neighbour of the ray's previous
    recorded cell takes the records of the 4 corners they share; its other corners get new records. The
    backward pass adds each sample's weighted gradient into its ray's records (in scratch, empty corners into a
    sink row), copied out once the ray is done. The loss gradient per ray is that of `render_rays_grad` (MSE,
    beta, opacity floor: vjp False) or given (grad_rgb (B, 3) and grad_acc (B,): vjp True).
    """
    reso = links.shape[0]
    nrays = origins.shape[0]
    nchunks = chunk_base.shape[0]
    room = rec_row.shape[0] // nchunks
    dt = step_size * 2.0 / reso
    grad_scale = 2.0 / (3.0 * nrays)  # d mean((rgb - target)^2) / d rgb
    beta_scale = beta_weight / nrays
    min_acc_scale = min_acc_weight / nrays
    use_min_acc = min_acc.shape[0] == nrays
    for k in prange(nchunks):
        sample_raw = np.empty((max_samples, 4), dtype=np.float32)  # raw r, g, b and alpha of the ray's samples
        sample_weights = np.empty((max_samples, 8), dtype=np.float32)
        sample_records = np.empty((max_samples, 8), dtype=np.int32)  # each corner's record in the ray (0: empty)
        ray_grads = np.empty((8 * max_samples + 1, 4), dtype=np.float32)  # the ray's records' sums; row 0: a sink
        weights = np.empty(8, dtype=np.float32)
        corner_rows = np.empty(8, dtype=np.int32)
        corner_sigma = np.empty(8, dtype=np.float32)
        coeffs = np.empty(sh.shape[1], dtype=np.float32)
        cell_records = np.empty(8, dtype=np.int32)  # records of the corners of the last recorded cell
        new_records = np.empty(8, dtype=np.int32)
        for b in range(counts.shape[1]):
            counts[k, b] = 0
        m = chunk_base[k]
        end = m + room
        full = False
        for r in range(nrays * k // nchunks, nrays * (k + 1) // nchunks):
            basis = basis_of_ray[r]
            ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
            dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
            eval_sh_basis(basis_count, dx, dy, dz, basis)
            t_in, t_out = ray_cube_interval(ox, oy, oz, dx, dy, dz, near)
            bi = r * bg_stride
            # ---- forward march, keeping each sample with sigma > 0 and giving its corners records
            first = m
            nsamples = 0
            cr = 0.0
            cg = 0.0
            cb = 0.0
            trans = 1.0
            cell_i = -1
            cell_j = -1
            cell_k = -1
            recorded = False
            last_i = -2  # the ray's last recorded cell (none yet)
            last_j = -2
            last_k = -2
            if t_in < t_out:
                t = t_in + 0.5 * dt
                while nsamples < max_samples:
                    t, gx, gy, gz = next_sample(occupancy, block_shift, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t,
                                                dt, t_out)
                    if t >= t_out:
                        break
                    i0, j0, k0 = trilinear_cell(reso, gx, gy, gz, weights)
                    if i0 != cell_i or j0 != cell_j or k0 != cell_k:
                        cell_i, cell_j, cell_k = i0, j0, k0
                        recorded = False
                        _load_cell(links, density, i0, j0, k0, corner_rows, corner_sigma)
                    sigma = 0.0
                    for c in range(8):
                        sigma += weights[c] * corner_sigma[c]
                    if sigma > 0.0:
                        if not recorded:
                            if end - m < 8:
                                full = True
                                break
                            recorded = True
                            # a face neighbour of the previous recorded cell shares 4 corners (and their records)
                            shared_bit, ahead = face_neighbour(i0, j0, k0, last_i, last_j, last_k)
                            last_i, last_j, last_k = i0, j0, k0
                            for c in range(8):
                                record = 0
                                if shared_corner(c, shared_bit, ahead):
                                    record = cell_records[c ^ shared_bit]
                                row = corner_rows[c]
                                if record == 0 and row >= 0:
                                    rec_row[m] = row
                                    m += 1
                                    record = m - first
                                    for v in range(4):
                                        ray_grads[record, v] = 0.0
                                new_records[c] = record
                            for c in range(8):
                                cell_records[c] = new_records[c]
                        rr, rg, rb = _sample_colour(sh, basis_count, basis, corner_rows, weights, coeffs)
                        for c in range(8):
                            sample_weights[nsamples, c] = weights[c]
                            sample_records[nsamples, c] = cell_records[c]
                        alpha = 1.0 - math.exp(-sigma * dt)
                        raw = sample_raw[nsamples]
                        raw[0] = rr
                        raw[1] = rg
                        raw[2] = rb
                        raw[3] = alpha
                        nsamples += 1
                        w = trans * alpha
                        cr += w * min(max(rr, 0.0), 1.0)
                        cg += w * min(max(rg, 0.0), 1.0)
                        cb += w * min(max(rb, 0.0), 1.0)
                        trans *= 1.0 - alpha
                        if trans < stop_thresh:
                            break
                    t += dt
            if full:
                break
            t_final = trans
            cr += t_final * background[bi, 0]
            cg += t_final * background[bi, 1]
            cb += t_final * background[bi, 2]
            out_rgb[r, 0] = cr
            out_rgb[r, 1] = cg
            out_rgb[r, 2] = cb
            acc = 1.0 - t_final
            out_acc[r] = acc
            if vjp:
                gr = grad_rgb[r, 0]
                gg = grad_rgb[r, 1]
                gb = grad_rgb[r, 2]
                dacc = grad_acc[r]
            else:
                er = cr - target[r, 0]
                eg = cg - target[r, 1]
                eb = cb - target[r, 2]
                out_sqerr[r] = er * er + eg * eg + eb * eb
                gr = grad_scale * er
                gg = grad_scale * eg
                gb = grad_scale * eb
                # beta ("binary opacity") term: L = w/B * sum_r log(acc) + log(1 - acc), acc clamped;
                # opacity floor: L = w/B * sum_r max(0, min_acc_r - acc)^2
                dacc = 0.0
                if beta_scale != 0.0:
                    a = min(max(acc, 1e-3), 1.0 - 1e-3)
                    dacc += beta_scale * (1.0 / a - 1.0 / (1.0 - a))
                if use_min_acc and min_acc[r] > acc:
                    dacc -= 2.0 * min_acc_scale * (min_acc[r] - acc)
            dbeta = dacc * t_final * dt  # d acc / d sigma_k = T_final dt for every kept sample
            # ---- backward pass over the kept samples: (d sigma, d raw rgb) of each, added into its records
            rest_r = cr
            rest_g = cg
            rest_b = cb
            trans = 1.0
            for q in range(nsamples):
                raw = sample_raw[q]
                alpha = raw[3]
                w = trans * alpha
                kr = min(max(raw[0], 0.0), 1.0)
                kg = min(max(raw[1], 0.0), 1.0)
                kb = min(max(raw[2], 0.0), 1.0)
                rest_r -= w * kr
                rest_g -= w * kg
                rest_b -= w * kb
                t_next = trans * (1.0 - alpha)
                dsigma = dt * (gr * (t_next * kr - rest_r) + gg * (t_next * kg - rest_g)
                               + gb * (t_next * kb - rest_b)) + dbeta
                # colour gradient w.r.t. the raw (pre-clamp) value, zero where clamped
                dcr = gr * w if 0.0 < raw[0] < 1.0 else 0.0
                dcg = gg * w if 0.0 < raw[1] < 1.0 else 0.0
                dcb = gb * w if 0.0 < raw[2] < 1.0 else 0.0
                for c in range(8):  # empty corners add into the sink, row 0
                    record = sample_records[q, c]
                    wc = sample_weights[q, c]
                    ray_grads[record, 0] += wc * dsigma
                    ray_grads[record, 1] += wc * dcr
                    ray_grads[record, 2] += wc * dcg
                    ray_grads[record, 3] += wc * dcb
                trans = t_next
            for q in range(first, m):
                for v in range(4):
                    rec_vals[q, v] = ray_grads[q - first + 1, v]
                rec_ray[q] = r
                counts[k, rec_row[q] >> shift] += 1
        chunk_count[k] = -1 if full else m - chunk_base[k]
    full_chunks = 0
    for k in range(nchunks):
        if chunk_count[k] < 0:
            full_chunks += 1
    sqerr_sum = 0.0
    for r in range(nrays):
        sqerr_sum += out_sqerr[r]
    return full_chunks, sqerr_sum


def max_samples_per_ray(reso: int, step_size: float) -> int:
    """Upper bound on the samples of one ray: the cube diagonal 2 sqrt(3) over dt = step_size * 2 / R."""
    return int(math.ceil(math.sqrt(3.0) * reso / step_size)) + 4


def _background_rows(background, nrays):
    bg = np.ascontiguousarray(background, dtype=np.float32)
    if bg.ndim == 1:
        return bg.reshape(1, 3), 0
    if bg.shape != (nrays, 3):
        raise ValueError(f"background must be (3,) or ({nrays}, 3), got {bg.shape}")
    return bg, 1


def _occupancy_args(occupancy):
    if occupancy is None:
        return _EMPTY_OCCUPANCY, 1, False
    return occupancy.distance, occupancy.shift, True


def render_rays(links, density, sh, sh_degree, origins, dirs, background, step_size=0.5, stop_thresh=1e-4,
                occupancy=None, near=0.0):
    """Render rays through the grid. Returns rgb (B, 3), depth (B,) (expected distance, unit-cube units
    along d, weighted by opacity; not normalised by acc) and acc (B,) = 1 - final transmittance.

    background: (3,) or per ray (B, 3) colour composited behind the grid. occupancy: optional
    `Occupancy` from `build_occupancy` (pure speed-up, same result).
    """
    n = origins.shape[0]
    bg, stride = _background_rows(background, n)
    distance, block_shift, use = _occupancy_args(occupancy)
    rgb = np.empty((n, 3), dtype=np.float32)
    depth = np.empty(n, dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    if n:
        with numba.parallel_chunksize(1):  # one task at a time: a load-balancing layer (tbb) deals them out
            _forward_kernel(links, density, sh, (sh_degree + 1) ** 2, np.ascontiguousarray(origins, np.float32),
                            np.ascontiguousarray(dirs, np.float32), bg, stride, np.float32(step_size),
                            np.float32(stop_thresh), np.float32(near), distance, block_shift, use, rgb, depth, acc)
    return rgb, depth, acc


def render_pinhole(links, density, sh, sh_degree, c2w, intrinsics, height, width, step_size=0.5, stop_thresh=1e-4,
                   occupancy=None, near=0.0, tile=16):
    """Render every pixel of a pinhole view (OpenCV c2w in the unit-cube frame; intrinsics fx, fy, cx, cy in
    pixels, pixel centres at +0.5) without a background: (rgb (H, W, 3), depth (H, W), acc (H, W)), the same
    as `render_rays` on `plenopack.cameras.pixel_rays`'s rays with a black background. Composite a
    background as rgb + (1 - acc) * colour. Rays are made in the kernel, ``tile`` x ``tile`` pixels per task."""
    pose = np.ascontiguousarray(np.asarray(c2w, dtype=np.float64)[:3, :4])
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    distance, block_shift, use = _occupancy_args(occupancy)
    rgb = np.empty((height, width, 3), dtype=np.float32)
    depth = np.empty((height, width), dtype=np.float32)
    acc = np.empty((height, width), dtype=np.float32)
    if height * width:
        with numba.parallel_chunksize(1):  # one tile at a time: a load-balancing layer (tbb) deals them out
            _pinhole_kernel(links, density, sh, (sh_degree + 1) ** 2, pose, fx, fy, cx, cy, int(tile),
                            np.float32(step_size), np.float32(stop_thresh), np.float32(near), distance, block_shift,
                            use, rgb, depth, acc)
    return rgb, depth, acc


def march_and_scatter(links, density, sh, sh_degree, origins, dirs, bg, stride, step_size, stop_thresh, near,
                      occupancy, workspace: GradWorkspace, grad_density, grad_sh, row_flags, vjp, target=None,
                      beta_weight=0.0, min_acc=None, min_acc_weight=0.0, grad_rgb=None, grad_acc=None):
    """Run `_march_records` (growing the workspace's records until every chunk fits), then scatter the records
    into grad_density / grad_sh. Returns (rgb (B, 3), acc (B,), sum of the squared errors)."""
    n = origins.shape[0]
    for name, g in (("grad_density", grad_density), ("grad_sh", grad_sh)):
        if not g.flags.c_contiguous or g.dtype != np.float32:
            raise ValueError(f"{name} must be a C-contiguous float32 array")
    rgb = np.empty((n, 3), dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    sqerr = np.zeros(n, dtype=np.float32)
    if n == 0:
        return rgb, acc, 0.0
    distance, block_shift, use = _occupancy_args(occupancy)
    ws = workspace
    no_rays = np.zeros((0, 3), np.float32)
    args = (np.ascontiguousarray(origins, np.float32), np.ascontiguousarray(dirs, np.float32), bg, stride,
            np.float32(step_size), np.float32(stop_thresh), np.float32(near), distance, block_shift, use, vjp,
            no_rays if target is None else np.ascontiguousarray(target, np.float32), np.float32(beta_weight),
            _NO_MIN_ACC if min_acc is None else np.ascontiguousarray(min_acc, np.float32),
            np.float32(min_acc_weight), no_rays if grad_rgb is None else grad_rgb,
            _NO_MIN_ACC if grad_acc is None else grad_acc)
    max_samples = max_samples_per_ray(links.shape[0], step_size)
    while True:
        chunks, shift, base, count, counts = ws.layout(n, 8 * max_samples)
        with numba.parallel_chunksize(1):  # one chunk per task: a load-balancing layer (tbb) deals them out
            full, sqerr_sum = _march_records(links, density, sh, (sh_degree + 1) ** 2, *args, max_samples, ws.rec_row,
                                             ws.rec_vals, ws.rec_ray, ws.basis, base, count, counts, shift, rgb, acc,
                                             sqerr)
        if full == 0:
            break
        ws.grow()
    ws.records = int(count.sum())
    with numba.parallel_chunksize(1):
        scatter_records(ws.rec_row, ws.rec_vals, ws.rec_ray, ws.basis, (sh_degree + 1) ** 2, base, count, counts,
                        shift, ws.entries, grad_density, grad_sh, _NO_FLAGS if row_flags is None else row_flags)
    return rgb, acc, sqerr_sum


def render_rays_grad(links, density, sh, sh_degree, origins, dirs, target, background, grad_density, grad_sh,
                     step_size=0.5, stop_thresh=1e-4, occupancy=None, beta_weight=0.0, near=0.0,
                     workspace: GradWorkspace | None = None, min_acc=None, min_acc_weight=0.0, row_flags=None):
    """Fused forward + backward of the photometric loss over a batch of rays.

    Loss = mean over rays and channels of (rgb - target)^2, plus ``beta_weight`` * mean over rays of
    log(acc) + log(1 - acc) (acc clamped to [1e-3, 1 - 1e-3]; pushes opacity to 0 or 1), plus
    ``min_acc_weight`` * mean over rays of max(0, min_acc - acc)^2 when ``min_acc`` (B,) is given (object
    masks: object pixels must be opaque).
    Adds the loss gradient into grad_density (N,) and grad_sh (N, C) (C-contiguous float32, in place), and
    sets ``row_flags`` (optional uint8 (N,)) to 1 on every row the batch touched (see `rmsprop_step`'s rows).
    ``workspace``: a `GradWorkspace` for this grid, reused across calls. The gradients are bit-identical for
    any numba thread count.
    Returns (rgb (B, 3), acc (B,), mse) where mse is the photometric term only. The gradient with
    respect to a learned per-ray background is (1 - acc) * d loss / d rgb.
    """
    n = origins.shape[0]
    bg, stride = _background_rows(background, n)
    if workspace is None or not workspace.fits(density.shape[0], sh.shape[1]):
        workspace = GradWorkspace(density.shape[0], sh.shape[1])
    if row_flags is not None and row_flags.shape != (density.shape[0],):
        raise ValueError(f"row_flags must be ({density.shape[0]},), got {row_flags.shape}")
    rgb, acc, sqerr_sum = march_and_scatter(links, density, sh, sh_degree, origins, dirs, bg, stride, step_size,
                                            stop_thresh, near, occupancy, workspace, grad_density, grad_sh, row_flags,
                                            False, target=target, beta_weight=beta_weight, min_acc=min_acc,
                                            min_acc_weight=min_acc_weight)
    return rgb, acc, float(sqerr_sum / (3 * n)) if n else 0.0
