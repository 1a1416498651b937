"""Plain, vectorised NumPy versions of the kernels' maths (any float dtype; float64 for gradient checks).

They materialise every sample of every ray as a (B, S) array, so they are for tests and benchmarks, not for
real work. The sample lattice, activations and early termination match plenopack.kernels.render exactly.
"""

from __future__ import annotations

import numpy as np

from plenopack.kernels.device import sh_basis


def _corners(links, g):
    """Rows (M, 8) and trilinear weights (M, 8) of the cells around grid coordinates g (M, 3)."""
    reso = links.shape[0]
    g = np.clip(g, 0.0, reso - 1.0)
    i0 = np.minimum(np.floor(g).astype(np.int64), reso - 2)
    f = g - i0
    rows, weights = [], []
    for a in range(2):
        for b in range(2):
            for e in range(2):
                idx = i0 + np.array([a, b, e])
                rows.append(links[idx[:, 0], idx[:, 1], idx[:, 2]])
                w = (f[:, 0] if a else 1 - f[:, 0]) * (f[:, 1] if b else 1 - f[:, 1]) * (f[:, 2] if e else 1 - f[:, 2])
                weights.append(w)
    return np.stack(rows, axis=1), np.stack(weights, axis=1)


def trilinear_sample(links, density, sh, points):
    reso = links.shape[0]
    g = (np.asarray(points, dtype=density.dtype) + 1.0) * (0.5 * reso) - 0.5
    rows, w = _corners(links, g)
    valid = rows >= 0
    r = np.where(valid, rows, 0)
    w = np.where(valid, w, 0.0)
    d = (w * density[r]).sum(axis=1)
    s = (w[:, :, None] * sh[r]).sum(axis=1)
    return d, s


def _ray_samples(reso, origins, dirs, step_size, near):
    """Sample distances (B, S) and validity mask on the kernels' lattice."""
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, np.nan, d)
        ta = (-1.0 - o) * inv
        tb = (1.0 - o) * inv
    lo = np.where(np.isnan(ta), np.where(np.abs(o) <= 1, -np.inf, np.inf), np.minimum(ta, tb))
    hi = np.where(np.isnan(tb), np.where(np.abs(o) <= 1, np.inf, -np.inf), np.maximum(ta, tb))
    t_in = np.maximum(lo.max(axis=1), near)
    t_out = hi.min(axis=1)
    dt = step_size * 2.0 / reso
    count = np.where(t_in < t_out, np.ceil((t_out - t_in) / dt - 0.5), 0).astype(np.int64)
    s_max = max(int(count.max(initial=0)) + 1, 1)
    t = t_in[:, None] + (np.arange(s_max)[None, :] + 0.5) * dt
    valid = (t < t_out[:, None]) & (t_in < t_out)[:, None]
    return t, valid, dt


def _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near):
    reso = links.shape[0]
    dtype = density.dtype
    t, valid, dt = _ray_samples(reso, origins, dirs, step_size, near)
    n, s = t.shape
    pts = np.asarray(origins, np.float64)[:, None, :] + t[..., None] * np.asarray(dirs, np.float64)[:, None, :]
    g = (pts.reshape(-1, 3) + 1.0) * (0.5 * reso) - 0.5
    rows, w = _corners(links, g)
    ok = rows >= 0
    r = np.where(ok, rows, 0)
    w = np.where(ok, w, 0.0).astype(dtype)
    sigma_raw = (w * density[r]).sum(axis=1).reshape(n, s)
    basis = sh_basis(sh_degree, dirs).astype(dtype)
    bc = basis.shape[1]
    sh_s = (w[:, :, None] * sh[r]).sum(axis=1).reshape(n, s, 3, bc)
    raw = 0.5 + np.einsum("nscb,nb->nsc", sh_s, basis)
    sigma = np.where(valid, np.maximum(sigma_raw, 0.0), 0.0)
    alpha = 1.0 - np.exp(-sigma * dt)
    t_after = np.cumprod(1.0 - alpha, axis=1)
    t_before = np.concatenate([np.ones((n, 1), dtype=t_after.dtype), t_after[:, :-1]], axis=1)
    keep = t_before >= stop_thresh  # the kernels stop right after T falls below the threshold
    alpha = np.where(keep, alpha, 0.0)
    t_after = np.cumprod(1.0 - alpha, axis=1)
    t_before = np.concatenate([np.ones((n, 1), dtype=t_after.dtype), t_after[:, :-1]], axis=1)
    weights = t_before * alpha
    colour = np.clip(raw, 0.0, 1.0)
    return dict(t=t, dt=dt, rows=rows.reshape(n, s, 8), w=w.reshape(n, s, 8), basis=basis, raw=raw,
                sigma_raw=sigma_raw, alpha=alpha, keep=keep & valid, t_before=t_before, t_after=t_after,
                weights=weights, colour=colour, t_final=t_after[:, -1])


def render_rays(links, density, sh, sh_degree, origins, dirs, background, step_size=0.5, stop_thresh=1e-4,
                near=0.0):
    """Reference of kernels.render_rays: (rgb (B, 3), depth (B,), acc (B,)) in the dtype of ``density``."""
    f = _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near)
    bg = np.broadcast_to(np.asarray(background, dtype=density.dtype), (len(origins), 3))
    rgb = (f["weights"][..., None] * f["colour"]).sum(axis=1) + f["t_final"][:, None] * bg
    depth = (f["weights"] * f["t"]).sum(axis=1)
    return rgb, depth, 1.0 - f["t_final"]


def loss(links, density, sh, sh_degree, origins, dirs, target, background, step_size=0.5, stop_thresh=1e-4,
         beta_weight=0.0, near=0.0, min_acc=None, min_acc_weight=0.0) -> float:
    """The scalar loss whose gradient kernels.render_rays_grad accumulates."""
    rgb, _, acc = render_rays(links, density, sh, sh_degree, origins, dirs, background, step_size, stop_thresh,
                              near)
    value = float(np.mean((rgb - target) ** 2))
    if beta_weight:
        a = np.clip(acc, 1e-3, 1 - 1e-3)
        value += beta_weight * float(np.mean(np.log(a) + np.log(1 - a)))
    if min_acc is not None:
        value += min_acc_weight * float(np.mean(np.maximum(np.asarray(min_acc, acc.dtype) - acc, 0.0) ** 2))
    return value


def render_rays_grad(links, density, sh, sh_degree, origins, dirs, target, background, step_size=0.5,
                     stop_thresh=1e-4, near=0.0):
    """Vectorised analytic gradient of the MSE term (same maths as the fused kernel, no beta term).

    Returns (rgb, grad_density (N,), grad_sh (N, C)).
    """
    f = _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near)
    n = len(origins)
    bg = np.broadcast_to(np.asarray(background, dtype=density.dtype), (n, 3))
    wc = f["weights"][..., None] * f["colour"]
    rgb = wc.sum(axis=1) + f["t_final"][:, None] * bg
    g = 2.0 * (rgb - target) / (3.0 * n)
    rest = rgb[:, None, :] - np.cumsum(wc, axis=1)
    dsigma = f["dt"] * ((f["t_after"][..., None] * f["colour"] - rest) * g[:, None, :]).sum(-1)
    active = f["keep"] & (f["sigma_raw"] > 0)
    dsigma = np.where(active, dsigma, 0.0)
    inside = (f["raw"] > 0) & (f["raw"] < 1)
    dcol = np.where(inside & active[..., None], g[:, None, :] * f["weights"][..., None], 0.0)  # (n, s, 3)
    dsh = dcol[..., None] * f["basis"][:, None, None, :]  # (n, s, 3, B)
    rows = f["rows"].reshape(-1, 8)
    w = f["w"].reshape(-1, 8)
    ok = rows >= 0
    grad_density = np.zeros_like(density)
    grad_sh = np.zeros_like(sh)
    np.add.at(grad_density, rows[ok], (w * dsigma.reshape(-1, 1))[ok])
    contrib = w[:, :, None] * dsh.reshape(-1, 1, sh.shape[1])
    np.add.at(grad_sh, rows[ok], contrib[ok])
    return rgb, grad_density, grad_sh



def render_rays_vjp(links, density, sh, sh_degree, origins, dirs, background, grad_rgb, grad_acc, step_size=0.5,
                    stop_thresh=1e-4, near=0.0):
    """Reference of kernels.render_vjp.render_rays_vjp: (grad_density (N,), grad_sh (N, C)) of a loss whose
    gradients per ray are grad_rgb (B, 3) = d L / d rgb and grad_acc (B,) = d L / d acc."""
    f = _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near)
    n = len(origins)
    bg = np.broadcast_to(np.asarray(background, dtype=density.dtype), (n, 3))
    wc = f["weights"][..., None] * f["colour"]
    rgb = wc.sum(axis=1) + f["t_final"][:, None] * bg
    g = np.asarray(grad_rgb, density.dtype)
    rest = rgb[:, None, :] - np.cumsum(wc, axis=1)
    dsigma = f["dt"] * (((f["t_after"][..., None] * f["colour"] - rest) * g[:, None, :]).sum(-1)
                        + (np.asarray(grad_acc, density.dtype) * f["t_final"])[:, None])
    active = f["keep"] & (f["sigma_raw"] > 0)
    dsigma = np.where(active, dsigma, 0.0)
    inside = (f["raw"] > 0) & (f["raw"] < 1)
    dcol = np.where(inside & active[..., None], g[:, None, :] * f["weights"][..., None], 0.0)
    dsh = dcol[..., None] * f["basis"][:, None, None, :]
    rows = f["rows"].reshape(-1, 8)
    w = f["w"].reshape(-1, 8)
    ok = rows >= 0
    grad_density = np.zeros_like(density)
    grad_sh = np.zeros_like(sh)
    np.add.at(grad_density, rows[ok], (w * dsigma.reshape(-1, 1))[ok])
    np.add.at(grad_sh, rows[ok], (w[:, :, None] * dsh.reshape(-1, 1, sh.shape[1]))[ok])
    return grad_density, grad_sh

def max_ray_weights(links, density, sh, sh_degree, origins, dirs, step_size=0.5, stop_thresh=1e-4, near=0.0):
    """Reference of kernels.ray_weights' maxima: each sample's weight credited to its 8 corner voxels, maximum
    per voxel."""
    f = _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near)
    active = f["keep"] & (f["sigma_raw"] > 0)
    wts = np.where(active, f["weights"], 0.0).reshape(-1)
    rows = f["rows"].reshape(-1, 8)
    out = np.zeros(density.shape[0], dtype=density.dtype)
    for c in range(8):
        ok = (rows[:, c] >= 0) & (wts > 0)
        np.maximum.at(out, rows[ok, c], wts[ok])
    return out


def total_ray_weights(links, density, sh, sh_degree, origins, dirs, step_size=0.5, stop_thresh=1e-4, near=0.0):
    """Reference of kernels.ray_weights' totals: each sample's weight times its trilinear weight, summed per voxel."""
    f = _forward_samples(links, density, sh, sh_degree, origins, dirs, step_size, stop_thresh, near)
    active = f["keep"] & (f["sigma_raw"] > 0)
    wts = np.where(active, f["weights"], 0.0).reshape(-1)
    rows, corner = f["rows"].reshape(-1, 8), f["w"].reshape(-1, 8)
    out = np.zeros(density.shape[0], dtype=np.float64)
    for c in range(8):
        ok = (rows[:, c] >= 0) & (wts > 0)
        np.add.at(out, rows[ok, c], (wts * corner[:, c])[ok])
    return out


def tv_loss(links, values, voxel_flat_ids, weight) -> float:
    """Reference of kernels.tv_grad's loss (values (N, C))."""
    reso = links.shape[0]
    v = values.reshape(values.shape[0], -1)
    i, j, k = np.unravel_index(np.asarray(voxel_flat_ids), (reso,) * 3)
    inside = (i < reso - 1) & (j < reso - 1) & (k < reso - 1)
    i, j, k = i[inside], j[inside], k[inside]

    def val(a, b, c):
        r = links[a, b, c]
        return np.where((r >= 0)[:, None], v[np.maximum(r, 0)], 0.0)

    v0 = val(i, j, k)
    dx, dy, dz = val(i + 1, j, k) - v0, val(i, j + 1, k) - v0, val(i, j, k + 1) - v0
    norm = np.sqrt(dx * dx + dy * dy + dz * dz + 1e-9)
    return float(weight * norm.sum() / len(voxel_flat_ids))


def sparsity_grad(density, rows, weight):
    """Reference of the Cauchy sparsity term: (loss, gradient (N,)) of weight * mean over the distinct
    ``rows`` of log(1 + 2 relu(sigma)^2)."""
    rows = np.unique(np.asarray(rows))
    s = np.maximum(density[rows], 0.0)
    grad = np.zeros_like(density)
    grad[rows] = weight / len(rows) * 4.0 * s / (1.0 + 2.0 * s * s)
    return float(weight * np.mean(np.log(1.0 + 2.0 * s * s))), grad


def rmsprop_step(param, grad, avg_sq, lr, beta=0.95, eps=1e-8):
    """Reference of kernels.rmsprop_step: new (param, avg_sq); rows whose gradient is all zero keep both."""
    p2, g2, a2 = (np.asarray(x).reshape(len(x), -1) for x in (param, grad, avg_sq))
    touched = (g2 != 0).any(axis=1)[:, None]
    avg = np.where(touched, beta * a2 + (1 - beta) * g2 * g2, a2)
    new = np.where(touched, p2 - lr * g2 / (np.sqrt(avg) + eps), p2)
    return new.reshape(np.shape(param)), avg.reshape(np.shape(avg_sq))


def pixel_rays(flat, offsets, widths, c2w, intrinsics, rgb, mask=None, premultiplied=False, background=None,
               object_mask=None):
    """Reference of kernels.pixel_rays (same arguments and results)."""
    view = np.searchsorted(offsets, flat, side="right") - 1
    local = flat - offsets[view]
    v, u = np.divmod(local, widths[view])
    k = intrinsics[view]
    d_cam = np.stack([(u + 0.5 - k[:, 2]) / k[:, 0], (v + 0.5 - k[:, 3]) / k[:, 1], np.ones(len(flat))], -1)
    d = np.einsum("nij,nj->ni", c2w[view, :3, :3], d_cam)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    target = rgb[flat]
    if mask is not None:
        m = mask[flat][:, None]
        bg = np.zeros(3, np.float32) if background is None else np.asarray(background, np.float32)
        target = (target if premultiplied else target * m) + (1.0 - m) * bg.reshape(-1, 3)
    values = None if object_mask is None else object_mask[flat]
    return c2w[view, :3, 3].astype(np.float32), d.astype(np.float32), target.astype(np.float32), values


def morton_coords(mask):
    """Reference of kernels.morton_coords: np.argwhere sorted by Morton code."""
    from plenopack.grid import morton_order

    coords = np.argwhere(mask).astype(np.int32)
    return coords[morton_order(coords)]


def box_dilate(mask, iterations):
    """Reference of kernels.box_dilate (SciPy's binary dilation with the full 3x3x3 structure)."""
    from scipy import ndimage

    if iterations <= 0:
        return np.array(mask, bool)
    return ndimage.binary_dilation(mask, np.ones((3, 3, 3), bool), iterations=iterations)


def prune_candidates(links, reso):
    """Reference of kernels.prune_mask without values: new-resolution voxels whose centre falls in or next to
    (6-neighbourhood) an occupied old voxel."""
    from scipy import ndimage

    occupied = ndimage.binary_dilation(links >= 0, iterations=1)
    old = links.shape[0]
    idx = np.minimum(((np.arange(reso) + 0.5) * old / reso).astype(np.int64), old - 1)
    return occupied[np.ix_(idx, idx, idx)]


def counter_uniform(key, counters):
    """Reference of kernels.counter_rng.uniform on an array of counters (NumPy's wrapping uint64 arithmetic)."""
    from plenopack.kernels.counter_rng import _M1, _M2, GOLDEN_GAMMA

    z = np.uint64(key) + (np.asarray(counters, np.uint64) + np.uint64(1)) * np.uint64(GOLDEN_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def composite_rgba(pixels, background):
    """uint8 RGBA (H, W, 4) -> (rgb composited on background (H, W, 3), alpha (H, W)), float32."""
    rgba = np.divide(pixels, np.float32(255.0), dtype=np.float32)
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha
    rgb += np.asarray(background, np.float32) * (1.0 - alpha)
    return rgb, np.ascontiguousarray(alpha[..., 0])


def visual_hull_counts(points, masks, intrinsics, c2w):
    """(views that see each point inside their frame, views among those with mask > 0.5 there), (M,) each."""
    from plenopack.cameras import project

    seen = np.zeros(len(points), dtype=np.int32)
    inside = np.zeros(len(points), dtype=np.int32)
    for mask, k, pose in zip(masks, intrinsics, c2w):
        h, w = mask.shape
        uv, z = project(points, pose, k)
        with np.errstate(invalid="ignore"):
            u = np.floor(uv[:, 0])
            v = np.floor(uv[:, 1])
            vis = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        seen += vis
        inside[vis] += mask[v[vis].astype(np.int64), u[vis].astype(np.int64)] > 0.5
    return seen, inside


def composite_over(foreground, acc, behind):
    """clip(foreground + (1 - acc) * behind, 0, 1): behind a colour (3,) or an image (H, W, 3)."""
    return np.clip(foreground + (1.0 - acc)[..., None] * np.asarray(behind, np.float32), 0.0, 1.0)


def nearest_entries(values, codebook):
    """argmin over entries of |x - c|^2 for each row (float64)."""
    values, codebook = np.asarray(values, np.float64), np.asarray(codebook, np.float64)
    return np.array([np.argmin(((codebook - x) ** 2).sum(1)) for x in values], np.int64)


def gather_codebook_rows(out, rows, entries, codebook, add=False):
    """out[rows[i]] = codebook[entries[i]] (+= with add), in place."""
    if add:
        out[rows] += codebook[entries]
    else:
        out[rows] = codebook[entries]


def scatter_codebook_gradient(grad_book, rows, entries, grad, clear=True):
    """grad_book[entries[i]] += grad[rows[i]], then (clear) grad[rows] = 0, in place."""
    np.add.at(grad_book, entries, grad[rows])
    if clear:
        grad[rows] = 0.0


def prefer_runs(values, codebook, index, weights, threshold):
    """VQ indices re-assigned in row order: a row takes its predecessor's entry when its weighted squared error
    rises by less than threshold."""
    out = np.array(index, np.int64)
    for i in range(1, len(out)):
        extra = np.sum((values[i] - codebook[out[i - 1]]) ** 2) - np.sum((values[i] - codebook[index[i]]) ** 2)
        out[i] = out[i - 1] if weights[i] * extra < threshold else index[i]
    return out
