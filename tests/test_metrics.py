from pathlib import Path

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


def test_ssim_is_scikit_images_standard_ssim():
    """Held against scikit-image's reference on bundled real photos (odd sizes, a blurred and a shifted copy)."""
    import imageio.v3 as iio
    from skimage.metrics import structural_similarity

    root = Path(__file__).parent.parent / "data" / "lpips"
    ref = iio.imread(root / "ex_ref.png")[..., :3].astype(np.float32) / 255
    for other in (iio.imread(root / "ex_p0.png")[..., :3].astype(np.float32) / 255,
                  np.roll(ref, 3, axis=1)[:61, :59], np.clip(ref * 1.3 - 0.1, 0, 1)[:61, :59]):
        target = ref[: other.shape[0], : other.shape[1]]
        expected = structural_similarity(np.clip(other, 0, 1), target, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=-1)
        assert ssim(other, target) == pytest.approx(expected, abs=1e-5)
        assert ssim(other, target) < 0.99


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert ssim(noisy, img) < 0.9
