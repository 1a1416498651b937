"""The build loop: one task per scene on a local process pool or Ray, the manifest kept by the coordinator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from plenopack.atomic import atomic_write_text
from plenopack.build.discover import SceneRef, discover_scenes
from plenopack.build.manifest import read_manifest, write_manifest
from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError

EXECUTORS = ("local", "ray")


@dataclass
class BuildConfig:
    preset: str = "fast"
    fit_overrides: dict = field(default_factory=dict)
    codec: CodecConfig = field(default_factory=lambda: CodecConfig("sh", 8))
    max_side: int = 800
    lpips_net: str = "vgg"
    evaluate: bool = True

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["codec"] = self.codec.to_dict()
        return d

    def config_hash(self) -> str:
        from plenopack.fit import load_preset

        fit_hash = load_preset(self.preset, **self.fit_overrides).config_hash()
        blob = json.dumps({"fit": fit_hash, "codec": self.codec.to_dict(), "max_side": self.max_side}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scene_file(ref: SceneRef) -> str:
    return f"scenes/{ref.category}/{ref.id.split('/')[-1]}.plen"


_LPIPS_CACHE: dict = {}


def process_scene(ref: SceneRef, config: BuildConfig, out_dir: str) -> dict:
    """Ingest, fit, compress, evaluate and write one scene; never raises (errors become a failed row)."""
    from plenopack.compress import prepare
    from plenopack.evaluate import evaluate
    from plenopack.fileformat import read_plen, write_plen
    from plenopack.fit import eval_background, fit, load_preset
    from plenopack.lpips import resolve_lpips
    from plenopack.scene import load_scene

    rel = scene_file(ref)
    row = {"id": ref.id, "category": ref.category, "source": ref.path, "path": rel,
           "config_hash": config.config_hash()}
    try:
        scene = load_scene(ref.path, format=ref.format, max_side=config.max_side)
        fit_config = load_preset(config.preset, **config.fit_overrides)
        result = fit(scene, fit_config, progress=False)
        grid, importance, vq_state = prepare(result.grid, config.codec, scene)
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {"scene": {"name": scene.name, "id": ref.id, "category": ref.category, "source_path": ref.path,
                          "format": scene.source_format, "world_to_unit": scene.world_to_unit.tolist(),
                          "max_side": config.max_side},
                "eval_background": list(eval_background(fit_config, scene)),
                "fit": {"preset": config.preset, "config": fit_config.to_dict(), "config_hash": fit_config.config_hash(),
                        "seconds": round(result.seconds, 2)}}
        nbytes = write_plen(target, grid, meta, config.codec, importance=importance, vq_state=vq_state)
        row.update(status="ok", error=None, views=scene.num_views, resolution=grid.resolution, voxels=grid.num_voxels,
                   bytes=nbytes, fit_seconds=round(result.seconds, 2), sha256=sha256_of(target),
                   source_bytes=sum(Path(p).stat().st_size for p in scene.image_paths if Path(p).exists()))
        if config.evaluate and scene.test_ids.size:
            if config.lpips_net not in _LPIPS_CACHE:
                _LPIPS_CACHE[config.lpips_net] = resolve_lpips(config.lpips_net)[0]
            ev = evaluate(read_plen(target).grid, scene, lpips=_LPIPS_CACHE[config.lpips_net],
                          background=tuple(meta["eval_background"]))
            row.update(psnr=ev["psnr"], ssim=ev["ssim"], lpips=ev["lpips"], psnr_masked=ev.get("psnr_masked"))
    except PlenopackError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # one bad scene never stops the build; keep the message on one line
        row.update(status="failed", error=f"{exc.__class__.__name__}: {exc}".replace("\n", " ")[:500])
    return row


def _init_worker(threads: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def is_done(row: dict | None, out_dir: Path, config_hash: str) -> bool:
    """A finished scene: ok in the manifest, same config, file present with the recorded checksum."""
    if not row or row.get("status") != "ok" or row.get("config_hash") != config_hash:
        return False
    path = out_dir / row["path"]
    return path.exists() and sha256_of(path) == row.get("sha256")


def _summary(rows: list[dict], config: BuildConfig, source: str) -> dict:
    ok = [r for r in rows if r.get("status") == "ok"]

    def mean(k):
        vals = [r[k] for r in ok if r.get(k) is not None]
        return sum(vals) / len(vals) if vals else None
    total = sum(r["bytes"] for r in ok)
    src = sum(r.get("source_bytes") or 0 for r in ok)
    return {"source": source, "config": config.to_dict(), "config_hash": config.config_hash(), "scenes": len(rows),
            "scenes_ok": len(ok), "scenes_failed": len(rows) - len(ok), "bytes": total, "memory_mb_per_scene":
            total / 2 ** 20 / len(ok) if ok else None, "psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips"),
            "source_image_bytes": src, "compression_ratio": src / total if total else None,
            "categories": sorted({r["category"] for r in ok})}


def build_dataset(source: str | Path, out_dir: str | Path, config: BuildConfig, format: str | None = None,
                  executor: str = "local", workers: int | None = None, ray_address: str | None = None,
                  limit: int | None = None, categories: list[str] | None = None, progress: bool = True) -> dict:
    """Build (or resume) a dataset; returns the dataset.json summary."""
    if executor not in EXECUTORS:
        raise PlenopackError(f"unknown executor {executor!r} (expected local or ray)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = discover_scenes(source, format, categories, limit)
    manifest_path = out / "manifest.parquet"
    rows = {r["id"]: r for r in read_manifest(manifest_path)}
    chash = config.config_hash()
    todo = [r for r in refs if not is_done(rows.get(r.id), out, chash)]
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(todo) or 1))

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    state = {"failed": 0, "psnr": [], "start": time.perf_counter()}

    def finished(row: dict, bar, task) -> None:
        rows[row["id"]] = row
        write_manifest(manifest_path, list(rows.values()))
        if row["status"] != "ok":
            state["failed"] += 1
        elif row.get("psnr") is not None:
            state["psnr"].append(row["psnr"])
        hours = (time.perf_counter() - state["start"]) / 3600
        done = bar.tasks[task].completed + 1
        mean = sum(state["psnr"]) / len(state["psnr"]) if state["psnr"] else float("nan")
        bar.update(task, advance=1, failed=state["failed"], rate=done / max(hours, 1e-9), psnr=mean)

    columns = [TextColumn("[bold]build"), BarColumn(), MofNCompleteColumn(), TextColumn("failed {task.fields[failed]}"),
               TextColumn("{task.fields[rate]:.0f} scenes/h"), TextColumn("mean PSNR {task.fields[psnr]:.2f}"),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("build", total=len(todo), failed=0, rate=0.0, psnr=float("nan"))
        if executor == "local":
            threads = max(1, cores // workers)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(threads,)) as pool:
                pending = {pool.submit(process_scene, ref, config, str(out)) for ref in todo}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        finished(fut.result(), bar, task)
        else:
            for row in _run_on_ray(todo, config, out, workers, ray_address):
                finished(row, bar, task)
    summary = _summary([rows[r.id] for r in refs if r.id in rows], config, str(source))
    atomic_write_text(out / "dataset.json", json.dumps(summary, indent=1))
    return summary


def _run_on_ray(todo: list[SceneRef], config: BuildConfig, out: Path, workers: int, address: str | None):
    """One Ray task per scene (num_cpus each = cores / workers); yields rows as they finish."""
    try:
        import ray
    except ImportError:
        raise PlenopackError("the ray executor needs Ray: pip install 'plenopack[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": os.cpu_count()}))
    cpus = max(1, int(ray.available_resources().get("CPU", 1)) // workers)
    task = ray.remote(num_cpus=cpus)(_ray_scene)
    futures = [task.remote(ref, config, str(out), cpus) for ref in todo]
    while futures:
        done, futures = ray.wait(futures, num_returns=1)
        yield ray.get(done[0])


def _ray_scene(ref: SceneRef, config: BuildConfig, out_dir: str, threads: int) -> dict:
    _init_worker(threads)
    return process_scene(ref, config, out_dir)
