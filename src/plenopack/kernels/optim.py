"""Fused optimiser step (RMSProp, as svox2 uses for Plenoxels)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from plenopack.kernels.device import fold_shares


@njit(parallel=True, fastmath=True, cache=True)
def _rmsprop_kernel(param, grad, pending, avg_sq, rows, lr, beta, eps):
    ncols = param.shape[1]
    for n in prange(rows.shape[0]):
        r = rows[n]
        fold_shares(grad, pending, r)
        touched = False
        for j in range(ncols):
            if grad[r, j] != 0.0:
                touched = True
                break
        if not touched:
            continue
        for j in range(ncols):
            g = grad[r, j]
            a = beta * avg_sq[r, j] + (1.0 - beta) * g * g
            avg_sq[r, j] = a
            param[r, j] -= lr * g / (math.sqrt(a) + eps)
            grad[r, j] = 0.0


def rmsprop_step(param: np.ndarray, grad: np.ndarray, avg_sq: np.ndarray, lr: float, beta: float = 0.95,
                 eps: float = 1e-8, rows: np.ndarray | None = None, pending: np.ndarray | None = None) -> None:
    """In place: avg_sq = beta avg_sq + (1 - beta) g^2; param -= lr g / (sqrt(avg_sq) + eps); grad = 0.

    Rows whose gradient is entirely zero are skipped (their state is kept), as svox2's sparse update.
    ``rows``: optional int64 array of the only rows that may hold a gradient (e.g. from the kernels'
    row_flags), so that the others are not scanned; the result is the same. ``pending``: optional (K, N) or
    (K, N, C) float32 shares of the gradient not yet summed into ``grad`` (``render_rays_grad(reduce=False)``
    leaves them in its workspace); they are added in and cleared on the visited rows, so ``rows`` must cover
    every row they touch. Works on (N,) or (N, C) float32.
    """
    p2 = param.reshape(param.shape[0], -1)
    rows = np.arange(p2.shape[0], dtype=np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
    shares = np.zeros((0,) + p2.shape, np.float32) if pending is None else pending.reshape((-1,) + p2.shape)
    _rmsprop_kernel(p2, grad.reshape(p2.shape), shares, avg_sq.reshape(p2.shape), rows, np.float32(lr),
                    np.float32(beta), np.float32(eps))
