"""Image reading, resizing and undistortion shared by the loaders (Pillow Lanczos, OpenCV remap).

Loaders read their frames with `read_frames` / `parallel_map`: one thread per CPU this process may use, since
decoding (Pillow), remapping (OpenCV) and NumPy's conversions release the GIL (the 200 lego views at 800 px:
about 2x faster on 2 cores). Results keep the frames' order; the first failing frame's error is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from plenopack.errors import PlenopackError
from plenopack.resources import available_cpus
from plenopack.scene.undistort import Undistorter

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], run on a thread per available CPU, in order."""
    items = list(items)
    workers = min(available_cpus(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plenopack-read") as pool:
        return list(pool.map(fn, items))


def decode_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to uint8: (H, W, C) for RGB/RGBA, (H, W) for "L". Errors name the file."""
    if not path.is_file():
        raise PlenopackError("image file is missing", path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PlenopackError(f"cannot read image ({exc.__class__.__name__}: {exc})", path) from None


def resize_pixels(pixels: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 pixels (H, W[, C]) resized to ``size`` = (height, width): Lanczos for colour, bilinear for one
    channel (masks); unchanged when ``size`` is None or equal."""
    if size is not None and pixels.shape[:2] != tuple(size):
        im = Image.fromarray(pixels)
        resample = Image.BILINEAR if pixels.ndim == 2 else Image.LANCZOS
        pixels = np.asarray(im.resize((size[1], size[0]), resample))
    return pixels


def resize_to_float(pixels: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 pixels (H, W[, C]) resized to ``size`` (`resize_pixels`) as float32 in [0, 1]."""
    return np.divide(resize_pixels(pixels, size), np.float32(255.0), dtype=np.float32)  # in [0, 1] by construction


def read_image(path: Path, size: tuple[int, int] | None = None, mode: str = "RGB") -> np.ndarray:
    """Read an image as float32 in [0, 1]: (H, W, C) for RGB/RGBA, (H, W) for "L".

    ``size`` = (height, width) resizes with Lanczos (masks: bilinear). Raises PlenopackError naming the file.
    """
    return resize_to_float(decode_image(path, mode), size)


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


def read_frame(image_path: Path, camera: Undistorter, max_side: int | None, mask_path: Path | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One view through its camera: (image, mask or None, pinhole intrinsics (fx, fy, cx, cy)).

    The image (and mask) are undistorted at full resolution by ``camera`` (an identity `Undistorter` for
    pinhole cameras), then resized so the longest side is at most ``max_side``; the intrinsics follow.
    A mask of another size than its image is first resized to the image (bilinear).
    """
    pixels = decode_image(image_path)
    if pixels.shape[:2] != camera.source_size:
        raise PlenopackError(f"image is {pixels.shape[1]}x{pixels.shape[0]} but its camera expects "
                             f"{camera.source_size[1]}x{camera.source_size[0]}", image_path)
    size = fitted_size(*camera.size, max_side)
    image = resize_to_float(camera.image(pixels), size)
    mask = None
    if mask_path is not None:
        mask_pixels = decode_image(mask_path, "L")
        if mask_pixels.shape != camera.source_size:
            mask_pixels = np.asarray(Image.fromarray(mask_pixels).resize(camera.source_size[::-1], Image.BILINEAR))
        mask = resize_to_float(camera.mask(mask_pixels), size)
    return image, mask, scale_intrinsics(camera.intrinsics, camera.size, size)


def read_frames(frames: Iterable[tuple[Path, Undistorter, Path | None]], max_side: int | None
                ) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[np.ndarray]]:
    """`read_frame` for every (image path, camera, mask path or None), in parallel (`parallel_map`): (images,
    masks (None when no frame has a mask), intrinsics)."""
    read = parallel_map(lambda f: read_frame(f[0], f[1], max_side, f[2]), frames)
    masks = [mask for _, mask, _ in read]
    return [image for image, _, _ in read], (masks if any(m is not None for m in masks) else None), \
        [k for _, _, k in read]
