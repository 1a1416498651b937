"""Plain little-endian floats, row-major: ``float32`` (lossless, the reference) and ``float16``."""

from __future__ import annotations

import numpy as np

from plenopack.codecs.base import ArrayCodec, register_codec, require_keys


class RawFloatCodec(ArrayCodec):
    """rows x cols values as ``dtype`` (e.g. "<f4"), row-major; no parameters."""

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype = np.dtype(dtype)

    def encode(self, values, spec, weights=None, state=None):
        return np.ascontiguousarray(values, dtype=np.float32).astype(self.dtype).tobytes(), {}

    def validate_params(self, params, rows, cols):
        require_keys(params)

    def raw_length(self, params, rows, cols):
        return rows * cols * self.dtype.itemsize

    def decode_memory(self, params, rows, cols):
        return 4 * rows * cols  # the result, converted straight from the stream

    def decode(self, raw, params, rows, cols):
        with np.errstate(over="ignore"):
            return np.frombuffer(raw, self.dtype).reshape(rows, cols).astype(np.float32)

    def fixed_quantizer(self, values, spec, weights=None):
        dtype = self.dtype

        def quantize(x: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore"):
                return np.asarray(x, np.float32).astype(dtype, copy=False).astype(np.float32, copy=False)
        return quantize


register_codec(RawFloatCodec("float32", "<f4"))
register_codec(RawFloatCodec("float16", "<f2"))
