"""Builder throughput per worker configuration, and manifest operations (JSON on stdout).

- scenes per hour building copies of one real scene (default: lego at max_side 100 with preset fast) with
  each configuration ``WxT`` (W workers of T threads; T is what the builder gives each worker, cpus // W, so
  the configurations fix the CPUs: e.g. 2x1 means 2 CPUs), each against the first configuration in the same
  run; a fresh dataset folder per configuration, the numba cache warmed before the first;
- manifest write / read / update-one-row / lookup at CO3D's size (18.6K rows).
Targets (issue 18): on 2 cores 2x1 >= 0.95x the scenes/hour of 1x2, and 8x1 >= 0.9x of 2x1 (8 scenes);
on 16 cores 8x2 >= 6x of 1x2.
Run: .venv/bin/python bench/bench_build.py [--configs 1x2,2x1,8x1] [--scenes 8] [--preset fast]
     [--max-side 100] [--scene data/scenes/lego] [--set key=value ...] [--no-manifest]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parse_configs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        workers, threads = item.lower().split("x")
        out.append((int(workers), int(threads)))
    return out


def scene_root(folder: Path, scene: Path, copies: int) -> Path:
    """A folder of ``copies`` links to the scene (a "folder of scene folders" capture root)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        (folder / f"{scene.name}{i:03d}").symlink_to(scene.resolve(), target_is_directory=True)
    return folder


def throughput(root: Path, config, workers: int, threads: int) -> dict:
    from plenopack.build import build_dataset

    with tempfile.TemporaryDirectory() as out:
        # the builder gives each worker cpus // workers threads: pin the CPU count this configuration stands for
        os.environ["PLENOPACK_CPUS"] = str(workers * threads)
        start = time.perf_counter()
        try:
            summary = build_dataset(root, out, config, workers=workers)
        finally:
            os.environ.pop("PLENOPACK_CPUS", None)
        seconds = time.perf_counter() - start
    return {"workers": workers, "threads": threads, "seconds": round(seconds, 1), "scenes_ok": summary["scenes_ok"],
            "scenes_per_hour": round(summary["scenes_ok"] / (seconds / 3600), 2), "psnr": summary["psnr"],
            "worker_peak_rss_mb": summary["worker_peak_rss_mb"]}


def manifest_ops(n: int = 18_600) -> dict:
    from plenopack.build import read_manifest, write_manifest

    rows = [{"id": f"cat{i % 50}/seq{i}", "category": f"cat{i % 50}", "path": f"scenes/cat{i % 50}/seq{i}.plen",
             "status": "ok", "bytes": 1_000_000 + i, "psnr": 28.0, "ssim": 0.9, "config_hash": "abc", "sha256": "0" * 64}
            for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.parquet"
        t = time.perf_counter()
        write_manifest(path, rows)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        back = read_manifest(path)
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        index = {r["id"]: r for r in back}
        index["cat3/seq3"]["status"] = "failed"
        write_manifest(path, list(index.values()))
        update_s = time.perf_counter() - t
        t = time.perf_counter()
        hit = index["cat7/seq18007"]
        lookup_s = time.perf_counter() - t
        return {"rows": n, "write_s": write_s, "read_s": read_s, "update_one_row_s": update_s, "lookup_s": lookup_s,
                "bytes": path.stat().st_size, "lookup_ok": hit["bytes"] == 1_018_007}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="1x2,2x1", help="comma-separated WORKERSxTHREADS")
    parser.add_argument("--scenes", type=int, default=8, help="copies of the scene to build per configuration")
    parser.add_argument("--scene", default=str(ROOT / "data" / "scenes" / "lego"))
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--max-side", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], help="fit override key=value (repeatable)")
    parser.add_argument("--lpips-net", default="squeeze", help="LPIPS backbone of the evaluation ('' for none)")
    parser.add_argument("--no-manifest", action="store_true", help="skip the manifest timings")
    args = parser.parse_args()

    from plenopack.build import BuildConfig
    from plenopack.build.warmup import compile_kernels
    from plenopack.cli.options import parse_key_values
    from plenopack.codecs import CodecConfig
    from plenopack.resources import available_cpus, cpu_limits

    config = BuildConfig(preset=args.preset, fit_overrides=parse_key_values(args.set, "--set"), max_side=args.max_side,
                         codec=CodecConfig("sh", 8, "zstd"), lpips_net=args.lpips_net or None,
                         evaluate=True)
    start = time.perf_counter()
    compile_kernels(config.fit_config())
    warm_s = time.perf_counter() - start
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = scene_root(Path(tmp) / "scenes", Path(args.scene), args.scenes)
        for workers, threads in parse_configs(args.configs):
            runs.append(throughput(root, config, workers, threads))
    for run in runs:
        run["relative_to_first"] = round(run["scenes_per_hour"] / runs[0]["scenes_per_hour"], 3)
    out = {"scene": args.scene, "preset": args.preset, "max_side": args.max_side, "scenes": args.scenes,
           "available_cpus": available_cpus(), "cpu_limits": cpu_limits(), "warmup_seconds": round(warm_s, 1),
           "runs": runs}
    if not args.no_manifest:
        out["manifest"] = manifest_ops()
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
