"""Re-encoding scene files with a codec, and the per-voxel importance that k-means and VQ weight by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.codecs import CodecConfig
from plenopack.fileformat import read_plen, write_plen
from plenopack.grid import Grid


def opacity_importance(grid: Grid) -> np.ndarray:
    """Proxy importance without the training views: a voxel's opacity over one voxel length,
    1 - exp(-relu(sigma) * voxel_size) (float64, (N,))."""
    return 1.0 - np.exp(-np.maximum(grid.density.astype(np.float64), 0.0) * grid.voxel_size)


def compress_file(src: str | Path, dst: str | Path, codec: CodecConfig, importance: np.ndarray | None = None) -> dict:
    """Decode ``src``, encode it with ``codec`` into ``dst`` (atomically) and describe the result."""
    f = read_plen(src)
    weights = opacity_importance(f.grid) if importance is None else importance
    metadata = dict(f.metadata)
    metadata["compressed_from"] = {"file": Path(src).name, "bytes": f.nbytes}
    nbytes = write_plen(dst, f.grid, metadata, codec, importance=weights)
    out = read_plen(dst)
    return {"file": str(dst), "method": codec.method, "bits": codec.bits, "label": codec.label(), "bytes": nbytes,
            "memory_mb": nbytes / 2 ** 20, "input_bytes": f.nbytes, "ratio": f.nbytes / nbytes,
            "arrays": out.array_bytes}
