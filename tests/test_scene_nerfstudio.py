"""nerfstudio / instant-ngp transforms.json: the bundled piece of the fox capture and fixtures in the same format."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from plenopack.metrics import psnr
from plenopack.scene import detect_format, load_scene
from plenopack.scene.io import read_image
from tests.scene_fixtures import make_cameras, render_sphere, world_poses, write_transforms

H, W = 24, 32


def sphere_capture(root, n=10, extra=None, frame_extra=None, names=None, top=None, blur=()):
    """n renders of the sphere (pinhole) in a transforms.json capture; ``blur``: frames to blur hard."""
    c2w, k = make_cameras(n, H, W)
    images = []
    for i, pose in enumerate(c2w):
        rgb = render_sphere(pose, k, H, W)[0]
        images.append(cv2.GaussianBlur(rgb, (0, 0), 2.0) if i in blur else rgb)
    names = names or [f"images/frame_{i:05d}.png" for i in range(n)]
    top = top if top is not None else {"fl_x": k[0], "fl_y": k[1], "cx": k[2], "cy": k[3], "w": W, "h": H,
                                       "camera_model": "PINHOLE"}
    write_transforms(root, c2w, names, images, top, frame_extra=frame_extra, extra=extra)
    return root, c2w, k


def test_fox_piece_loads_undistorted(data_dir):
    root = data_dir / "scenes" / "fox-mini"
    assert detect_format(root) == "nerfstudio"
    scene = load_scene(root, max_side=400)
    assert scene.num_views == 5 and scene.test_ids.tolist() == [0]
    assert scene.source_info["camera_models"] == ["OPENCV"] and scene.source_info["aabb_scale"] == 4
    assert scene.source_info["sharpness"] == "transforms.json"
    raw = read_image(root / "images" / "0001.jpg")
    # 135x240 stored for a 1080x1920 camera: parameters scaled by 1/8, then cropped to valid pixels (k1 > 0)
    h, w = scene.image_size(0)
    assert (h, w) != raw.shape[:2] and 0.95 * 240 < h <= 240 and 0.95 * 135 < w <= 135
    assert scene.intrinsics[0, 0] == pytest.approx(1375.52 / 8, rel=1e-6)
    for img in scene.images:  # no black borders: the wallpaper reaches every edge
        for edge in (img[0], img[-1], img[:, 0], img[:, -1]):
            assert edge.mean() > 0.25
    # undistortion moves pixels by at most a few pixels here: the undistorted view still resembles the photo
    centre = raw[h // 4:3 * h // 4, w // 4:3 * w // 4]
    assert psnr(scene.images[0][h // 4:3 * h // 4, w // 4:3 * w // 4], centre) > 18


def test_poses_split_and_names(tmp_path):
    root, c2w, k = sphere_capture(tmp_path / "cap", n=10)
    scene = load_scene(root, drop_blurry=False, capture_kind="object-orbit")
    np.testing.assert_allclose(world_poses(scene), c2w, atol=1e-6)  # OpenGL in the file, OpenCV in the Scene
    np.testing.assert_allclose(scene.intrinsics, np.tile(k, (10, 1)))
    assert scene.test_ids.tolist() == [0, 8] and scene.train_ids.size == 8
    again = load_scene(root, test_every=3, drop_blurry=False)
    assert again.test_ids.tolist() == [0, 3, 6, 9]


def test_frames_sorted_by_name_extensionless_paths_and_camera_angle(tmp_path):
    names = [f"./images/frame_{i:05d}" for i in (3, 1, 2, 0)]  # no extension, listed out of order
    c2w, k = make_cameras(4, H, W)
    images = [render_sphere(p, k, H, W)[0] for p in c2w]
    root = tmp_path / "cap"
    (root / "images").mkdir(parents=True)
    for name, img in zip(names, images):
        cv2.imwrite(str(root / (name + ".png")), img[..., ::-1])
    angle = 2 * np.arctan(0.5 * W / k[0])
    write_transforms(root, c2w, names, None, {"camera_angle_x": angle})
    scene = load_scene(root, drop_blurry=False, capture_kind="object-orbit")
    order = [3, 1, 2, 0]  # frame_00000 is the 4th listed
    np.testing.assert_allclose(world_poses(scene), c2w[order], atol=1e-6)
    np.testing.assert_allclose(scene.intrinsics[:, 0], k[0])
    np.testing.assert_allclose(scene.intrinsics[:, 2:], [[W / 2, H / 2]] * 4)


def test_split_lists(tmp_path):
    lists = {"train_filenames": [f"images/frame_{i:05d}.png" for i in (1, 2, 3, 5)],
             "val_filenames": ["images/frame_00004.png"], "test_filenames": ["./images/frame_00000.png"]}
    root, _, _ = sphere_capture(tmp_path / "cap", n=7, extra=lists)
    scene = load_scene(root, drop_blurry=False)
    assert scene.num_views == 6  # frame 6 is in no list
    assert [scene.image_paths[i].split("/")[-1] for i in scene.test_ids] == ["frame_00000.png", "frame_00004.png"]
    assert scene.train_ids.size == 4 and scene.loader_options["split_lists"] is True
    ignored = load_scene(root, drop_blurry=False, split_lists=False)
    assert ignored.num_views == 7 and ignored.test_ids.tolist() == [0]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plenopack", *args], capture_output=True, text=True)


def assert_one_line(r, *expected):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_missing_images_are_one_error_naming_them(tmp_path):
    root, _, _ = sphere_capture(tmp_path / "cap", n=12)
    for i in (3, 7):
        (root / "images" / f"frame_{i:05d}.png").unlink()
    assert_one_line(run_cli("info-scene", str(root)), "transforms.json", "2 of 12 frame images are missing",
                    "images/frame_00003.png, images/frame_00007.png")
    for i in range(12):
        (root / "images" / f"frame_{i:05d}.png").unlink(missing_ok=True)
    assert_one_line(run_cli("info-scene", str(root)), "12 of 12", "and 7 more")
    lists = {"test_filenames": ["images/nope.png"]}
    root2, _, _ = sphere_capture(tmp_path / "cap2", n=3, extra=lists)
    assert_one_line(run_cli("info-scene", str(root2)), "match no frame: images/nope.png")


def test_drop_blurry_train_frames_only(tmp_path):
    sharp = {i: {"sharpness": 100.0 + i} for i in range(10)}
    sharp[3] = {"sharpness": 20.0}  # a blurred training frame
    sharp[8] = {"sharpness": 10.0}  # a blurred test frame: kept
    root, _, _ = sphere_capture(tmp_path / "cap", n=10, frame_extra=sharp)
    scene = load_scene(root)
    assert scene.source_info["dropped_blurry"] == ["images/frame_00003.png"]
    assert scene.num_views == 9 and scene.test_ids.size == 2 and scene.train_ids.size == 7
    assert scene.loader_options["drop_blurry"] == 0.5
    assert load_scene(root, drop_blurry=False).num_views == 10
    assert load_scene(root, drop_blurry=0.1).num_views == 10
    # without sharpness in the file: measured (variance of the Laplacian)
    root2, _, _ = sphere_capture(tmp_path / "cap2", n=10, blur=(5,))
    measured = load_scene(root2)
    assert measured.source_info == {**measured.source_info, "sharpness": "laplacian variance",
                                    "dropped_blurry": ["images/frame_00005.png"]}


def test_blender_keeps_priority_and_mask_path(tmp_path, data_dir):
    both = tmp_path / "both"
    shutil.copytree(data_dir / "scenes" / "lego", both)
    (both / "transforms.json").write_text(json.dumps({"frames": []}))
    assert detect_format(both) == "blender"
    masks = {i: {"mask_path": f"segmentation/m{i}.png"} for i in range(5)}
    root, c2w, k = sphere_capture(tmp_path / "cap", n=5, frame_extra=masks)
    (root / "segmentation").mkdir()
    for i, pose in enumerate(c2w):
        cv2.imwrite(str(root / "segmentation" / f"m{i}.png"), render_sphere(pose, k, H, W)[1])
    scene = load_scene(root, drop_blurry=False)
    assert scene.masks is not None and 0.1 < scene.masks[0].mean() < 0.9
    assert "visual hull" in scene.normalisation
