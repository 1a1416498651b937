"""Per-channel non-uniform scalar quantisation: weighted 1-D k-means (Lloyd) with 2^B levels per channel;
registered as the ``kmeans`` codec.

Levels start at weighted quantiles and move to the weighted mean of their cells; assignment is to the
nearest level (midpoint search). Weights are per-row importances (e.g. how much each voxel contributes to
renders), so precision goes where it is seen. Codebook: C x 2^B float32 in the header (``codebook``, with
``bits``); stream: the codes channel-major, stored by `bitpack` (bit planes, or whole bytes when
entropy-coded: parameter ``layout``).
"""

from __future__ import annotations

import numpy as np

from plenopack.codecs import bitpack
from plenopack.codecs.base import ArrayCodec, register_codec, require_int, require_keys, require_numbers


def _fit_channel(x: np.ndarray, w: np.ndarray, levels: int, iterations: int) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    cdf = np.cumsum(ws)
    cdf /= cdf[-1]
    qs = (np.arange(levels) + 0.5) / levels
    centres = xs[np.minimum(np.searchsorted(cdf, qs), len(xs) - 1)].astype(np.float64)
    for _ in range(iterations):
        centres = np.unique(centres)
        mids = 0.5 * (centres[1:] + centres[:-1])
        idx = np.searchsorted(mids, xs)
        wsum = np.bincount(idx, ws, minlength=len(centres))
        xsum = np.bincount(idx, ws * xs, minlength=len(centres))
        moved = np.where(wsum > 0, xsum / np.maximum(wsum, 1e-30), centres)
        if np.allclose(moved, centres):
            centres = moved
            break
        centres = moved
    out = np.full(levels, centres[-1], dtype=np.float64)
    out[: len(centres)] = np.sort(centres)
    return out.astype(np.float32)


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest level (centres sorted ascending, repeats allowed at the end)."""
    mids = 0.5 * (centres[1:] + centres[:-1])
    return np.searchsorted(mids, x).astype(np.uint16)


def encode(values: np.ndarray, bits: int, weights: np.ndarray | None = None, iterations: int = 20,
           layout: str = "planes") -> tuple[bytes, dict]:
    x = np.asarray(values, dtype=np.float32)
    n, c = x.shape
    w = np.ones(n, np.float64) if weights is None else np.maximum(np.asarray(weights, np.float64), 1e-12)
    levels = 1 << bits
    codebook = np.zeros((c, levels), np.float32)
    codes = np.zeros((c, n), np.uint16)
    for j in range(c):
        if n:
            codebook[j] = _fit_channel(x[:, j], w, levels, iterations)
            codes[j] = assign(x[:, j], codebook[j])
    return bitpack.pack(codes, bits, layout), {"bits": bits, "codebook": codebook.tolist(),
                                               **bitpack.layout_param(layout)}


def decode(payload: bytes | memoryview, params: dict, rows: int, cols: int) -> np.ndarray:
    codebook = np.asarray(params["codebook"], np.float32).reshape(cols, -1)
    codes = bitpack.unpack(payload, rows * cols, params["bits"], bitpack.layout_of(params)).reshape(cols, rows)
    out = np.empty((rows, cols), np.float32)
    for j in range(cols):
        np.take(codebook[j], codes[j], out=out[:, j])  # codes < 2^bits = row length (checked by unpack)
    return out


def quantize_with(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Every value of ``x`` (N, C) replaced by the nearest level of its channel (``codebook`` (C, 2^B))."""
    out = np.empty(x.shape, np.float32)
    for j in range(x.shape[1]):
        out[:, j] = codebook[j][assign(x[:, j], codebook[j])]
    return out


class KMeansCodec(ArrayCodec):
    """Spec: ``bits`` (1..16)."""

    name = "kmeans"

    def encode(self, values, spec, weights=None, state=None):
        return encode(np.ascontiguousarray(values, dtype=np.float32), spec["bits"], weights,
                      layout=bitpack.layout_for(spec))

    def validate_params(self, params, rows, cols):
        require_keys(params, "bits", "codebook")
        bits = require_int(params["bits"], "k-means bits", 1, 16)
        bitpack.layout_of(params)
        book = params["codebook"]
        if not isinstance(book, list) or len(book) != cols:
            raise ValueError(f"k-means codebook must hold one list of levels per channel ({cols})")
        for levels in book:
            require_numbers(levels, "k-means codebook row", 1 << bits)

    def raw_length(self, params, rows, cols):
        return bitpack.packed_size(rows * cols, params["bits"], bitpack.layout_of(params))

    def decode_memory(self, params, rows, cols):
        # the codes, the result, the float32 codebook and one channel's codes as indices (intp)
        return (bitpack.unpack_memory(rows * cols, params["bits"], bitpack.layout_of(params)) + 4 * rows * cols
                + 4 * cols * (1 << params["bits"]) + 8 * rows)

    def decode(self, raw, params, rows, cols):
        return decode(raw, params, rows, cols)

    def fixed_quantizer(self, values, spec, weights=None):
        _, params = self.encode(values, spec, weights)
        codebook = np.asarray(params["codebook"], np.float32)
        return lambda x: quantize_with(np.asarray(x, np.float32), codebook)


register_codec(KMeansCodec())
