"""Fused optimiser steps (RMSProp, as svox2 uses for Plenoxels).

`rmsprop_step` updates one parameter array (optionally on listed rows); `rmsprop_flagged` updates a grid's
density and SH together on the rows a step flagged, scanning the flag array in parallel (no serial
``np.flatnonzero`` over the rows) and clearing the flags. Every row is updated on its own, so results do not
depend on the thread count. The NumPy reference is `plenopack.kernels.reference.rmsprop_step`. `all_finite`
is the divergence check (``np.isfinite(a).all()`` in parallel).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(inline="always", fastmath=True, cache=True)
def _rmsprop_row(param, grad, avg_sq, r, lr, beta, eps):
    """RMSProp on row r of (N, C) arrays, skipped when its gradient is entirely zero; clears the gradient."""
    ncols = param.shape[1]
    touched = False
    for j in range(ncols):
        if grad[r, j] != 0.0:
            touched = True
            break
    if not touched:
        return
    for j in range(ncols):
        g = grad[r, j]
        a = beta * avg_sq[r, j] + (1.0 - beta) * g * g
        avg_sq[r, j] = a
        param[r, j] -= lr * g / (math.sqrt(a) + eps)
        grad[r, j] = 0.0


@njit(parallel=True, fastmath=True, cache=True)
def _rmsprop_kernel(param, grad, avg_sq, rows, lr, beta, eps):
    for n in prange(rows.shape[0]):
        _rmsprop_row(param, grad, avg_sq, rows[n], lr, beta, eps)


@njit(parallel=True, fastmath=True, cache=True)
def _rmsprop_flagged_kernel(density, grad_density, avg_density, lr_density, sh, grad_sh, avg_sh, lr_sh, beta, eps,
                            row_flags):
    for r in prange(row_flags.shape[0]):
        if row_flags[r]:
            row_flags[r] = 0
            _rmsprop_row(density, grad_density, avg_density, r, lr_density, beta, eps)
            _rmsprop_row(sh, grad_sh, avg_sh, r, lr_sh, beta, eps)


def rmsprop_step(param: np.ndarray, grad: np.ndarray, avg_sq: np.ndarray, lr: float, beta: float = 0.95,
                 eps: float = 1e-8, rows: np.ndarray | None = None) -> None:
    """In place: avg_sq = beta avg_sq + (1 - beta) g^2; param -= lr g / (sqrt(avg_sq) + eps); grad = 0.

    Rows whose gradient is entirely zero are skipped (their state is kept), as svox2's sparse update.
    ``rows``: optional int64 array of distinct rows, the only ones that may hold a gradient, so that the others
    are not scanned; the result is the same. Works on (N,) or (N, C) float32.
    """
    p2 = param.reshape(param.shape[0], -1)
    rows = np.arange(p2.shape[0], dtype=np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
    _rmsprop_kernel(p2, grad.reshape(p2.shape), avg_sq.reshape(p2.shape), rows, np.float32(lr), np.float32(beta),
                    np.float32(eps))


def rmsprop_flagged(density: np.ndarray, grad_density: np.ndarray, avg_density: np.ndarray, lr_density: float,
                    sh: np.ndarray, grad_sh: np.ndarray, avg_sh: np.ndarray, lr_sh: float, row_flags: np.ndarray,
                    beta: float = 0.95, eps: float = 1e-8) -> None:
    """`rmsprop_step` on density (N,) and SH (N, C) at once, on the rows whose ``row_flags`` (uint8 (N,)) is
    set (the rows a step gave a gradient); clears those flags. Each array keeps its own zero-gradient skip."""
    n = density.shape[0]
    _rmsprop_flagged_kernel(density.reshape(n, 1), grad_density.reshape(n, 1), avg_density.reshape(n, 1),
                            np.float32(lr_density), sh, grad_sh, avg_sh, np.float32(lr_sh), np.float32(beta),
                            np.float32(eps), row_flags)


@njit(parallel=True, cache=True)
def _count_non_finite(values):
    bad = 0
    for i in prange(values.shape[0]):
        if not math.isfinite(values[i]):
            bad += 1
    return bad


def all_finite(*arrays: np.ndarray) -> bool:
    """Whether every value of these float32 arrays is finite (``np.isfinite(a).all()`` for each)."""
    return all(_count_non_finite(np.ascontiguousarray(a, np.float32).reshape(-1)) == 0 for a in arrays)
