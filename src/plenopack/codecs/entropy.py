"""Entropy coding of stored streams with zstd, decoded with bounded memory whatever a frame claims.

Decoding never trusts a frame's declared content size: it streams, reading at most the number of bytes the
caller expects (plus one, to detect a longer stream), so a tiny frame that claims terabytes costs nothing.
The decoder's window is capped at ``MAX_WINDOW`` bytes (zstd's own default limit), which bounds its memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import zstandard

CODERS = ("zstd",)  # names allowed in a stream descriptor's "entropy"
MAX_WINDOW = 1 << 27
DECODER_MEMORY = MAX_WINDOW + (1 << 20)  # bytes a zstd decoder may hold at most (window and block buffers)


def compress(data: bytes, level: int = 19) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def _reader(data: bytes | memoryview):
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    return dctx.stream_reader(data, read_across_frames=True)


def decompress_exact(data: bytes | memoryview, size: int) -> bytes:
    """The ``size`` bytes ``data`` decompresses to; ValueError if it holds fewer or more, or is not zstd."""
    try:
        with _reader(data) as reader:
            out = reader.read(size + 1)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd stream ({exc})") from None
    if len(out) != size:
        raise ValueError(f"zstd stream decodes to {'more' if len(out) > size else len(out)} bytes, expected {size}")
    return out


def iter_decompressed(data: bytes | memoryview, size: int, chunk: int) -> Iterator[bytes]:
    """The decompressed stream in pieces of ``chunk`` bytes (the last may be shorter), ``size`` bytes in all;
    ValueError if it holds fewer or more. Holds one piece at a time."""
    done = 0
    try:
        with _reader(data) as reader:
            while done < size:
                piece = reader.read(min(chunk, size - done))
                if not piece:
                    raise ValueError(f"zstd stream ends after {done} bytes, expected {size}")
                done += len(piece)
                yield piece
            if reader.read(1):
                raise ValueError(f"zstd stream decodes to more than {size} bytes")
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt zstd stream ({exc})") from None
