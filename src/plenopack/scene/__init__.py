"""Capture loaders: one small parser per format, all producing the same `Scene`.

`load_scene(path)` detects the format from the folder's contents (or takes ``format=``), loads
images, masks and cameras, resizes so the longest side is at most ``max_side`` pixels, converts
poses to OpenCV camera-to-world, and normalises everything into the unit cube.
"""

from __future__ import annotations

from pathlib import Path

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene

FORMATS = ("blender", "llff", "co3d", "colmap", "scannet")


def detect_format(path: str | Path) -> str:
    """Name the capture format of a folder from the files it holds."""
    raise PlenopackError("format detection is not implemented yet", path)


def load_scene(path: str | Path, format: str | None = None, max_side: int = 800, **options) -> Scene:
    """Load a capture folder into a normalised `Scene` (see `plenopack.scene.base`)."""
    raise PlenopackError("scene loading is not implemented yet", path)


__all__ = ["FORMATS", "Scene", "detect_format", "load_scene"]
