"""Deterministic, race-free accumulation of per-ray gradients into voxel rows (a sort by key, as a GPU
would do it with a radix sort instead of atomics).

The gradient kernels (`render_rays_grad`, `render_rays_vjp`) split a batch into K contiguous chunks of rays,
one per parallel iteration. Each chunk marches its rays and writes one *record* per (ray, voxel row) that the
ray's samples with sigma > 0 touched, into its own region of the workspace: the row, the ray, and the ray's
summed d loss / d density and d loss / d raw colour (r, g, b) at that row (each sample's gradient times its
trilinear weight, summed over the ray's samples). A ray's consecutive samples share most corners (about 2.7
(sample, corner) pairs per record on lego at 256^3), so this is what the scatter has to add. The SH gradient
of a record is its colour gradient times the ray's SH basis (the basis is fixed along a ray).
`scatter_records` then adds the records into the gradient arrays:

1. every chunk counts its records per *bucket* of 2^shift consecutive rows (done by the marcher);
2. an exclusive prefix sum over (bucket, chunk) gives each chunk its slots in every bucket;
3. every chunk writes its record indices into those slots (in parallel, each into its own slots);
4. buckets are split into groups of about equal record counts, one group per parallel iteration, and each
   group adds its records into its rows — no two groups share a row, so there are no races.

Within a bucket the records stand in (chunk, record) order, which is the batch's ray order whatever K is, so
every row sums its contributions in the same order for any thread count: gradients are bit-identical across
thread counts and threading layers. Memory is the records (28 bytes each, about 28 per ray on lego),
proportional to the batch and independent of the thread count and of the grid size; there are no per-thread
copies of the gradient arrays.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

CHUNKS_PER_THREAD = 4  # chunks of rays per thread (layers that balance load, tbb, hand them out dynamically)
BUCKETS_PER_CHUNK = 16  # buckets of rows per chunk: enough to split the rows into groups of equal work
RECORD_SLACK = 48  # initial record capacity per ray (grown on demand)
MAX_RECORDS = 1 << 30  # record indices are int32


@njit(parallel=True, fastmath=True, cache=True)
def scatter_records(rec_row, rec_vals, rec_ray, basis, basis_count, chunk_base, chunk_count, counts, shift, entries,
                    grad_density, grad_sh, row_flags):
    """Steps 2-4 of the module docstring: add every record into grad_density (N,) and grad_sh
    (N, 3 * basis_count), set row_flags on every record's row.

    rec_vals[m] = (d density, d raw r, d raw g, d raw b) of record m at row rec_row[m]; its SH gradient in
    column ch * basis_count + b is rec_vals[m, 1 + ch] * basis[rec_ray[m], b]. counts (K, NB) are the per-chunk
    record counts per bucket (row >> shift); chunk k holds records chunk_base[k] .. chunk_base[k] +
    chunk_count[k]. entries: int32 scratch of at least the total records. row_flags may be empty (no flags).
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
        for m in range(chunk_base[k], chunk_base[k] + chunk_count[k]):
            b = rec_row[m] >> shift
            entries[starts[k, b]] = m
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
            m = entries[e]
            row = rec_row[m]
            grad_density[row] += rec_vals[m, 0]
            if ncols:
                ray = rec_ray[m]
                for ch in range(3):
                    value = rec_vals[m, 1 + ch]
                    base = ch * basis_count
                    for j in range(basis_count):
                        grad_sh[row, base + j] += value * basis[ray, j]
            if use_flags:
                row_flags[row] = 1


class GradWorkspace:
    """Scratch of the gradient kernels, reused across calls (make one per grid): the per-row flags, the
    (ray, row) records and their entries (see the module docstring), grown on demand and never per thread.

    ``chunks``: ray chunks per batch (default: `CHUNKS_PER_THREAD` x the numba thread count at call time);
    results do not depend on it. ``capacity``: initial record capacity (default: `RECORD_SLACK` per ray of
    the first batch).
    """

    def __init__(self, num_voxels: int, num_sh: int, chunks: int | None = None, capacity: int = 0):
        self.shape = (num_voxels, num_sh)
        self.row_flags = np.zeros(num_voxels, dtype=np.uint8)
        self.chunks = chunks
        self.capacity = 0
        self._wanted = capacity
        self.rec_row = np.empty(0, np.int32)
        self.rec_vals = np.empty((0, 4), np.float32)
        self.rec_ray = np.empty(0, np.int32)
        self.entries = np.empty(0, np.int32)
        self.basis = np.empty((0, 16), np.float32)
        self.records = 0  # records the last batch made (for benchmarks and tests)
        self._layout: tuple = ()

    def fits(self, num_voxels: int, num_sh: int) -> bool:
        return self.shape == (num_voxels, num_sh)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.row_flags, self.rec_row, self.rec_vals, self.rec_ray, self.entries,
                                      self.basis))

    def layout(self, nrays: int, max_records_per_ray: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """(chunks K, bucket shift, chunk_base (K,), chunk_count (K,), counts (K, NB)) for a batch of ``nrays``;
        makes sure the records hold at least one ray of ``max_records_per_ray`` records per chunk."""
        k = max(1, min(self.chunks or CHUNKS_PER_THREAD * numba.get_num_threads(), nrays))
        self.reserve(max(self._wanted, RECORD_SLACK * nrays, k * max_records_per_ray), nrays)
        key = (k, nrays, self.capacity)
        if not self._layout or self._layout[0] != key:  # the arrays are reused: the kernels fill them in
            shift = max(0, math.ceil(math.log2(max(self.shape[0], 1) / (BUCKETS_PER_CHUNK * k))))
            nbuckets = max(1, -(-self.shape[0] // (1 << shift)))
            base = np.arange(k, dtype=np.int64) * (self.capacity // k)
            self._layout = (key, (k, shift, base, np.zeros(k, np.int64), np.zeros((k, nbuckets), np.int64)))
        return self._layout[1]

    def reserve(self, records: int, nrays: int) -> None:
        """Room for ``records`` records and ``nrays`` rays' SH bases."""
        if records > MAX_RECORDS:
            raise MemoryError(f"a batch needs {records} gradient records (more than {MAX_RECORDS}); use fewer rays")
        if records > self.capacity:
            self.capacity = records
            self.rec_row = np.empty(records, np.int32)
            self.rec_vals = np.empty((records, 4), np.float32)
            self.rec_ray = np.empty(records, np.int32)
            self.entries = np.empty(records, np.int32)
        if self.basis.shape[0] < nrays:
            self.basis = np.empty((nrays, 16), np.float32)

    def grow(self) -> None:
        """Double the record capacity (a chunk ran out of room)."""
        self._wanted = 2 * self.capacity
