"""Consuming scene files and built datasets: PackedScene, exports, PyTorch datasets with DataLoader workers."""

import subprocess
import sys

import numpy as np
import pytest

import plenopack
from plenopack.build.manifest import write_manifest
from plenopack.codecs import CodecConfig
from plenopack.fileformat import write_plen
from plenopack.render import render_view


@pytest.fixture(scope="module")
def plen(tmp_path_factory, tiny_fit):
    path = tmp_path_factory.mktemp("packed") / "lego.plen"
    write_plen(path, tiny_fit.grid, {"scene": {"world_to_unit": (2.0 * np.eye(4) + np.diag([0, 0, 0, -1])).tolist()},
                                     "eval_background": [1, 1, 1]}, CodecConfig("sh", 8))
    return path


def test_packed_scene_is_lazy_and_renders_like_the_grid(plen):
    s = plenopack.open(plen)
    assert s._grid is None and s.resolution == 32 and s.num_voxels > 0
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, -3]
    k = [30, 30, 16, 16]
    r = s.render(pose, k, 32, 32)
    expect = render_view(s.grid, pose, k, 32, 32)
    np.testing.assert_allclose(r.rgb, expect[0], atol=1e-6)
    assert r.acc.max() > 0.5 and r.depth.shape == (32, 32)
    frames = s.render_orbit(3, size=16)
    assert len(frames) == 3 and frames[0].rgb.shape == (16, 16, 3)


def test_packed_scene_renders_as_the_fit_recorded(tmp_path, tiny_fit):
    """A file whose fit started rays at a near clip and scored at a finer step is rendered that way too (as
    `eval` scores it), not with the renderer's defaults; files without a recorded fit keep the defaults."""
    from plenopack.render import recorded_render_options

    path = tmp_path / "clipped.plen"
    recorded = {"near_clip": 2.9, "render_step_size": 0.25}
    write_plen(path, tiny_fit.grid, {"eval_background": [1, 1, 1], "fit": {"config": recorded}}, CodecConfig("sh", 8))
    s = plenopack.open(path)
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, -3]
    k = [30, 30, 16, 16]
    r = s.render(pose, k, 32, 32)
    clipped = render_view(s.grid, pose, k, 32, 32, near=2.9, step_size=0.25)
    np.testing.assert_allclose(r.rgb, clipped[0], atol=1e-6)
    assert np.abs(r.acc - render_view(s.grid, pose, k, 32, 32)[2]).max() > 0.1  # the clip hides the front
    assert recorded_render_options(s.metadata) == {"step_size": 0.25, "near": 2.9}
    for metadata in ({}, {"fit": {"config": {"near_clip": "far", "render_step_size": 0}}}, {"fit": None}):
        assert recorded_render_options(metadata) == {"step_size": 0.5, "near": 0.0}


def test_voxels_points_and_colours(plen):
    s = plenopack.open(plen)
    v = s.voxels("sh+density")
    assert v.coords.shape == (s.num_voxels, 3) and v.features.shape == (s.num_voxels, 13)
    coarse = s.voxels("density", resolution=16)
    assert coarse.resolution == 16 and coarse.coords.max() < 16 and len(coarse.coords) < s.num_voxels
    rgb = s.voxels("rgb").features
    dc = 0.5 + 0.28209479 * s.grid.sh[:, [0, 4, 8]]  # degree 1: 4 coefficients per channel
    np.testing.assert_allclose(rgb, np.clip(dc, 0, 1), atol=1e-5)
    pts, col = s.points(threshold=5.0)
    assert len(pts) == int((s.grid.density > 5.0).sum()) and np.all(np.abs(pts) <= 1)
    world, _ = s.points(threshold=5.0, frame="world")
    np.testing.assert_allclose(world, pts / 2, atol=1e-6)  # world_to_unit scales by 2


def test_export_ply_and_npz(plen, tmp_path):
    from plyfile import PlyData

    r = subprocess.run([sys.executable, "-m", "plenopack", "export", str(plen), "--ply", str(tmp_path / "p.ply"),
                        "--npz", str(tmp_path / "v.npz"), "--threshold", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ply = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    s = plenopack.open(plen)
    assert ply.count == int((s.grid.density > 5).sum())
    assert {"x", "y", "z", "red", "green", "blue"} <= set(ply.data.dtype.names)
    z = np.load(tmp_path / "v.npz")
    assert z["coords"].shape[0] == s.num_voxels and int(z["resolution"]) == 32 and z["sh"].shape[1] == 12
    r = subprocess.run([sys.executable, "-m", "plenopack", "export", str(tmp_path / "nope.plen"), "--ply", "x.ply"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such scene file" in r.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, plen):
    """A built-dataset layout: 6 scenes in 2 categories with a manifest."""
    import shutil

    root = tmp_path_factory.mktemp("dataset")
    rows = []
    for i in range(6):
        cat = ("apple", "bench")[i % 2]
        rel = f"scenes/{cat}/s{i}.plen"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(plen, root / rel)
        rows.append({"id": f"{cat}/s{i}", "category": cat, "path": rel, "status": "ok"})
    rows.append({"id": "bench/bad", "category": "bench", "path": "scenes/bench/bad.plen", "status": "failed"})
    write_manifest(root / "manifest.parquet", rows)
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_rendered_views_dataloader(dataset, workers):
    import torch
    from torch.utils.data import DataLoader

    from plenopack.datasets import RenderedViews

    ds = RenderedViews(dataset, split="all", views_per_scene=2, image_size=24)
    assert ds.classes == ["apple", "bench"] and len(ds) == 12
    batches = list(DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False))
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (12, 3, 24, 24) and images.dtype == torch.float32
    assert labels.tolist() == [ds.class_to_idx[s["category"]] for s in ds.scenes for _ in range(2)]
    assert 0 <= images.min() and images.max() <= 1
    again = torch.stack([ds[i][0] for i in range(12)])
    torch.testing.assert_close(images, again)  # workers render the same (seeded) views


@pytest.mark.parametrize("workers", [0, 2])
def test_sparse_voxels_dataloader(dataset, workers):
    from torch.utils.data import DataLoader

    from plenopack.datasets import SparseVoxels, collate_sparse

    train, test = SparseVoxels(dataset, "train"), SparseVoxels(dataset, "test")
    assert len(train) + len(test) == 6
    ds = SparseVoxels(dataset, "all", features="sh+density", resolution=16)
    coords, feats, labels = next(iter(DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate_sparse)))
    assert coords.shape[1] == 4 and feats.shape == (coords.shape[0], 13) and labels.shape == (3,)
    assert set(coords[:, 0].tolist()) == {0, 1, 2} and coords[:, 1:].max() < 16
