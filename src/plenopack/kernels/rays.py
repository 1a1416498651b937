"""Training rays of a batch in one parallel kernel: pixel (flat index over every training view) to origin,
unit direction, target colour and mask value; optionally drawing the pixels and random background colours
too (counter-based, see `plenopack.kernels.counter_rng`).

Views are stacked: pixel f belongs to view v with offsets[v] <= f < offsets[v + 1], at column u and row v' of
that image (row-major, width widths[v]); its direction through the pixel centre (u + 0.5, v' + 0.5) is
R_v K_v^-1 (u + 0.5, v' + 0.5, 1), normalised (camera-to-world, OpenCV axes). Maths in float64 as the NumPy
reference (`plenopack.kernels.reference.pixel_rays`), outputs float32.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from plenopack.kernels.counter_rng import below, uniform

_NO_MASK = np.zeros(0, np.float32)
_NO_PIXELS = np.zeros(0, np.int64)


@njit(parallel=True, cache=True)
def _pixel_rays_kernel(flat, draw, pixel_key, n_foreground, foreground, random_bg, bg_key, offsets, widths, c2w,
                       intrinsics, rgb, mask, premultiplied, background, bg_stride, object_mask, origins, dirs, targets,
                       object_values):
    use_mask = mask.shape[0] > 0
    use_object = object_values.shape[0] > 0
    nrays = flat.shape[0]
    count = offsets[offsets.shape[0] - 1]
    for n in prange(nrays):
        if draw:  # ray n is a mask pixel when it starts a new n_foreground / nrays share (spread evenly)
            if (n + 1) * n_foreground // nrays > n * n_foreground // nrays:
                flat[n] = foreground[below(pixel_key, n, foreground.shape[0])]
            else:
                flat[n] = below(pixel_key, n, count)
            if random_bg:
                for ch in range(3):
                    background[n, ch] = uniform(bg_key, 3 * n + ch)
        f = flat[n]
        view = np.searchsorted(offsets, f, side="right") - 1
        local = f - offsets[view]
        row = local // widths[view]
        col = local - row * widths[view]
        xc = (col + 0.5 - intrinsics[view, 2]) / intrinsics[view, 0]
        yc = (row + 0.5 - intrinsics[view, 3]) / intrinsics[view, 1]
        dx = c2w[view, 0, 0] * xc + c2w[view, 0, 1] * yc + c2w[view, 0, 2]
        dy = c2w[view, 1, 0] * xc + c2w[view, 1, 1] * yc + c2w[view, 1, 2]
        dz = c2w[view, 2, 0] * xc + c2w[view, 2, 1] * yc + c2w[view, 2, 2]
        inv = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
        dirs[n, 0] = dx * inv
        dirs[n, 1] = dy * inv
        dirs[n, 2] = dz * inv
        for a in range(3):
            origins[n, a] = c2w[view, a, 3]
        if use_mask:
            m = mask[f]
            b = n * bg_stride
            for ch in range(3):
                colour = rgb[f, ch] if premultiplied else rgb[f, ch] * m
                targets[n, ch] = colour + (1.0 - m) * background[b, ch]
        else:
            for ch in range(3):
                targets[n, ch] = rgb[f, ch]
        if use_object:
            object_values[n] = object_mask[f]


def pixel_rays(flat: np.ndarray, offsets: np.ndarray, widths: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray,
               rgb: np.ndarray, mask: np.ndarray | None = None, premultiplied: bool = False,
               background: np.ndarray | None = None, object_mask: np.ndarray | None = None):
    """Origins (B, 3), unit directions (B, 3), targets (B, 3) and object-mask values (B,) (None without
    ``object_mask``) of the pixels ``flat`` (B,) int64.

    offsets (V + 1,) int64 and widths (V,) int64 lay out the stacked views; c2w (V, 4, 4) and intrinsics
    (V, 4) = (fx, fy, cx, cy) float64; rgb (P, 3) float32. With ``mask`` (P,) the target is composited on
    ``background`` ((3,) or (B, 3)): rgb * mask + (1 - mask) * background (rgb already multiplied by the
    mask when ``premultiplied``); without it the target is rgb.
    """
    flat = np.ascontiguousarray(flat, np.int64)
    n = flat.shape[0]
    bg = np.zeros((1, 3), np.float32) if background is None else np.asarray(background, np.float32).reshape(-1, 3)
    stride = 1 if bg.shape[0] == n and n > 1 else 0
    return _run(flat, False, np.uint64(0), 0, _NO_PIXELS, False, np.uint64(0), offsets, widths, c2w, intrinsics,
                rgb, mask, premultiplied, np.ascontiguousarray(bg), stride, object_mask)


def draw_pixel_rays(n: int, pixel_key: np.uint64, foreground: np.ndarray | None, foreground_fraction: float,
                    bg_key: np.uint64 | None, offsets: np.ndarray, widths: np.ndarray, c2w: np.ndarray,
                    intrinsics: np.ndarray, rgb: np.ndarray, mask: np.ndarray | None = None,
                    premultiplied: bool = False, background: np.ndarray | None = None,
                    object_mask: np.ndarray | None = None):
    """`pixel_rays` of ``n`` pixels drawn in the kernel from stream ``pixel_key``: uniformly over all pixels,
    except a ``foreground_fraction`` share (spread evenly over the batch) drawn uniformly from the pixels
    ``foreground`` (int64 flat indices). With ``bg_key`` each ray gets a random background colour (uniform in
    [0, 1)^3, from that stream) instead of ``background``. Returns (flat, origins, dirs, targets, object
    values, background (B, 3) or the given one)."""
    n_fg = int(round(foreground_fraction * n)) if foreground is not None and len(foreground) else 0
    if bg_key is not None:
        bg, stride = np.empty((n, 3), np.float32), 1
    else:
        bg = np.zeros((1, 3), np.float32) if background is None else np.asarray(background, np.float32).reshape(-1, 3)
        stride = 1 if bg.shape[0] == n and n > 1 else 0
    flat = np.empty(n, np.int64)
    origins, dirs, targets, values = _run(flat, True, np.uint64(pixel_key), n_fg,
                                          _NO_PIXELS if foreground is None else foreground, bg_key is not None,
                                          np.uint64(0 if bg_key is None else bg_key), offsets, widths, c2w,
                                          intrinsics, rgb, mask, premultiplied, bg, stride, object_mask)
    return flat, origins, dirs, targets, values, (bg if bg_key is not None else background)


def _run(flat, draw, pixel_key, n_fg, foreground, random_bg, bg_key, offsets, widths, c2w, intrinsics, rgb, mask,
         premultiplied, bg, stride, object_mask):
    n = flat.shape[0]
    origins = np.empty((n, 3), np.float32)
    dirs = np.empty((n, 3), np.float32)
    targets = np.empty((n, 3), np.float32)
    object_values = np.empty(n if object_mask is not None else 0, np.float32)
    _pixel_rays_kernel(flat, draw, pixel_key, n_fg, foreground, random_bg, bg_key, offsets, widths, c2w, intrinsics,
                       rgb, _NO_MASK if mask is None else mask, premultiplied, bg, stride,
                       _NO_MASK if object_mask is None else object_mask, origins, dirs, targets, object_values)
    return origins, dirs, targets, object_values if object_mask is not None else None


@njit(parallel=True, cache=True)
def _uncomposite_kernel(rgb, mask, colour):
    for n in prange(rgb.shape[0]):
        for ch in range(3):
            rgb[n, ch] -= (1.0 - mask[n]) * colour[ch]


def uncomposite(rgb: np.ndarray, mask: np.ndarray, colour) -> None:
    """In place, rgb (P, 3) float32 composited on ``colour`` with alpha ``mask`` (P,) back to premultiplied
    colour: rgb -= (1 - mask) * colour."""
    _uncomposite_kernel(rgb, mask, np.asarray(colour, np.float32))
