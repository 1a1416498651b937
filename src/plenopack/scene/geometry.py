"""What kind of capture a set of cameras is, from the poses alone.

`detect_capture_kind(c2w, intrinsics)` returns one of `CAPTURE_KINDS`:

- ``"forward-facing"``: the cameras look roughly the same way (LLFF's fern): every optical axis is within
  ``max(20 deg, half the narrowest field of view)`` of the mean viewing direction, or the axes do not meet in
  front of the cameras while still pointing one way.
- ``"turntable"``: a fixed camera and an object turning in front of it (ethiopianHead). In the object's frame
  the camera centres lie on one circle (plane and radius residuals below 5% of the radius), at one distance
  from the common focus of the optical axes (spread below 5%) and one elevation above the circle's plane
  (spread below 2 deg), over at least 90 deg of azimuth. Poses alone cannot tell this from a drone flying a
  perfect circle; the loader option ``capture_kind`` overrides.
- ``"object-orbit"``: cameras all around an object: their azimuths about the mean camera up, seen from the
  focus, cover more than 270 deg (the largest gap is under 90 deg).
- ``"object-arc"``: cameras looking at a common focus from a partial arc (the hand-held fox).
- ``"inside-out"``: cameras inside a scene looking outwards in many directions (ScanNet rooms).

Loaders normalise object-orbit, object-arc and turntable captures object-centrically, forward-facing and
inside-out ones scene-centrically (see `plenopack.scene.normalize`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from plenopack.scene.normalize import focus_point

CAPTURE_KINDS = ("object-orbit", "object-arc", "turntable", "forward-facing", "inside-out")
OBJECT_KINDS = ("object-orbit", "object-arc", "turntable")
BACKGROUND_FRAME = {"turntable": "turntable"}  # kind -> background frame; every other kind: "world"

FORWARD_SPREAD_DEG = 20.0
ORBIT_COVERAGE_DEG = 270.0
TURNTABLE_MIN_COVERAGE_DEG = 90.0
TURNTABLE_REL_TOL = 0.05
TURNTABLE_ELEVATION_TOL_DEG = 2.0


@dataclass(frozen=True)
class CaptureGeometry:
    """The measurements `detect_capture_kind` decides on (angles in degrees, lengths relative)."""

    axis_spread_deg: float  # largest angle between an optical axis and the mean viewing direction
    forward_limit_deg: float  # axis spread under which a capture is forward-facing
    converging: bool  # the optical axes meet in front of (nearly) every camera
    azimuth_coverage_deg: float  # 360 minus the largest azimuth gap between cameras, seen from the focus
    circle_residual: float  # max distance off the best-fit circle (in and out of its plane) / its radius
    distance_spread: float  # std / mean of the camera distances to the focus
    elevation_spread_deg: float  # std of the cameras' elevation above the circle's plane, seen from the focus

    def as_dict(self) -> dict:
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else round(float(v), 4)) for k, v in asdict(self).items()}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _azimuth_coverage(directions: np.ndarray, up: np.ndarray) -> float:
    """360 minus the largest gap (degrees) between the azimuths of unit ``directions`` about ``up``."""
    e1 = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = np.sort(np.degrees(np.arctan2(directions @ e2, directions @ e1)))
    gaps = np.diff(np.concatenate([az, az[:1] + 360.0]))
    return float(360.0 - gaps.max())


def _circle_fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Best-fit circle of 3D points: (centre, plane normal, radius, max residual / radius).

    The plane by SVD, the circle in it by the algebraic (Kasa) least-squares fit; the residual combines the
    distance off the plane and off the circle within it.
    """
    mean = points.mean(axis=0)
    centred = points - mean
    _, _, vt = np.linalg.svd(centred)
    e1, e2, normal = vt
    xy = np.stack([centred @ e1, centred @ e2], axis=-1)
    a = np.concatenate([2.0 * xy, np.ones((len(xy), 1))], axis=1)
    sol = np.linalg.lstsq(a, (xy ** 2).sum(axis=1), rcond=None)[0]
    centre_2d = sol[:2]
    radius = float(np.sqrt(max(sol[2] + centre_2d @ centre_2d, 0.0)))
    if radius <= 0:
        return mean, normal, 0.0, np.inf
    off_circle = np.abs(np.linalg.norm(xy - centre_2d, axis=1) - radius)
    off_plane = np.abs(centred @ normal)
    residual = float(np.hypot(off_circle, off_plane).max() / radius)
    return mean + centre_2d[0] * e1 + centre_2d[1] * e2, normal, radius, residual


def narrowest_half_fov_deg(intrinsics: np.ndarray | None) -> float:
    """Half of the smallest field of view (degrees) over cameras and axes, with the image spanning 2 cx by
    2 cy pixels (the principal point near the centre); 0 when intrinsics are unknown."""
    if intrinsics is None:
        return 0.0
    k = np.asarray(intrinsics, dtype=np.float64).reshape(-1, 4)
    return float(np.degrees(np.arctan(np.minimum(k[:, 2] / k[:, 0], k[:, 3] / k[:, 1]))).min())


def measure_capture(c2w: np.ndarray, intrinsics: np.ndarray | None = None) -> CaptureGeometry:
    """The measurements of `CaptureGeometry` for OpenCV camera-to-world poses (N, 4, 4)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    centres = c2w[:, :3, 3]
    axes = _unit(c2w[:, :3, 2])
    mean_axis = axes.mean(axis=0)
    spread = float(np.degrees(np.arccos(np.clip(axes @ _unit(mean_axis), -1.0, 1.0))).max()) \
        if np.linalg.norm(mean_axis) > 1e-9 else 180.0
    focus = focus_point(centres, axes)
    depth = np.sum((focus - centres) * axes, axis=1)
    extent = np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()
    converging = bool(np.mean(depth > 0.1 * max(extent, 1e-12)) >= 0.9)
    to_cameras = centres - focus
    dist = np.linalg.norm(to_cameras, axis=1)
    directions = to_cameras / np.maximum(dist, 1e-12)[:, None]
    up = -c2w[:, :3, 1].mean(axis=0)
    up = _unit(up) if np.linalg.norm(up) > 1e-9 else np.array([0.0, 0.0, 1.0])
    coverage = _azimuth_coverage(directions, up)
    if len(centres) >= 4:
        _, normal, _, residual = _circle_fit(centres)
        elevation = np.degrees(np.arcsin(np.clip(directions @ normal, -1.0, 1.0)))
        elevation_spread = float(elevation.std())
    else:
        residual, elevation_spread = np.inf, np.inf
    return CaptureGeometry(
        axis_spread_deg=spread, forward_limit_deg=max(FORWARD_SPREAD_DEG, narrowest_half_fov_deg(intrinsics)),
        converging=converging, azimuth_coverage_deg=coverage, circle_residual=residual,
        distance_spread=float(dist.std() / max(dist.mean(), 1e-12)), elevation_spread_deg=elevation_spread)


def classify(g: CaptureGeometry) -> str:
    """The capture kind from its measurements (rules in the module docstring)."""
    if g.axis_spread_deg < g.forward_limit_deg:
        return "forward-facing"
    if not g.converging:
        return "forward-facing" if g.axis_spread_deg < 90.0 else "inside-out"
    if (g.circle_residual < TURNTABLE_REL_TOL and g.distance_spread < TURNTABLE_REL_TOL
            and g.elevation_spread_deg < TURNTABLE_ELEVATION_TOL_DEG
            and g.azimuth_coverage_deg >= TURNTABLE_MIN_COVERAGE_DEG):
        return "turntable"
    return "object-orbit" if g.azimuth_coverage_deg > ORBIT_COVERAGE_DEG else "object-arc"


def detect_capture_kind(c2w: np.ndarray, intrinsics: np.ndarray | None = None) -> str:
    """One of `CAPTURE_KINDS` for OpenCV camera-to-world poses (N, 4, 4) and (N, 4) intrinsics (optional)."""
    return classify(measure_capture(c2w, intrinsics))

