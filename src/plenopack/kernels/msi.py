"""Multi-sphere image (MSI) background: forward colour and backward gradients per ray.

Each ray (origin inside the innermost sphere) meets sphere l (radius R_l, increasing) at t_l > 0; the unit
direction u = p / R_l indexes an equirectangular map: row from the polar angle acos(u_z) in [0, pi], column
from the azimuth atan2(u_y, u_x) in [-pi, pi) (wrapping), bilinear between texel centres. A texel holds raw
(r, g, b, sigma): colour sigmoid(rgb), alpha = 1 - exp(-relu(sigma)). Layers are composited inner to outer,
then onto ``brightness`` grey: C = sum_l T_l alpha_l c_l + T_L * brightness.
Gradients accumulate race-free in one buffer per chunk of rays, summed afterwards in chunk order (deterministic
for a given thread count whatever the threading layer).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange


@njit(inline="always", fastmath=True, cache=True)
def _texel_coords(ox, oy, oz, dx, dy, dz, radius, height, width):
    """Bilinear texel corners and weights where the ray meets the sphere: (v0, u0, u1, fv, fu) or v0 = -1."""
    b = ox * dx + oy * dy + oz * dz
    c = ox * ox + oy * oy + oz * oz - radius * radius
    disc = b * b - c
    if disc < 0.0:
        return -1, 0, 0, 0.0, 0.0
    t = -b + math.sqrt(disc)
    if t <= 0.0:
        return -1, 0, 0, 0.0, 0.0
    px = (ox + t * dx) / radius
    py = (oy + t * dy) / radius
    pz = (oz + t * dz) / radius
    theta = math.acos(min(max(pz, -1.0), 1.0))
    phi = math.atan2(py, px)
    gv = theta / math.pi * height - 0.5
    gu = (phi + math.pi) / (2.0 * math.pi) * width - 0.5
    gv = min(max(gv, 0.0), height - 1.0)
    v0 = min(int(gv), height - 2) if height > 1 else 0
    fv = gv - v0
    u_floor = math.floor(gu)
    fu = gu - u_floor
    u0 = int(u_floor) % width
    u1 = (u0 + 1) % width
    return v0, u0, u1, fv, fu


@njit(inline="always", fastmath=True, cache=True)
def _bilinear(layers, l, v0, v1, u0, u1, fv, fu, raw):
    """Bilinear (r, g, b, sigma) of layer l into raw[4]; returns the four corner weights."""
    w00 = (1 - fv) * (1 - fu)
    w01 = (1 - fv) * fu
    w10 = fv * (1 - fu)
    w11 = fv * fu
    for ch in range(4):
        raw[ch] = (w00 * layers[l, v0, u0, ch] + w01 * layers[l, v0, u1, ch] + w10 * layers[l, v1, u0, ch]
                   + w11 * layers[l, v1, u1, ch])
    return w00, w01, w10, w11


@njit(parallel=True, fastmath=True, cache=True)
def _msi_forward(layers, radii, brightness, origins, dirs, out):
    nl, height, width, _ = layers.shape
    for r in prange(origins.shape[0]):
        raw = np.empty(4, dtype=np.float32)
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
        trans = 1.0
        cr = 0.0
        cg = 0.0
        cb = 0.0
        for l in range(nl):
            v0, u0, u1, fv, fu = _texel_coords(ox, oy, oz, dx, dy, dz, radii[l], height, width)
            if v0 < 0:
                continue
            v1 = min(v0 + 1, height - 1)
            w00, w01, w10, w11 = _bilinear(layers, l, v0, v1, u0, u1, fv, fu, raw)
            alpha = 1.0 - math.exp(-max(raw[3], 0.0))
            w = trans * alpha
            cr += w / (1.0 + math.exp(-raw[0]))
            cg += w / (1.0 + math.exp(-raw[1]))
            cb += w / (1.0 + math.exp(-raw[2]))
            trans *= 1.0 - alpha
        out[r, 0] = cr + trans * brightness
        out[r, 1] = cg + trans * brightness
        out[r, 2] = cb + trans * brightness


@njit(inline="always", fastmath=True, cache=True)
def _msi_ray_backward(layers, radii, origins, dirs, colour, grad_colour, buf, raw, r, nl, height, width):
    """Add ray r's d loss / d texel into buf (L, H, W, 4)."""
    ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
    dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
    gr, gg, gb = grad_colour[r, 0], grad_colour[r, 1], grad_colour[r, 2]
    if gr == 0.0 and gg == 0.0 and gb == 0.0:
        return
    rest_r, rest_g, rest_b = colour[r, 0], colour[r, 1], colour[r, 2]
    trans = 1.0
    for l in range(nl):
        v0, u0, u1, fv, fu = _texel_coords(ox, oy, oz, dx, dy, dz, radii[l], height, width)
        if v0 < 0:
            continue
        v1 = min(v0 + 1, height - 1)
        w00, w01, w10, w11 = _bilinear(layers, l, v0, v1, u0, u1, fv, fu, raw)
        sig = max(raw[3], 0.0)
        alpha = 1.0 - math.exp(-sig)
        w = trans * alpha
        kr = 1.0 / (1.0 + math.exp(-raw[0]))
        kg = 1.0 / (1.0 + math.exp(-raw[1]))
        kb = 1.0 / (1.0 + math.exp(-raw[2]))
        rest_r -= w * kr
        rest_g -= w * kg
        rest_b -= w * kb
        t_next = trans * (1.0 - alpha)
        # d C / d sigma_l = (T_{l+1} c_l - rest) (alpha = 1 - exp(-sigma): d alpha / d sigma = 1 - alpha)
        dsig = (gr * (t_next * kr - rest_r) + gg * (t_next * kg - rest_g) + gb * (t_next * kb - rest_b)) if raw[3] > 0.0 else 0.0
        grads = (gr * w * kr * (1 - kr), gg * w * kg * (1 - kg), gb * w * kb * (1 - kb), dsig)
        for ch in range(4):
            g = grads[ch]
            buf[l, v0, u0, ch] += w00 * g
            buf[l, v0, u1, ch] += w01 * g
            buf[l, v1, u0, ch] += w10 * g
            buf[l, v1, u1, ch] += w11 * g
        trans = t_next


@njit(parallel=True, fastmath=True, cache=True)
def _msi_backward(layers, radii, brightness, origins, dirs, colour, grad_colour, buf, grad_layers):
    """Chunk k of the rays (one per parallel iteration) adds into buf[k]; the chunks are then summed into
    grad_layers in chunk order, texel by texel."""
    nl, height, width, _ = layers.shape
    nchunks = buf.shape[0]
    nrays = origins.shape[0]
    for k in prange(nchunks):
        buf[k] = 0.0
        raw = np.empty(4, dtype=np.float32)
        for r in range(nrays * k // nchunks, nrays * (k + 1) // nchunks):
            _msi_ray_backward(layers, radii, origins, dirs, colour, grad_colour, buf[k], raw, r, nl, height, width)
    flat_buf = buf.reshape(nchunks, -1)
    flat_grad = grad_layers.reshape(-1)
    for t in prange(flat_grad.shape[0]):
        total = 0.0
        for k in range(nchunks):
            total += flat_buf[k, t]
        flat_grad[t] += total


def msi_colour(layers: np.ndarray, radii: np.ndarray, brightness: float, origins: np.ndarray,
               dirs: np.ndarray) -> np.ndarray:
    """Background colour (B, 3) float32 of each ray (unit-cube frame, unit directions)."""
    out = np.empty((origins.shape[0], 3), np.float32)
    if origins.shape[0]:
        _msi_forward(layers, radii.astype(np.float32), np.float32(brightness), np.ascontiguousarray(origins, np.float32),
                     np.ascontiguousarray(dirs, np.float32), out)
    return out


def msi_grad(layers: np.ndarray, radii: np.ndarray, brightness: float, origins: np.ndarray, dirs: np.ndarray,
             colour: np.ndarray, grad_colour: np.ndarray, grad_layers: np.ndarray) -> None:
    """Add d loss / d layers into grad_layers, given each ray's background colour and d loss / d colour."""
    chunks = max(1, min(numba.get_num_threads(), origins.shape[0]))
    buf = np.empty((chunks,) + layers.shape, np.float32)
    _msi_backward(layers, radii.astype(np.float32), np.float32(brightness), np.ascontiguousarray(origins, np.float32),
                  np.ascontiguousarray(dirs, np.float32), np.ascontiguousarray(colour, np.float32),
                  np.ascontiguousarray(grad_colour, np.float32), buf, grad_layers)


@njit(parallel=True, fastmath=True, cache=True)
def _msi_tv(layers, weights, grad, out_loss):
    nl, height, width, nch = layers.shape
    count = nl * (height - 1) * width
    for ch in prange(nch):  # one channel per parallel iteration: the scattered writes never race
        scale = weights[ch] / count
        loss = 0.0
        for l in range(nl):
            for v in range(height - 1):
                for u in range(width):
                    u1 = (u + 1) % width
                    x = layers[l, v, u, ch]
                    dv = layers[l, v + 1, u, ch] - x
                    du = layers[l, v, u1, ch] - x
                    norm = math.sqrt(dv * dv + du * du + 1e-9)
                    loss += norm
                    g = scale / norm
                    grad[l, v, u, ch] -= g * (dv + du)
                    grad[l, v + 1, u, ch] += g * dv
                    grad[l, v, u1, ch] += g * du
        out_loss[ch] = loss * scale


def msi_tv_grad(layers: np.ndarray, weight_colour: float, weight_density: float, grad_layers: np.ndarray) -> float:
    """Total variation over every texel (neighbours below and to the right, wrapping in azimuth), mean over
    texels, ``weight_colour`` on r, g, b and ``weight_density`` on sigma; adds the gradient, returns the loss."""
    weights = np.array([weight_colour] * 3 + [weight_density], np.float32)
    out = np.zeros(4, np.float64)
    if layers.shape[1] > 1:
        _msi_tv(layers, weights, grad_layers, out)
    return float(out.sum())
