"""What lies behind the grid while fitting and evaluating: a constant colour, random colours (masked
scenes), or svox2's multi-sphere image (MSI) learnt jointly with the grid."""

from __future__ import annotations

import math

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.fit.config import FitConfig
from plenopack.grid import SphereBackground
from plenopack.scene.base import Scene


def background_mode(config: FitConfig, scene: Scene) -> str:
    """The constant-background mode of a fit: "random" where masks are used, else the configured colour."""
    if config.background == "auto":
        return "random" if scene.masks is not None and config.use_masks else "white"
    return config.background


def fixed_colour(mode: str) -> np.ndarray:
    """(3,) float32 colour of a constant background mode (random falls back to white)."""
    return np.array([0.0, 0.0, 0.0] if mode == "black" else [1.0, 1.0, 1.0], np.float32)


def turntable_axis(camera_centres: np.ndarray) -> np.ndarray:
    """(2, 3) float32 (unit axis, point) of a turntable capture, from the circle the camera centres trace
    around the turning object: the axis is the normal of their best-fit plane (oriented towards +z), the
    point the centre of the least-squares circle in that plane."""
    centres = np.asarray(camera_centres, np.float64)
    if len(centres) < 3:
        raise PlenopackError("a turntable background needs at least 3 training cameras")
    mean = centres.mean(axis=0)
    _, _, (e1, e2, axis) = np.linalg.svd(centres - mean)
    x, y = (centres - mean) @ e1, (centres - mean) @ e2
    (d, e, _), *_ = np.linalg.lstsq(np.stack([x, y, np.ones_like(x)], 1), -(x * x + y * y), rcond=None)
    point = mean - 0.5 * d * e1 - 0.5 * e * e2
    return np.stack([axis if axis[2] >= 0 else -axis, point]).astype(np.float32)


def init_background(config: FitConfig, camera_centres: np.ndarray | None = None) -> SphereBackground:
    """svox2-style MSI: ``msi_layers`` spheres from just outside the cube to ``msi_far``, uniform in 1/r;
    grey colour (raw 0) and a little density so that gradients flow through ReLU. With ``msi_frame``
    "turntable" the spheres are fixed to the room of a turntable capture (axis from ``camera_centres``)."""
    inner = 1.05 * math.sqrt(3.0)
    radii = 1.0 / np.linspace(1.0 / inner, 1.0 / config.msi_far, config.msi_layers)
    layers = np.zeros((config.msi_layers, config.msi_height, 2 * config.msi_height, 4), np.float32)
    layers[..., 3] = 0.5
    turntable = turntable_axis(camera_centres) if config.msi_frame == "turntable" else None  # "auto": world
    return SphereBackground(layers, radii.astype(np.float32), config.msi_brightness, turntable)


def eval_background(config: FitConfig, scene: Scene) -> tuple[float, float, float]:
    """Constant background colour the fitted grid is evaluated and rendered on."""
    if scene.composited_on is not None:
        return scene.composited_on
    return (0.0, 0.0, 0.0) if background_mode(config, scene) == "black" else (1.0, 1.0, 1.0)
