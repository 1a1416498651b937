"""Training: it learns, it is deterministic, upsampling and pruning do what they claim."""

import numpy as np
import pytest

from plenopack.errors import PlenopackError
from plenopack.evaluate import evaluate
from plenopack.fit import FitConfig, TrainingRays, fit, load_preset, preset_names, prune_mask, resample
from plenopack.grid import Grid


def test_presets_load_and_override():
    assert {"fast", "blender", "llff", "co3d", "tiny"} <= set(preset_names())
    co3d = load_preset("co3d")
    assert co3d.reso == [128, 256] and co3d.steps == [25600, 51200]
    assert (co3d.lambda_tv, co3d.lambda_tv_sh, co3d.prune_threshold) == (5e-5, 5e-3, 20.0)
    c = load_preset("fast", reso=[32, 64], steps=[1, 2], seed=3)
    assert c.reso == [32, 64] and c.seed == 3
    assert c.config_hash() != load_preset("fast").config_hash()
    with pytest.raises(PlenopackError, match="unknown preset"):
        load_preset("nope")
    with pytest.raises(PlenopackError, match="unknown fit option"):
        load_preset("fast", not_a_field=1)
    with pytest.raises(PlenopackError, match="equal length"):
        FitConfig(reso=[16, 32], steps=[5])


def test_fit_learns_the_scene(lego_small, tiny_fit):
    initial = evaluate(Grid.dense(16, 1, density=0.1), lego_small)["psnr"]
    final = evaluate(tiny_fit.grid, lego_small)["psnr"]
    assert final > initial + 8.0
    assert final > 18.0
    assert tiny_fit.grid.resolution == 32
    assert tiny_fit.log[-1]["step"] == 120


def test_same_seed_same_grid(lego_small, tiny_fit):
    again = fit(lego_small, load_preset("tiny"))
    assert np.array_equal(again.grid.links, tiny_fit.grid.links)
    assert np.array_equal(again.grid.density, tiny_fit.grid.density)
    assert np.array_equal(again.grid.sh, tiny_fit.grid.sh)
    other = fit(lego_small, load_preset("tiny", seed=1))
    assert not np.array_equal(other.grid.density, tiny_fit.grid.density)


def test_sigma_pruning_keeps_exactly_voxels_above_threshold():
    rng = np.random.default_rng(0)
    g = Grid.dense(8, 0)
    g.density[:] = rng.random(g.num_voxels).astype(np.float32) * 40
    cfg = load_preset("tiny", prune="sigma", prune_threshold=20.0, dilate=0)
    mask = prune_mask(g, 8, cfg, None)  # same resolution: resampling is the identity
    expect = (g.density > 20.0).reshape(8, 8, 8)
    assert np.array_equal(mask, expect)
    dilated = prune_mask(g, 8, load_preset("tiny", prune_threshold=20.0, dilate=1), None)
    from scipy import ndimage
    assert np.array_equal(dilated, ndimage.binary_dilation(expect, np.ones((3, 3, 3), bool)))


def test_upsampling_preserves_the_render(lego_small, tiny_fit):
    coarse = tiny_fit.grid
    fine = resample(coarse, 2 * coarse.resolution, load_preset("tiny", prune="none"))
    assert fine.resolution == 2 * coarse.resolution
    a = evaluate(coarse, lego_small)["psnr"]
    b = evaluate(fine, lego_small)["psnr"]
    assert abs(a - b) < 1.5


def test_weight_pruning_keeps_what_matters(lego_small, tiny_fit):
    rays = TrainingRays(lego_small)
    loose = resample(tiny_fit.grid, 32, load_preset("tiny", prune="weight", prune_threshold=0.32, dilate=0), rays)
    pruned = resample(tiny_fit.grid, 32, load_preset("tiny", prune="weight", prune_threshold=3.2, dilate=0), rays)
    assert 0 < pruned.num_voxels < loose.num_voxels
    before = evaluate(tiny_fit.grid, lego_small)["psnr"]
    after = evaluate(pruned, lego_small)["psnr"]
    assert after > before - 1.0


def test_pruning_everything_is_reported(lego_small):
    with pytest.raises(PlenopackError, match="pruning removed every voxel at resolution 32"):
        fit(lego_small, load_preset("tiny", prune="sigma", prune_threshold=1e9))


def test_divergence_is_reported(lego_small):
    with pytest.raises(PlenopackError, match="diverged"):
        fit(lego_small, load_preset("tiny", lr_sh=1e38, lr_sh_final=1e38, lr_sigma=1e38, lr_sigma_final=1e38,
                                    lr_sigma_delay_steps=0, log_every=1))


def test_random_background_targets(lego_small):
    rays = TrainingRays(lego_small)
    assert rays.premultiplied
    flat = np.arange(rays.count)
    t_white = rays.batch(flat, np.ones(3, np.float32))[2]
    expect = np.concatenate([lego_small.images[i].reshape(-1, 3) for i in lego_small.train_ids])
    np.testing.assert_allclose(t_white, expect, atol=1e-6)
    t_black = rays.batch(flat, np.zeros(3, np.float32))[2]
    bg_pixels = rays.mask < 1e-3
    assert np.all(t_black[bg_pixels] < 1e-5)


def test_foreground_fraction_sampling(lego_small):
    rays = TrainingRays(lego_small)
    object_share = float((rays.object_mask > 0.5).mean())
    assert 0.05 < object_share < 0.5
    uniform = rays.draw(20000, np.uint64(11))[0]
    biased = rays.draw(20000, np.uint64(11), foreground_fraction=0.6)[0]
    assert abs(float((rays.object_mask[uniform] > 0.5).mean()) - object_share) < 0.02
    on_object = float((rays.object_mask[biased] > 0.5).mean())
    assert on_object == pytest.approx(0.6 + 0.4 * object_share, abs=0.02)  # 60% forced, the rest uniform
    for chunk in np.array_split(rays.object_mask[biased] > 0.5, 8):  # spread evenly: every chunk of rays gets its share
        assert chunk.mean() == pytest.approx(0.6 + 0.4 * object_share, abs=0.05)
    np.testing.assert_array_equal(biased, rays.draw(20000, np.uint64(11), foreground_fraction=0.6)[0])
    assert not np.array_equal(biased, rays.draw(20000, np.uint64(12), foreground_fraction=0.6)[0])
    full_frame = TrainingRays(lego_small, use_masks=False)  # masks still steer sampling on full frames
    assert full_frame.mask is None and full_frame.foreground is not None
    with pytest.raises(PlenopackError, match="foreground_fraction"):
        load_preset("tiny", foreground_fraction=1.5)


def test_learning_rates_decay_over_the_fit_or_over_each_stage():
    whole = load_preset("tiny", reso=[16, 32], steps=[100, 300], lr_sigma=30.0, lr_sigma_final=3.0, lr_sh=1e-2,
                        lr_sh_final=1e-4, lr_sigma_delay_steps=0)
    assert whole.learning_rates(0, 400) == pytest.approx((30.0, 1e-2))
    assert whole.learning_rates(200, 400) == pytest.approx((30.0 * 0.1 ** 0.5, 1e-2 * 0.01 ** 0.5))
    assert whole.learning_rates(400, 400) == pytest.approx((3.0, 1e-4))
    staged = whole.replace(lr_sigma=[30.0, 10.0], lr_sigma_final=[20.0, 1.0], lr_sh=[1e-2, 1e-3])
    assert staged.learning_rates(0, 400) == pytest.approx((30.0, 1e-2))
    assert staged.learning_rates(50, 400) == pytest.approx(((30.0 * 20.0) ** 0.5, (1e-2 * 1e-4) ** 0.5))
    assert staged.learning_rates(100, 400) == pytest.approx((10.0, 1e-3))  # the second stage starts afresh
    assert staged.learning_rates(250, 400) == pytest.approx((10.0 ** 0.5, 1e-3 ** 0.5 * 1e-2))
    assert staged.learning_rates(399, 400)[0] == pytest.approx(1.0, rel=0.01)
    warm = staged.replace(lr_sigma_delay_steps=100, lr_sigma_delay_mult=0.01)
    assert warm.learning_rates(0, 400)[0] == pytest.approx(0.3)  # svox2's warm-up from the fit's start
    assert warm.learning_rates(150, 400) == staged.learning_rates(150, 400)
    with pytest.raises(PlenopackError, match="lr_sh_final must be one number or one per stage"):
        whole.replace(lr_sh_final=[1e-4, 1e-5, 1e-6])
    with pytest.raises(PlenopackError, match="lr_sigma must lie in"):
        whole.replace(lr_sigma=[30.0, -1.0])


def test_fit_is_identical_for_any_thread_count(lego_small):
    """Every draw is counter-based and every gradient sum runs in a fixed order: 1 and 2 threads fit the same
    grid, bit for bit."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    config = load_preset("tiny", steps=[20, 20])
    before = numba.get_num_threads()
    grids = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            grids.append(fit(lego_small, config).grid)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(grids[0].links, grids[1].links)
    np.testing.assert_array_equal(grids[0].density, grids[1].density)
    np.testing.assert_array_equal(grids[0].sh, grids[1].sh)
