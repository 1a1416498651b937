"""CO3D, COLMAP and ScanNet loaders: round trips through fixtures written in the exact formats."""

import subprocess
import time
import sys

import numpy as np
import pytest

from plenopack.errors import PlenopackError
from plenopack.scene import detect_format, load_scene
from tests.scene_fixtures import make_cameras, world_poses, write_co3d, write_colmap, write_scannet

H, W = 24, 32


def assert_round_trip(scene, c2w, k, ids=None):
    ids = np.arange(len(c2w)) if ids is None else ids
    np.testing.assert_allclose(world_poses(scene), c2w[ids], atol=1e-5)
    np.testing.assert_allclose(scene.intrinsics, np.tile(k, (len(ids), 1)), rtol=1e-5)
    assert all(img.shape == (H, W, 3) for img in scene.images)


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_co3d_round_trip(tmp_path, fmt):
    c2w, k = make_cameras(12, H, W)
    seq = write_co3d(tmp_path, c2w, k, H, W, fmt=fmt)
    assert detect_format(seq) == "co3d"
    scene = load_scene(seq)
    assert scene.category == "teddybear" and scene.source_format == "co3d"
    assert scene.test_ids.tolist() == [0, 10]  # every 10th frame
    assert scene.masks is not None
    assert_round_trip(scene, c2w, k)


def test_co3d_drops_outlier_and_duplicate_cameras(tmp_path):
    c2w, k = make_cameras(12, H, W)
    c2w[5, :3, 3] *= 40  # a camera far away
    c2w[7] = c2w[6]  # a duplicate pose
    scene = load_scene(write_co3d(tmp_path, c2w, k, H, W), visual_hull=False)
    assert scene.num_views == 10
    keep = [i for i in range(12) if i not in (5, 7)]
    assert_round_trip(scene, c2w, k, np.array(keep))


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("model", ["PINHOLE", "SIMPLE_RADIAL", "OPENCV"])
def test_colmap_round_trip(tmp_path, binary, model):
    c2w, k = make_cameras(9, H, W)
    if model == "SIMPLE_RADIAL":
        k = k.copy()
        k[1] = k[0]
    root = write_colmap(tmp_path / "proj", c2w, k, H, W, binary=binary, model=model)
    assert detect_format(root) == "colmap"
    scene = load_scene(root)
    assert scene.test_ids.tolist() == [0, 8]
    assert_round_trip(scene, c2w, k)
    centred = load_scene(root, object_centric=False)
    assert np.all(np.abs(centred.c2w[:, :3, 3]) <= 1.0 + 1e-6)


def test_colmap_unsupported_model_is_one_clear_line(tmp_path):
    c2w, k = make_cameras(4, H, W)
    root = write_colmap(tmp_path / "p", c2w, k, H, W, cameras=[("FOV", [k[0], k[1], k[2], k[3], 0.1], W, H)])
    r = subprocess.run([sys.executable, "-m", "plenopack", "info-scene", str(root)], capture_output=True, text=True)
    assert r.returncode == 2 and "cameras.txt" in r.stderr and "FOV is not supported" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_scannet_drops_lost_tracking_and_fits_cube(tmp_path):
    c2w, k = make_cameras(11, H, W)
    root = write_scannet(tmp_path / "scene0000_00", c2w, k, H, W, bad_pose=3)
    assert detect_format(root) == "scannet"
    scene = load_scene(root)
    keep = np.array([i for i in range(11) if i != 3])
    assert scene.num_views == 10 and not scene.is_object_centric
    assert_round_trip(scene, c2w, k, keep)
    assert np.all(np.abs(scene.c2w[:, :3, 3]) <= 1.0)


def test_missing_pieces_are_named(tmp_path):
    c2w, k = make_cameras(4, H, W)
    root = write_scannet(tmp_path / "s", c2w, k, H, W)
    (root / "intrinsic" / "intrinsic_color.txt").unlink()
    (root / "intrinsic" / "x").write_text("")
    r = subprocess.run([sys.executable, "-m", "plenopack", "info-scene", str(root), "--format", "scannet"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "intrinsic_color.txt: file is missing" in r.stderr
    seq = write_co3d(tmp_path / "co3d", c2w, k, H, W)
    (seq / "images" / "frame000003.jpg").unlink()
    r = subprocess.run([sys.executable, "-m", "plenopack", "info-scene", str(seq)], capture_output=True, text=True)
    assert r.returncode == 2 and "frame000003.jpg: image file is missing" in r.stderr


def test_frames_are_read_in_parallel_in_order_and_the_first_bad_frame_is_named(tmp_path, monkeypatch):
    """`parallel_map` keeps the frames' order, runs on more than one thread when CPUs allow, and a broken frame
    raises its own error (naming its file), not another frame's."""
    import threading

    from plenopack.scene import io

    monkeypatch.setattr(io, "available_cpus", lambda: 4)
    threads = set()

    def slow_square(x):
        threads.add(threading.get_ident())
        time.sleep(0.02 * (5 - x % 5))  # later items finish first
        return x * x

    assert io.parallel_map(slow_square, range(20)) == [x * x for x in range(20)]
    assert len(threads) > 1
    good = tmp_path / "good.png"
    from PIL import Image

    Image.new("RGB", (4, 3)).save(good)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PlenopackError, match="bad.png"):
        io.parallel_map(lambda p: io.read_image(p), [good, tmp_path / "bad.png", tmp_path / "missing.png"])
