"""Builder throughput and manifest operations (JSON on stdout).

- scenes per hour building tiny CO3D-layout scenes with 1 and 2 workers (the ratio shows scaling);
- manifest write / read / update-one-row / lookup at CO3D's size (18.6K rows).
Run: .venv/bin/python bench/bench_build.py
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plenopack.build import BuildConfig, build_dataset, read_manifest, write_manifest  # noqa: E402
from plenopack.codecs import CodecConfig  # noqa: E402
from tests.test_build import TINY, make_root  # noqa: E402


def throughput(root: Path, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = BuildConfig(preset="tiny", fit_overrides=TINY, codec=CodecConfig("sh", 8, "zstd"), lpips_net="squeeze")
        t = time.perf_counter()
        summary = build_dataset(root, out, cfg, workers=workers)
        return summary["scenes_ok"] / ((time.perf_counter() - t) / 3600)


def manifest_ops(n: int = 18_600) -> dict:
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
    with tempfile.TemporaryDirectory() as tmp:
        root = make_root(Path(tmp) / "co3d", n_per_category=3)
        one = throughput(root, 1)
        two = throughput(root, 2)
    print(json.dumps({"scenes_per_hour_1_worker": one, "scenes_per_hour_2_workers": two, "scaling": two / one,
                      "manifest": manifest_ops()}, indent=1))


if __name__ == "__main__":
    main()
