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

Gradients (backward) follow svox2: the forward march records each sample with sigma > 0 (corner rows,
trilinear weights, raw colour, alpha) in per-thread scratch, and a second pass over those records with the
running remainder ``rest = rgb - sum_{j<=k} w_j c_j`` gives d rgb / d sigma_k = dt * (T_{k+1} c_k - rest).
Gradients are accumulated race-free: numba thread 0 adds into the caller's arrays, every other thread into a
buffer of its own (`GradWorkspace`); each flags the rows it touched, and only the flagged rows of the buffers
are then summed into the caller's arrays (or folded in by the optimiser step, see ``reduce``). On a GPU the
buffers become atomic adds and the sample records per-thread local memory (or a second march, as svox2 does).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import cell_corners, eval_sh_basis, fold_shares, next_sample, ray_cube_interval

_EMPTY_OCCUPANCY = np.ones((1, 1, 1), dtype=np.uint8)
_NO_MIN_ACC = np.zeros(0, dtype=np.float32)


@njit(inline="always", fastmath=True, cache=True)
def _sample(links, density, sh, basis_count, basis, gx, gy, gz, rows, weights, coeffs, raw_rgb):
    """Trilinear density (before ReLU) at g, and raw colour 0.5 + SH . Y per channel into raw_rgb[3].

    The SH coefficients are interpolated first (coeffs: scratch of one SH row), a contiguous loop over a
    row that vectorises, then dotted with the basis.
    """
    cell_corners(links, gx, gy, gz, rows, weights)
    sigma = 0.0
    for c in range(8):
        if rows[c] >= 0:
            sigma += weights[c] * density[rows[c]]
    if sigma <= 0.0:
        return sigma
    ncols = 3 * basis_count
    for j in range(ncols):
        coeffs[j] = 0.0
    for c in range(8):
        r = rows[c]
        if r >= 0:
            wc = weights[c]
            for j in range(ncols):
                coeffs[j] += wc * sh[r, j]
    for ch in range(3):
        acc = 0.0
        base = ch * basis_count
        for b in range(basis_count):
            acc += basis[b] * coeffs[base + b]
        raw_rgb[ch] = 0.5 + acc
    return sigma


@njit(parallel=True, fastmath=True, cache=True)
def _forward_kernel(links, density, sh, basis_count, origins, dirs, background, bg_stride, step_size,
                    stop_thresh, near, occupancy, block, use_occupancy, out_rgb, out_depth, out_acc):
    reso = links.shape[0]
    dt = step_size * 2.0 / reso
    for r in prange(origins.shape[0]):
        basis = np.empty(16, dtype=np.float32)
        rows = np.empty(8, dtype=np.int32)
        weights = np.empty(8, dtype=np.float32)
        raw = np.empty(3, dtype=np.float32)
        coeffs = np.empty(sh.shape[1], dtype=np.float32)
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
        eval_sh_basis(basis_count, dx, dy, dz, basis)
        t_in, t_out = ray_cube_interval(ox, oy, oz, dx, dy, dz, near)
        cr = 0.0
        cg = 0.0
        cb = 0.0
        depth = 0.0
        trans = 1.0
        if t_in < t_out:
            t = t_in + 0.5 * dt
            while True:
                t, gx, gy, gz = next_sample(occupancy, block, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t, dt,
                                            t_out)
                if t >= t_out:
                    break
                sigma = _sample(links, density, sh, basis_count, basis, gx, gy, gz, rows, weights, coeffs, raw)
                if sigma > 0.0:
                    alpha = 1.0 - math.exp(-sigma * dt)
                    w = trans * alpha
                    cr += w * min(max(raw[0], 0.0), 1.0)
                    cg += w * min(max(raw[1], 0.0), 1.0)
                    cb += w * min(max(raw[2], 0.0), 1.0)
                    depth += w * t
                    trans *= 1.0 - alpha
                    if trans < stop_thresh:
                        break
                t += dt
        bi = r * bg_stride
        out_rgb[r, 0] = cr + trans * background[bi, 0]
        out_rgb[r, 1] = cg + trans * background[bi, 1]
        out_rgb[r, 2] = cb + trans * background[bi, 2]
        out_depth[r] = depth
        out_acc[r] = 1.0 - trans


@njit(parallel=True, fastmath=True, cache=True)
def _grad_kernel(links, density, sh, basis_count, origins, dirs, target, background, bg_stride, step_size,
                 stop_thresh, near, occupancy, block, use_occupancy, beta_weight, min_acc, min_acc_weight,
                 grad_density, grad_sh, buf_density, buf_sh, row_flags, s_rows, s_weights, s_raw, s_alpha,
                 out_rgb, out_acc, out_sqerr):
    reso = links.shape[0]
    ncols = sh.shape[1]
    capacity = s_alpha.shape[1]
    nrays = origins.shape[0]
    dt = step_size * 2.0 / reso
    grad_scale = 2.0 / (3.0 * nrays)  # d mean((rgb - target)^2) / d rgb
    beta_scale = beta_weight / nrays
    min_acc_scale = min_acc_weight / nrays
    use_min_acc = min_acc.shape[0] == nrays
    for r in prange(nrays):
        tid = numba.get_thread_id()
        if tid == 0:  # thread 0 accumulates straight into the caller's gradients, the others into their buffers
            g_density = grad_density
            g_sh = grad_sh
        else:
            g_density = buf_density[tid - 1]
            g_sh = buf_sh[tid - 1]
        basis = np.empty(16, dtype=np.float32)
        coeffs = np.empty(ncols, dtype=np.float32)  # interpolated SH (forward), d loss / d SH at a sample (backward)
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
        eval_sh_basis(basis_count, dx, dy, dz, basis)
        t_in, t_out = ray_cube_interval(ox, oy, oz, dx, dy, dz, near)
        bi = r * bg_stride
        # ---- forward march, recording each sample with sigma > 0 (corners, weights, raw colour, alpha)
        n_samples = 0
        cr = 0.0
        cg = 0.0
        cb = 0.0
        trans = 1.0
        if t_in < t_out:
            t = t_in + 0.5 * dt
            while True:
                t, gx, gy, gz = next_sample(occupancy, block, use_occupancy, reso, ox, oy, oz, dx, dy, dz, t, dt,
                                            t_out)
                if t >= t_out:
                    break
                if n_samples == capacity:
                    break
                rows = s_rows[tid, n_samples]
                weights = s_weights[tid, n_samples]
                raw = s_raw[tid, n_samples]
                sigma = _sample(links, density, sh, basis_count, basis, gx, gy, gz, rows, weights, coeffs, raw)
                if sigma > 0.0:
                    alpha = 1.0 - math.exp(-sigma * dt)
                    s_alpha[tid, n_samples] = alpha
                    n_samples += 1
                    w = trans * alpha
                    cr += w * min(max(raw[0], 0.0), 1.0)
                    cg += w * min(max(raw[1], 0.0), 1.0)
                    cb += w * min(max(raw[2], 0.0), 1.0)
                    trans *= 1.0 - alpha
                    if trans < stop_thresh:
                        break
                t += dt
        t_final = trans
        cr += t_final * background[bi, 0]
        cg += t_final * background[bi, 1]
        cb += t_final * background[bi, 2]
        out_rgb[r, 0] = cr
        out_rgb[r, 1] = cg
        out_rgb[r, 2] = cb
        acc = 1.0 - t_final
        out_acc[r] = acc
        er = cr - target[r, 0]
        eg = cg - target[r, 1]
        eb = cb - target[r, 2]
        out_sqerr[r] = er * er + eg * eg + eb * eb
        gr = grad_scale * er
        gg = grad_scale * eg
        gb = grad_scale * eb
        # beta (Cauchy-free "binary opacity") term: L = w/B * sum_r log(acc) + log(1 - acc), acc clamped
        # opacity floor: L = w/B * sum_r max(0, min_acc_r - acc)^2; d acc / d sigma_k = T_final dt
        dacc = 0.0
        if beta_scale != 0.0:
            a = min(max(acc, 1e-3), 1.0 - 1e-3)
            dacc += beta_scale * (1.0 / a - 1.0 / (1.0 - a))
        if use_min_acc and min_acc[r] > acc:
            dacc -= 2.0 * min_acc_scale * (min_acc[r] - acc)
        dbeta = dacc * t_final * dt
        # ---- backward pass over the samples the forward march recorded (those with sigma > 0)
        rest_r = cr
        rest_g = cg
        rest_b = cb
        trans = 1.0
        for k in range(n_samples):
            rows = s_rows[tid, k]
            weights = s_weights[tid, k]
            raw = s_raw[tid, k]
            alpha = s_alpha[tid, k]
            w = trans * alpha
            kr = min(max(raw[0], 0.0), 1.0)
            kg = min(max(raw[1], 0.0), 1.0)
            kb = min(max(raw[2], 0.0), 1.0)
            rest_r -= w * kr
            rest_g -= w * kg
            rest_b -= w * kb
            t_next_trans = trans * (1.0 - alpha)
            dsigma = dt * (gr * (t_next_trans * kr - rest_r) + gg * (t_next_trans * kg - rest_g)
                           + gb * (t_next_trans * kb - rest_b)) + dbeta
            # colour gradient w.r.t. the raw (pre-clamp) value, zero where clamped
            dcr = gr * w if 0.0 < raw[0] < 1.0 else 0.0
            dcg = gg * w if 0.0 < raw[1] < 1.0 else 0.0
            dcb = gb * w if 0.0 < raw[2] < 1.0 else 0.0
            for b in range(basis_count):
                coeffs[b] = dcr * basis[b]
                coeffs[basis_count + b] = dcg * basis[b]
                coeffs[2 * basis_count + b] = dcb * basis[b]
            for c in range(8):
                row = rows[c]
                if row < 0:
                    continue
                wc = weights[c]
                row_flags[row] = 1  # every writer stores the same value: a benign race
                g_density[row] += wc * dsigma
                for j in range(ncols):
                    g_sh[row, j] += wc * coeffs[j]
            trans = t_next_trans


@njit(parallel=True, fastmath=True, cache=True)
def _reduce_kernel(shares, rows, grad):
    """Add the per-thread shares (K, N, C) into grad (N, C) on the given rows (one row per parallel iteration,
    so no races) and clear them there."""
    for n in prange(rows.shape[0]):
        fold_shares(grad, shares, rows[n])


class GradWorkspace:
    """Scratch of `render_rays_grad`, reused across calls (allocate once per grid).

    Gradient buffers for numba threads 1..T-1 ((T-1) x N x C float32; thread 0 adds into the caller's arrays),
    which stay zero between calls because the reduction clears the rows it reads; a per-row flag array; and
    per-thread sample records.
    """

    def __init__(self, num_voxels: int, num_sh: int):
        threads = numba.get_num_threads()
        self.shape = (num_voxels, num_sh, threads)
        self.buf_density = np.zeros((threads - 1, num_voxels), dtype=np.float32)
        self.buf_sh = np.zeros((threads - 1, num_voxels, num_sh), dtype=np.float32)
        self.row_flags = np.zeros(num_voxels, dtype=np.uint8)
        self.s_alpha = np.empty((threads, 0), dtype=np.float32)

    def sample_records(self, capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-thread records of up to ``capacity`` samples of one ray: rows (8), weights (8), raw rgb, alpha."""
        threads = self.shape[2]
        if self.s_alpha.shape[1] < capacity:
            self.s_rows = np.empty((threads, capacity, 8), dtype=np.int32)
            self.s_weights = np.empty((threads, capacity, 8), dtype=np.float32)
            self.s_raw = np.empty((threads, capacity, 3), dtype=np.float32)
            self.s_alpha = np.empty((threads, capacity), dtype=np.float32)
        return self.s_rows, self.s_weights, self.s_raw, self.s_alpha

    def fits(self, num_voxels: int, num_sh: int) -> bool:
        return self.shape == (num_voxels, num_sh, numba.get_num_threads())


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
    return occupancy.cells, occupancy.block, True


def render_rays(links, density, sh, sh_degree, origins, dirs, background, step_size=0.5, stop_thresh=1e-4,
                occupancy=None, near=0.0):
    """Render rays through the grid. Returns rgb (B, 3), depth (B,) (expected distance, unit-cube units
    along d, weighted by opacity; not normalised by acc) and acc (B,) = 1 - final transmittance.

    background: (3,) or per ray (B, 3) colour composited behind the grid. occupancy: optional
    `Occupancy` from `build_occupancy` (pure speed-up, same result).
    """
    n = origins.shape[0]
    bg, stride = _background_rows(background, n)
    cells, block, use = _occupancy_args(occupancy)
    rgb = np.empty((n, 3), dtype=np.float32)
    depth = np.empty(n, dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    if n:
        _forward_kernel(links, density, sh, (sh_degree + 1) ** 2, np.ascontiguousarray(origins, np.float32),
                        np.ascontiguousarray(dirs, np.float32), bg, stride, np.float32(step_size),
                        np.float32(stop_thresh), np.float32(near), cells, block, use, rgb, depth, acc)
    return rgb, depth, acc


def render_rays_grad(links, density, sh, sh_degree, origins, dirs, target, background, grad_density, grad_sh,
                     step_size=0.5, stop_thresh=1e-4, occupancy=None, beta_weight=0.0, near=0.0,
                     workspace: GradWorkspace | None = None, min_acc=None, min_acc_weight=0.0, row_flags=None,
                     reduce=True):
    """Fused forward + backward of the photometric loss over a batch of rays.

    Loss = mean over rays and channels of (rgb - target)^2, plus ``beta_weight`` * mean over rays of
    log(acc) + log(1 - acc) (acc clamped to [1e-3, 1 - 1e-3]; pushes opacity to 0 or 1), plus
    ``min_acc_weight`` * mean over rays of max(0, min_acc - acc)^2 when ``min_acc`` (B,) is given (object
    masks: object pixels must be opaque).
    Adds the loss gradient into grad_density (N,) and grad_sh (N, C) (float32, in place), and sets
    ``row_flags`` (optional uint8 (N,)) to 1 on every row the batch touched (see `rmsprop_step`'s rows).
    With ``reduce`` False (needs ``workspace`` and ``row_flags``) the shares of numba threads 1..T-1 stay in
    ``workspace.buf_density`` / ``buf_sh`` for `rmsprop_step(pending=...)` to fold in on the flagged rows,
    which saves one pass over them.
    Returns (rgb (B, 3), acc (B,), mse) where mse is the photometric term only. The gradient with
    respect to a learned per-ray background is (1 - acc) * d loss / d rgb.
    """
    n = origins.shape[0]
    bg, stride = _background_rows(background, n)
    cells, block, use = _occupancy_args(occupancy)
    fits = workspace is not None and workspace.fits(density.shape[0], sh.shape[1])
    if not reduce and (row_flags is None or not fits):
        raise ValueError("reduce=False needs row_flags and a workspace made for this grid (they hold the pending "
                         "gradients)")
    if not fits:
        workspace = GradWorkspace(density.shape[0], sh.shape[1])
    rgb = np.empty((n, 3), dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    sqerr = np.empty(n, dtype=np.float32)
    if n == 0:
        return rgb, acc, 0.0
    ws = workspace
    for name, g in (("grad_density", grad_density), ("grad_sh", grad_sh)):
        if not g.flags.c_contiguous or g.dtype != np.float32:
            raise ValueError(f"{name} must be a C-contiguous float32 array")
    flags = ws.row_flags if row_flags is None else row_flags
    records = ws.sample_records(max_samples_per_ray(links.shape[0], step_size))
    _grad_kernel(links, density, sh, (sh_degree + 1) ** 2, np.ascontiguousarray(origins, np.float32),
                 np.ascontiguousarray(dirs, np.float32), np.ascontiguousarray(target, np.float32), bg, stride,
                 np.float32(step_size), np.float32(stop_thresh), np.float32(near), cells, block, use,
                 np.float32(beta_weight), _NO_MIN_ACC if min_acc is None else np.ascontiguousarray(min_acc, np.float32),
                 np.float32(min_acc_weight), grad_density, grad_sh, ws.buf_density, ws.buf_sh, flags, *records, rgb,
                 acc, sqerr)
    if reduce:
        rows = np.flatnonzero(flags)
        if ws.buf_density.shape[0]:
            _reduce_kernel(ws.buf_density[:, :, None], rows, grad_density[:, None])
            _reduce_kernel(ws.buf_sh, rows, grad_sh)
        if row_flags is None:
            flags[rows] = 0
    return rgb, acc, float(sqerr.sum(dtype=np.float64) / (3 * n))
