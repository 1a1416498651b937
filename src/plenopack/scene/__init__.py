"""Capture loaders: one small parser per format, all producing the same `Scene`.

`load_scene(path)` detects the format from the folder's contents (or takes ``format=``), loads images,
masks and cameras, resizes so the longest side is at most ``max_side`` pixels (intrinsics follow),
converts poses to OpenCV camera-to-world, and normalises everything into the unit cube
(see `plenopack.scene.normalize` for which normalisation each format uses).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene

# format name -> (module, files whose presence identifies it)
LOADERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "blender": ("plenopack.scene.blender", ("transforms_train.json",)),
    "llff": ("plenopack.scene.llff", ("poses_bounds.npy",)),
    "co3d": ("plenopack.scene.co3d", ("../frame_annotations.jgz",)),
    "colmap": ("plenopack.scene.colmap", ("sparse/0/cameras.bin", "sparse/0/cameras.txt", "sparse/cameras.bin",
                                          "sparse/cameras.txt")),
    "scannet": ("plenopack.scene.scannet", ("intrinsic/intrinsic_color.txt",)),
}
FORMATS = tuple(LOADERS)


def detect_format(path: str | Path) -> str:
    """Name the capture format of a folder from the files it holds."""
    root = Path(path)
    if not root.exists():
        raise PlenopackError("no such file or folder", root)
    if not root.is_dir():
        raise PlenopackError("expected a capture folder", root)
    for name, (_, markers) in LOADERS.items():
        if any((root / m).exists() for m in markers):
            return name
    if not any(root.iterdir()):
        raise PlenopackError("folder is empty", root)
    raise PlenopackError(f"unknown capture format (expected one of: {', '.join(FORMATS)})", root)


def load_scene(path: str | Path, format: str | None = None, max_side: int = 800, **options) -> Scene:
    """Load a capture folder into a normalised `Scene` (see `plenopack.scene.base`).

    ``options`` are passed to the format's loader (e.g. ``test_every``, ``background``,
    ``cam_scale_factor``, ``visual_hull``); unknown ones are an error.
    """
    root = Path(path)
    fmt = format or detect_format(root)
    if fmt not in LOADERS:
        raise PlenopackError(f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})", root)
    if not root.is_dir():
        raise PlenopackError("no such capture folder", root)
    loader = importlib.import_module(LOADERS[fmt][0]).load
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise PlenopackError(f"unknown option(s) for the {fmt} loader: {', '.join(unknown)}", root)
    return loader(root, max_side=max_side, **options)


__all__ = ["FORMATS", "LOADERS", "Scene", "detect_format", "load_scene"]
