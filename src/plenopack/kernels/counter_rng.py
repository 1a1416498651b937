"""Counter-based random numbers for the kernels: the i-th number of a stream is a hash of (stream key, i).

A training step draws its pixels, random background colours and regularised voxels inside the parallel
kernels, each element from its own counter, so the draws cost no serial time and are the same for any thread
count and threading layer (a sequential generator such as NumPy's would run serially before every kernel;
numba's own ``np.random`` inside ``prange`` gives each thread its own state, so results would depend on the
thread count). The hash is SplitMix64's output function (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) on key + (i + 1) * golden gamma, which is SplitMix64's own
sequence for that key. `stream_key` derives independent keys per (seed, step, purpose).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
PIXELS, BACKGROUND, VOXELS = 1, 2, 3  # purposes of a step's streams


def mix64(z: int) -> int:
    """SplitMix64's output function on a Python int (mod 2^64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, purpose: int) -> np.uint64:
    """The key of one stream: a hash of the seed, the step and the purpose."""
    return np.uint64(mix64(mix64(seed) ^ mix64((step << 4) | purpose)))


@njit(inline="always", cache=True)
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
def uniform(key, counter):
    """The ``counter``-th number of stream ``key``: a float64 in [0, 1) with 53 random bits."""
    z = _mix64(key + (np.uint64(counter) + np.uint64(1)) * np.uint64(GOLDEN_GAMMA))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always", cache=True)
def below(key, counter, n):
    """The ``counter``-th integer of stream ``key``, uniform in [0, n)."""
    return min(int(uniform(key, counter) * n), n - 1)
