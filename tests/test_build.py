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
    summary = build_dataset(root, out, config(), workers=2)
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
    build_dataset(root, out, config(), workers=1)  # resume: finished scenes are skipped
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
    summary = build_dataset(co3d_root, out, config(), executor="ray", workers=2, limit=2)
    ray.shutdown()
    assert summary["scenes_ok"] == 2


def _die_on(key, code):
    import os
    import signal as sig

    if key == "die":
        os.kill(os.getpid(), sig.SIGKILL if code == "kill" else sig.SIGSEGV)
    return key


def test_pool_survives_workers_that_die():
    from plenopack.build.pool import WorkerDied, WorkerPool

    with WorkerPool(2) as pool:
        results = dict(pool.run([(i, _die_on, ("die" if i in (1, 3) else f"ok{i}", "kill" if i == 1 else "segv"))
                                 for i in range(6)]))
    assert results[0] == "ok0" and results[5] == "ok5" and results[4] == "ok4"
    assert isinstance(results[1], WorkerDied) and "SIGKILL" in results[1].describe()
    assert isinstance(results[3], WorkerDied) and "SIGSEGV" in results[3].describe()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop_self(*_):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_between_tasks_is_replaced_before_its_next_task():
    from plenopack.build.pool import WorkerPool

    with WorkerPool(1) as pool:
        assert dict(pool.run([(0, _die_on, ("ok0", ""))])) == {0: "ok0"}
        idle = pool.workers[0].process
        os.kill(idle.pid, signal.SIGKILL)
        idle.join()
        assert dict(pool.run([(i, _die_on, (f"ok{i}", "")) for i in (1, 2)])) == {1: "ok1", 2: "ok2"}
        assert pool.workers[0].process.pid != idle.pid


def test_workers_that_cannot_start_fail_every_task_without_hanging():
    from plenopack.build.pool import WorkerDied, WorkerPool

    with WorkerPool(2, initializer=_stop_self) as pool:
        results = dict(pool.run([(i, _die_on, (f"ok{i}", "")) for i in range(3)]))
    assert sorted(results) == [0, 1, 2]
    assert all(isinstance(r, WorkerDied) and "SIGKILL" in r.describe() for r in results.values())


def test_a_killed_worker_fails_its_scene_and_the_build_goes_on(tmp_path, co3d_root):
    """Kill the worker process while it fits a scene: that scene is recorded as failed with the cause."""
    import multiprocessing
    import threading

    out = tmp_path / "ds"
    slow = {**TINY, "steps": [150, 150]}
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=build_dataset(
        co3d_root, out, BuildConfig(preset="tiny", fit_overrides=slow, lpips_net=None), workers=1)))
    thread.start()
    # Generous: on a clean clone the build first compiles the kernels (numba's cache is cold), on a loaded CI machine.
    deadline = time.time() + 600
    while time.time() < deadline and thread.is_alive() and len(read_manifest_safe(out)) < 1:
        time.sleep(0.05)
    assert len(read_manifest_safe(out)) >= 1, "the first scene did not finish within 600 s"
    victim, busy_from = None, 0.0
    deadline = time.time() + 300
    while time.time() < deadline:  # an idle worker uses no CPU: once it does, the second scene is in flight
        try:
            if victim is None:
                victim = multiprocessing.active_children()[0]
                busy_from = _cpu_seconds(victim.pid)
            elif _cpu_seconds(victim.pid) >= busy_from + 0.1:
                break
        except (IndexError, FileNotFoundError):  # no worker yet, or the one seen has just exited
            victim = None
        time.sleep(0.02)
    assert victim is not None
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(300)
    summary = result["summary"]
    rows = read_manifest(out / "manifest.parquet")
    failed = [r for r in rows if r["status"] == "failed"]
    assert summary["scenes"] == 4 and len(failed) == 1 and summary["scenes_ok"] == 3
    assert "SIGKILL" in failed[0]["error"] and "out of memory" in failed[0]["error"]
    assert all(r["worker_peak_rss_mb"] > 50 for r in rows if r["status"] == "ok")


def test_list_file_ids_are_unique_across_categories(tmp_path):
    from tests.scene_fixtures import make_cameras, write_co3d

    lines = []
    for category in ("apple", "bench"):
        c2w, k = make_cameras(6, 12, 12, seed=1)
        seq = write_co3d(tmp_path / category, c2w, k, 12, 12, category=category, sequence="001")
        lines.append(str(seq))
    c2w, k = make_cameras(6, 12, 12, seed=2)
    lines.append(str(write_co3d(tmp_path / "again", c2w, k, 12, 12, category="apple", sequence="001")))
    (tmp_path / "list.txt").write_text("\n".join(lines))
    refs = discover_scenes(tmp_path / "list.txt", format="co3d")
    ids = [r.id for r in refs]
    assert len(set(ids)) == 3 and ids[1] == "bench/001"
    from plenopack.build.builder import scene_file

    assert len({scene_file(r) for r in refs}) == 3


def test_resume_trusts_the_manifest_unless_verify(tmp_path, co3d_root):
    out = tmp_path / "ds"
    cfg = BuildConfig(preset="tiny", fit_overrides=TINY, lpips_net=None)
    build_dataset(co3d_root, out, cfg, workers=1, limit=1)
    row = read_manifest(out / "manifest.parquet")[0]
    path = out / row["path"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    mtime = path.stat().st_mtime_ns
    build_dataset(co3d_root, out, cfg, workers=1, limit=1)
    assert path.stat().st_mtime_ns == mtime  # trusted: not rebuilt
    build_dataset(co3d_root, out, cfg, workers=1, limit=1, verify=True)
    assert path.stat().st_mtime_ns != mtime
    from plenopack.build.builder import sha256_of

    assert sha256_of(path) == read_manifest(out / "manifest.parquet")[0]["sha256"]
