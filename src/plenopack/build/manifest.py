"""The dataset manifest: one row per scene in ``manifest.parquet`` (pyarrow), replaced atomically."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from plenopack.atomic import atomic_path

MANIFEST_SCHEMA = pa.schema([
    ("id", pa.string()), ("category", pa.string()), ("source", pa.string()), ("path", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("views", pa.int32()), ("resolution", pa.int32()),
    ("voxels", pa.int64()), ("bytes", pa.int64()), ("psnr", pa.float64()), ("ssim", pa.float64()),
    ("lpips", pa.float64()), ("psnr_masked", pa.float64()), ("fit_seconds", pa.float64()),
    ("config_hash", pa.string()), ("sha256", pa.string()), ("source_bytes", pa.int64()),
    ("lpips_net", pa.string()), ("worker_peak_rss_mb", pa.float64()),
])
QUALITY_METRICS = ("psnr", "psnr_masked")  # test-view PSNR columns that datasets filter and reports rank scenes by


def write_manifest(path: str | Path, rows: list[dict]) -> None:
    """Write all rows (sorted by id), atomically (`plenopack.atomic`)."""
    path = Path(path)
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in MANIFEST_SCHEMA} for r in sorted(rows, key=lambda r: r["id"])],
                                 schema=MANIFEST_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> list[dict]:
    """All rows (columns missing from older manifests read as None)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = pq.read_table(path).to_pylist()
    return [{f.name: r.get(f.name) for f in MANIFEST_SCHEMA} for r in rows]
