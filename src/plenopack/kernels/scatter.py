"""Deterministic, race-free accumulation of per-sample gradients into voxel rows (a sort by key, as a GPU
would do it with a radix sort instead of atomics).

The gradient kernels (`render_rays_grad`, `render_rays_vjp`) split a batch into K contiguous chunks of rays,
one per parallel iteration. Each chunk marches its rays and writes one *record* per sample with sigma > 0
into its own region of the workspace: the 8 corner rows and trilinear weights, d loss / d sigma, d loss / d
(raw colour) and the ray (whose SH basis is kept per ray). `scatter_records` then adds the records into the
gradient arrays:

1. every chunk counts its (sample, corner) entries per *bucket* of 2^shift consecutive rows (done by the
   marcher);
2. an exclusive prefix sum over (bucket, chunk) gives each chunk its slots in every bucket;
3. every chunk writes its entries into those slots (in parallel, each into its own slots);
4. buckets are split into groups of about equal entry counts, one group per parallel iteration, and each group
   adds its entries into its rows — no two groups share a row, so there are no races.

Within a bucket the entries stand in (chunk, sample, corner) order, which is the batch's (ray, sample,
corner) order whatever K is, so every row sums its contributions in the same order for any thread count:
gradients are bit-identical across thread counts and threading layers. Memory is the records (about
84 bytes per sample plus 32 per sample of entries), proportional to the batch's samples and independent of
the thread count and of the grid size; there are no per-thread copies of the gradient arrays.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

CHUNKS_PER_THREAD = 4  # chunks of rays per thread (layers that balance load, tbb, hand them out dynamically)
BUCKETS_PER_CHUNK = 16  # buckets of rows per chunk: enough to split the rows into groups of equal work
RECORD_SLACK = 32  # initial record capacity in samples per ray (grown on demand)
MAX_RECORDS = 1 << 28  # entries are int32 (record * 8 + corner)


@njit(parallel=True, fastmath=True, cache=True)
def scatter_records(rec_rows, rec_weights, rec_vals, rec_ray, basis, basis_count, chunk_base, chunk_count,
                    counts, shift, entries, grad_density, grad_sh, row_flags):
    """Steps 2-4 of the module docstring: add every record's corner contributions into grad_density (N,)
    and grad_sh (N, 3 * basis_count), set row_flags on every row given a contribution.

    rec_vals[s] = (d sigma, d raw r, d raw g, d raw b) of record s; the SH gradient of corner c is
    rec_weights[s, c] * d raw[ch] * basis[rec_ray[s], b] in column ch * basis_count + b. counts (K, NB) are
    the per-chunk entry counts per bucket (row >> shift); chunk k holds records chunk_base[k] ..
    chunk_base[k] + chunk_count[k]. entries: int32 scratch of at least 8 * total records. row_flags may be empty
    (no flags).
    """
    nchunks, nbuckets = counts.shape
    starts = np.empty((nchunks, nbuckets), np.int64)
    bucket_start = np.empty(nbuckets + 1, np.int64)
    total = 0
    for b in range(nbuckets):
        bucket_start[b] = total
        for k in range(nchunks):
            starts[k, b] = total
            total += counts[k, b]
    bucket_start[nbuckets] = total
    for k in prange(nchunks):
        for s in range(chunk_base[k], chunk_base[k] + chunk_count[k]):
            for c in range(8):
                row = rec_rows[s, c]
                if row >= 0:
                    b = row >> shift
                    entries[starts[k, b]] = s * 8 + c
                    starts[k, b] += 1
    groups = min(nchunks, nbuckets)
    group_bucket = np.empty(groups + 1, np.int64)  # group g adds buckets group_bucket[g] .. group_bucket[g+1]
    group_bucket[0] = 0
    b = 0
    for g in range(1, groups):
        goal = total * g // groups
        while b < nbuckets and bucket_start[b] < goal:
            b += 1
        group_bucket[g] = b
    group_bucket[groups] = nbuckets
    ncols = grad_sh.shape[1]
    use_flags = row_flags.shape[0] > 0
    for g in prange(groups):
        for e in range(bucket_start[group_bucket[g]], bucket_start[group_bucket[g + 1]]):
            s = entries[e] >> 3
            c = entries[e] & 7
            row = rec_rows[s, c]
            w = rec_weights[s, c]
            grad_density[row] += w * rec_vals[s, 0]
            if ncols:
                ray = rec_ray[s]
                for ch in range(3):
                    wd = w * rec_vals[s, 1 + ch]
                    base = ch * basis_count
                    for j in range(basis_count):
                        grad_sh[row, base + j] += wd * basis[ray, j]
            if use_flags:
                row_flags[row] = 1


class GradWorkspace:
    """Scratch of the gradient kernels, reused across calls (make one per grid): the per-row flags, the
    sample records and their entries (see the module docstring), grown on demand and never per thread.

    ``chunks``: ray chunks per batch (default: `CHUNKS_PER_THREAD` x the numba thread count at call time);
    results do not depend on it. ``capacity``: initial record capacity in samples (default: `RECORD_SLACK` per
    ray of the first batch).
    """

    def __init__(self, num_voxels: int, num_sh: int, chunks: int | None = None, capacity: int = 0):
        self.shape = (num_voxels, num_sh)
        self.row_flags = np.zeros(num_voxels, dtype=np.uint8)
        self.chunks = chunks
        self.capacity = 0
        self._wanted = capacity
        self.rec_rows = np.empty((0, 8), np.int32)
        self.rec_weights = np.empty((0, 8), np.float32)
        self.rec_vals = np.empty((0, 4), np.float32)
        self.rec_ray = np.empty(0, np.int32)
        self.entries = np.empty(0, np.int32)
        self.basis = np.empty((0, 16), np.float32)
        self._layout: tuple = ()

    def fits(self, num_voxels: int, num_sh: int) -> bool:
        return self.shape == (num_voxels, num_sh)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.row_flags, self.rec_rows, self.rec_weights, self.rec_vals, self.rec_ray,
                                      self.entries, self.basis))

    def layout(self, nrays: int, max_per_ray: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """(chunks K, bucket shift, chunk_base (K,), chunk_count (K,), counts (K, NB)) for a batch of ``nrays``;
        makes sure the records hold at least one longest ray per chunk."""
        k = max(1, min(self.chunks or CHUNKS_PER_THREAD * numba.get_num_threads(), nrays))
        self.reserve(max(self._wanted, RECORD_SLACK * nrays, k * max_per_ray), nrays)
        key = (k, nrays, self.capacity)
        if not self._layout or self._layout[0] != key:  # the arrays are reused: the kernels fill them in
            shift = max(0, math.ceil(math.log2(max(self.shape[0], 1) / (BUCKETS_PER_CHUNK * k))))
            nbuckets = max(1, -(-self.shape[0] // (1 << shift)))
            base = np.arange(k, dtype=np.int64) * (self.capacity // k)
            self._layout = (key, (k, shift, base, np.zeros(k, np.int64), np.zeros((k, nbuckets), np.int64)))
        return self._layout[1]

    def reserve(self, samples: int, nrays: int) -> None:
        """Room for ``samples`` records and ``nrays`` rays' SH bases."""
        if samples > MAX_RECORDS:
            raise MemoryError(f"a batch needs {samples} sample records (more than {MAX_RECORDS}); use fewer rays")
        if samples > self.capacity:
            self.capacity = samples
            self.rec_rows = np.empty((samples, 8), np.int32)
            self.rec_weights = np.empty((samples, 8), np.float32)
            self.rec_vals = np.empty((samples, 4), np.float32)
            self.rec_ray = np.empty(samples, np.int32)
            self.entries = np.empty(8 * samples, np.int32)
        if self.basis.shape[0] < nrays:
            self.basis = np.empty((nrays, 16), np.float32)

    def grow(self) -> None:
        """Double the record capacity (a chunk ran out of room)."""
        self._wanted = 2 * self.capacity
