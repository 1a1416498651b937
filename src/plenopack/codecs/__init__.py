"""Codecs for the grid's arrays, each in its own module, chosen per array by a `CodecConfig`.

Methods (``--method``):
- ``float32``: everything as float32 (the uncompressed reference).
- ``sh``: PeRFception "ours(SH)": SH (and background) uniform min-max quantised at ``bits``; density float32.
- ``sh+d``: PeRFception "ours(SH+D)": the same on density too.
- ``clip``: PeRFception "clipping": values clipped to fixed intervals first (SH [-0.1, 0.1], density
  [0, 100], background [-4, 4]) and those ends used instead of min/max.
- ``kmeans``: per-channel weighted 1-D k-means with 2^bits levels on SH (and background); density per
  ``density`` option.
- ``vq``: vector quantisation of SH vectors (codebook of ``codebook`` entries, ``keep_exact`` fraction exact).
``bits`` 16 means float16 for the quantised arrays. ``entropy="zstd"`` compresses every stored stream.
``density`` ("float32", "float16", "uniform", "kmeans") overrides how density is stored.
``prune_below`` drops voxels whose importance (their maximum ray weight over the training views) is below
the threshold before encoding, as VQRF does; it needs that importance and is ignored without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from plenopack.codecs import entropy, kmeans, uniform, vq
from plenopack.errors import PlenopackError

METHODS = ("float32", "sh", "sh+d", "clip", "kmeans", "vq")
ARRAY_CODECS = ("float32", "float16", "uniform", "kmeans", "vq")


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
    keep_exact: float = 0.0
    finetune: int = 0  # steps of quantisation-aware fine-tuning (needs the training views)
    prune_below: float = 0.0  # drop voxels whose importance (max ray weight) is below this (VQRF's pruning)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PlenopackError(f"unknown codec method {self.method!r} (expected one of: {', '.join(METHODS)})")
        if not (1 <= self.bits <= 8 or self.bits == 16):
            raise PlenopackError(f"bits must be 1..8 or 16, got {self.bits}")
        if self.entropy not in (None, "zstd", "none"):
            raise PlenopackError(f"unknown entropy coder {self.entropy!r} (expected zstd)")
        if self.entropy == "none":
            self.entropy = None
        if self.density not in (None, "float32", "float16", "uniform", "kmeans"):
            raise PlenopackError(f"unknown density codec {self.density!r}")
        if not 0.0 <= self.keep_exact <= 1.0:
            raise PlenopackError("keep_exact must be a fraction in [0, 1]")
        if not 0.0 <= self.prune_below < 1.0:
            raise PlenopackError("prune_below must be in [0, 1)")
        if not 2 <= self.codebook <= 65536:
            raise PlenopackError("codebook size must be 2..65536")
        self.clip_sh = tuple(self.clip_sh)
        self.clip_density = tuple(self.clip_density)
        self.clip_background = tuple(self.clip_background)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """Short human name, e.g. ``sh/8``, ``vq/4096+zstd``."""
        core = f"{self.method}/{self.codebook}" if self.method == "vq" else (
            self.method if self.method == "float32" else f"{self.method}/{self.bits}")
        return (core + ("+zstd" if self.entropy else "") + (f"+prune{self.prune_below:g}" if self.prune_below else "")
                + (f"+ft{self.finetune}" if self.finetune else ""))

    def plan(self, array: str) -> dict:
        """The array codec and its parameters for ``array`` in ("density", "sh", "background")."""
        m, b = self.method, self.bits
        quant = {"codec": "float16"} if b == 16 else None
        if m == "float32":
            spec = {"codec": "float32"}
        elif array == "density":
            if self.density is not None:
                spec = {"codec": self.density, "bits": b}
            elif m in ("sh+d",):
                spec = quant or {"codec": "uniform", "bits": b}
            elif m == "clip":
                spec = quant or {"codec": "uniform", "bits": b, "clip": list(self.clip_density)}
            elif m in ("kmeans", "vq"):
                spec = {"codec": "float16"}
            else:
                spec = {"codec": "float32"}
        elif m in ("sh", "sh+d"):
            spec = quant or {"codec": "uniform", "bits": b}
        elif m == "clip":
            clip = self.clip_sh if array == "sh" else self.clip_background
            spec = quant or {"codec": "uniform", "bits": b, "clip": list(clip)}
        elif m == "kmeans" or (m == "vq" and array == "background"):
            spec = quant or {"codec": "kmeans", "bits": b}
        else:
            spec = {"codec": "vq", "codebook": self.codebook, "keep_exact": self.keep_exact}
        if self.entropy:
            spec["entropy"] = self.entropy
            spec["level"] = self.zstd_level
        return spec


def encode_array(values: np.ndarray, spec: dict, weights: np.ndarray | None = None,
                 vq_state: tuple | None = None) -> tuple[bytes, dict]:
    """Encode a 2-D float32 array (rows, channels) by ``spec``; returns payload and its descriptor.

    ``vq_state``: for the vq codec, a ready (codebook, indices, exact rows), e.g. after fine-tuning.
    """
    x = np.ascontiguousarray(values, dtype=np.float32)
    codec = spec["codec"]
    params: dict = {}
    if codec == "float32":
        payload = x.astype("<f4").tobytes()
    elif codec == "float16":
        payload = x.astype("<f2").tobytes()
    elif codec == "uniform":
        payload, params = uniform.encode(x, spec["bits"], tuple(spec["clip"]) if spec.get("clip") else None)
        if spec.get("clip"):
            params["clip"] = list(spec["clip"])
    elif codec == "kmeans":
        payload, params = kmeans.encode(x, spec["bits"], weights)
    elif codec == "vq":
        payload, params = vq.encode(x, spec["codebook"], weights, spec.get("keep_exact", 0.0), state=vq_state)
    else:
        raise PlenopackError(f"unknown array codec {codec!r}")
    desc = {"codec": codec, "params": params, "raw_length": len(payload)}
    if spec.get("entropy") == "zstd":
        payload = entropy.compress(payload, spec.get("level", 19))
        desc["entropy"] = "zstd"
    return payload, desc


def max_raw_length(desc: dict, rows: int, cols: int) -> int:
    """Upper bound on the decoded stream of an array (guards against hostile size fields)."""
    codec = desc.get("codec")
    if codec in ("float32", "uniform", "kmeans"):
        return rows * cols * 4 + 64
    if codec == "float16":
        return rows * cols * 2
    if codec == "vq":
        p = desc.get("params", {})
        return int(p.get("codebook_size", 0)) * cols * 2 + rows * (2 + 4 + cols * 2) + 64
    raise ValueError(f"unknown array codec {codec!r}")


def decode_array(payload: bytes, desc: dict, rows: int, cols: int) -> np.ndarray:
    """Inverse of `encode_array`. Raises ValueError on inconsistent input."""
    bound = max_raw_length(desc, rows, cols)
    if desc.get("entropy") == "zstd":
        payload = entropy.decompress(payload, bound)
    elif desc.get("entropy") is not None:
        raise ValueError(f"unknown entropy coder {desc.get('entropy')!r}")
    if len(payload) != desc.get("raw_length", len(payload)) or len(payload) > bound:
        raise ValueError("stream length does not match its descriptor")
    codec, params = desc["codec"], desc.get("params", {})
    if codec == "float32":
        if len(payload) != rows * cols * 4:
            raise ValueError("float32 stream has the wrong length")
        return np.frombuffer(payload, "<f4").reshape(rows, cols).astype(np.float32)
    if codec == "float16":
        if len(payload) != rows * cols * 2:
            raise ValueError("float16 stream has the wrong length")
        return np.frombuffer(payload, "<f2").reshape(rows, cols).astype(np.float32)
    if codec == "uniform":
        if len(params.get("lo", ())) != cols or len(params.get("scale", ())) != cols:
            raise ValueError("uniform parameters do not match the channel count")
        return uniform.decode(payload, params, rows, cols)
    if codec == "kmeans":
        cb = params.get("codebook", ())
        if len(cb) != cols or any(len(c) != (1 << params["bits"]) for c in cb):
            raise ValueError("k-means codebook does not match the channel count")
        return kmeans.decode(payload, params, rows, cols)
    if codec == "vq":
        return vq.decode(payload, params, rows, cols)
    raise ValueError(f"unknown array codec {codec!r}")


__all__ = ["ARRAY_CODECS", "METHODS", "CodecConfig", "decode_array", "encode_array"]
