"""Evaluation scores each view while the next one renders: the rows must be those of a plain loop, in order."""

import numpy as np
import pytest

from plenopack.evaluate import evaluate
from plenopack.kernels.render import _pinhole_kernel
from plenopack.metrics import psnr, ssim
from plenopack.render import render_view


def test_scores_and_callbacks_match_a_view_by_view_loop_in_view_order(lego_small, tiny_fit):
    grid, scene = tiny_fit.grid, lego_small
    seen, lpips_calls = [], []

    def fake_lpips(pred, target):  # any callable (pred, target) -> float; records what it was given
        lpips_calls.append(float(np.abs(pred - target).mean()))
        return lpips_calls[-1]

    result = evaluate(grid, scene, lpips=fake_lpips, on_view=lambda i, rgb, photo, row: seen.append((i, rgb, row)))
    ids = [int(i) for i in scene.split_ids("test")]
    assert [row["view"] for row in result["per_view"]] == ids
    assert [i for i, _, _ in seen] == ids
    for (i, rgb, row), lp in zip(seen, lpips_calls):
        h, w = scene.image_size(i)
        fg, _, acc = render_view(grid, scene.c2w[i], scene.intrinsics[i], h, w, (0.0, 0.0, 0.0),
                                 use_background_model=False)
        expected = np.clip(fg + (1.0 - acc)[..., None] * np.float32(1.0), 0.0, 1.0)
        np.testing.assert_array_equal(rgb, expected)
        assert row["psnr"] == psnr(expected, scene.images[i])
        assert row["ssim"] == ssim(expected, scene.images[i])
        assert row["lpips"] == lp == pytest.approx(float(np.abs(expected - scene.images[i]).mean()))
        assert row["psnr_masked"] == psnr(fg + (1.0 - acc)[..., None] * scene.images[i], scene.images[i],
                                          scene.masks[i])
    assert result["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["per_view"]]))
    assert result["worst_view"] == min(result["per_view"], key=lambda r: r["psnr"])["view"]


def test_the_view_kernel_releases_the_gil_so_scoring_runs_beside_it():
    assert _pinhole_kernel.targetoptions.get("nogil") is True
