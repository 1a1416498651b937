"""The array-codec interface and its registry: one module per codec, each registering itself.

An array codec stores a float32 array of ``rows`` x ``cols`` (voxels x channels, or texels x channels) as a
byte stream (the "raw" stream, before any entropy coding) plus JSON parameters that go into the file's stream
descriptor. A *spec* is the dict a `CodecConfig` plans for an array (``{"codec": name, **options}``, e.g.
``{"codec": "uniform", "bits": 8, "clip": [-0.1, 0.1]}``); entropy keys in it are handled outside the codec.

Adding a codec = one new module in this package that subclasses `ArrayCodec` and calls `register_codec`
(every module of the package is imported when `plenopack.codecs` is).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)


class ArrayCodec(ABC):
    """How one 2-D float32 array is stored. Subclasses set ``name`` and implement the abstract methods.

    Contract: ``decode(encode(x)[0], encode(x)[1], *x.shape)`` approximates x; `validate_params` accepts every
    ``params`` `encode` produces and raises ValueError (never anything else) for anything `decode` or
    `raw_length` could not handle; after it passes, `raw_length` is exact and `decode` allocates at most
    `decode_memory` bytes (tests/test_codecs.py measures this for every registered codec).
    """

    name: str = ""
    #: True when the codec codes each value on its own and needs only ``bits`` in its spec, so it can be
    #: named as a `CodecConfig.density` override.
    scalar: bool = True

    @abstractmethod
    def encode(self, values: np.ndarray, spec: dict, weights: np.ndarray | None = None,
               state: Any = None) -> tuple[bytes, dict]:
        """Raw stream and JSON-able parameters for ``values`` (rows, cols) float32.

        ``weights``: optional per-row importances (>= 0) that data-fitted codecs honour. ``state``: a codec-
        specific ready result to store as is (the vq codec takes a fine-tuned (codebook, indices, exact rows)).
        """

    @abstractmethod
    def validate_params(self, params: dict, rows: int, cols: int) -> None:
        """Raise ValueError unless ``params`` (parsed JSON of any shape) fit an array of rows x cols."""

    @abstractmethod
    def raw_length(self, params: dict, rows: int, cols: int) -> int:
        """Exact byte length of the raw stream for validated ``params``."""

    @abstractmethod
    def decode(self, raw: bytes | memoryview, params: dict, rows: int, cols: int) -> np.ndarray:
        """The (rows, cols) C-contiguous float32 array; ``raw`` has exactly `raw_length` bytes, ``params`` are
        validated. Raises ValueError on content that contradicts the parameters."""

    @abstractmethod
    def fixed_quantizer(self, values: np.ndarray, spec: dict,
                        weights: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """x -> Q(x): the codec's rounding with the parameters it picks for ``values``, kept fixed.

        Used by quantisation-aware fine-tuning: the values move, the quantiser (levels, codebook) does not.
        ``x`` has the shape of ``values``; Q(x) is float32 of that shape.
        """

    @abstractmethod
    def decode_memory(self, params: dict, rows: int, cols: int) -> int:
        """Upper bound in bytes on what `decode` allocates for validated ``params``: the float32 result and
        its temporaries, not the raw stream it is given (nor fixed overheads of some 100 KiB: numpy's cast
        buffers, Python objects)."""


_CODECS: dict[str, ArrayCodec] = {}


def register_codec(codec: ArrayCodec) -> ArrayCodec:
    """Make ``codec`` available under ``codec.name`` (its name in files and specs). Returns it."""
    if not codec.name or codec.name in _CODECS:
        raise ValueError(f"array codec name {codec.name!r} is empty or already registered")
    _CODECS[codec.name] = codec
    return codec


def get_codec(name: Any) -> ArrayCodec:
    """The registered codec called ``name``; ValueError naming the known ones otherwise."""
    codec = _CODECS.get(name) if isinstance(name, str) else None
    if codec is None:
        raise ValueError(f"unknown array codec {name!r} (known: {', '.join(sorted(_CODECS))})")
    return codec


def codec_names() -> list[str]:
    """Names of all registered array codecs, sorted."""
    return sorted(_CODECS)


# ---------------------------------------------------------------- parameter checks for validate_params

def require_keys(params: Any, *keys: str) -> dict:
    """``params`` as a dict holding ``keys``, else ValueError."""
    if not isinstance(params, dict):
        raise ValueError(f"parameters must be an object, got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"parameters lack {', '.join(missing)}")
    return params


def require_int(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` if it is an integer (not a bool) in [lo, hi], else ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer in {lo}..{hi}, got {_short(value)}")
    return value


def is_float32_number(value: Any) -> bool:
    """A JSON number that converts to a finite float32 (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= FLOAT32_MAX if isinstance(value, int) else math.isfinite(value) and abs(value) <= FLOAT32_MAX


def require_numbers(value: Any, what: str, length: int) -> list:
    """``value`` if it is a list of ``length`` finite float32-range numbers, else ValueError."""
    if not isinstance(value, list) or len(value) != length or not all(is_float32_number(v) for v in value):
        raise ValueError(f"{what} must be a list of {length} finite numbers, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
