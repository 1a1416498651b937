"""Kernels of loading a capture: RGBA frames composited on a background, and the masks' visual hull carved.

Both ran as NumPy expressions over whole arrays before: compositing one 800 x 800 RGBA frame made five
float temporaries (26 ms a frame, more than decoding its PNG; the kernel: 3 ms), and the hull projected
262,144 lattice points through every view with a matrix product each (about 2 s for lego's 200 views; the
kernel: 0.7 s). The kernels give the same numbers as those expressions (`plenopack.kernels.reference.
composite_rgba` and `visual_hull_counts`, which the tests hold them against). Both are serial and release
the GIL: a loader may run on any thread, beside other loaders or a render, and not every numba threading
layer takes two parallel kernels at once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)  # no fastmath: divisions, products and sums round as NumPy's float32 ones do
def _composite_rgba_kernel(pixels, background, rgb, alpha):
    height, width = alpha.shape
    full = np.float32(255.0)
    for v in range(height):
        for u in range(width):
            a = np.float32(pixels[v, u, 3]) / full
            rest = np.float32(1.0) - a
            alpha[v, u] = a
            for ch in range(3):
                rgb[v, u, ch] = (np.float32(pixels[v, u, ch]) / full) * a + background[ch] * rest


def composite_rgba(pixels: np.ndarray, background) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGBA pixels (H, W, 4) -> (colour composited on ``background`` (H, W, 3) float32 in [0, 1], alpha
    (H, W) float32): rgb * alpha + background * (1 - alpha) with rgb and alpha the pixels / 255.

    One pass, serial, releasing the GIL: loaders call it for many frames at once from a thread pool
    (`plenopack.scene.io.parallel_map`)."""
    height, width = pixels.shape[:2]
    rgb = np.empty((height, width, 3), np.float32)
    alpha = np.empty((height, width), np.float32)
    _composite_rgba_kernel(np.ascontiguousarray(pixels, np.uint8), np.asarray(background, np.float32), rgb, alpha)
    return rgb, alpha


@njit(nogil=True, cache=True)
def _carve_view_kernel(points, w2c, fx, fy, cx, cy, mask, seen, inside):
    height, width = mask.shape
    for n in range(points.shape[0]):
        x = points[n, 0]
        y = points[n, 1]
        z = points[n, 2]
        pz = w2c[2, 0] * x + w2c[2, 1] * y + w2c[2, 2] * z + w2c[2, 3]
        if not pz > 1e-6:
            continue
        px = w2c[0, 0] * x + w2c[0, 1] * y + w2c[0, 2] * z + w2c[0, 3]
        py = w2c[1, 0] * x + w2c[1, 1] * y + w2c[1, 2] * z + w2c[1, 3]
        fu = math.floor(fx * px / pz + cx)
        fv = math.floor(fy * py / pz + cy)
        if fu < 0.0 or fu >= width or fv < 0.0 or fv >= height:
            continue
        seen[n] += 1
        if mask[int(fv), int(fu)] > 0.5:
            inside[n] += 1


def visual_hull_counts(points: np.ndarray, masks, intrinsics: np.ndarray, c2w: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each point (M, 3) (frame of the poses): (views that see it in front of them and inside their frame,
    views among those whose mask > 0.5 at its pixel), both (M,) int32. Pixel (u, v) covers [u, u + 1) x
    [v, v + 1); masks (H, W) float in [0, 1], one per view, with intrinsics (fx, fy, cx, cy) and OpenCV
    camera-to-world poses (N, 4, 4)."""
    points = np.ascontiguousarray(points, np.float64)
    seen = np.zeros(len(points), np.int32)
    inside = np.zeros(len(points), np.int32)
    for mask, (fx, fy, cx, cy), pose in zip(masks, np.asarray(intrinsics, np.float64), np.asarray(c2w, np.float64)):
        w2c = np.linalg.inv(pose)
        _carve_view_kernel(points, w2c, fx, fy, cx, cy, np.ascontiguousarray(mask, np.float32), seen, inside)
    return seen, inside
