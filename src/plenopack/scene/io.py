"""Image reading and resizing shared by the loaders (Pillow, Lanczos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from plenopack.errors import PlenopackError


def read_image(path: Path, size: tuple[int, int] | None = None, mode: str = "RGB") -> np.ndarray:
    """Read an image as float32 in [0, 1]: (H, W, C) for RGB/RGBA, (H, W) for "L".

    ``size`` = (height, width) resizes with Lanczos (masks: bilinear). Raises PlenopackError naming the file.
    """
    if not path.is_file():
        raise PlenopackError("image file is missing", path)
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and (im.height, im.width) != tuple(size):
                resample = Image.BILINEAR if mode == "L" else Image.LANCZOS
                im = im.resize((size[1], size[0]), resample)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlenopackError(f"cannot read image ({exc.__class__.__name__}: {exc})", path) from None
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file without decoding its pixels."""
    if not path.is_file():
        raise PlenopackError("image file is missing", path)
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError) as exc:
        raise PlenopackError(f"cannot read image ({exc})", path) from None


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """Size with the longest side at most ``max_side`` (aspect kept, rounded), or unchanged."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def scale_intrinsics(intrinsics: np.ndarray, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> np.ndarray:
    """Scale (fx, fy, cx, cy) rows for a resize from old (H, W) to new (H, W) (pixel-edge convention)."""
    k = np.array(intrinsics, dtype=np.float64, copy=True)
    sx = new_hw[1] / old_hw[1]
    sy = new_hw[0] / old_hw[0]
    k[..., 0] *= sx
    k[..., 2] *= sx
    k[..., 1] *= sy
    k[..., 3] *= sy
    return k
