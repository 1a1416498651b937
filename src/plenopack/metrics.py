"""Image quality metrics on float images in [0, 1] (H x W x 3): PSNR, SSIM, and LPIPS (see lpips.py)."""

from __future__ import annotations

import cv2
import numpy as np

from plenopack.kernels.scoring import squared_error

SSIM_SIGMA = 1.5  # Gaussian window of the standard SSIM (Wang et al. 2004), truncated at 3.5 sigma: 11 x 11
SSIM_RADIUS = 5
SSIM_C1 = 0.01 ** 2  # (K1 L)^2 and (K2 L)^2 with data range L = 1
SSIM_C2 = 0.03 ** 2


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB, with pred clipped to [0, 1] (PeRFception's convention).

    With ``mask`` (H x W, 1 = object) only pixels where mask > 0.5 count.
    """
    total, count = squared_error(pred, target, mask)
    if count == 0:
        return float("nan")
    mse = total / count
    return float("inf") if mse == 0 else -10.0 * float(np.log10(mse))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Standard SSIM: 11x11 Gaussian window (sigma 1.5), population covariance, data range 1, mean over RGB and
    over the pixels at least 5 from the border; the same number as scikit-image's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`` (the tests hold them
    together), with OpenCV's Gaussian filter in float32: 2.5x faster at 800 x 800."""
    x = np.clip(pred, 0.0, 1.0).astype(np.float32)
    y = np.asarray(target, dtype=np.float32)

    def blur(a):
        return cv2.GaussianBlur(a, (2 * SSIM_RADIUS + 1,) * 2, SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    var_x, var_y, cov = blur(x * x) - mxx, blur(y * y) - myy, blur(x * y) - mxy
    s = ((2 * mxy + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mxx + myy + SSIM_C1) * (var_x + var_y + SSIM_C2))
    r = SSIM_RADIUS
    return float(s[r:-r, r:-r].mean(dtype=np.float64))
