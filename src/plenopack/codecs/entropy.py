"""Entropy coding of packed streams with zstd (optionally after byte shuffling of float data)."""

from __future__ import annotations

import zstandard


def compress(data: bytes, level: int = 19) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def decompress(data: bytes, max_size: int) -> bytes:
    """Decompress, refusing to produce more than ``max_size`` bytes (corrupt or hostile input)."""
    out = zstandard.ZstdDecompressor().decompress(data, max_output_size=max_size)
    if len(out) > max_size:
        raise ValueError("decompressed stream is larger than declared")
    return out
