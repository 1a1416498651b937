"""Loader options: parsed from the command line, checked against the loader, recorded so a load can be repeated."""

import json
import subprocess
import sys

import numpy as np
import pytest

from plenopack.errors import PlenopackError
from plenopack.scene import load_scene, parse_scene_options
from tests.scene_fixtures import make_cameras, write_co3d, write_colmap, write_scannet

H, W = 24, 32


def test_parse_scene_options():
    parsed = parse_scene_options(["test_every=4", "capture_kind=turntable", "drop_blurry=false", "object_centric=null",
                                  "background=[0, 0, 0.5]", "cam_scale_factor=1.25", "note=a=b"])
    assert parsed == {"test_every": 4, "capture_kind": "turntable", "drop_blurry": False, "object_centric": None,
                      "background": [0, 0, 0.5], "cam_scale_factor": 1.25, "note": "a=b"}
    for bad in ("test_every", "=3", "two words=1"):
        with pytest.raises(PlenopackError, match="not key=value"):
            parse_scene_options([bad])


def test_options_are_checked_against_the_loader(data_dir):
    lego = data_dir / "scenes" / "lego"
    with pytest.raises(PlenopackError, match=r"unknown option\(s\) for the blender loader: frame_step \(accepted: "
                                             r"background, use_val, .*object_centric, capture_kind\)"):
        load_scene(lego, frame_step=2)
    with pytest.raises(PlenopackError, match="option visual_hull='yes' of the blender loader must be bool"):
        load_scene(lego, visual_hull="yes")
    with pytest.raises(PlenopackError, match="option test_every=2.5 of the llff loader must be int"):
        load_scene(data_dir / "scenes" / "ethiopianHead", test_every=2.5)
    with pytest.raises(PlenopackError, match="unknown capture_kind 'orbit'"):
        load_scene(lego, max_side=20, capture_kind="orbit")


def assert_same_load(scene, **kwargs):
    """Loading again with the recorded options gives the same views, split and normalisation."""
    json.dumps(scene.loader_options)  # JSON-able, for .plen files
    again = load_scene(scene.source_path, format=scene.source_format, **kwargs, **scene.loader_options)
    assert again.loader_options == scene.loader_options
    np.testing.assert_allclose(again.world_to_unit, scene.world_to_unit)
    assert again.train_ids.tolist() == scene.train_ids.tolist() and again.test_ids.tolist() == scene.test_ids.tolist()
    assert again.image_paths == scene.image_paths


def test_recorded_options_reproduce_the_scene(tmp_path, data_dir):
    c2w, k = make_cameras(9, H, W)
    scenes = [
        (load_scene(data_dir / "scenes" / "lego", max_side=20, visual_hull=False), dict(max_side=20)),
        (load_scene(data_dir / "scenes" / "fox-mini", max_side=60, test_every=2), dict(max_side=60)),
        (load_scene(write_colmap(tmp_path / "colmap", c2w, k, H, W), object_centric=False), {}),
        (load_scene(write_co3d(tmp_path / "co3d", c2w, k, H, W), test_every=3), {}),
        (load_scene(write_scannet(tmp_path / "scannet", c2w, k, H, W), frame_step=2), {}),
    ]
    for scene, kwargs in scenes:
        assert {"object_centric", "capture_kind"} <= set(scene.loader_options)
        assert_same_load(scene, **kwargs)
    assert scenes[1][0].loader_options["test_every"] == 2 and scenes[1][0].loader_options["drop_blurry"] == 0.5
    assert scenes[2][0].loader_options["object_centric"] is False


def test_info_scene_scene_option(data_dir):
    fox = str(data_dir / "scenes" / "fox-mini")
    r = subprocess.run([sys.executable, "-m", "plenopack", "info-scene", fox, "--max-side", "60", "--json",
                        "--scene-option", "test_every=2", "--scene-option", "capture_kind=object-orbit"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["test_views"] == 3 and info["capture_kind"] == "object-orbit"
    assert info["loader_options"]["test_every"] == 2
    r = subprocess.run([sys.executable, "-m", "plenopack", "info-scene", fox, "--scene-option", "frame_step=2"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown option(s) for the nerfstudio loader: frame_step (accepted: test_every" in r.stderr
