"""Vector-Jacobian product of the renderer: the gradient of *any* loss, given its gradient per ray.

`render_rays_grad` (render.py) fuses the forward march with the gradient of one fixed loss (MSE plus the beta
and opacity-floor terms). Here the caller gives d L / d rgb (B, 3) and d L / d acc (B,) per ray, so an
autograd system (`plenopack.torch`) can put any loss on top. Sample lattice, sample records, early stop and
race-free accumulation are those of render.py; with T_k the transmittance before sample k, w_k = T_k alpha_k,
c_k the clamped colour, g = d L / d rgb, g_acc = d L / d acc and rest_k = rgb - sum_{j<=k} w_j c_j:

    d L / d sigma_k   = dt * (g . (T_{k+1} c_k - rest_k)) + g_acc * T_final * dt
    d L / d raw c_k   = g * w_k where 0 < raw < 1, else 0 (the clamp)

and the SH and density gradients follow through the trilinear weights and the SH basis. The gradient with
respect to the per-ray background colour is (1 - acc) * g; the caller forms it (it is not a grid parameter).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from plenopack.kernels.device import eval_sh_basis, next_sample, ray_cube_interval
from plenopack.kernels.render import (GradWorkspace, _background_rows, _occupancy_args, _reduce_kernel, _sample,
                                      max_samples_per_ray)


@njit(parallel=True, fastmath=True, cache=True)
def _vjp_kernel(links, density, sh, basis_count, origins, dirs, background, bg_stride, step_size, stop_thresh,
                near, occupancy, block, use_occupancy, grad_rgb, grad_acc, grad_density, grad_sh, buf_density,
                buf_sh, row_flags, s_rows, s_weights, s_raw, s_alpha, out_rgb, out_acc):
    reso = links.shape[0]
    ncols = sh.shape[1]
    capacity = s_alpha.shape[1]
    dt = step_size * 2.0 / reso
    for r in prange(origins.shape[0]):
        tid = numba.get_thread_id()
        if tid == 0:  # thread 0 accumulates straight into the caller's gradients, the others into their buffers
            g_density = grad_density
            g_sh = grad_sh
        else:
            g_density = buf_density[tid - 1]
            g_sh = buf_sh[tid - 1]
        basis = np.empty(16, dtype=np.float32)
        coeffs = np.empty(ncols, dtype=np.float32)  # interpolated SH (forward), d L / d SH at a sample (backward)
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
                if t >= t_out or n_samples == capacity:
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
        out_acc[r] = 1.0 - t_final
        gr = grad_rgb[r, 0]
        gg = grad_rgb[r, 1]
        gb = grad_rgb[r, 2]
        dacc = grad_acc[r] * t_final * dt  # d acc / d sigma_k = T_final dt for every recorded sample
        # ---- backward pass over the recorded samples
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
            t_next = trans * (1.0 - alpha)
            dsigma = dt * (gr * (t_next * kr - rest_r) + gg * (t_next * kg - rest_g)
                           + gb * (t_next * kb - rest_b)) + dacc
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
            trans = t_next


def render_rays_vjp(links, density, sh, sh_degree, origins, dirs, background, grad_rgb, grad_acc, grad_density,
                    grad_sh, step_size=0.5, stop_thresh=1e-4, occupancy=None, near=0.0,
                    workspace: GradWorkspace | None = None):
    """Add (d L / d density, d L / d sh) into grad_density (N,) and grad_sh (N, C) (C-contiguous float32, in
    place), given grad_rgb = d L / d rgb (B, 3) and grad_acc = d L / d acc (B,) (None: zero) of the rays'
    `render_rays` outputs. Returns (rgb (B, 3), acc (B,)) of the forward march it repeats.

    background: (3,) or per ray (B, 3). workspace: a `GradWorkspace` for this grid, reused across calls.
    """
    n = origins.shape[0]
    bg, stride = _background_rows(background, n)
    cells, block, use = _occupancy_args(occupancy)
    for name, g in (("grad_density", grad_density), ("grad_sh", grad_sh)):
        if not g.flags.c_contiguous or g.dtype != np.float32:
            raise ValueError(f"{name} must be a C-contiguous float32 array")
    g_rgb = np.ascontiguousarray(grad_rgb, np.float32)
    g_acc = np.zeros(n, np.float32) if grad_acc is None else np.ascontiguousarray(grad_acc, np.float32)
    if g_rgb.shape != (n, 3) or g_acc.shape != (n,):
        raise ValueError(f"grad_rgb must be ({n}, 3) and grad_acc ({n},), got {g_rgb.shape} and {g_acc.shape}")
    if workspace is None or not workspace.fits(density.shape[0], sh.shape[1]):
        workspace = GradWorkspace(density.shape[0], sh.shape[1])
    rgb = np.empty((n, 3), dtype=np.float32)
    acc = np.empty(n, dtype=np.float32)
    if n == 0:
        return rgb, acc
    ws = workspace
    records = ws.sample_records(max_samples_per_ray(links.shape[0], step_size))
    _vjp_kernel(links, density, sh, (sh_degree + 1) ** 2, np.ascontiguousarray(origins, np.float32),
                np.ascontiguousarray(dirs, np.float32), bg, stride, np.float32(step_size), np.float32(stop_thresh),
                np.float32(near), cells, block, use, g_rgb, g_acc, grad_density, grad_sh, ws.buf_density, ws.buf_sh,
                ws.row_flags, *records, rgb, acc)
    rows = np.flatnonzero(ws.row_flags)
    if ws.buf_density.shape[0]:
        _reduce_kernel(ws.buf_density[:, :, None], rows, grad_density[:, None])
        _reduce_kernel(ws.buf_sh, rows, grad_sh)
    ws.row_flags[rows] = 0
    return rgb, acc
