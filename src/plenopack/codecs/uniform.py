"""PeRFception's per-channel min-max (uniform) scalar quantisation.

For each channel: scale = (hi - lo) / (2^B - 1), q = round((x - lo) / scale), x' = q * scale + lo, with
(lo, hi) the channel's min and max over all rows ("sh", "sh+d") or a fixed clipping interval ("clip", values
clipped first). A constant channel (hi == lo) stores only lo. Error per value is at most scale / 2.
"""

from __future__ import annotations

import numpy as np

from plenopack.codecs import bitpack


def quantize(values: np.ndarray, bits: int, lo=None, hi=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes (N, C) uint16, per-channel lo (C,) and scale (C,) float32. ``lo``/``hi`` clip when given."""
    x = np.asarray(values, dtype=np.float32)
    if lo is None:
        lo_c = x.min(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
        hi_c = x.max(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    else:
        lo_c = np.full(x.shape[1], lo, np.float32)
        hi_c = np.full(x.shape[1], hi, np.float32)
        x = np.clip(x, lo_c, hi_c)
    levels = (1 << bits) - 1
    scale = ((hi_c.astype(np.float64) - lo_c) / levels).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.rint((x - lo_c) / safe)
    codes = np.clip(codes, 0, levels).astype(np.uint16)
    codes[:, scale == 0] = 0
    return codes, lo_c.astype(np.float32), scale


def dequantize(codes: np.ndarray, lo: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (codes.astype(np.float32) * scale[None, :] + lo[None, :]).astype(np.float32)


def encode(values: np.ndarray, bits: int, clip: tuple[float, float] | None = None) -> tuple[bytes, dict]:
    """Channel-major bit-packed codes and the parameters needed to decode them."""
    codes, lo, scale = quantize(values, bits, *(clip if clip else (None, None)))
    payload = bitpack.pack(codes.T, bits)
    return payload, {"bits": bits, "lo": lo.tolist(), "scale": scale.tolist()}


def decode(payload: bytes, params: dict, rows: int, cols: int) -> np.ndarray:
    codes = bitpack.unpack(payload, rows * cols, params["bits"]).reshape(cols, rows).T
    return dequantize(codes, np.asarray(params["lo"], np.float32), np.asarray(params["scale"], np.float32))
