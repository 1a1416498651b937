"""Capture loaders: one small parser per format, all producing the same `Scene`.

`load_scene(path)` detects the format from the folder's contents (or takes ``format=``), loads images,
masks and cameras, resizes so the longest side is at most ``max_side`` pixels (intrinsics follow),
converts poses to OpenCV camera-to-world, and normalises everything into the unit cube
(see `plenopack.scene.normalize` for which normalisation each format uses).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.options import accepted_options, check_options, parse_scene_options

# format name -> (module, files whose presence identifies it)
LOADERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "blender": ("plenopack.scene.blender", ("transforms_train.json",)),
    "nerfstudio": ("plenopack.scene.nerfstudio", ("transforms.json",)),  # after blender: transforms_train.json wins
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

    ``options`` are passed to the format's loader (e.g. ``test_every``, ``object_centric``, ``capture_kind``,
    ``cam_scale_factor``, ``visual_hull``; text from the command line goes through `parse_scene_options`);
    unknown ones and values of the wrong type are one clear error listing the accepted options. The scene
    records the effective options in ``Scene.loader_options``.
    """
    root = Path(path)
    fmt = format or detect_format(root)
    if fmt not in LOADERS:
        raise PlenopackError(f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})", root)
    if not root.is_dir():
        raise PlenopackError("no such capture folder", root)
    loader = loader_function(fmt)
    check_options(loader, fmt, options, root)
    return loader(root, max_side=max_side, **options)


def loader_function(fmt: str):
    """The ``load(root, max_side=..., **options)`` function of a format."""
    return importlib.import_module(LOADERS[fmt][0]).load


__all__ = ["FORMATS", "LOADERS", "Scene", "accepted_options", "detect_format", "load_scene", "loader_function",
           "parse_scene_options"]
