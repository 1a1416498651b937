"""Capture kinds from poses alone, and the normalisation each kind gets."""

import json

import numpy as np
import pytest

from plenopack.cameras import look_at, project
from plenopack.scene import load_scene
from plenopack.scene.common import finish_scene
from plenopack.scene.geometry import classify, detect_capture_kind, measure_capture
from tests.scene_fixtures import make_cameras, write_colmap, write_llff

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def lego_poses(data_dir):
    frames = []
    for split in ("train", "test"):
        frames += json.loads((data_dir / "scenes" / "lego" / f"transforms_{split}.json").read_text())["frames"]
    return np.stack([np.array(f["transform_matrix"]) @ GL_TO_CV for f in frames]), None


def ethiopian_poses(data_dir):
    pb = np.load(data_dir / "scenes" / "ethiopianHead" / "poses_bounds.npy")
    mat = pb[:, :15].reshape(-1, 3, 5)
    c2w = np.tile(np.eye(4), (len(pb), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = mat[:, :, 1], mat[:, :, 0], -mat[:, :, 2], mat[:, :, 3]
    k = np.stack([mat[:, 2, 4], mat[:, 2, 4], mat[:, 1, 4] / 2, mat[:, 0, 4] / 2], axis=1)
    return c2w, k


def fox_poses(data_dir):
    meta = json.loads((data_dir / "scenes" / "fox-mini" / "all_poses.json").read_text())
    c2w = np.stack([np.array(f["transform_matrix"]) @ GL_TO_CV for f in meta["frames"]])
    k = np.tile([meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]], (len(c2w), 1))
    return c2w, k


@pytest.mark.parametrize("name, poses, kind", [("lego", lego_poses, "object-orbit"),
                                               ("ethiopianHead", ethiopian_poses, "turntable"),
                                               ("fox", fox_poses, "object-arc")])
def test_real_captures(data_dir, name, poses, kind):
    c2w, k = poses(data_dir)
    assert detect_capture_kind(c2w, k) == kind, measure_capture(c2w, k).as_dict()


def ring(azimuths_deg, elevations_deg, distance=4.0, rng=None, noise=0.0):
    """Cameras at the given azimuths/elevations around the origin, looking at it (world up +z)."""
    rng = rng or np.random.default_rng(0)
    poses = []
    for az, el in zip(np.radians(azimuths_deg), np.radians(elevations_deg)):
        eye = distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        poses.append(look_at(eye + rng.normal(0, noise, 3), rng.normal(0, noise, 3)))
    return np.stack(poses)


def forward_facing(n=20, seed=0):
    """LLFF-like: a hand-held grid of cameras 0.6 units across, looking along +y at a scene 3-10 units away."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        eye = np.array([rng.uniform(-0.3, 0.3), 0.0, rng.uniform(-0.2, 0.2)])
        poses.append(look_at(eye, eye + np.array([rng.normal(0, 0.05), 1.0, rng.normal(0, 0.05)])))
    return np.stack(poses)


def test_synthetic_kinds():
    rng = np.random.default_rng(1)
    n = 40
    az = np.linspace(0, 360, n, endpoint=False)
    assert detect_capture_kind(ring(az, np.full(n, 25.0), noise=0.02)) == "turntable"
    assert detect_capture_kind(ring(az, rng.uniform(5, 70, n))) == "object-orbit"
    assert detect_capture_kind(ring(rng.uniform(0, 110, n), rng.uniform(-20, 40, n))) == "object-arc"
    assert detect_capture_kind(forward_facing()) == "forward-facing"
    inside = np.stack([look_at(rng.normal(0, 0.1, 3), [np.cos(a), np.sin(a), 0.1]) for a in np.radians(az)])
    assert detect_capture_kind(inside) == "inside-out"
    # a turntable only needs to turn part of the way; below 90 deg of arc it is an arc
    assert detect_capture_kind(ring(az[:14], np.full(14, 25.0))) == "turntable"
    assert detect_capture_kind(ring(az[:8], np.full(8, 25.0))) == "object-arc"
    g = measure_capture(ring(az, np.full(n, 25.0)))
    assert g.circle_residual < 1e-9 and g.elevation_spread_deg < 1e-6 and classify(g) == "turntable"


def test_capture_kind_chooses_normalisation(tmp_path):
    c2w, k = make_cameras(8, 24, 32)
    ff = write_llff(tmp_path / "fern", forward_facing(10), k, 24, 32)
    scene = load_scene(ff)
    assert scene.capture_kind == "forward-facing" and not scene.is_object_centric
    assert scene.summary()["capture_kind"] == "forward-facing" and scene.background_frame == "world"
    assert "scene-centric" in scene.normalisation
    assert load_scene(ff, object_centric=True).is_object_centric
    orbit = write_colmap(tmp_path / "orbit", c2w, k, 24, 32)
    assert load_scene(orbit).capture_kind == "object-orbit"
    forced = load_scene(orbit, capture_kind="forward-facing")
    assert not forced.is_object_centric and forced.loader_options["capture_kind"] == "forward-facing"
    assert np.all(np.abs(forced.c2w[:, :3, 3]) <= 1.0)  # scene-centric: cameras and sparse points in the cube
    turntable = load_scene(orbit, capture_kind="turntable")
    assert turntable.background_frame == "turntable" and turntable.is_object_centric


def test_bundled_scenes_record_their_kind(lego_small, ethiopian_head):
    assert (lego_small.capture_kind, lego_small.background_frame) == ("object-orbit", "world")
    assert (ethiopian_head.capture_kind, ethiopian_head.background_frame) == ("turntable", "turntable")
    assert ethiopian_head.summary()["background_frame"] == "turntable"


def test_object_arc_normalisation_centres_the_focus_and_keeps_cameras_out(data_dir):
    """The whole fox capture's poses (no images needed): the largest cube behind the focus with every camera
    outside."""
    c2w, k = fox_poses(data_dir)
    n = len(c2w)
    scene = finish_scene(name="fox", root=data_dir, fmt="nerfstudio", images=[np.zeros((1, 1, 3), np.float32)] * n,
                         masks=None, intrinsics=k, c2w_world=c2w, train_ids=np.arange(n), test_ids=np.arange(0),
                         options={})
    assert scene.capture_kind == "object-arc" and scene.is_object_centric
    centres, axes = scene.c2w[:, :3, 3], scene.c2w[:, :3, 2]
    miss = np.linalg.norm(centres - np.sum(centres * axes, 1, keepdims=True) * axes, axis=1)
    assert np.median(miss) < 0.4  # optical axes pass near the centre (hand-held framing)
    assert np.abs(centres).max(axis=1).min() == pytest.approx(1.1)  # every camera just outside [-1, 1]^3
    dist = np.linalg.norm(centres, axis=1)
    assert 1.1 < dist.min() < 1.6 and np.median(dist) < 2.5
    for i in range(n):  # the cube's centre is in every view, away from the image border
        uv, z = project(np.zeros((1, 3)), scene.c2w[i], k[i])
        assert z[0] > 0 and 0.25 * 1080 < uv[0, 0] < 0.8 * 1080 and 0.25 * 1920 < uv[0, 1] < 0.8 * 1920
