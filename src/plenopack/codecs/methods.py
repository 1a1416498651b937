"""Codec methods (``--method``): for each array of a grid, the array codec and options a method uses.

A method maps (config, array) -> spec for the arrays "density", "sh" and "background"; specs are what
`plenopack.codecs.encode_array` takes (``{"codec": name, **options}``). ``bits`` 16 means float16 for the
quantised arrays. Methods (PeRFception's names where they come from its paper):

- ``float32``: everything as float32 (the uncompressed reference).
- ``sh``: "ours(SH)": SH and background uniform min-max quantised at ``bits``; density float32.
- ``sh+d``: "ours(SH+D)": the same on density too.
- ``clip``: "clipping": values clipped to fixed intervals first (``clip_sh``, ``clip_density``,
  ``clip_background``) and those ends used instead of min/max.
- ``kmeans``: per-channel weighted 1-D k-means with 2^bits levels on SH and background; density float16.
- ``vq``: vector quantisation of SH vectors (``codebook`` entries, ``keep_exact`` fraction exact, a residual
  stage of ``residual_codebook`` entries on the ``residual_rows`` fraction it serves worst); background
  as kmeans; density uniform at ``bits`` (8: on lego at 800 px, 0.41 MB against float16's 1.28 MB for 769K
  voxels at the same val PSNR to 0.001 dB; uniform codes of a smooth field compress better than k-means').

Adding a method = one `register_method` call with a `Method` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plenopack.codecs import CodecConfig

Planner = Callable[["CodecConfig"], dict]
ARRAYS = ("density", "sh", "background")


@dataclass(frozen=True)
class Method:
    """How a method stores each array: a planner per array name, config -> spec.

    ``density_override``: whether `CodecConfig.density` (a scalar codec by name, at ``bits``) replaces the
    density planner.
    """

    density: Planner
    sh: Planner
    background: Planner
    density_override: bool = True

    def plan(self, config: CodecConfig, array: str) -> dict:
        if array not in ARRAYS:
            raise ValueError(f"unknown array {array!r} (expected one of: {', '.join(ARRAYS)})")
        if array == "density" and self.density_override and config.density is not None:
            return {"codec": config.density, "bits": config.bits}
        return getattr(self, array)(config)


METHODS: dict[str, Method] = {}


def register_method(name: str, method: Method) -> Method:
    if name in METHODS:
        raise ValueError(f"codec method {name!r} is already registered")
    METHODS[name] = method
    return method


def _fixed(codec: str) -> Planner:
    return lambda config: {"codec": codec}


def _uniform(config: CodecConfig, clip: tuple[float, float] | None = None) -> dict:
    """Uniform at ``bits`` (clipped to ``clip`` when given), or float16 at 16 bits."""
    if config.bits == 16:
        return {"codec": "float16"}
    return {"codec": "uniform", "bits": config.bits, **({"clip": list(clip)} if clip is not None else {})}


def _kmeans(config: CodecConfig) -> dict:
    return {"codec": "float16"} if config.bits == 16 else {"codec": "kmeans", "bits": config.bits}


def _vq(config: CodecConfig) -> dict:
    return {"codec": "vq", "codebook": config.codebook, "keep_exact": config.keep_exact,
            "codebook_bits": config.codebook_bits, "residual_rows": config.residual_rows,
            "residual_codebook": config.residual_codebook, "prefer_runs": config.prefer_runs}


register_method("float32", Method(_fixed("float32"), _fixed("float32"), _fixed("float32"), density_override=False))
register_method("sh", Method(_fixed("float32"), _uniform, _uniform))
register_method("sh+d", Method(_uniform, _uniform, _uniform))
register_method("clip", Method(lambda c: _uniform(c, c.clip_density), lambda c: _uniform(c, c.clip_sh),
                               lambda c: _uniform(c, c.clip_background)))
register_method("kmeans", Method(_fixed("float16"), _kmeans, _kmeans))
register_method("vq", Method(_uniform, _vq, _kmeans))
