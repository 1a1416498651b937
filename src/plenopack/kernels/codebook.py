"""Codebook kernels of VQ (`plenopack.codecs.vq`, `plenopack.compress`).

`nearest_entries` assigns rows to their nearest codebook entries (the Lloyd step of codebook training): fused
distances and arg-min, never the (rows x entries) distance matrix that BLAS needs (2 GB per 32K rows at 16,384
entries: 12.4 s per 100K rows of 27 values on 2 cores, against 2.7 s here).
`gather_codebook_rows` writes (or adds) each listed row's codebook entry into a (N, C) array;
`scatter_codebook_gradient` sums the listed rows' gradients into their entries (and zeroes those rows). Both
touch every listed row once per training step (769K rows of 27 SH values on lego at 800 px), where NumPy's
fancy-index gather and ``np.add.at`` took 0.1 and 0.57 s a step on 2 cores. One row per parallel iteration
(gather), or one chunk of rows summing into its own copy of the codebook's gradient (scatter: rows sharing an
entry never race), the copies added afterwards.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


NEAREST_BLOCK = 8  # rows sharing each pass over the codebook


@njit(parallel=True, fastmath=True, cache=True)
def _nearest_kernel(values, codebook_t, half_norms, chunks, out):
    # per row, over entries j: |c_j|^2 / 2 - x . c_j (the squared distance / 2 less |x|^2 / 2), entries' columns
    # contiguous so that the inner loop runs over entries; the smallest wins (the first on ties)
    n, cols = values.shape
    k = codebook_t.shape[1]
    for t in prange(chunks):
        acc = np.empty((NEAREST_BLOCK, k), np.float32)
        for start in range(n * t // chunks, n * (t + 1) // chunks, NEAREST_BLOCK):
            m = min(NEAREST_BLOCK, n * (t + 1) // chunks - start)
            for r in range(m):
                acc[r, :] = half_norms
            for c in range(cols):
                entry_c = codebook_t[c]
                for r in range(m):
                    x = values[start + r, c]
                    a = acc[r]
                    for j in range(k):
                        a[j] -= x * entry_c[j]
            for r in range(m):
                a = acc[r]
                best = 0
                for j in range(1, k):
                    if a[j] < a[best]:
                        best = j
                out[start + r] = best


def nearest_entries(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The nearest entry (squared Euclidean distance) of each row: ``values`` (N, C), ``codebook`` (K, C);
    float32 arithmetic. Returns (N,) int64."""
    values = np.ascontiguousarray(values, np.float32)
    codebook = np.asarray(codebook, np.float32)
    out = np.empty(len(values), np.int64)
    if len(values):
        chunks = min(len(values), 4 * numba.get_num_threads())
        _nearest_kernel(values, np.ascontiguousarray(codebook.T), 0.5 * (codebook ** 2).sum(axis=1), chunks, out)
    return out


@njit(parallel=True, fastmath=True, cache=True)
def _gather_kernel(out, rows, entries, codebook, add):
    cols = out.shape[1]
    for i in prange(rows.shape[0]):
        r = rows[i]
        e = entries[i]
        if add:
            for c in range(cols):
                out[r, c] += codebook[e, c]
        else:
            for c in range(cols):
                out[r, c] = codebook[e, c]


@njit(parallel=True, fastmath=True, cache=True)
def _scatter_kernel(buffers, rows, entries, grad, clear):
    chunks = buffers.shape[0]
    n = rows.shape[0]
    cols = grad.shape[1]
    for t in prange(chunks):
        for i in range(n * t // chunks, n * (t + 1) // chunks):
            r = rows[i]
            e = entries[i]
            for c in range(cols):
                buffers[t, e, c] += grad[r, c]
                if clear:
                    grad[r, c] = 0.0


def gather_codebook_rows(out: np.ndarray, rows: np.ndarray, entries: np.ndarray, codebook: np.ndarray,
                         add: bool = False) -> None:
    """``out[rows[i]] = codebook[entries[i]]`` (``+=`` with ``add``) for every i, in place. ``out`` (N, C) and
    ``codebook`` (K, C) float32; ``rows`` distinct row numbers, ``entries`` their codebook entries (int64)."""
    _gather_kernel(out, np.asarray(rows, np.int64), np.asarray(entries, np.int64), codebook, add)


def scatter_codebook_gradient(grad_book: np.ndarray, rows: np.ndarray, entries: np.ndarray, grad: np.ndarray,
                              clear: bool = True) -> None:
    """``grad_book[entries[i]] += grad[rows[i]]`` for every i, then with ``clear`` ``grad[rows] = 0``, in place
    (the gradient of rows that hold codebook entries moves to the entries). ``grad_book`` (K, C) and ``grad``
    (N, C) float32; ``rows`` distinct row numbers."""
    buffers = np.zeros((numba.get_num_threads(), *grad_book.shape), np.float32)
    _scatter_kernel(buffers, np.asarray(rows, np.int64), np.asarray(entries, np.int64), grad, clear)
    grad_book += buffers.sum(axis=0)


@njit(fastmath=True, cache=True)
def _prefer_runs_kernel(values, codebook, index, weights, threshold, out):
    # sequential by nature: each row looks at the entry its predecessor ended with
    cols = values.shape[1]
    out[0] = index[0]
    for i in range(1, index.shape[0]):
        previous = out[i - 1]
        best = index[i]
        if previous == best:
            out[i] = best
            continue
        extra = 0.0
        for c in range(cols):
            a = values[i, c] - codebook[previous, c]
            b = values[i, c] - codebook[best, c]
            extra += a * a - b * b
        out[i] = previous if weights[i] * extra < threshold else best


def prefer_runs(values: np.ndarray, codebook: np.ndarray, index: np.ndarray, weights: np.ndarray,
                threshold: float) -> np.ndarray:
    """Rate-distortion re-assignment of VQ indices (N,) in row order: a row takes the entry its predecessor
    ended with when that raises its weighted squared error ``weights[i] * |x - entry|^2`` by less than
    ``threshold``, else keeps its own. Runs of equal indices are what an entropy coder shrinks. ``values`` (N, C)
    and ``codebook`` (K, C) float32, ``weights`` (N,) float64. Returns the new indices (int64)."""
    out = np.empty(len(index), np.int64)
    if len(index):
        _prefer_runs_kernel(values, codebook, np.asarray(index, np.int64), np.asarray(weights, np.float64),
                            float(threshold), out)
    return out
