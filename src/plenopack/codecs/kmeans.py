"""Per-channel non-uniform scalar quantisation: weighted 1-D k-means (Lloyd) with 2^B levels per channel.

Levels start at weighted quantiles and move to the weighted mean of their cells; assignment is to the
nearest level (midpoint search). Weights are per-row importances (e.g. how much each voxel contributes to
renders), so precision goes where it is seen. Codebook: C x 2^B float32 in the header.
"""

from __future__ import annotations

import numpy as np

from plenopack.codecs import bitpack


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


def encode(values: np.ndarray, bits: int, weights: np.ndarray | None = None, iterations: int = 20) -> tuple[bytes, dict]:
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
    return bitpack.pack(codes, bits), {"bits": bits, "codebook": codebook.tolist()}


def decode(payload: bytes, params: dict, rows: int, cols: int) -> np.ndarray:
    codebook = np.asarray(params["codebook"], np.float32)
    codes = bitpack.unpack(payload, rows * cols, params["bits"]).reshape(cols, rows)
    return np.ascontiguousarray(np.take_along_axis(codebook, codes.astype(np.int64), axis=1).T)
