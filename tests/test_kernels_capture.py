"""The capture-loading kernels (RGBA compositing, visual-hull carving) held against their NumPy reference."""

import numpy as np
import pytest

from plenopack.kernels import reference as ref
from plenopack.kernels.capture import composite_rgba, visual_hull_counts
from plenopack.scene.io import decode_image


@pytest.mark.parametrize("background", [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.2, 0.7, 0.45)])
def test_composite_rgba_is_bit_identical_to_numpy(background):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(37, 53, 4), dtype=np.uint8)
    pixels[0, :, 3] = 0  # fully transparent and fully opaque rows
    pixels[1, :, 3] = 255
    rgb, alpha = composite_rgba(pixels, background)
    want_rgb, want_alpha = ref.composite_rgba(pixels, background)
    assert rgb.dtype == np.float32 and alpha.dtype == np.float32
    assert np.array_equal(rgb, want_rgb) and np.array_equal(alpha, want_alpha)
    assert np.array_equal(rgb[0], np.broadcast_to(np.float32(background), rgb[0].shape))


def test_composite_rgba_on_a_real_frame(data_dir):
    pixels = decode_image(data_dir / "scenes" / "lego" / "train" / "r_1.png", "RGBA")
    rgb, alpha = composite_rgba(pixels, (1.0, 1.0, 1.0))
    want_rgb, want_alpha = ref.composite_rgba(pixels, (1.0, 1.0, 1.0))
    assert np.array_equal(rgb, want_rgb) and np.array_equal(alpha, want_alpha)
    assert 0.0 < alpha.mean() < 1.0


def test_visual_hull_counts_match_numpy_on_real_masks(lego):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.3, 1.3, size=(20000, 3))
    views = slice(0, 40)
    seen, inside = visual_hull_counts(points, lego.masks[views], lego.intrinsics[views], lego.c2w[views])
    want_seen, want_inside = ref.visual_hull_counts(points, lego.masks[views], lego.intrinsics[views],
                                                    lego.c2w[views])
    assert np.array_equal(seen, want_seen) and np.array_equal(inside, want_inside)
    assert 0 < inside.sum() < seen.sum()  # some points project into the object, some beside it


def test_visual_hull_counts_skip_points_behind_or_outside_the_frame():
    pose = np.eye(4)  # camera at the origin looking down +z, 4 x 6 pixels
    mask = np.zeros((4, 6), np.float32)
    mask[1, 2] = 1.0
    k = np.array([[2.0, 2.0, 3.0, 2.0]])
    points = np.array([[-0.25, -0.25, 1.0],  # pixel (2, 1): in the mask
                       [0.0, 0.0, 1.0],  # pixel (3, 2): seen, outside the mask
                       [0.0, 0.0, -1.0],  # behind the camera
                       [10.0, 0.0, 1.0]])  # beside the frame
    seen, inside = visual_hull_counts(points, [mask], k, pose[None])
    assert seen.tolist() == [1, 1, 0, 0] and inside.tolist() == [1, 0, 0, 0]
    assert [a.tolist() for a in ref.visual_hull_counts(points, [mask], k, pose[None])] == [[1, 1, 0, 0], [1, 0, 0, 0]]


def test_loading_kernels_are_serial_and_release_the_gil():
    """Loaders may run on any thread (frames are read on a thread pool) beside other numba work."""
    from plenopack.kernels import capture

    for kernel in (capture._composite_rgba_kernel, capture._carve_view_kernel):
        assert kernel.targetoptions.get("nogil") is True and not kernel.targetoptions.get("parallel")
