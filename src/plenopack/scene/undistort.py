"""Undistort images of real lenses to pinhole images on load, with OpenCV.

`make_undistorter(model, params, width, height)` takes a COLMAP camera (model name and parameters in
COLMAP's order, principal point in COLMAP's convention: the centre of the top-left pixel is (0.5, 0.5), as
in plenopack) and returns an `Undistorter`: the new pinhole camera (`intrinsics`, `size`) and the functions
that resample an image or a mask to it (`cv2.initUndistortRectifyMap` / `cv2.fisheye.initUndistortRectifyMap`
then `cv2.remap`).

The new camera is chosen as COLMAP's image_undistorter does (with blank_pixels = 0): it keeps the focal
lengths and crops the image to the largest axis-aligned rectangle of valid pixels, so the result has no black
borders. That rectangle is found by undistorting every pixel centre on the image border with OpenCV
(`cv2.undistortPoints`, `cv2.fisheye.undistortPoints`, iterated to convergence). If it would make the image more than
``MAX_SCALE`` times larger along a side (wide fisheyes), the focal lengths shrink to stay within that.

Pixel centres: OpenCV puts them at integer coordinates, COLMAP and plenopack at +0.5, so
``cx_opencv = cx - 0.5`` on the way in and ``cx = cx_opencv + 0.5`` on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from plenopack.errors import PlenopackError

MAX_SCALE = 2.0  # largest growth of a side of the undistorted image (COLMAP's max_scale default)
_POINT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)


@dataclass(frozen=True)
class CameraModel:
    """A COLMAP camera model: its parameters are (f, cx, cy, d...) when ``single_focal``, else
    (fx, fy, cx, cy, d...), with d the distortion coefficients in OpenCV's order: (k1, k2, p1, p2[, k3, k4,
    k5, k6]) for the perspective models, (k1, k2, k3, k4) for the fisheye ones (missing ones are zero)."""

    num_params: int
    single_focal: bool
    fisheye: bool

    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fx, fy, cx, cy) and OpenCV's distortion vector (at least 4 coefficients)."""
        if self.single_focal:
            k, dist = np.array([params[0], params[0], params[1], params[2]]), params[3:]
        else:
            k, dist = np.array(params[:4]), params[4:]
        return k, np.concatenate([dist, np.zeros(max(0, 4 - len(dist)))])


MODELS: dict[str, CameraModel] = {
    "SIMPLE_PINHOLE": CameraModel(3, True, False),
    "PINHOLE": CameraModel(4, False, False),
    "SIMPLE_RADIAL": CameraModel(4, True, False),  # k
    "RADIAL": CameraModel(5, True, False),  # k1, k2
    "OPENCV": CameraModel(8, False, False),  # k1, k2, p1, p2
    "FULL_OPENCV": CameraModel(12, False, False),  # k1, k2, p1, p2, k3, k4, k5, k6
    "OPENCV_FISHEYE": CameraModel(8, False, True),  # k1, k2, k3, k4
    "SIMPLE_RADIAL_FISHEYE": CameraModel(4, True, True),  # k
    "RADIAL_FISHEYE": CameraModel(5, True, True),  # k1, k2
}


def _camera_matrix(fx: float, fy: float, cx_cv: float, cy_cv: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx_cv], [0.0, fy, cy_cv], [0.0, 0.0, 1.0]])


def _border_pixel_centres(width: int, height: int) -> dict[str, np.ndarray]:
    """Centres of the outermost pixels, OpenCV coordinates, per side."""
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    return {
        "left": np.stack([np.zeros_like(ys), ys], -1), "right": np.stack([np.full_like(ys, width - 1), ys], -1),
        "top": np.stack([xs, np.zeros_like(xs)], -1), "bottom": np.stack([xs, np.full_like(xs, height - 1)], -1),
    }


@dataclass
class Undistorter:
    """Maps images of one distorted camera to a pinhole camera whose image holds only valid pixels.

    ``intrinsics`` (fx, fy, cx, cy) and ``size`` (height, width) describe the new pinhole camera in
    plenopack's convention. An identity undistorter (no distortion) returns images unchanged.
    """

    model: str
    source_size: tuple[int, int]  # (height, width) of the distorted images
    size: tuple[int, int]  # (height, width) of the undistorted images
    intrinsics: np.ndarray  # (4,) new pinhole fx, fy, cx, cy, pixel centres at +0.5
    _maps: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def is_identity(self) -> bool:
        return self._maps is None

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(map_x, map_y): for each new pixel, where it samples the source image (OpenCV pixel coordinates)."""
        return self._maps

    def _check(self, array: np.ndarray) -> None:
        if array.shape[:2] != self.source_size:
            raise PlenopackError(f"image of size {array.shape[:2]} given to an undistorter for {self.source_size}")

    def image(self, image: np.ndarray) -> np.ndarray:
        """Undistort an image (H, W[, C], uint8 or float32) with bilinear interpolation."""
        self._check(image)
        if self._maps is None:
            return image
        return cv2.remap(image, *self._maps, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def mask(self, mask: np.ndarray, interpolation: str = "linear") -> np.ndarray:
        """Undistort a mask (H, W) with ``"linear"`` or ``"nearest"`` interpolation."""
        self._check(mask)
        if self._maps is None:
            return mask
        flag = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
        return cv2.remap(mask, *self._maps, interpolation=flag, borderMode=cv2.BORDER_REPLICATE)


def checked_model(model: str, params: Sequence[float], where: str | Path | None = None) -> tuple[CameraModel, np.ndarray]:
    """The model's `CameraModel` and its parameters as float64, or one error naming ``where``."""
    if model not in MODELS:
        raise PlenopackError(f"camera model {model} is not supported (expected one of {', '.join(MODELS)})", where)
    spec = MODELS[model]
    p = np.array(params, dtype=np.float64).reshape(-1)
    if p.shape != (spec.num_params,) or not np.all(np.isfinite(p)):
        raise PlenopackError(f"{model} needs {spec.num_params} finite parameters, got {p.tolist()}", where)
    return spec, p


def scale_camera_params(model: str, params: Sequence[float], old_hw: tuple[int, int], new_hw: tuple[int, int],
                        where: str | Path | None = None) -> np.ndarray:
    """COLMAP parameters of the same lens for images resized from old (H, W) to new (H, W).

    Focal lengths and principal point scale with the image (pixel-edge convention); distortion
    coefficients act on normalised coordinates and stay.
    """
    spec, p = checked_model(model, params, where)
    sx, sy = new_hw[1] / old_hw[1], new_hw[0] / old_hw[0]
    if spec.single_focal:
        if abs(sx - sy) > 1e-3 * max(sx, sy):
            raise PlenopackError(f"{model} has one focal length but the images are resized anisotropically "
                                 f"({old_hw[1]}x{old_hw[0]} -> {new_hw[1]}x{new_hw[0]})", where)
        p[:3] *= (sx, sx, sy)
    else:
        p[:4] *= (sx, sy, sx, sy)
    return p


def _undistort_points(pixels: np.ndarray, k_cv: np.ndarray, dist: np.ndarray, fisheye: bool, model: str,
                      where) -> np.ndarray:
    """Normalised pinhole coordinates (N, 2) of distorted pixels (N, 2, OpenCV coordinates), checked by
    distorting them back: the lens model must be invertible there (a fisheye beyond 180 degrees is not)."""
    pts = pixels[:, None, :]
    zero = np.zeros(3)
    if fisheye:
        und = cv2.fisheye.undistortPoints(pts, k_cv, dist, criteria=_POINT_CRITERIA)
        back = cv2.fisheye.distortPoints(und, k_cv, dist)
    else:
        und = cv2.undistortPoints(pts, k_cv, dist, criteria=_POINT_CRITERIA)
        rays = np.concatenate([und.reshape(-1, 2), np.ones((len(pixels), 1))], axis=1)
        back = cv2.projectPoints(rays, zero, zero, k_cv, dist)[0]
    error = np.abs(back.reshape(-1, 2) - pixels).max(initial=0.0)
    if not np.isfinite(error) or error > 0.01:
        raise PlenopackError(f"{model} distortion {np.round(dist, 6).tolist()} cannot be inverted at the image "
                             f"border (off by {error:.3g} px): not a valid lens model for this image size", where)
    return und.reshape(-1, 2)


def make_undistorter(model: str, params: Sequence[float], width: int, height: int,
                     where: str | Path | None = None) -> Undistorter:
    """The `Undistorter` of a COLMAP camera (see the module docstring); errors name ``where`` (the camera's file)."""
    spec, p = checked_model(model, params, where)
    k, dist = spec.split(p)
    fx, fy, cx, cy = (float(v) for v in k)
    if fx <= 0 or fy <= 0:
        raise PlenopackError(f"{model} camera has non-positive focal length {fx, fy}", where)
    if not spec.fisheye and not np.any(dist):
        return Undistorter(model, (height, width), (height, width), np.array([fx, fy, cx, cy]))
    k_cv = _camera_matrix(fx, fy, cx - 0.5, cy - 0.5)
    sides = _border_pixel_centres(width, height)
    normalised = {side: _undistort_points(pts, k_cv, dist, spec.fisheye, model, where) for side, pts in sides.items()}
    left, right = normalised["left"][:, 0].max(), normalised["right"][:, 0].min()
    top, bottom = normalised["top"][:, 1].max(), normalised["bottom"][:, 1].min()
    if not (np.isfinite([left, right, top, bottom]).all() and left < 0 < right and top < 0 < bottom):
        raise PlenopackError(f"{model} distortion {dist.tolist()} leaves no valid pinhole image "
                             f"(undistorted border x [{left:.3g}, {right:.3g}], y [{top:.3g}, {bottom:.3g}])", where)
    # the new image spans floor(f * extent) + 1 pixels along each side
    shrink = min(1.0, (MAX_SCALE * width - 1) / (fx * (right - left)), (MAX_SCALE * height - 1) / (fy * (bottom - top)))
    new_fx, new_fy = fx * shrink, fy * shrink
    new_w = int(np.floor(new_fx * (right - left) + 1e-9)) + 1
    new_h = int(np.floor(new_fy * (bottom - top) + 1e-9)) + 1
    new_cx_cv, new_cy_cv = -new_fx * left, -new_fy * top
    new_k = _camera_matrix(new_fx, new_fy, new_cx_cv, new_cy_cv)
    if spec.fisheye:
        maps = cv2.fisheye.initUndistortRectifyMap(k_cv, dist, np.eye(3), new_k, (new_w, new_h), cv2.CV_32FC1)
    else:
        maps = cv2.initUndistortRectifyMap(k_cv, dist, None, new_k, (new_w, new_h), cv2.CV_32FC1)
    return Undistorter(model, (height, width), (new_h, new_w),
                       np.array([new_fx, new_fy, new_cx_cv + 0.5, new_cy_cv + 0.5]), tuple(maps))
