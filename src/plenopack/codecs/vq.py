"""Vector quantisation of whole SH vectors with an importance-weighted k-means codebook (as VQRF), with an
optional second stage on the rows it serves worst; registered as the ``vq`` codec.

The ``keep_exact`` fraction of most important rows is stored exactly (float16) and the rest as indices into
a K-entry codebook, packed with ceil(log2 K) bits. The codebook is trained on an importance-weighted sample
of rows (seeded at rows drawn by importance, Lloyd iterations, rows assigned by
`plenopack.kernels.nearest_entries`), then refined by weighted Lloyd passes over every row, and stored with
``codebook_bits`` 16 (float16) or 6 to 8 (a code of that many bits per value, one byte each, stored column by
column; value = low + code * step with the per-column parameters ``codebook_low`` and ``codebook_step``). 8 bits
halve the codebook, a third of the SH stream of lego's 800 px fit at 8,192 entries (221 KB saved), for
-0.003 dB val PSNR; rows are assigned to the stored entries. Column by column, zstd finds each coefficient's
narrow range: the 16,384-entry codebook of that fit shrinks from 360 to 321 KB; in 7 bits to 267 KB, for no loss
(+0.005 dB, first 20 val views; 6 bits for the degree-2 coefficients alone: -0.026 dB).
Residual stage (``residual_rows`` fraction of all rows, ``residual_codebook`` K2 entries): the rows with the
largest importance-weighted error weight * |x - codebook entry|^2 get a second index into a K2-entry codebook
trained on their residuals x - entry (stored as the first codebook is); such a row holds the sum of its two
entries. The error is concentrated: on lego's 800 px blender fit with 16,384 entries the worst 10% of rows
hold 78% of it, and a 4,096-entry residual stage on them cuts the VQ loss from 0.55 to 0.30 dB (first 20 val
views) for 0.26 MB, where keeping the worst 1% exact buys 0.12 dB for 0.19 MB.
Stream: codebook (K x C ``<f2``, or C x K ``u1`` codes: column by column), indices stored by `bitpack` with
``index_bits`` (bit planes, or whole bytes when entropy-coded: parameter ``layout``), the exact rows' numbers ``<u4``
(ascending), their values ``<f2``; with a residual stage then the rows that have one as a 1-bit mask over all
rows (bit planes), the residual codebook (as the codebook) and their residual indices (``residual_index_bits``,
in ``layout``, in row order).
Parameters: ``codebook_size`` K, ``index_bits``, ``exact_rows`` (a count), ``layout`` (absent: planes),
``codebook_bits`` (absent: 16, as in files written before it existed), with codes ``codebook_low`` and
``codebook_step`` (C numbers each) and ``codebook_order`` "columns" (format version 5; absent: K x C codes, row by
row, as format versions 3 and 4 wrote 8-bit codebooks); with a residual stage (format version 4)
``residual_rows`` (a count), ``residual_codebook_size``, ``residual_index_bits`` and with codes
``residual_codebook_low`` and ``residual_codebook_step`` (the residual codebook is stored in the codebook's bits
and order).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from plenopack import kernels
from plenopack.codecs import bitpack
from plenopack.codecs.base import ArrayCodec, register_codec, require_int, require_keys, require_numbers

TRAIN_SAMPLE = 262144  # rows drawn (by importance) to train the codebook on, at least. lego 800 px, 769K voxels,
# 4096 entries, no fine-tuning: 65,536 -> 262,144 rows +0.03 dB val PSNR, 786,432 rows no further gain
SAMPLES_PER_ENTRY = 48  # and at least this many per entry (up to the row count): with 16,384 entries, 262,144
# rows are 16 per entry; weighted Lloyd on all 769K rows instead cut the weighted error 5% (+0.03 dB, 20 val views)
FULL_PASSES = 2  # then weighted Lloyd passes over every row (the entries become the weighted means of the rows they
# stand for, not of a sample): on that fit, 16,384 entries + 2,048 on 13% of rows, view metric: +0.007 dB, same size
MAX_CODEBOOK = 65536
CODEBOOK_BITS = (6, 7, 8, 16)  # codes of 6 to 8 bits, or float16
DEFAULT_CODEBOOK_BITS = 8  # of a codec spec that names none
DEFAULT_RESIDUAL_CODEBOOK = 4096


def _no_rows() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass
class VQState:
    """A vector quantisation of N rows of C values, with its codebooks as stored (float32).

    ``codebook`` (K, C) and ``index`` (N,) into it; ``exact_rows``: ascending row numbers stored exactly
    (float16 of the rows' own values); ``residual_codebook`` (K2, C) or None, ``residual_rows``: ascending row
    numbers with a second stage and ``residual_index`` (one per residual row) into the residual codebook."""

    codebook: np.ndarray
    index: np.ndarray
    exact_rows: np.ndarray = field(default_factory=_no_rows)
    residual_codebook: np.ndarray | None = None
    residual_rows: np.ndarray = field(default_factory=_no_rows)
    residual_index: np.ndarray = field(default_factory=_no_rows)

    def quantised(self) -> np.ndarray:
        """(N, C) float32: each row's entry, plus its residual entry where it has one (exact rows not applied)."""
        out = np.take(self.codebook, self.index, axis=0)
        if len(self.residual_rows):
            out[self.residual_rows] += np.take(self.residual_codebook, self.residual_index, axis=0)
        return out

    def with_codebooks(self, transform) -> "VQState":
        """The same rows and indices with ``transform`` (array -> array) applied to each codebook, the residual
        one too."""
        residual = None if self.residual_codebook is None else transform(self.residual_codebook)
        return dataclasses.replace(self, codebook=transform(self.codebook), residual_codebook=residual)

    def reordered(self, order: np.ndarray) -> "VQState":
        """The state of the rows ``values[order]`` (``order``: a permutation of the row numbers)."""
        order = np.asarray(order, np.int64)
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        residual_rows = position[self.residual_rows]
        by_row = np.argsort(residual_rows, kind="stable")
        return VQState(self.codebook, np.asarray(self.index)[order], np.sort(position[self.exact_rows]),
                       self.residual_codebook, residual_rows[by_row], np.asarray(self.residual_index)[by_row])


def codebook_bits_of(params: dict) -> int:
    """The codebook storage of a stored stream's parameters: absent means float16 (format versions 1 and 2)."""
    return params.get("codebook_bits", 16)


def codebook_order_of(params: dict) -> str:
    """How a stored stream's codebook codes are laid out: "columns" (C x K), or absent: "rows" (K x C, format
    versions 3 and 4)."""
    return params.get("codebook_order", "rows")


def spec_codebook_bits(spec: dict) -> int:
    """The codebook storage a codec spec asks for."""
    return spec.get("codebook_bits", DEFAULT_CODEBOOK_BITS)


def _codebook_stream(codebook: np.ndarray, bits: int, prefix: str = "") -> tuple[bytes, dict]:
    """A float codebook (K, C) as stored with ``bits``: (its bytes, the parameters they need). 16: float16
    values, row by row; 6 to 8: one code (0 .. 2^bits - 1) per value in a byte, column by column, with
    per-column ``{prefix}codebook_low`` and ``{prefix}codebook_step``."""
    codebook = np.asarray(codebook, np.float32)
    if bits == 16:
        return codebook.astype("<f2").tobytes(), {}
    top = (1 << bits) - 1
    low = codebook.min(axis=0)
    step = (codebook.max(axis=0) - low) / np.float32(top)
    step = np.where(step > 0, step, np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.rint((codebook - low) / step), 0, top).astype(np.uint8)
    return codes.T.tobytes(), {f"{prefix}codebook_low": [float(v) for v in low],
                               f"{prefix}codebook_step": [float(v) for v in step]}


def _codebook_from_stream(raw: bytes | memoryview, params: dict, k: int, cols: int, prefix: str = "") -> np.ndarray:
    """The float32 codebook (K, C) of `_codebook_stream`'s bytes and parameters (or of a row-by-row 8-bit
    codebook of format versions 3 and 4)."""
    if codebook_bits_of(params) == 16:
        return np.frombuffer(raw, "<f2").reshape(k, cols).astype(np.float32)
    codes = np.frombuffer(raw, np.uint8)
    codes = codes.reshape(cols, k).T if codebook_order_of(params) == "columns" else codes.reshape(k, cols)
    return (np.asarray(params[f"{prefix}codebook_low"], np.float32)
            + codes * np.asarray(params[f"{prefix}codebook_step"], np.float32))


def _codebook_params(bits: int) -> dict:
    """The stream parameters of codebooks stored with ``bits``: none for float16 (the stream of format versions
    1 and 2)."""
    return {} if bits == 16 else {"codebook_bits": bits, "codebook_order": "columns"}


def stored_codebook(codebook: np.ndarray, bits: int) -> np.ndarray:
    """The codebook as a reader gets it back from storage with ``bits`` (float32 (K, C))."""
    codebook = np.asarray(codebook, np.float32)
    raw, params = _codebook_stream(codebook, bits)
    return _codebook_from_stream(raw, {**params, **_codebook_params(bits)}, len(codebook), codebook.shape[1])


def train_codebook(x: np.ndarray, weights: np.ndarray, k: int, iterations: int = 10, seed: int = 0,
                   full_passes: int = FULL_PASSES) -> np.ndarray:
    """A k-entry codebook (float32 (k, C)) minimising the weighted squared error sum_i w_i |x_i - c(i)|^2:
    ``iterations`` Lloyd iterations on rows drawn with probability proportional to their weights, then
    ``full_passes`` weighted Lloyd passes over every row."""
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    sample_idx = rng.choice(len(x), size=min(max(TRAIN_SAMPLE, SAMPLES_PER_ENTRY * k), len(x)), replace=True, p=p)
    xs = x[sample_idx].astype(np.float32)
    k = min(k, len(np.unique(xs, axis=0)))
    codebook = xs[rng.choice(len(xs), size=k, replace=False)].copy()
    for _ in range(iterations):
        idx = kernels.nearest_entries(xs, codebook)
        live = _move_to_means(codebook, xs, idx)
        if (~live).any():  # re-seed dead entries at the worst-represented samples
            err = ((xs - codebook[idx]) ** 2).sum(1)
            codebook[~live] = xs[np.argsort(-err)[: int((~live).sum())]]
    weights = np.asarray(weights, np.float64)
    for _ in range(full_passes):
        _move_to_means(codebook, x, kernels.nearest_entries(x, codebook), weights)
    return codebook


def _move_to_means(codebook: np.ndarray, x: np.ndarray, index: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """The Lloyd update, in place: each entry of ``codebook`` that rows map to (``index``) becomes the mean of
    those rows of ``x``, weighted by ``weights`` when given (sums in float64). Returns which entries had rows."""
    k = len(codebook)
    mass = np.bincount(index, weights=weights, minlength=k)
    sums = np.stack([np.bincount(index, weights=x[:, col] if weights is None else weights * x[:, col], minlength=k)
                     for col in range(x.shape[1])], 1)
    live = mass > 0
    codebook[live] = (sums[live] / mass[live, None]).astype(np.float32)
    return live


def quantize(values: np.ndarray, codebook_size: int, weights: np.ndarray | None = None, keep_exact: float = 0.0,
             seed: int = 0, codebook_bits: int = DEFAULT_CODEBOOK_BITS, residual_rows: float = 0.0,
             residual_codebook: int = DEFAULT_RESIDUAL_CODEBOOK, metric: np.ndarray | None = None,
             prefer_runs: float = 0.0) -> VQState:
    """The `VQState` of these values: the ``keep_exact`` fraction of rows with the largest weights exact, the
    rest assigned to a ``codebook_size``-entry codebook; then the ``residual_rows`` fraction of all rows (among
    those not exact) with the largest weighted error get a ``residual_codebook``-entry second stage. Codebooks
    as stored with ``codebook_bits``.

    ``prefer_runs`` (lambda >= 0): before the residual stage, a row (in the given order, the file's) takes the
    entry of the row before it when that raises its weighted error by less than lambda times the median
    weighted error of the rows (`plenopack.kernels.prefer_runs`): longer runs of equal indices for zstd. On the
    lego800 blender fit (16,384 entries, view metric) lambda 2 makes 50% of rows share their predecessor's
    entry instead of 35%, the indices 51 KB smaller (624 -> 572 KB), for 1.03x the weighted error and
    -0.014 dB (first 20 val views).

    ``metric``: an optional symmetric positive-definite (C, C) matrix M; errors are then measured as
    e^T M e instead of |e|^2 (codebooks trained and rows assigned in the frame x L, M = L L^T; the codebooks are
    stored in the values' own frame)."""
    if metric is not None:
        lower = np.linalg.cholesky(np.asarray(metric, np.float64))
        state = quantize((np.asarray(values, np.float64) @ lower).astype(np.float32), codebook_size, weights,
                         keep_exact, seed, 16, residual_rows, residual_codebook, prefer_runs=prefer_runs)
        back = np.linalg.inv(lower)
        return state.with_codebooks(lambda book: stored_codebook((book @ back).astype(np.float32), codebook_bits))
    x = np.asarray(values, dtype=np.float32)
    n, c = x.shape
    w = np.ones(n) if weights is None else np.maximum(np.asarray(weights, np.float64), 1e-12)
    n_exact = int(round(keep_exact * n))
    exact_rows = np.sort(np.argsort(-w, kind="stable")[:n_exact]).astype(np.int64)
    rest = np.ones(n, bool)
    rest[exact_rows] = False
    codebook = train_codebook(x[rest], w[rest], codebook_size, seed=seed) if rest.any() else np.zeros((1, c), np.float32)
    codebook = stored_codebook(codebook, codebook_bits)
    idx = np.zeros(n, np.int64)
    idx[rest] = kernels.nearest_entries(x[rest], codebook)
    candidates = np.flatnonzero(rest)

    def candidates_error() -> np.ndarray:  # the weighted squared error of the candidates' present entries
        return w[candidates] * ((x[candidates] - codebook[idx[candidates]]) ** 2).sum(1)

    if prefer_runs > 0 and len(candidates):
        idx[candidates] = kernels.prefer_runs(x[candidates], codebook, idx[candidates], w[candidates],
                                              prefer_runs * float(np.median(candidates_error())))
    state = VQState(codebook, idx, exact_rows)
    n_residual = min(int(round(residual_rows * n)), len(candidates))
    if n_residual > 0:
        rows = np.sort(candidates[np.argsort(-candidates_error(), kind="stable")[:n_residual]])
        residual = x[rows] - codebook[idx[rows]]
        book = stored_codebook(train_codebook(residual, w[rows], residual_codebook, seed=seed), codebook_bits)
        state.residual_codebook, state.residual_rows = book, rows
        state.residual_index = kernels.nearest_entries(residual, book)
    return state


def quantize_spec(values: np.ndarray, spec: dict, weights: np.ndarray | None = None,
                  metric: np.ndarray | None = None) -> VQState:
    """`quantize` with the options of a vq codec spec (`VQCodec`'s keys and defaults)."""
    return quantize(values, spec["codebook"], weights, spec.get("keep_exact", 0.0),
                    codebook_bits=spec_codebook_bits(spec), residual_rows=spec.get("residual_rows", 0.0),
                    residual_codebook=spec.get("residual_codebook", DEFAULT_RESIDUAL_CODEBOOK), metric=metric,
                    prefer_runs=spec.get("prefer_runs", 0.0))


def encode(values: np.ndarray, state: VQState, layout: str = "planes",
           codebook_bits: int = DEFAULT_CODEBOOK_BITS) -> tuple[bytes, dict]:
    """Encode rows as their `VQState` (from `quantize`, e.g. fine-tuned), codebooks stored with
    ``codebook_bits``."""
    x = np.asarray(values, dtype=np.float32)
    if codebook_bits not in CODEBOOK_BITS:
        raise ValueError(f"vq codebook bits must be 6, 7, 8 or 16, got {codebook_bits!r}")
    exact_rows = np.asarray(state.exact_rows, np.int64)
    k = len(state.codebook)
    bits = max(1, math.ceil(math.log2(k)))
    codebook_raw, codebook_params = _codebook_stream(state.codebook, codebook_bits)
    parts = [codebook_raw, bitpack.pack(state.index, bits, layout), exact_rows.astype("<u4").tobytes(),
             x[exact_rows].astype("<f2").tobytes()]
    params = {"codebook_size": k, "index_bits": bits, "exact_rows": len(exact_rows), **bitpack.layout_param(layout),
              **_codebook_params(codebook_bits), **codebook_params}
    if len(state.residual_rows):
        mask = np.zeros(len(x), np.uint8)
        mask[state.residual_rows] = 1
        k2 = len(state.residual_codebook)
        bits2 = max(1, math.ceil(math.log2(k2)))
        residual_raw, residual_params = _codebook_stream(state.residual_codebook, codebook_bits, "residual_")
        parts += [bitpack.pack(mask, 1), residual_raw, bitpack.pack(state.residual_index, bits2, layout)]
        params.update(residual_rows=len(state.residual_rows), residual_codebook_size=k2, residual_index_bits=bits2,
                      **residual_params)
    return b"".join(parts), params


def _sizes(params: dict, rows: int, cols: int) -> list[int]:
    """Byte sizes of the parts of the stream: codebook, indices, exact row numbers, exact values, then (zero
    without a residual stage) residual mask, residual codebook, residual indices."""
    k, bits, n_exact = params["codebook_size"], params["index_bits"], params["exact_rows"]
    value_bytes = 2 if codebook_bits_of(params) == 16 else 1
    layout = bitpack.layout_of(params)
    sizes = [k * cols * value_bytes, bitpack.packed_size(rows, bits, layout), n_exact * 4, n_exact * cols * 2]
    n_residual = params.get("residual_rows", 0)
    if not n_residual:
        return sizes + [0, 0, 0]
    return sizes + [bitpack.packed_size(rows, 1), params["residual_codebook_size"] * cols * value_bytes,
                    bitpack.packed_size(n_residual, params["residual_index_bits"], layout)]


def decode(payload: bytes | memoryview, params: dict, rows: int, cols: int) -> np.ndarray:
    k, bits, n_exact = params["codebook_size"], params["index_bits"], params["exact_rows"]
    sizes = _sizes(params, rows, cols)
    if sum(sizes) != len(payload) or n_exact > rows or k < 1:
        raise ValueError("vq payload size does not match its parameters")
    o = np.cumsum([0] + sizes)
    layout = bitpack.layout_of(params)
    codebook = _codebook_from_stream(payload[o[0]:o[1]], params, k, cols)
    idx = bitpack.unpack(payload[o[1]:o[2]], rows, bits, layout)
    if idx.size and int(idx.max()) >= k:
        raise ValueError("vq index outside the codebook")
    out = np.take(codebook, idx, axis=0)
    del idx
    n_residual = params.get("residual_rows", 0)
    if n_residual:
        residual_rows = np.flatnonzero(bitpack.unpack(payload[o[4]:o[5]], rows, 1))
        if len(residual_rows) != n_residual:
            raise ValueError("vq residual mask does not hold residual_rows rows")
        k2 = params["residual_codebook_size"]
        residual_codebook = _codebook_from_stream(payload[o[5]:o[6]], params, k2, cols, "residual_")
        residual_index = bitpack.unpack(payload[o[6]:o[7]], n_residual, params["residual_index_bits"], layout)
        if int(residual_index.max()) >= k2:
            raise ValueError("vq residual index outside the residual codebook")
        out[residual_rows] += np.take(residual_codebook, residual_index, axis=0)
    exact_rows = np.frombuffer(payload[o[2]:o[3]], "<u4")
    if exact_rows.size and int(exact_rows.max()) >= rows:
        raise ValueError("vq exact row outside the array")
    out[exact_rows] = np.frombuffer(payload[o[3]:o[4]], "<f2").reshape(n_exact, cols)
    return out


def _validate_codebook(params: dict, size_key: str, bits_key: str, what: str, cols: int, prefix: str = "") -> None:
    k = require_int(params[size_key], f"vq {what} size", 1, MAX_CODEBOOK)
    bits = require_int(params[bits_key], f"vq {what} index bits", 1, 16)
    if (1 << bits) < k:
        raise ValueError(f"vq {what} index bits {bits} cannot address {k} entries")
    if codebook_bits_of(params) != 16:
        require_keys(params, f"{prefix}codebook_low", f"{prefix}codebook_step")
        require_numbers(params[f"{prefix}codebook_low"], f"vq {what} low", cols)
        require_numbers(params[f"{prefix}codebook_step"], f"vq {what} step", cols)


class VQCodec(ArrayCodec):
    """Spec: ``codebook`` (entries, 2..65536), ``keep_exact`` (fraction of rows stored exactly),
    ``codebook_bits`` (6, 7, 8 or 16, default 8), ``residual_rows`` (fraction of rows with a residual stage,
    default 0), ``residual_codebook`` (its entries, default 4096) and ``prefer_runs`` (lambda of `quantize`,
    default 0)."""

    name = "vq"
    scalar = False

    def encode(self, values, spec, weights=None, state=None):
        state = state if state is not None else quantize_spec(values, spec, weights)
        return encode(values, state, layout=bitpack.layout_for(spec), codebook_bits=spec_codebook_bits(spec))

    def validate_params(self, params, rows, cols):
        require_keys(params, "codebook_size", "index_bits", "exact_rows")
        codebook_bits = codebook_bits_of(params)
        if codebook_bits not in CODEBOOK_BITS or isinstance(codebook_bits, bool):
            raise ValueError(f"vq codebook bits must be 6, 7, 8 or 16, got {codebook_bits!r}")
        if codebook_order_of(params) not in ("rows", "columns"):
            raise ValueError(f"vq codebook order must be rows or columns, got {codebook_order_of(params)!r}")
        _validate_codebook(params, "codebook_size", "index_bits", "codebook", cols)
        require_int(params["exact_rows"], "vq exact row count", 0, rows)
        if "residual_rows" in params:
            require_keys(params, "residual_codebook_size", "residual_index_bits")
            require_int(params["residual_rows"], "vq residual row count", 0, rows)
            _validate_codebook(params, "residual_codebook_size", "residual_index_bits", "residual codebook", cols,
                               "residual_")
        bitpack.layout_of(params)

    def raw_length(self, params, rows, cols):
        return sum(_sizes(params, rows, cols))

    def decode_memory(self, params, rows, cols):
        # float32 codebook, the indices (unpacked, then as intp), the result, the exact rows (as intp) and their
        # values converted; a residual stage adds its mask (unpacked, then its row numbers), its codebook (and
        # a temporary of it while decoding 8-bit codes), its indices, and for its rows the entries gathered and
        # the rows read for the sum
        memory = (4 * params["codebook_size"] * cols
                  + bitpack.unpack_memory(rows, params["index_bits"], bitpack.layout_of(params)) + 8 * rows
                  + 4 * rows * cols + params["exact_rows"] * (8 + 4 * cols))
        n_residual = params.get("residual_rows", 0)
        if n_residual:
            memory += (bitpack.unpack_memory(rows, 1) + 8 * params["residual_codebook_size"] * cols
                       + bitpack.unpack_memory(n_residual, params["residual_index_bits"], bitpack.layout_of(params))
                       + n_residual * (8 + 8 * cols))
        return memory

    def decode(self, raw, params, rows, cols):
        return decode(raw, params, rows, cols)

    def fixed_quantizer(self, values, spec, weights=None):
        state = quantize_spec(values, spec, weights)
        residual_rows = state.residual_rows

        def quantize_fixed(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, np.float32)
            out = state.codebook[kernels.nearest_entries(x, state.codebook)]
            if len(residual_rows):
                residual = x[residual_rows] - out[residual_rows]
                entries = kernels.nearest_entries(residual, state.residual_codebook)
                out[residual_rows] += state.residual_codebook[entries]
            out[state.exact_rows] = x[state.exact_rows].astype(np.float16)
            return out
        return quantize_fixed


register_codec(VQCodec())
