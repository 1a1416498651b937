"""Undistortion on load: images seen through OpenCV's lens models come back as the pinhole images they claim.

A smooth pattern on the image plane is rendered through a distorted camera (each pixel centre undistorted
by OpenCV, tests/scene_fixtures.py), undistorted by plenopack, and compared with the same pattern rendered
by the pinhole camera plenopack reports. The pattern has a period of about 12 px, so a half-pixel error in
the principal point (OpenCV's pixel centres at integers vs. COLMAP's and plenopack's at +0.5) costs
more than 10 dB, which the tests check they would notice.
"""

import cv2
import numpy as np
import pytest
from PIL import Image

from plenopack.metrics import psnr
from plenopack.scene import load_scene
from plenopack.scene.io import scale_intrinsics
from plenopack.scene.undistort import make_undistorter, scale_camera_params
from tests.scene_fixtures import (disk, make_cameras, render_pinhole_pattern, render_through_lens, world_poses,
                                  write_colmap, write_transforms)

W, H = 128, 96
LENSES = {
    "SIMPLE_RADIAL": [100.0, 64.3, 47.8, -0.15],
    "RADIAL": [100.0, 64.3, 47.8, 0.12, -0.03],
    "OPENCV": [100.0, 104.0, 64.3, 47.8, -0.2, 0.05, 0.002, -0.003],
    "FULL_OPENCV": [100.0, 104.0, 63.2, 48.9, -0.25, 0.08, 0.001, 0.002, -0.01, 0.05, 0.01, 0.0],
    "OPENCV_FISHEYE": [110.0, 112.0, 64.3, 47.8, 0.05, -0.02, 0.004, -0.001],
}
MIN_PSNR = 38.0  # measured 41-45 dB: bilinear resampling of 8-bit images (a 0.5 px shift: 26-28 dB)


def shifted(k, dx):
    k = np.array(k, float)
    k[2] += dx
    return k


def assert_only_valid_pixels(und):
    """Every new pixel samples inside the source image: a white image stays white with black outside."""
    white = np.ones(und.source_size, np.float32)
    seen = cv2.remap(white, *und.maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert seen.min() > 0.99
    map_x, map_y = und.maps
    assert map_x.min() > -0.5 and map_x.max() < und.source_size[1] - 0.5
    assert map_y.min() > -0.5 and map_y.max() < und.source_size[0] - 0.5


@pytest.mark.parametrize("model", list(LENSES))
def test_undistorted_image_is_the_claimed_pinhole_image(model):
    und = make_undistorter(model, LENSES[model], W, H)
    assert not und.is_identity
    image = und.image(render_through_lens(model, LENSES[model], W, H)).astype(np.float32) / 255
    assert image.shape == (*und.size, 3)
    truth = render_pinhole_pattern(und.intrinsics, *und.size)
    score = psnr(image, truth)
    assert score > MIN_PSNR
    assert psnr(image, render_pinhole_pattern(shifted(und.intrinsics, 0.5), *und.size)) < score - 10
    assert_only_valid_pixels(und)
    # a crop like COLMAP's: focal lengths kept, the image about as large as the source
    fx = LENSES[model][0]
    assert und.intrinsics[0] == pytest.approx(fx)
    assert 0.6 * W < und.size[1] < 2 * W and 0.6 * H < und.size[0] < 2 * H


def test_masks_follow_the_image():
    params = LENSES["OPENCV"]
    und = make_undistorter("OPENCV", params, W, H)
    mask = (render_through_lens("OPENCV", params, W, H, disk) > 127).astype(np.uint8)[..., 0] * 255
    truth = render_pinhole_pattern(und.intrinsics, *und.size, disk)[..., 0] > 0.5
    assert 0.1 < truth.mean() < 0.9
    for interpolation in ("nearest", "linear"):
        out = und.mask(mask, interpolation) > 127
        assert out.shape == und.size
        assert np.sum(out != truth) <= 0.05 * np.sum(truth)  # pixels along the edge of the disk may differ


def test_pinhole_is_identity_and_wide_fisheye_is_capped():
    k = [100.0, 101.0, 64.3, 47.8]
    for model, params in (("PINHOLE", k), ("OPENCV", k + [0.0] * 4)):
        und = make_undistorter(model, params, W, H)
        assert und.is_identity and und.size == (H, W)
        np.testing.assert_array_equal(und.intrinsics, k)
        img = np.zeros((H, W, 3), np.uint8)
        assert und.image(img) is img
    # 138 deg across, 173 deg on the diagonal: keeping f would need a 2.2x wider image
    wide = make_undistorter("OPENCV_FISHEYE", [53.0, 53.0, 64.0, 48.0, 0.0, 0.0, 0.0, 0.0], W, H)
    assert wide.size[1] <= 2 * W and wide.size[0] <= 2 * H  # COLMAP's max_scale
    assert wide.intrinsics[0] < 53.0
    assert_only_valid_pixels(wide)


def test_camera_params_scale_with_the_pixel_edges():
    """A camera declared at twice the stored image size (images downscaled after reconstruction)."""
    full = scale_camera_params("OPENCV", LENSES["OPENCV"], (H, W), (2 * H, 2 * W))
    np.testing.assert_allclose(full[:4], np.array(LENSES["OPENCV"][:4]) * 2)
    np.testing.assert_allclose(scale_camera_params("OPENCV", full, (2 * H, 2 * W), (H, W)), LENSES["OPENCV"])
    with pytest.raises(Exception, match="one focal length"):
        scale_camera_params("SIMPLE_RADIAL", LENSES["SIMPLE_RADIAL"], (H, W), (2 * H, W))


def _lens_images(cameras, camera_of):
    return [render_through_lens(cameras[c][0], cameras[c][1], cameras[c][2], cameras[c][3]) for c in camera_of]


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_capture_is_undistorted_on_load(tmp_path, binary):
    c2w, k = make_cameras(5, H, W)
    cameras = [("OPENCV", LENSES["OPENCV"], W, H), ("OPENCV_FISHEYE", LENSES["OPENCV_FISHEYE"], W, H),
               # declared at twice the size of its stored images: the loader scales it
               ("SIMPLE_RADIAL", [200.0, 128.6, 95.6, -0.15], 2 * W, 2 * H)]
    camera_of = [0, 1, 2, 0, 1]
    images = _lens_images([(m, p, W, H) if m != "SIMPLE_RADIAL" else (m, LENSES[m], W, H) for m, p, _, _ in cameras],
                          camera_of)
    names = [f"cam{c}/frame_{i}.png" for i, c in enumerate(camera_of)]
    masks = {f"{n}.png": np.full((H, W), 255, np.uint8) for n in names}  # COLMAP's masks/<name>.png
    root = write_colmap(tmp_path / "p", c2w, k, H, W, binary=binary, cameras=cameras, camera_of=camera_of,
                        images=images, names=names, masks=masks)
    scene = load_scene(root, max_side=1000, capture_kind="object-orbit")
    assert scene.source_info["undistorted"] and scene.masks is not None
    order = np.argsort(names)  # the loader sorts images by name
    np.testing.assert_allclose(world_poses(scene), c2w[order], atol=1e-5)
    for i in range(scene.num_views):
        truth = render_pinhole_pattern(scene.intrinsics[i], *scene.image_size(i))
        assert psnr(scene.images[i], truth) > MIN_PSNR, f"view {i}"
        assert scene.masks[i].min() > 0.99
    assert [scene.image_paths[i].split("/")[-2] for i in range(5)] == ["cam0", "cam0", "cam1", "cam1", "cam2"]
    np.testing.assert_allclose(scene.intrinsics[0], scene.intrinsics[1])
    assert len({scene.image_size(i) for i in (0, 2, 4)}) == 3  # one pinhole camera per lens


def test_undistort_then_resize(tmp_path):
    c2w, k = make_cameras(3, H, W)
    params = LENSES["OPENCV"]
    root = write_colmap(tmp_path / "p", c2w, k, H, W, cameras=[("OPENCV", params, W, H)],
                        images=_lens_images([("OPENCV", params, W, H)], [0, 0, 0]))
    scene = load_scene(root, max_side=64)
    und = make_undistorter("OPENCV", params, W, H)
    h, w = scene.image_size(0)
    assert max(h, w) == 64
    np.testing.assert_allclose(scene.intrinsics[0], scale_intrinsics(und.intrinsics, und.size, (h, w)))
    full = np.round(render_pinhole_pattern(und.intrinsics, *und.size) * 255).astype(np.uint8)
    truth = np.asarray(Image.fromarray(full).resize((w, h), Image.LANCZOS), np.float32) / 255
    assert psnr(scene.images[0], truth) > 35.0


@pytest.mark.parametrize("camera_model", ["OPENCV", "OPENCV_FISHEYE"])
def test_transforms_json_distortion_keys(tmp_path, camera_model):
    c2w, k = make_cameras(4, H, W)
    if camera_model == "OPENCV":  # as instant-ngp writes it: no camera_model key, k1 k2 p1 p2
        fx, fy, cx, cy, k1, k2, p1, p2 = LENSES["OPENCV"]
        top = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H, "k1": k1, "k2": k2, "p1": p1, "p2": p2,
               "aabb_scale": 4}
    else:
        fx, fy, cx, cy, k1, k2, k3, k4 = LENSES["OPENCV_FISHEYE"]
        top = {"camera_model": "OPENCV_FISHEYE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H,
               "k1": k1, "k2": k2, "k3": k3, "k4": k4}
    lens = (camera_model, LENSES[camera_model])
    override = {"fl_x": 90.0, "cx": 62.0}  # frame 2 has its own focal length and principal point
    lens2_params = list(lens[1])
    lens2_params[0], lens2_params[2] = 90.0, 62.0
    images = [render_through_lens(lens[0], lens2_params if i == 2 else lens[1], W, H) for i in range(4)]
    names = [f"./images/{i:04d}.png" for i in range(4)]
    root = write_transforms(tmp_path / "cap", c2w, names, images, top, frame_extra={2: override})
    scene = load_scene(root, max_side=1000, capture_kind="object-orbit", drop_blurry=False)
    assert scene.source_format == "nerfstudio"
    np.testing.assert_allclose(world_poses(scene), c2w, atol=1e-5)
    assert scene.intrinsics[2, 0] == pytest.approx(90.0) and scene.intrinsics[0, 0] == pytest.approx(fx)
    if camera_model == "OPENCV":
        assert scene.source_info["aabb_scale"] == 4
    for i in range(4):
        assert psnr(scene.images[i], render_pinhole_pattern(scene.intrinsics[i], *scene.image_size(i))) > MIN_PSNR
