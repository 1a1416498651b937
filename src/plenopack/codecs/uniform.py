"""PeRFception's per-channel min-max (uniform) scalar quantisation; registered as the ``uniform`` codec.

For each channel: scale = (hi - lo) / (2^B - 1), q = round((x - lo) / scale), x' = q * scale + lo, with
(lo, hi) the channel's min and max over all rows ("sh", "sh+d") or a fixed clipping interval ("clip", values
clipped first). A constant channel (hi == lo) stores only lo. Error per value is at most scale / 2.
Stream: the codes channel-major (all rows of channel 0, then channel 1, ...), stored by `bitpack` (bit planes,
or whole bytes when entropy-coded: parameter ``layout``).
Parameters: ``bits``, ``lo[c]``, ``scale[c]`` and, for clipped arrays, ``clip`` [lo, hi] (informative).
"""

from __future__ import annotations

import numpy as np

from plenopack.codecs import bitpack
from plenopack.codecs.base import ArrayCodec, register_codec, require_int, require_keys, require_numbers


def levels_for(values: np.ndarray, bits: int, lo=None, hi=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel lo (C,) and scale (C,) float32: min/max of ``values`` (N, C), or the interval [lo, hi]."""
    x = np.asarray(values, dtype=np.float32)
    if lo is None:
        lo_c = x.min(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
        hi_c = x.max(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    else:
        lo_c = np.full(x.shape[1], lo, np.float32)
        hi_c = np.full(x.shape[1], hi, np.float32)
    scale = ((hi_c.astype(np.float64) - lo_c) / ((1 << bits) - 1)).astype(np.float32)
    return lo_c.astype(np.float32), scale


def _codes(x: np.ndarray, lo: np.ndarray, scale: np.ndarray, bits: int, clip) -> np.ndarray:
    if clip is not None:
        x = np.clip(x, np.float32(clip[0]), np.float32(clip[1]))
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint((x - lo) / safe), 0, (1 << bits) - 1).astype(np.uint16)


def quantize(values: np.ndarray, bits: int, lo=None, hi=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes (N, C) uint16, per-channel lo (C,) and scale (C,) float32. ``lo``/``hi`` clip when given."""
    x = np.asarray(values, dtype=np.float32)
    lo_c, scale = levels_for(x, bits, lo, hi)
    codes = _codes(x, lo_c, scale, bits, None if lo is None else (lo, hi))
    codes[:, scale == 0] = 0
    return codes, lo_c, scale


def dequantize(codes: np.ndarray, lo: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, C) float32 values code * scale + lo of (N, C) codes, channel by channel (no full-size temporaries)."""
    out = np.empty(codes.shape, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(codes.shape[1]):
            np.multiply(codes[:, j], scale[j], out=out[:, j])
            out[:, j] += lo[j]
    return out


def encode(values: np.ndarray, bits: int, clip: tuple[float, float] | None = None,
           layout: str = "planes") -> tuple[bytes, dict]:
    """Channel-major codes stored in ``layout`` (see `bitpack`) and the parameters needed to decode them."""
    codes, lo, scale = quantize(values, bits, *(clip if clip else (None, None)))
    payload = bitpack.pack(codes.T, bits, layout)
    return payload, {"bits": bits, "lo": lo.tolist(), "scale": scale.tolist(), **bitpack.layout_param(layout)}


def decode(payload: bytes | memoryview, params: dict, rows: int, cols: int) -> np.ndarray:
    codes = bitpack.unpack(payload, rows * cols, params["bits"], bitpack.layout_of(params)).reshape(cols, rows).T
    return dequantize(codes, np.asarray(params["lo"], np.float32), np.asarray(params["scale"], np.float32))


class UniformCodec(ArrayCodec):
    """Spec: ``bits`` (1..16) and optionally ``clip`` [lo, hi]."""

    name = "uniform"

    def encode(self, values, spec, weights=None, state=None):
        clip = tuple(spec["clip"]) if spec.get("clip") else None
        payload, params = encode(np.ascontiguousarray(values, dtype=np.float32), spec["bits"], clip,
                                 bitpack.layout_for(spec))
        if clip:
            params["clip"] = list(spec["clip"])
        return payload, params

    def validate_params(self, params, rows, cols):
        require_keys(params, "bits", "lo", "scale")
        require_int(params["bits"], "uniform bits", 1, 16)
        bitpack.layout_of(params)
        require_numbers(params["lo"], "uniform lo", cols)
        require_numbers(params["scale"], "uniform scale", cols)
        if params.get("clip") is not None:
            require_numbers(params["clip"], "uniform clip", 2)

    def raw_length(self, params, rows, cols):
        return bitpack.packed_size(rows * cols, params["bits"], bitpack.layout_of(params))

    def decode_memory(self, params, rows, cols):
        return (bitpack.unpack_memory(rows * cols, params["bits"], bitpack.layout_of(params)) + 4 * rows * cols
                + 8 * cols)

    def decode(self, raw, params, rows, cols):
        return decode(raw, params, rows, cols)

    def fixed_quantizer(self, values, spec, weights=None):
        bits, clip = spec["bits"], spec.get("clip") or None
        lo, scale = levels_for(values, bits, *(clip if clip else (None, None)))

        def quantize_fixed(x: np.ndarray) -> np.ndarray:
            codes = _codes(np.asarray(x, np.float32), lo, scale, bits, clip)
            return (codes * scale + lo).astype(np.float32)
        return quantize_fixed


register_codec(UniformCodec())
