import numpy as np
import pytest

from plenopack.metrics import psnr, ssim


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.float32)
    b = np.full((8, 8, 3), 0.1, np.float32)
    assert psnr(b, a) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")
    assert psnr(np.full_like(a, 2.0), np.ones_like(a)) == float("inf")  # prediction clipped to [0, 1]


def test_psnr_mask_counts_only_object_pixels():
    target = np.zeros((4, 4, 3))
    pred = np.zeros((4, 4, 3))
    pred[:2] = 1.0  # wrong only in the top half
    mask = np.zeros((4, 4))
    mask[2:] = 1
    assert psnr(pred, target, mask) == float("inf")
    assert psnr(pred, target) == pytest.approx(-10 * np.log10(0.5))


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert ssim(noisy, img) < 0.9
