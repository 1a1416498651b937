"""Dataset builds from a CO3D-layout root of tiny scenes: local pool, failures, kill and resume, Ray."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from plenopack.build import BuildConfig, build_dataset, discover_scenes, read_manifest
from plenopack.codecs import CodecConfig
from tests.scene_fixtures import make_cameras, write_co3d

TINY = {"reso": [8, 16], "steps": [20, 20], "batch_rays": 256, "log_every": 20}


def make_root(root, n_per_category=2):
    for ci, category in enumerate(("apple", "teddybear")):
        for s in range(n_per_category):
            c2w, k = make_cameras(11, 20, 24, seed=10 * ci + s)
            seq = write_co3d(root / "tmp", c2w, k, 20, 24, category=category, sequence=f"{100 + s}_{ci}")
            (root / category).mkdir(parents=True, exist_ok=True)
            os.replace(seq, root / category / seq.name)
            for name in ("frame_annotations.jgz", "sequence_annotations.jgz"):
                _merge_jgz(root / "tmp" / category / name, root / category / name)
            import shutil

            shutil.rmtree(root / "tmp")
    return root


def _merge_jgz(src, dst):
    import gzip

    with gzip.open(src, "rt") as fh:
        new = json.load(fh)
    old = []
    if dst.exists():
        with gzip.open(dst, "rt") as fh:
            old = json.load(fh)
    with gzip.open(dst, "wt") as fh:
        json.dump(old + new, fh)


@pytest.fixture(scope="module")
def co3d_root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("co3d"))


def config():
    return BuildConfig(preset="tiny", fit_overrides=TINY, codec=CodecConfig("sh", 8, "zstd"), lpips_net="squeeze")


def test_discover_co3d_root(co3d_root):
    refs = discover_scenes(co3d_root)
    assert [r.id for r in refs] == ["apple/100_0", "apple/101_0", "teddybear/100_1", "teddybear/101_1"]
    assert {r.category for r in refs} == {"apple", "teddybear"}
    assert [r.id for r in discover_scenes(co3d_root, categories=["teddybear"], limit=1)] == ["teddybear/100_1"]


def test_local_build_with_a_bad_scene_then_resume(tmp_path, co3d_root):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(co3d_root, root)
    broken = root / "apple" / "101_0" / "images"
    for f in sorted(broken.iterdir())[:3]:
        f.write_bytes(b"not a jpeg")
    out = tmp_path / "ds"
    summary = build_dataset(root, out, config(), workers=2, progress=False)
    rows = {r["id"]: r for r in read_manifest(out / "manifest.parquet")}
    assert summary["scenes_ok"] == 3 and summary["scenes_failed"] == 1
    assert rows["apple/101_0"]["status"] == "failed" and "cannot read image" in rows["apple/101_0"]["error"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    for r in ok:
        assert (out / r["path"]).stat().st_size == r["bytes"] and r["lpips"] is not None
        assert r["psnr_masked"] > 15  # full-frame PSNR needs a background model (issue 8)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["scenes_ok"] == 3 and ds["compression_ratio"] > 0
    mtimes = {r["id"]: (out / r["path"]).stat().st_mtime_ns for r in ok}
    build_dataset(root, out, config(), workers=1, progress=False)  # resume: finished scenes are skipped
    assert {r["id"]: (out / r["path"]).stat().st_mtime_ns for r in ok} == mtimes


def test_killed_build_resumes_without_corruption(tmp_path, co3d_root):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "plenopack", "build", str(co3d_root), "-o", str(out), "--preset", "tiny",
           "--workers", "1", "--lpips-net", "squeeze", "--json"] + sum((["--set", f"{k}={json.dumps(v)}"] for k, v in TINY.items()), [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_manifest_safe(out)) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_manifest_safe(out)
    assert 1 <= len(partial) < 4
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = read_manifest(out / "manifest.parquet")
    assert len(rows) == 4 and all(row["status"] == "ok" for row in rows)
    from plenopack.build.builder import sha256_of

    for row in rows:
        assert sha256_of(out / row["path"]) == row["sha256"]
    assert not list(out.rglob(".*tmp*"))


def read_manifest_safe(out):
    try:
        return read_manifest(out / "manifest.parquet")
    except Exception:
        return []


def test_ray_executor(tmp_path, co3d_root):
    import ray

    out = tmp_path / "ds"
    summary = build_dataset(co3d_root, out, config(), executor="ray", workers=2, limit=2, progress=False)
    ray.shutdown()
    assert summary["scenes_ok"] == 2
