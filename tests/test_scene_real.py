"""The bundled real captures load with the right counts, and their cameras look at the object."""

import subprocess
import sys

import numpy as np
import pytest

from plenopack.cameras import project
from plenopack.scene.normalize import visual_hull_box


def assert_object_inside_every_mask(scene, point=np.zeros(3)):
    for i in range(scene.num_views):
        uv, z = project(point[None], scene.c2w[i], scene.intrinsics[i])
        h, w = scene.image_size(i)
        u, v = int(uv[0, 0]), int(uv[0, 1])
        assert z[0] > 0 and 0 <= u < w and 0 <= v < h
        m = scene.masks[i]
        window = m[max(v - 3, 0):v + 4, max(u - 3, 0):u + 4]
        assert window.max() > 0.5, f"view {i}: object centre projects outside the mask"


def assert_cameras_look_at_cube(scene):
    o = scene.c2w[:, :3, 3]
    d = scene.c2w[:, :3, 2]
    closest = o - np.sum(o * d, axis=1, keepdims=True) * d  # point of each optical axis nearest the origin
    assert np.linalg.norm(closest, axis=1).max() < 0.5
    assert np.all(np.linalg.norm(o, axis=1) > 1.0)  # outside the object


def test_lego_counts_and_geometry(lego):
    assert lego.source_format == "blender"
    assert (lego.train_ids.size, lego.test_ids.size) == (87, 13)
    assert all(img.shape == (200, 200, 3) for img in lego.images)
    assert lego.images[0].dtype == np.float32 and 0.0 <= lego.images[0].min() and lego.images[0].max() <= 1.0
    assert np.allclose(lego.images[0][0, 0], 1.0)  # composited on white
    assert_object_inside_every_mask(lego)
    assert_cameras_look_at_cube(lego)
    rot = lego.c2w[:, :3, :3]
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-5)  # the files store float32 rotations


def test_visual_hull_puts_whole_object_in_cube(lego, ethiopian_head):
    for scene in (lego, ethiopian_head):
        lo, hi = visual_hull_box(scene.masks, scene.intrinsics, scene.c2w, extent=1.2)
        assert np.all(lo > -1.05) and np.all(hi < 1.05)
        assert np.max(hi - lo) > 1.4  # and fills most of it


def test_ethiopian_head_counts_and_geometry(ethiopian_head):
    s = ethiopian_head
    assert s.source_format == "llff" and s.num_views == 66
    assert s.test_ids.tolist() == list(range(0, 66, 8))
    assert all(img.shape == (400, 400, 3) for img in s.images)
    assert s.masks is not None and s.masks[0].shape == (400, 400)
    # focal from poses_bounds (4000 px at full size, 10x downsampled)
    assert s.intrinsics[0, 0] == pytest.approx(s.intrinsics[0, 1])
    assert_object_inside_every_mask(s)
    assert_cameras_look_at_cube(s)
    assert s.near_far is not None and np.all(s.near_far[:, 0] < s.near_far[:, 1])


def test_max_side_resizes_and_scales_intrinsics(data_dir):
    from plenopack.scene import load_scene

    small = load_scene(data_dir / "scenes" / "lego", max_side=50)
    full = load_scene(data_dir / "scenes" / "lego")
    assert small.images[0].shape == (50, 50, 3)
    np.testing.assert_allclose(small.intrinsics, full.intrinsics / 4, rtol=1e-9)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plenopack", *args], capture_output=True, text=True)


def test_info_scene_json(data_dir):
    import json

    r = run_cli("info-scene", str(data_dir / "scenes" / "lego"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["views"] == 100 and info["train_views"] == 87


def _copy_llff(src, dst, n_drop_images=0):
    import shutil

    shutil.copytree(src, dst)
    if n_drop_images:
        for f in sorted((dst / "images_10").iterdir())[:n_drop_images]:
            f.unlink()
    return dst


@pytest.mark.parametrize("case", ["missing_image", "nan_pose", "inf_pose", "bad_shape", "empty", "unknown",
                                  "corrupt_image", "missing_transforms_test"])
def test_bad_input_gives_one_clear_line(tmp_path, data_dir, case):
    src = data_dir / "scenes" / "ethiopianHead"
    if case == "missing_image":
        scene = _copy_llff(src, tmp_path / "s", n_drop_images=1)
        expect = "65 images but 66 poses"
    elif case in ("nan_pose", "inf_pose"):
        scene = _copy_llff(src, tmp_path / "s")
        pb = np.load(scene / "poses_bounds.npy")
        pb[3, 3] = np.nan if case == "nan_pose" else -np.inf
        np.save(scene / "poses_bounds.npy", pb)
        expect = "non-finite camera pose"
    elif case == "bad_shape":
        scene = _copy_llff(src, tmp_path / "s")
        np.save(scene / "poses_bounds.npy", np.zeros((66, 15)))
        expect = "expected an (N, 17) array"
    elif case == "empty":
        scene = tmp_path / "empty"
        scene.mkdir()
        expect = "folder is empty"
    elif case == "unknown":
        scene = tmp_path / "odd"
        scene.mkdir()
        (scene / "notes.txt").write_text("hello")
        expect = "unknown capture format"
    elif case == "corrupt_image":
        scene = _copy_llff(src, tmp_path / "s")
        victim = sorted((scene / "images_10").iterdir())[5]
        victim.write_bytes(b"\xff\xd8\xff garbage")
        expect = "cannot read image"
    else:
        import shutil

        scene = tmp_path / "lego"
        shutil.copytree(data_dir / "scenes" / "lego", scene)
        (scene / "transforms_test.json").unlink()
        expect = "transforms_test.json: file is missing"
    r = run_cli("info-scene", str(scene))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert expect in lines[0]
    assert "Traceback" not in r.stderr
