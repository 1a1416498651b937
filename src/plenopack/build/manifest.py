"""The dataset manifest: one row per scene in ``manifest.parquet`` (pyarrow), replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema([
    ("id", pa.string()), ("category", pa.string()), ("source", pa.string()), ("path", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("views", pa.int32()), ("resolution", pa.int32()),
    ("voxels", pa.int64()), ("bytes", pa.int64()), ("psnr", pa.float64()), ("ssim", pa.float64()),
    ("lpips", pa.float64()), ("psnr_masked", pa.float64()), ("fit_seconds", pa.float64()),
    ("config_hash", pa.string()), ("sha256", pa.string()), ("source_bytes", pa.int64()),
])
QUALITY_METRICS = ("psnr", "psnr_masked")  # test-view PSNR columns that datasets filter and reports rank scenes by


def write_manifest(path: str | Path, rows: list[dict]) -> None:
    """Write all rows (sorted by id) to a temporary file, fsync, rename."""
    path = Path(path)
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in MANIFEST_SCHEMA} for r in sorted(rows, key=lambda r: r["id"])],
                                 schema=MANIFEST_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    return pq.read_table(path).to_pylist() if path.exists() else []
