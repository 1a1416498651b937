"""Quality filters on datasets and the worst-scenes report (`plenopack report`, `plenopack build --report`)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import plenopack
from plenopack.build.manifest import write_manifest
from plenopack.build.report import dataset_report
from plenopack.fileformat import write_plen
from plenopack.render import to_uint8
from plenopack.scene import load_scene
from tests.scene_fixtures import make_cameras, write_colmap

TINY = {"reso": [8, 16], "steps": [20, 20], "batch_rays": 256, "log_every": 20}


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A small COLMAP capture (11 views of 32 x 24 pixels): the source the report shows photos from."""
    c2w, k = make_cameras(11, 24, 32, seed=3)
    return write_colmap(tmp_path_factory.mktemp("capture") / "sphere", c2w, k, 24, 32)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_fit, capture):
    """A dataset folder: scenes with test PSNRs 24.5, 19.0, 27.0 and none (the grid of the tiny lego fit, the
    capture above as their source, one of them out of reach); one scene failed."""
    root = tmp_path_factory.mktemp("report")
    meta = {"scene": {"name": "sphere", "format": "colmap", "max_side": 40}, "eval_background": [1, 1, 1]}
    rows = []
    for name, psnr, source in (("a", 24.5, capture), ("b", 19.0, "/nowhere/sphere"), ("c", 27.0, capture),
                               ("d", None, capture)):
        rel = f"scenes/sphere/{name}.plen"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_plen(root / rel, tiny_fit.grid, meta)
        rows.append({"id": f"sphere/{name}", "category": "sphere", "source": str(source), "path": rel, "status": "ok",
                     "psnr": psnr, "ssim": 0.9, "bytes": (root / rel).stat().st_size})
    rows.append({"id": "sphere/broken", "category": "sphere", "source": str(capture),
                 "path": "scenes/sphere/broken.plen", "status": "failed", "error": "boom"})
    write_manifest(root / "manifest.parquet", rows)
    return root


def test_quality_filters_keep_passing_scenes_and_warn_about_unscored(built):
    from plenopack.datasets import RenderedViews, SparseVoxels

    with pytest.warns(UserWarning, match=r"1 scene\(s\) have no psnr in the manifest and are left out: sphere/d"):
        views = RenderedViews(built, split="all", views_per_scene=2, image_size=8, min_psnr=20.0)
    assert [s["id"] for s in views.scenes] == ["sphere/a", "sphere/c"] and len(views) == 4
    with pytest.warns(UserWarning, match="no psnr"):
        voxels = SparseVoxels(built, split="all", min_psnr=25.0, metric="psnr")
    assert [s["id"] for s in voxels.scenes] == ["sphere/c"]
    assert len(SparseVoxels(built, split="all").scenes) == 4  # no filter: every built scene, no warning
    with pytest.raises(plenopack.PlenopackError, match="unknown quality metric"):
        SparseVoxels(built, split="all", min_psnr=1.0, metric="lpips")


def test_report_ranks_worst_first_and_draws_photo_beside_render(built, capture):
    result = dataset_report(built, worst=2, size=48)
    assert [s["id"] for s in result["scenes"]] == ["sphere/b", "sphere/a"]
    assert result["unscored"] == ["sphere/d"] and result["failed"] == ["sphere/broken"] and result["total"] == 4
    b, a = result["scenes"]
    assert not b["photo"] and a["photo"]  # b's capture is out of reach
    sheet = np.asarray(Image.open(result["sheet"]).convert("RGB"))
    x, y, w, h = a["box"]
    assert (w, h) == (2 * 48 + 6, 36)  # the capture's 32 x 24 views, longest side 48, photo | gap | render
    scene = load_scene(capture, format="colmap", max_side=40)
    view = int(scene.test_ids[0])
    photo = np.asarray(Image.fromarray(to_uint8(scene.images[view])).resize((48, 36), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(sheet[y:y + 36, x:x + 48], photo)
    render = to_uint8(plenopack.open(built / a["path"]).render(scene.c2w[view], scene.intrinsics[view] * 1.5, 36,
                                                               48).rgb)
    np.testing.assert_array_equal(sheet[y:y + 36, x + w - 48:x + w], render)
    assert not np.array_equal(photo, render)
    bx, by, _, _ = b["box"]  # out of reach: a grey placeholder where the photo would be, the orbit view beside it
    assert (sheet[by:by + 48, bx:bx + 48] == 230).all(axis=2).mean() > 0.8


def test_report_cli_and_errors(built, tmp_path):
    out = tmp_path / "sheet.jpg"
    r = subprocess.run([sys.executable, "-m", "plenopack", "report", str(built), "-o", str(out), "--worst", "3",
                        "--size", "32", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [s["id"] for s in result["scenes"]] == ["sphere/b", "sphere/a", "sphere/c"] and out.exists()
    assert Image.open(out).format == "JPEG"
    r = subprocess.run([sys.executable, "-m", "plenopack", "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path}: no manifest.parquet: not a plenopack dataset"


def test_build_with_report_on_a_finished_dataset(tmp_path, capture):
    """`plenopack build --report` on a finished dataset rebuilds nothing and writes the sheet beside the manifest."""
    from plenopack.build import BuildConfig, build_dataset

    listing = tmp_path / "scenes.txt"
    listing.write_text(f"{capture}\n")
    out = tmp_path / "ds"
    build_dataset(listing, out, BuildConfig(preset="tiny", fit_overrides=TINY, max_side=40, lpips_net="squeeze"),
                  workers=1)
    scene_file = out / "scenes" / capture.parent.name / "sphere.plen"
    built = scene_file.stat().st_mtime_ns
    cmd = [sys.executable, "-m", "plenopack", "build", str(listing), "-o", str(out), "--preset", "tiny",
           "--max-side", "40", "--workers", "1", "--lpips-net", "squeeze", "--report", "--json"]
    cmd += sum((["--set", f"{k}={json.dumps(v)}"] for k, v in TINY.items()), [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["report"]["sheet"] == str(out / "report.png") and (out / "report.png").exists()
    assert [s["id"] for s in summary["report"]["scenes"]] == [f"{capture.parent.name}/sphere"] and summary["report"]["scenes"][0]["photo"]
    assert scene_file.stat().st_mtime_ns == built  # nothing was rebuilt
