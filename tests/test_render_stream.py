"""`plenopack render` frame by frame: generator orbits, streaming GIF/MP4 writers, capture cameras, depth."""

import inspect
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

import plenopack
from plenopack.pipeline import scene_record
from plenopack.errors import PlenopackError
from plenopack.fileformat import write_plen
from plenopack.metrics import psnr
from plenopack.render import (AnimationWriter, colour_depth, render_orbit, surface_distance, to_uint8, world_scale,
                              write_animation)
from plenopack.scene import load_scene
from tests.scene_fixtures import make_cameras, write_colmap


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    c2w, k = make_cameras(11, 24, 32, seed=4)
    return write_colmap(tmp_path_factory.mktemp("capture") / "sphere", c2w, k, 24, 32)


@pytest.fixture(scope="module")
def plen(tmp_path_factory, tiny_fit, capture):
    """The tiny lego grid, recorded as fitted on the capture above (its normalisation, max_side 40)."""
    path = tmp_path_factory.mktemp("stream") / "scene.plen"
    scene = load_scene(capture, max_side=40)
    write_plen(path, tiny_fit.grid, {"scene": scene_record(scene, 40), "eval_background": [1, 1, 1]})
    return path


def test_orbits_are_generators_and_writers_stream(tiny_fit, tmp_path):
    frames = render_orbit(tiny_fit.grid, 4, size=24)
    assert inspect.isgenerator(frames)
    frames = list(frames)
    assert write_animation(iter(frames), tmp_path / "t.gif", fps=10) == 4
    gif = iio.imread(tmp_path / "t.gif")
    assert gif.shape == (4, 24, 24, 3) and psnr(gif[2] / 255, frames[2] / 255) > 25  # palettised
    assert write_animation(iter(frames), tmp_path / "t.mp4", fps=10) == 4
    mp4 = iio.imread(tmp_path / "t.mp4")
    assert mp4.shape == (4, 24, 24, 3) and psnr(mp4[1] / 255, frames[1] / 255) > 25  # H.264
    odd = [np.pad(f, ((0, 1), (0, 0), (0, 0)))[:, 1:] for f in frames]  # 25 x 23: H.264 needs even sizes
    write_animation(iter(odd), tmp_path / "odd.mp4")
    assert iio.imread(tmp_path / "odd.mp4").shape == (4, 26, 24, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4", "t.gif", "t.mp4"]  # no temporary files left


def test_writer_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(PlenopackError, match="no frames"):
        write_animation([], tmp_path / "empty.gif")
    with pytest.raises(PlenopackError, match="an animation needs one size"):
        with AnimationWriter(tmp_path / "mixed.mp4") as w:
            w.append(np.zeros((16, 16, 3), np.uint8))
            w.append(np.zeros((16, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_render_capture_cameras_with_depth(plen, capture, tmp_path):
    out, depth_dir = tmp_path / "test.mp4", tmp_path / "depth"
    r = subprocess.run([sys.executable, "-m", "plenopack", "render", str(plen), "-o", str(out), "--scene",
                        str(capture), "--cameras", "test", "--depth", str(depth_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scene = load_scene(capture, max_side=40)
    ids = scene.test_ids
    video = iio.imread(out)
    assert video.shape == (len(ids), 24, 32, 3)
    packed = plenopack.open(plen)
    renders = [to_uint8(packed.render(scene.c2w[i], scene.intrinsics[i], 24, 32).rgb) / 255 for i in ids]
    scores = np.array([[psnr(frame / 255, r) for r in renders] for frame in video])
    assert np.all(np.diag(scores) > 22)  # H.264 with 4:2:0 chroma on 32 x 24 frames
    assert np.all(scores.argmax(axis=1) == np.arange(len(ids)))  # each frame is its own camera's view, in order
    view = packed.render(scene.c2w[ids[0]], scene.intrinsics[ids[0]], 24, 32)
    depth = np.load(depth_dir / "depth.npy")
    assert depth.shape == (len(ids), 24, 32) and depth.dtype == np.float32
    scale = world_scale(scene.world_to_unit)
    assert abs(scale - 1) > 0.05  # the capture's world is scaled into the cube: world units differ
    expected = surface_distance(view.depth, view.acc) / scale
    assert np.isfinite(expected).mean() > 0.05
    np.testing.assert_allclose(depth[0], expected, rtol=1e-6)  # NaN where the ray meets no surface, in both
    png = iio.imread(depth_dir / "depth_0000.png")
    distance = surface_distance(view.depth, view.acc)
    eye = np.linalg.norm(scene.c2w[ids[0]][:3, 3])
    np.testing.assert_array_equal(png, colour_depth(distance, max(eye - np.sqrt(3), 0), eye + np.sqrt(3)))
    assert len(list(depth_dir.glob("depth_*.png"))) == len(ids)


def test_render_rejects_an_unknown_camera_set(plen, capture, tmp_path):
    r = subprocess.run([sys.executable, "-m", "plenopack", "render", str(plen), "-o", str(tmp_path / "x.gif"),
                        "--scene", str(capture), "--cameras", "val"], capture_output=True, text=True)
    assert r.returncode == 2 and "--cameras must be one of test, train, all" in r.stderr
    assert not (tmp_path / "x.gif").exists()


def test_views_rendered_tile_by_tile_equal_rays_in_row_order(tiny_fit):
    """render_view makes and marches its rays in 16 x 16 tiles (cache-friendly) in one kernel; the image is the
    one pixel_rays' row-ordered rays give render_rays, also for sizes that are no multiple of a tile and for a
    per-pixel background."""
    from plenopack.cameras import orbit_poses, pixel_rays
    from plenopack.kernels import render_rays
    from plenopack.render import RENDER_STOP_THRESH, orbit_intrinsics, render_view

    g = tiny_fit.grid
    height, width = 37, 50
    pose, k = orbit_poses(3, 3.0, 25.0)[1], orbit_intrinsics(50)
    k = np.array([k[0], k[1], width / 2, height / 2])
    behind = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)
    rgb, depth, acc = render_view(g, pose, k, height, width, behind)
    o, d = pixel_rays(pose, k, height, width)
    ref = render_rays(g.links, g.density, g.sh, g.sh_degree, o, d, behind.reshape(-1, 3),
                      stop_thresh=RENDER_STOP_THRESH)
    assert (acc > 0.5).mean() > 0.05
    np.testing.assert_allclose(rgb.reshape(-1, 3), np.clip(ref[0], 0, 1), atol=1e-6)
    np.testing.assert_allclose(depth.ravel(), ref[1], atol=1e-6)
    np.testing.assert_allclose(acc.ravel(), ref[2], atol=1e-6)


def test_views_stop_marching_where_the_rest_cannot_move_a_pixel_by_more_than_the_threshold(tiny_fit):
    """Images stop a ray once its transmittance T is below RENDER_STOP_THRESH (faster than the fits' 1e-4):
    what lies behind can change a pixel by at most T, so every pixel is within the threshold of a full march,
    and the threshold does cut rays short on this fit."""
    from plenopack.cameras import orbit_poses
    from plenopack.render import RENDER_STOP_THRESH, orbit_intrinsics, render_view

    g = tiny_fit.grid
    pose, k = orbit_poses(3, 3.0, 25.0)[0], orbit_intrinsics(64)
    rgb, _, acc = render_view(g, pose, k, 64, 64, (0.0, 0.0, 0.0))
    full, _, full_acc = render_view(g, pose, k, 64, 64, (0.0, 0.0, 0.0), stop_thresh=1e-9)
    assert 1e-4 < RENDER_STOP_THRESH <= 1e-3
    assert np.abs(rgb - full).max() <= RENDER_STOP_THRESH
    assert (full_acc - acc).max() <= RENDER_STOP_THRESH
    assert ((acc > 1 - RENDER_STOP_THRESH) & (full_acc > acc)).any()  # some rays did stop early
