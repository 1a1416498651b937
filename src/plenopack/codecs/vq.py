"""Vector quantisation of whole SH vectors with an importance-weighted k-means codebook (as VQRF); registered
as the ``vq`` codec.

The ``keep_exact`` fraction of most important rows is stored exactly (float16) and the rest as indices into
a K-entry codebook, packed with ceil(log2 K) bits. The codebook is trained on an importance-weighted sample
of rows (k-means++-style seeding by importance, Lloyd iterations with BLAS distances) and stored with
``codebook_bits`` 16 (float16) or 8 (an 8-bit code per value; value = low + code * step with the
per-column parameters ``codebook_low`` and ``codebook_step``). 8 bits halve the codebook, a third of the SH
stream of lego's 800 px fit at 8,192 entries (221 KB saved), for -0.003 dB val PSNR; rows are assigned to the
stored entries.
Stream: codebook (K x C ``<f2``, or K x C ``u1`` codes), indices stored by
`bitpack` with ``index_bits`` (bit planes, or whole bytes when entropy-coded: parameter ``layout``), the
exact rows' numbers ``<u4`` (ascending), their values ``<f2``.
Parameters: ``codebook_size`` K, ``index_bits``, ``exact_rows`` (a count), ``layout`` (absent: planes),
``codebook_bits`` (absent: 16, as in files written before it existed), with 8 ``codebook_low`` and
``codebook_step`` (C numbers each).
"""

from __future__ import annotations

import math

import numpy as np

from plenopack.codecs import bitpack
from plenopack.codecs.base import ArrayCodec, register_codec, require_int, require_keys, require_numbers

TRAIN_SAMPLE = 262144  # rows drawn (by importance) to train the codebook on. lego 800 px, 769K voxels, 4096
# entries, no fine-tuning: 65,536 -> 262,144 rows +0.03 dB val PSNR, 786,432 rows no further gain
MAX_CODEBOOK = 65536
CODEBOOK_BITS = (8, 16)
DEFAULT_CODEBOOK_BITS = 8  # of a codec spec that names none


def codebook_bits_of(params: dict) -> int:
    """The codebook storage of a stored stream's parameters: absent means float16 (format versions 1 and 2)."""
    return params.get("codebook_bits", 16)


def spec_codebook_bits(spec: dict) -> int:
    """The codebook storage a codec spec asks for."""
    return spec.get("codebook_bits", DEFAULT_CODEBOOK_BITS)


def _codebook_stream(codebook: np.ndarray, bits: int) -> tuple[bytes, dict]:
    """A float codebook (K, C) as stored with ``bits``: (its bytes, the parameters they need). 16: float16
    values; 8: one code per value, with per-column ``codebook_low`` and ``codebook_step`` parameters."""
    codebook = np.asarray(codebook, np.float32)
    if bits == 16:
        return codebook.astype("<f2").tobytes(), {}
    low = codebook.min(axis=0)
    step = (codebook.max(axis=0) - low) / np.float32(255.0)
    step = np.where(step > 0, step, np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.rint((codebook - low) / step), 0, 255).astype(np.uint8)
    return codes.tobytes(), {"codebook_bits": 8, "codebook_low": [float(v) for v in low],
                             "codebook_step": [float(v) for v in step]}


def _codebook_from_stream(raw: bytes | memoryview, params: dict, k: int, cols: int) -> np.ndarray:
    """The float32 codebook (K, C) of `_codebook_stream`'s bytes and parameters."""
    if codebook_bits_of(params) == 16:
        return np.frombuffer(raw, "<f2").reshape(k, cols).astype(np.float32)
    codes = np.frombuffer(raw, np.uint8).reshape(k, cols)
    return np.asarray(params["codebook_low"], np.float32) + codes * np.asarray(params["codebook_step"], np.float32)


def stored_codebook(codebook: np.ndarray, bits: int) -> np.ndarray:
    """The codebook as a reader gets it back from storage with ``bits`` (float32 (K, C))."""
    codebook = np.asarray(codebook, np.float32)
    raw, params = _codebook_stream(codebook, bits)
    return _codebook_from_stream(raw, params, len(codebook), codebook.shape[1])


def _nearest(x: np.ndarray, codebook: np.ndarray, chunk: int = 32768) -> np.ndarray:
    cn = (codebook.astype(np.float32) ** 2).sum(1)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        xb = x[s:s + chunk].astype(np.float32)
        d = cn[None, :] - 2.0 * xb @ codebook.T.astype(np.float32)
        out[s:s + chunk] = d.argmin(1)
    return out


def train_codebook(x: np.ndarray, weights: np.ndarray, k: int, iterations: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    sample_idx = rng.choice(len(x), size=min(TRAIN_SAMPLE, len(x)), replace=True, p=p)
    xs = x[sample_idx].astype(np.float32)
    k = min(k, len(np.unique(xs, axis=0)))
    codebook = xs[rng.choice(len(xs), size=k, replace=False)].copy()
    for _ in range(iterations):
        idx = _nearest(xs, codebook)
        counts = np.bincount(idx, minlength=k)
        sums = np.zeros_like(codebook, dtype=np.float64)
        np.add.at(sums, idx, xs)
        live = counts > 0
        codebook[live] = (sums[live] / counts[live, None]).astype(np.float32)
        if (~live).any():  # re-seed dead entries at the worst-represented samples
            err = ((xs - codebook[idx]) ** 2).sum(1)
            codebook[~live] = xs[np.argsort(-err)[: int((~live).sum())]]
    return codebook


def quantize(values: np.ndarray, codebook_size: int, weights: np.ndarray | None = None, keep_exact: float = 0.0,
             seed: int = 0, codebook_bits: int = DEFAULT_CODEBOOK_BITS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codebook (K, C) float32 as stored with ``codebook_bits``, index per row (N,) into it, exact row numbers
    (sorted)) for these values."""
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
    idx[rest] = _nearest(x[rest], codebook)
    return codebook, idx, exact_rows


def encode(values: np.ndarray, codebook_size: int, weights: np.ndarray | None = None, keep_exact: float = 0.0,
           seed: int = 0, state: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
           layout: str = "planes", codebook_bits: int = DEFAULT_CODEBOOK_BITS) -> tuple[bytes, dict]:
    """Encode rows; ``state`` = a (codebook, indices, exact rows) from `quantize` (e.g. fine-tuned) to store with
    ``codebook_bits``."""
    x = np.asarray(values, dtype=np.float32)
    if codebook_bits not in CODEBOOK_BITS:
        raise ValueError(f"vq codebook bits must be 8 or 16, got {codebook_bits!r}")
    codebook, idx, exact_rows = state if state is not None else quantize(x, codebook_size, weights, keep_exact, seed,
                                                                         codebook_bits)
    n_exact = len(exact_rows)
    k = len(codebook)
    bits = max(1, math.ceil(math.log2(k)))
    codebook_raw, codebook_params = _codebook_stream(codebook, codebook_bits)
    payload = b"".join([
        codebook_raw,
        bitpack.pack(idx, bits, layout),
        exact_rows.astype("<u4").tobytes(),
        x[exact_rows].astype("<f2").tobytes(),
    ])
    # float16 codebooks are the stream of format versions 1 and 2: no codebook parameters
    return payload, {"codebook_size": k, "index_bits": bits, "exact_rows": n_exact, **bitpack.layout_param(layout),
                     **codebook_params}


def _sizes(params: dict, rows: int, cols: int) -> list[int]:
    """Byte sizes of the four parts of the stream: codebook, indices, exact row numbers, exact values."""
    k, bits, n_exact = params["codebook_size"], params["index_bits"], params["exact_rows"]
    codebook = k * cols * (2 if codebook_bits_of(params) == 16 else 1)
    return [codebook, bitpack.packed_size(rows, bits, bitpack.layout_of(params)), n_exact * 4, n_exact * cols * 2]


def decode(payload: bytes | memoryview, params: dict, rows: int, cols: int) -> np.ndarray:
    k, bits, n_exact = params["codebook_size"], params["index_bits"], params["exact_rows"]
    sizes = _sizes(params, rows, cols)
    if sum(sizes) != len(payload) or n_exact > rows or k < 1:
        raise ValueError("vq payload size does not match its parameters")
    o = np.cumsum([0] + sizes)
    codebook = _codebook_from_stream(payload[o[0]:o[1]], params, k, cols)
    idx = bitpack.unpack(payload[o[1]:o[2]], rows, bits, bitpack.layout_of(params))
    if idx.size and int(idx.max()) >= k:
        raise ValueError("vq index outside the codebook")
    out = np.take(codebook, idx, axis=0)
    del idx
    exact_rows = np.frombuffer(payload[o[2]:o[3]], "<u4")
    if exact_rows.size and int(exact_rows.max()) >= rows:
        raise ValueError("vq exact row outside the array")
    out[exact_rows] = np.frombuffer(payload[o[3]:o[4]], "<f2").reshape(n_exact, cols)
    return out


class VQCodec(ArrayCodec):
    """Spec: ``codebook`` (entries, 2..65536), ``keep_exact`` (fraction of rows stored exactly) and
    ``codebook_bits`` (8 or 16, default 8)."""

    name = "vq"
    scalar = False

    def encode(self, values, spec, weights=None, state=None):
        return encode(values, spec["codebook"], weights, spec.get("keep_exact", 0.0), state=state,
                      layout=bitpack.layout_for(spec), codebook_bits=spec_codebook_bits(spec))

    def validate_params(self, params, rows, cols):
        require_keys(params, "codebook_size", "index_bits", "exact_rows")
        k = require_int(params["codebook_size"], "vq codebook size", 1, MAX_CODEBOOK)
        bits = require_int(params["index_bits"], "vq index bits", 1, 16)
        if (1 << bits) < k:
            raise ValueError(f"vq index bits {bits} cannot address {k} codebook entries")
        require_int(params["exact_rows"], "vq exact row count", 0, rows)
        codebook_bits = codebook_bits_of(params)
        if codebook_bits not in CODEBOOK_BITS or isinstance(codebook_bits, bool):
            raise ValueError(f"vq codebook bits must be 8 or 16, got {codebook_bits!r}")
        if codebook_bits == 8:
            require_keys(params, "codebook_low", "codebook_step")
            require_numbers(params["codebook_low"], "vq codebook low", cols)
            require_numbers(params["codebook_step"], "vq codebook step", cols)
        bitpack.layout_of(params)

    def raw_length(self, params, rows, cols):
        return sum(_sizes(params, rows, cols))

    def decode_memory(self, params, rows, cols):
        # float32 codebook, the indices (unpacked, then as intp), the result, the exact rows (as intp) and their
        # values converted
        return (4 * params["codebook_size"] * cols + bitpack.unpack_memory(rows, params["index_bits"], bitpack.layout_of(params)) + 8 * rows
                + 4 * rows * cols + params["exact_rows"] * (8 + 4 * cols))

    def decode(self, raw, params, rows, cols):
        return decode(raw, params, rows, cols)

    def fixed_quantizer(self, values, spec, weights=None):
        codebook, _, exact_rows = quantize(values, spec["codebook"], weights, spec.get("keep_exact", 0.0),
                                           codebook_bits=spec_codebook_bits(spec))

        def quantize_fixed(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, np.float32)
            out = codebook[_nearest(x, codebook)]
            out[exact_rows] = x[exact_rows].astype(np.float16)
            return out
        return quantize_fixed


register_codec(VQCodec())
