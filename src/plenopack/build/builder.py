"""The build loop: one task per scene on a local worker pool or Ray, the manifest kept by the coordinator.

Each scene runs `plenopack.pipeline.run` (the same path as `plenopack fit` + `compress` + `eval`). A scene that
fails (bad input, or a worker process that dies: out of memory, segfault) is recorded as failed with its
cause, and the build goes on. Resume trusts the manifest: a scene is done when its row is ok, has the same
configuration key and its file exists with the recorded size (``verify=True`` also checks its SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from plenopack.atomic import atomic_write_text, remove_stale_temporaries
from plenopack.build.discover import SceneRef, discover_scenes
from plenopack.build.manifest import read_manifest, write_manifest
from plenopack.build.pool import WorkerDied, WorkerPool
from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError
from plenopack.pipeline import PipelineConfig
from plenopack.progress import ProgressCallback, report
from plenopack.resources import available_cpus, thread_env, threads_per_worker

EXECUTORS = ("local", "ray")

@dataclass
class BuildConfig(PipelineConfig):
    """The pipeline's configuration, run on every scene; stored as PeRFception stores its scenes by default."""

    codec: CodecConfig = field(default_factory=lambda: CodecConfig("sh", 8))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scene_file(ref: SceneRef) -> str:
    """Path of a scene's file inside the dataset folder (ids are unique, so paths are)."""
    return f"scenes/{ref.category}/{ref.id.split('/')[-1]}.plen"


_LPIPS_CACHE: dict = {}


def process_scene(ref: SceneRef, config: BuildConfig, out_dir: str, config_key: str) -> dict:
    """Ingest, fit, compress, evaluate and write one scene; never raises (errors become a failed row)."""
    from plenopack.lpips import resolve_lpips
    from plenopack.pipeline import run
    from plenopack.scene import load_scene

    rel = scene_file(ref)
    row = {"id": ref.id, "category": ref.category, "source": ref.path, "path": rel, "config_hash": config_key}
    try:
        scene = load_scene(ref.path, format=ref.format, max_side=config.max_side, **config.scene_options)
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        lpips, backbone = None, None
        if config.evaluate and config.lpips_net:
            if config.lpips_net not in _LPIPS_CACHE:
                _LPIPS_CACHE[config.lpips_net] = resolve_lpips(config.lpips_net)[:2]
            lpips, backbone = _LPIPS_CACHE[config.lpips_net]
        result = run(scene, config, target, lpips, backbone, scene_id=ref.id)
        row.update(status="ok", error=None, sha256=sha256_of(target),
                   source_bytes=sum(Path(p).stat().st_size for p in scene.image_paths if Path(p).exists()),
                   **{k: result.get(k) for k in ("views", "resolution", "voxels", "bytes", "fit_seconds", "psnr",
                                                 "ssim", "lpips", "psnr_masked", "lpips_net")})
    except PlenopackError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # one bad scene never stops the build; keep the message on one line
        row.update(status="failed", error=f"{exc.__class__.__name__}: {exc}".replace("\n", " ")[:500])
    row["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _init_worker(threads: int) -> None:
    """Worker set-up: numba's layer and thread count for a build worker; torch's intra-op pool (sized from
    OMP_NUM_THREADS at its import, see `plenopack.resources.thread_env`) if torch is already loaded."""
    import sys

    from plenopack.resources import configure_threading

    configure_threading("worker", threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def worker_imports(config: BuildConfig) -> list[str]:
    """Modules the workers' fork server imports once for all of them: the scene pipeline, and torch with the
    LPIPS networks when the build scores LPIPS (a missing torch is skipped there and reported by the worker)."""
    modules = ["plenopack.build.builder"]
    if config.evaluate and config.lpips_net:
        modules += ["torch", "plenopack.lpips"]
    return modules


def is_done(row: dict | None, out_dir: Path, config_key: str, verify: bool = False) -> bool:
    """A finished scene: ok in the manifest, same configuration, file present with the recorded size (and,
    with ``verify``, the recorded SHA-256)."""
    if not row or row.get("status") != "ok" or row.get("config_hash") != config_key:
        return False
    path = out_dir / row["path"]
    if not path.is_file() or path.stat().st_size != row.get("bytes"):
        return False
    return not verify or sha256_of(path) == row.get("sha256")


def _summary(rows: list[dict], config: BuildConfig, config_key: str, source: str) -> dict:
    ok = [r for r in rows if r.get("status") == "ok"]

    def mean(k):
        vals = [r[k] for r in ok if r.get(k) is not None]
        return sum(vals) / len(vals) if vals else None
    total = sum(r["bytes"] for r in ok)
    src = sum(r.get("source_bytes") or 0 for r in ok)
    rss = [r["worker_peak_rss_mb"] for r in rows if r.get("worker_peak_rss_mb") is not None]
    return {"source": source, "config": config.to_dict(), "config_hash": config_key, "scenes": len(rows),
            "scenes_ok": len(ok), "scenes_failed": len(rows) - len(ok), "bytes": total, "memory_mb_per_scene":
            total / 2 ** 20 / len(ok) if ok else None, "psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips"),
            "source_image_bytes": src, "compression_ratio": src / total if total else None,
            "categories": sorted({r["category"] for r in ok}),
            "worker_peak_rss_mb": {"max": max(rss), "mean": sum(rss) / len(rss)} if rss else None}


def build_dataset(source: str | Path, out_dir: str | Path, config: BuildConfig, format: str | None = None,
                  executor: str = "local", workers: int | None = None, ray_address: str | None = None,
                  limit: int | None = None, categories: list[str] | None = None,
                  progress: ProgressCallback | None = None, verify: bool = False) -> dict:
    """Build (or resume) a dataset; returns the dataset.json summary. ``progress`` receives "build" events
    (scenes done; fields failed, rate in scenes/hour, mean psnr; a message for each failed scene)."""
    from plenopack.lpips import available_backbone

    if executor not in EXECUTORS:
        raise PlenopackError(f"unknown executor {executor!r} (expected local or ray)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # a killed build's half-written files
    refs = discover_scenes(source, format, categories, limit)
    manifest_path = out / "manifest.parquet"
    rows = {r["id"]: r for r in read_manifest(manifest_path)}
    config_key = config.key(available_backbone(config.lpips_net) if config.evaluate and config.lpips_net else None)
    todo = [r for r in refs if not is_done(rows.get(r.id), out, config_key, verify)]
    cores = available_cpus()
    workers = max(1, min(workers or cores, len(todo) or 1))
    start, done, failed, psnrs = time.perf_counter(), 0, 0, []

    def finished(row: dict) -> None:
        nonlocal done, failed
        rows[row["id"]] = row
        write_manifest(manifest_path, list(rows.values()))
        done += 1
        if row["status"] != "ok":
            failed += 1
        elif row.get("psnr") is not None:
            psnrs.append(row["psnr"])
        hours = (time.perf_counter() - start) / 3600
        report(progress, "build", done, len(todo), message=None if row["status"] == "ok" else
               f"failed: {row['id']}: {row['error']}", failed=failed, rate=done / max(hours, 1e-9),
               psnr=sum(psnrs) / len(psnrs) if psnrs else float("nan"))

    report(progress, "build", 0, len(todo), failed=0, rate=0.0, psnr=float("nan"))
    if executor == "local":
        threads = threads_per_worker(workers, cores)
        if todo:
            from plenopack.build.warmup import compile_kernels

            compile_kernels(config.fit_config())  # once here, so that the workers load the kernels from the cache
        with WorkerPool(workers, _init_worker, (threads,), thread_env(threads), worker_imports(config)) as pool:
            tasks = [(ref.id, process_scene, (ref, config, str(out), config_key)) for ref in todo]
            by_id = {ref.id: ref for ref in todo}
            for scene_id, row in pool.run(tasks):
                if isinstance(row, WorkerDied):
                    ref = by_id[scene_id]
                    row = {"id": ref.id, "category": ref.category, "source": ref.path, "path": scene_file(ref),
                           "config_hash": config_key, "status": "failed", "error": row.describe()}
                finished(row)
    else:
        for row in _run_on_ray(todo, config, out, config_key, workers, ray_address):
            finished(row)
    summary = _summary([rows[r.id] for r in refs if r.id in rows], config, config_key, str(source))
    summary.update(executor=executor, workers=workers, cpus=cores)
    atomic_write_text(out / "dataset.json", json.dumps(summary, indent=1))
    return summary


def _run_on_ray(todo: list[SceneRef], config: BuildConfig, out: Path, config_key: str, workers: int,
                address: str | None):
    """One Ray task per scene (num_cpus each = cores / workers); yields rows as they finish."""
    try:
        import ray
    except ImportError:
        raise PlenopackError("the ray executor needs Ray: pip install 'plenopack[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": available_cpus()}))
    cpus = max(1, int(ray.available_resources().get("CPU", 1)) // workers)
    task = ray.remote(num_cpus=cpus, max_retries=0)(_ray_scene)
    futures = {task.remote(ref, config, str(out), config_key, cpus): ref for ref in todo}
    while futures:
        done, _ = ray.wait(list(futures), num_returns=1)
        ref = futures.pop(done[0])
        try:
            yield ray.get(done[0])
        except ray.exceptions.RayError as exc:  # the worker process died
            yield {"id": ref.id, "category": ref.category, "source": ref.path, "path": scene_file(ref),
                   "config_hash": config_key, "status": "failed",
                   "error": f"worker process died ({exc.__class__.__name__})"}


def _ray_scene(ref: SceneRef, config: BuildConfig, out_dir: str, config_key: str, threads: int) -> dict:
    _init_worker(threads)
    return process_scene(ref, config, out_dir, config_key)
