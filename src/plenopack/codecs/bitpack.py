"""Exact bit-packing of small integer codes, as bit planes (lowest bit first).

Plane b holds bit b of every code, packed 8 codes per byte (numpy packbits, big-endian within a byte).
Bit planes keep the packing exact for every width 1..16 and make the high planes easy for zstd to shrink.
"""

from __future__ import annotations

import numpy as np


def packed_size(count: int, bits: int) -> int:
    """Bytes `pack` produces for ``count`` codes of ``bits`` bits."""
    return bits * ((count + 7) // 8)


def pack(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integer codes (< 2^bits, bits in 1..16) into bit planes."""
    c = np.ascontiguousarray(codes, dtype=np.uint16).reshape(-1)
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be 1..16, got {bits}")
    if c.size and int(c.max()) >= (1 << bits):
        raise ValueError(f"code {int(c.max())} does not fit in {bits} bits")
    planes = [np.packbits(((c >> b) & 1).astype(np.uint8)) for b in range(bits)]
    return b"".join(p.tobytes() for p in planes)


def unpack_memory(count: int, bits: int) -> int:
    """Bytes `unpack` allocates at most: the codes and one bit plane (and a uint16 scratch plane above 8 bits)."""
    return count * (2 if bits <= 8 else 5)


def unpack(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack`: ``count`` codes as uint16 (uint8 when bits <= 8); allocates `unpack_memory` bytes."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be 1..16, got {bits}")
    plane_bytes = (count + 7) // 8
    if len(data) != bits * plane_bytes:
        raise ValueError(f"expected {bits * plane_bytes} packed bytes, got {len(data)}")
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.zeros(count, dtype=np.uint16 if bits > 8 else np.uint8)
    shifted = np.empty(count, np.uint16) if bits > 8 else None
    for b in range(bits):
        plane = np.unpackbits(buf[b * plane_bytes:(b + 1) * plane_bytes], count=count)
        if b < 8:
            out |= np.left_shift(plane, b, out=plane)
        else:
            out |= np.left_shift(plane, b, out=shifted, dtype=np.uint16)
    return out
