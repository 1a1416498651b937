"""Codecs for the grid's arrays: a registry of array codecs (one module each) chosen per array by a `CodecConfig`.

- `base`: the `ArrayCodec` interface and its registry (`register_codec`, `get_codec`, `codec_names`).
- `raw` (``float32``, ``float16``), `uniform`, `kmeans`, `vq`: the array codecs; each registers itself.
- `methods`: the ``--method`` table: per method, the array codec and options for density, SH and background.
- `entropy`: zstd on top of any stream; `bitpack`: integer codes as bit planes, or whole bytes for zstd.

``entropy="zstd"`` compresses every stored stream. ``density`` names a scalar codec ("float32", "float16",
"uniform", "kmeans") that overrides how density is stored. ``prune_below`` drops voxels whose importance
(their maximum ray weight over the training views) is below the threshold before encoding, as VQRF does; it
needs that importance and is ignored without it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass

import numpy as np

from plenopack.codecs import entropy
from plenopack.codecs.base import ArrayCodec, codec_names, get_codec, register_codec
from plenopack.codecs.methods import METHODS, Method, register_method
from plenopack.errors import PlenopackError

for _module in pkgutil.iter_modules(__path__):  # every codec module registers itself on import
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

from plenopack.codecs import vq  # noqa: E402
from plenopack.codecs.vq import CODEBOOK_BITS, DEFAULT_CODEBOOK_BITS, DEFAULT_RESIDUAL_CODEBOOK  # noqa: E402


@dataclass
class CodecConfig:
    method: str = "float32"
    bits: int = 8
    entropy: str | None = None  # None or "zstd"
    zstd_level: int = 19
    density: str | None = None  # None: the method's default
    clip_sh: tuple[float, float] = (-0.1, 0.1)
    clip_density: tuple[float, float] = (0.0, 100.0)
    clip_background: tuple[float, float] = (-4.0, 4.0)
    codebook: int = 4096
    codebook_bits: int = DEFAULT_CODEBOOK_BITS  # vq: codebook stored as 6- to 8-bit codes per column or as float16 (16)
    keep_exact: float = 0.0
    residual_rows: float = 0.0  # vq: fraction of rows (those it serves worst) with a second, residual stage
    residual_codebook: int = DEFAULT_RESIDUAL_CODEBOOK  # vq: entries of the residual stage's codebook
    prefer_runs: float = 0.0  # vq: rate-distortion lambda for runs of equal indices (0: nearest entry)
    finetune: int = 0  # steps of quantisation-aware fine-tuning (needs the training views)
    prune_below: float = 0.0  # drop voxels whose importance (max ray weight) is below this (VQRF's pruning)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PlenopackError(f"unknown codec method {self.method!r} (expected one of: {', '.join(METHODS)})")
        if not (1 <= self.bits <= 8 or self.bits == 16):
            raise PlenopackError(f"bits must be 1..8 or 16, got {self.bits}")
        if self.entropy not in (None, "none", *entropy.CODERS):
            raise PlenopackError(f"unknown entropy coder {self.entropy!r} (expected one of: {', '.join(entropy.CODERS)})")
        if self.entropy == "none":
            self.entropy = None
        scalar = [name for name in codec_names() if get_codec(name).scalar]
        if self.density is not None and self.density not in scalar:
            raise PlenopackError(f"unknown density codec {self.density!r} (expected one of: {', '.join(scalar)})")
        if not 0.0 <= self.keep_exact <= 1.0:
            raise PlenopackError("keep_exact must be a fraction in [0, 1]")
        if not 0.0 <= self.prune_below < 1.0:
            raise PlenopackError("prune_below must be in [0, 1)")
        if not 2 <= self.codebook <= 65536:
            raise PlenopackError("codebook size must be 2..65536")
        if not 0.0 <= self.residual_rows <= 1.0:
            raise PlenopackError("residual_rows must be a fraction in [0, 1]")
        if not 2 <= self.residual_codebook <= 65536:
            raise PlenopackError("residual codebook size must be 2..65536")
        if not 0.0 <= self.prefer_runs < float("inf"):
            raise PlenopackError("prefer_runs must be a finite number >= 0")
        if self.codebook_bits not in CODEBOOK_BITS:
            raise PlenopackError(f"codebook bits must be 6, 7, 8 or 16, got {self.codebook_bits}")
        self.clip_sh = tuple(self.clip_sh)
        self.clip_density = tuple(self.clip_density)
        self.clip_background = tuple(self.clip_background)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """Short human name, e.g. ``sh/8``, ``vq/4096+zstd``."""
        residual = f"+{self.residual_codebook}@{self.residual_rows:g}" if self.residual_rows else ""
        core = f"{self.method}/{self.codebook}{residual}" if self.method == "vq" else (
            self.method if self.method == "float32" else f"{self.method}/{self.bits}")
        return (core + ("+zstd" if self.entropy else "") + (f"+prune{self.prune_below:g}" if self.prune_below else "")
                + (f"+ft{self.finetune}" if self.finetune else ""))

    def plan(self, array: str) -> dict:
        """The array codec and its options (a spec for `encode_array`) for ``array`` in ("density", "sh",
        "background"), with the entropy coder's keys when one is set."""
        spec = METHODS[self.method].plan(self, array)
        if self.entropy:
            spec["entropy"] = self.entropy
            spec["level"] = self.zstd_level
        return spec


def encode_array(values: np.ndarray, spec: dict, weights: np.ndarray | None = None,
                 vq_state: vq.VQState | None = None) -> tuple[bytes, dict]:
    """Encode a 2-D float32 array (rows, channels) by ``spec``; returns the stored stream and its descriptor
    (``codec``, ``params``, ``raw_length`` and ``entropy`` when entropy-coded).

    ``vq_state``: for the vq codec, a ready `plenopack.codecs.vq.VQState`, e.g. after fine-tuning.
    """
    try:
        codec = get_codec(spec["codec"])
    except ValueError as exc:
        raise PlenopackError(str(exc)) from None
    payload, params = codec.encode(np.ascontiguousarray(values, dtype=np.float32), spec, weights, vq_state)
    desc = {"codec": codec.name, "params": params, "raw_length": len(payload)}
    if spec.get("entropy") == "zstd":
        payload = entropy.compress(payload, spec.get("level", 19))
        desc["entropy"] = "zstd"
    return payload, desc


def check_descriptor(desc: dict, rows: int, cols: int) -> tuple[ArrayCodec, int]:
    """The codec of a stream descriptor and its exact raw length, after checking the descriptor's codec,
    parameters, entropy coder and ``raw_length`` for an array of rows x cols. Raises ValueError."""
    codec = get_codec(desc.get("codec"))
    codec.validate_params(desc.get("params", {}), rows, cols)
    raw_length = codec.raw_length(desc.get("params", {}), rows, cols)
    if desc.get("raw_length", raw_length) != raw_length:
        raise ValueError(f"raw_length {desc.get('raw_length')!r} does not match the {codec.name} stream "
                         f"of {rows} x {cols} values ({raw_length} bytes)")
    if desc.get("entropy") is not None and desc.get("entropy") not in entropy.CODERS:
        raise ValueError(f"unknown entropy coder {desc.get('entropy')!r}")
    return codec, raw_length


def decode_array(payload: bytes | memoryview, desc: dict, rows: int, cols: int) -> np.ndarray:
    """Inverse of `encode_array`: the (rows, cols) float32 array. Raises ValueError on inconsistent input;
    allocates at most the codec's `ArrayCodec.decode_memory` bytes (plus the zstd decoder's)."""
    codec, raw_length = check_descriptor(desc, rows, cols)
    if desc.get("entropy") == "zstd":
        payload = entropy.decompress_exact(payload, raw_length)
    elif len(payload) != raw_length:
        raise ValueError(f"{codec.name} stream has {len(payload)} bytes, expected {raw_length}")
    return codec.decode(payload, desc.get("params", {}), rows, cols)


__all__ = ["ArrayCodec", "CodecConfig", "METHODS", "Method", "check_descriptor", "codec_names", "decode_array",
           "encode_array", "get_codec", "register_codec", "register_method"]
