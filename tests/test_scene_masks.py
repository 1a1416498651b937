"""Masks are found under the names people give them, by every loader that takes masks."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from plenopack.scene import load_scene
from plenopack.scene.masks import find_mask, is_mask_file
from tests.scene_fixtures import make_cameras, render_sphere, write_co3d, write_colmap, write_llff, write_transforms

H, W = 24, 32


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("mask_rel", ["masks/IMG_9669.png", "masks/IMG_9669.jpg", "masks/IMG_9669.JPG",
                                      "masks/IMG_9669.JPG.png", "masks/IMG_9669_mask.png", "images/IMG_9669_mask.png"])
def test_find_mask_naming_conventions(tmp_path, mask_rel):
    image = touch(tmp_path / "images" / "IMG_9669.JPG")
    assert find_mask(image, [tmp_path / "masks"]) is None
    mask = touch(tmp_path / mask_rel)
    assert find_mask(image, [tmp_path / "masks"]) == mask
    assert is_mask_file(mask) == ("_mask" in mask_rel)


def test_colmap_style_masks_of_images_in_sub_folders(tmp_path):
    image = touch(tmp_path / "images" / "cam1" / "0001.jpg")
    mask = touch(tmp_path / "masks" / "cam1" / "0001.jpg.png")
    assert find_mask(image, [tmp_path / "masks"], relative="cam1/0001.jpg") == mask


def sphere_masks(c2w, k):
    return [render_sphere(p, k, H, W)[1] for p in c2w]


def test_llff_nerd_masks_beside_images_are_not_images(tmp_path):
    c2w, k = make_cameras(6, H, W)
    root = write_llff(tmp_path / "nerd", c2w, k, H, W)
    for i, m in enumerate(sphere_masks(c2w, k)):
        Image.fromarray(m).save(root / "images" / f"IMG_{i:04d}_mask.png")
    scene = load_scene(root, capture_kind="object-orbit")
    assert scene.num_views == 6 and scene.masks is not None  # 12 files, 6 images
    assert all("_mask" not in p.rsplit("/", 1)[-1] for p in scene.image_paths)
    assert 0.1 < scene.masks[0].mean() < 0.9


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plenopack", *args], capture_output=True, text=True)


def assert_one_line(r, *expected):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_some_frames_without_masks_is_one_error(tmp_path):
    c2w, k = make_cameras(6, H, W)
    masks = sphere_masks(c2w, k)
    llff = write_llff(tmp_path / "llff", c2w, k, H, W)
    (llff / "masks").mkdir()
    for i in (0, 1, 3, 4, 5):  # IMG_0002 has none
        Image.fromarray(masks[i]).save(llff / "masks" / f"IMG_{i:04d}.png")
    assert_one_line(run_cli("info-scene", str(llff)), "5 of 6 frames have a mask but IMG_0002.png has none")

    colmap = write_colmap(tmp_path / "colmap", c2w, k, H, W,
                          masks={f"img_{i:03d}.png.png": masks[i] for i in range(5)})
    assert_one_line(run_cli("info-scene", str(colmap)), "img_005.png has none")
    assert load_scene(colmap, use_masks=False).masks is None

    names = [f"images/{i}.png" for i in range(6)]
    ns = write_transforms(tmp_path / "ns", c2w, names, [render_sphere(p, k, H, W)[0] for p in c2w],
                          {"fl_x": k[0], "fl_y": k[1], "cx": k[2], "cy": k[3], "camera_model": "PINHOLE"},
                          frame_extra={i: {"mask_path": f"masks/{i}.png"} for i in range(1, 6)})
    for i in range(1, 6):
        Image.fromarray(masks[i]).save(touch(ns / "masks" / f"{i}.png"))
    assert_one_line(run_cli("info-scene", str(ns)), "0.png has none")


def test_colmap_masks_found_and_used(tmp_path):
    c2w, k = make_cameras(6, H, W)
    masks = sphere_masks(c2w, k)
    root = write_colmap(tmp_path / "colmap", c2w, k, H, W, masks={f"img_{i:03d}.png": masks[i] for i in range(6)})
    scene = load_scene(root)
    assert scene.masks is not None and "visual hull" in scene.normalisation
    np.testing.assert_allclose(scene.masks[2], masks[2] / 255.0, atol=1e-6)


def test_co3d_masks_without_annotated_paths(tmp_path):
    c2w, k = make_cameras(6, H, W)
    seq = write_co3d(tmp_path, c2w, k, H, W)
    path = seq.parent / "frame_annotations.jgz"
    with gzip.open(path, "rt") as fh:
        frames = json.load(fh)
    for f in frames:
        del f["mask"]
    with gzip.open(path, "wt") as fh:
        json.dump(frames, fh)
    assert load_scene(seq).masks is not None  # found in the sequence's masks/ folder
    (seq / "masks" / "frame000004.png").unlink()
    assert_one_line(run_cli("info-scene", str(seq)), "frame_annotations.jgz", "frame000004.jpg has none")
