"""Vector-Jacobian product of the renderer: the gradient of *any* loss, given its gradient per ray.

`render_rays_grad` (render.py) fuses the forward march with the gradient of one fixed loss (MSE plus the beta
and opacity-floor terms). Here the caller gives d L / d rgb (B, 3) and d L / d acc (B,) per ray, so an
autograd system (`plenopack.torch`) can put any loss on top. The march, sample records and the
deterministic scatter are those of render.py (the same kernel, in its vjp mode); with T_k the transmittance
before sample k, w_k = T_k alpha_k, c_k the clamped colour, g = d L / d rgb, g_acc = d L / d acc and
rest_k = rgb - sum_{j<=k} w_j c_j:

    d L / d sigma_k   = dt * (g . (T_{k+1} c_k - rest_k)) + g_acc * T_final * dt
    d L / d raw c_k   = g * w_k where 0 < raw < 1, else 0 (the clamp)

and the SH and density gradients follow through the trilinear weights and the SH basis. The gradient with
respect to the per-ray background colour is (1 - acc) * g; the caller forms it (it is not a grid parameter).
"""

from __future__ import annotations

import numpy as np

from plenopack.kernels.render import GradWorkspace, _background_rows, march_and_scatter


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
    g_rgb = np.ascontiguousarray(grad_rgb, np.float32)
    g_acc = np.zeros(n, np.float32) if grad_acc is None else np.ascontiguousarray(grad_acc, np.float32)
    if g_rgb.shape != (n, 3) or g_acc.shape != (n,):
        raise ValueError(f"grad_rgb must be ({n}, 3) and grad_acc ({n},), got {g_rgb.shape} and {g_acc.shape}")
    if workspace is None or not workspace.fits(density.shape[0], sh.shape[1]):
        workspace = GradWorkspace(density.shape[0], sh.shape[1])
    rgb, acc, _ = march_and_scatter(links, density, sh, sh_degree, origins, dirs, bg, stride, step_size, stop_thresh,
                                    near, occupancy, workspace, grad_density, grad_sh, None, True, grad_rgb=g_rgb,
                                    grad_acc=g_acc)
    return rgb, acc
