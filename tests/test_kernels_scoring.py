"""The scoring kernels (composite over a background, squared error) held against NumPy."""

import numpy as np
import pytest

from plenopack.kernels import reference as ref
from plenopack.kernels.scoring import composite_over, squared_error
from plenopack.metrics import psnr


def render_like(seed=0, h=29, w=41):
    rng = np.random.default_rng(seed)
    acc = rng.random((h, w)).astype(np.float32)
    acc[0] = 0.0
    acc[1] = 1.0
    foreground = (rng.random((h, w, 3)) * acc[..., None] * 1.1).astype(np.float32)  # a little above 1: clipped
    return foreground, acc


@pytest.mark.parametrize("behind", ["colour", "image"])
def test_composite_over_is_bit_identical_to_numpy(behind):
    foreground, acc = render_like()
    back = (np.float32([1.0, 0.5, 0.0]) if behind == "colour"
            else np.random.default_rng(1).random(foreground.shape).astype(np.float32))
    got = composite_over(foreground, acc, back)
    assert got.dtype == np.float32 and got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_array_equal(got, ref.composite_over(foreground, acc, back))
    np.testing.assert_array_equal(got[0], np.broadcast_to(back, foreground.shape)[0])  # nothing in front


def test_squared_error_matches_numpy_with_and_without_a_mask():
    rng = np.random.default_rng(2)
    pred = (rng.random((31, 17, 3)) * 1.4 - 0.2).astype(np.float32)  # outside [0, 1]: clipped
    target = rng.random((31, 17, 3)).astype(np.float32)
    mask = rng.random((31, 17)).astype(np.float32)
    err = (np.clip(pred, 0, 1).astype(np.float64) - target) ** 2
    total, count = squared_error(pred, target)
    assert count == err.size and total == pytest.approx(err.sum(), rel=1e-12)
    total, count = squared_error(pred, target, mask)
    assert count == 3 * (mask > 0.5).sum() and total == pytest.approx(err[mask > 0.5].sum(), rel=1e-12)
    assert psnr(pred, target, mask) == pytest.approx(-10 * np.log10(err[mask > 0.5].mean()), abs=1e-9)
    assert np.isnan(psnr(pred, target, np.zeros_like(mask)))  # no object pixel
    gray = squared_error(pred[..., 0].astype(np.float64), target[..., 0].astype(np.float64))
    assert gray[1] == 31 * 17 and gray[0] == pytest.approx(err[..., 0].sum(), rel=1e-12)


def test_squared_error_refuses_images_of_different_shapes():
    with pytest.raises(ValueError, match="different shapes"):
        squared_error(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_scoring_kernels_are_serial_and_release_the_gil():
    """They run on the evaluation's scoring thread beside the render's parallel kernel."""
    from plenopack.kernels import scoring

    for kernel in (scoring._composite_over_kernel, scoring._squared_error_kernel):
        assert kernel.targetoptions.get("nogil") is True and not kernel.targetoptions.get("parallel")
