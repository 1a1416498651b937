"""Kernels of scoring a render: compositing it over what lies behind it, and its squared error to a photo.

An evaluation scores each view on a second thread while the next one renders (`plenopack.evaluate`), so
these are serial and release the GIL (a parallel kernel there would launch beside the render's, which not
every threading layer takes). As NumPy expressions the compositing and the two PSNRs of an 800 x 800 view
(full frame and masked) took 55 ms, mostly float temporaries; fused, 6 ms. No fastmath: the composite
rounds as NumPy's float32 expression does (`plenopack.kernels.reference.composite_over`, the tests hold
them equal), and the error sums are float64 in pixel order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NO_MASK = np.zeros(0, np.float32)


@njit(nogil=True, cache=True)
def _composite_over_kernel(foreground, acc, behind, per_pixel, out):
    height, width = acc.shape
    for v in range(height):
        for u in range(width):
            rest = np.float32(1.0) - acc[v, u]
            for ch in range(3):
                b = behind[v, u, ch] if per_pixel else behind[0, 0, ch]
                out[v, u, ch] = min(max(foreground[v, u, ch] + rest * b, np.float32(0.0)), np.float32(1.0))


def composite_over(foreground: np.ndarray, acc: np.ndarray, behind) -> np.ndarray:
    """clip(foreground + (1 - acc) * behind, 0, 1) as float32 (H, W, 3): a render's premultiplied colour
    (H, W, 3) with accumulated opacity acc (H, W) over ``behind``, a colour (3,) or an image (H, W, 3)."""
    behind = np.asarray(behind, np.float32)
    per_pixel = behind.ndim == 3
    out = np.empty(foreground.shape, np.float32)
    _composite_over_kernel(np.ascontiguousarray(foreground, np.float32), np.ascontiguousarray(acc, np.float32),
                           np.ascontiguousarray(behind if per_pixel else behind.reshape(1, 1, 3)), per_pixel, out)
    return out


@njit(nogil=True, cache=True)
def _squared_error_kernel(pred, target, mask, use_mask):
    total = 0.0
    count = 0
    for p in range(target.shape[0]):
        if use_mask and not mask[p] > 0.5:
            continue
        for ch in range(target.shape[1]):
            d = min(max(np.float64(pred[p, ch]), 0.0), 1.0) - np.float64(target[p, ch])
            total += d * d
        count += target.shape[1]
    return total, count


def squared_error(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of squared differences in float64, number of values) between pred clipped to [0, 1] and target,
    images of one shape ((H, W, C) or (H, W)), over the pixels where mask (H, W) > 0.5 (all without a mask)."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"images of different shapes: {pred.shape} and {target.shape}")
    channels = target.shape[2] if target.ndim == 3 else 1
    pixels = target.size // max(channels, 1)
    use_mask = mask is not None
    mask = np.ascontiguousarray(mask, np.float32).reshape(-1) if use_mask else _NO_MASK
    if use_mask and mask.size != pixels:
        raise ValueError(f"mask of {mask.size} pixels for images of {pixels}")
    return _squared_error_kernel(np.ascontiguousarray(pred).reshape(pixels, channels),
                                 np.ascontiguousarray(target).reshape(pixels, channels), mask, use_mask)
