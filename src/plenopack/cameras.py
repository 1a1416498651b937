"""Pinhole cameras: rays through pixels and projection of points (OpenCV convention).

Camera axes: x right, y down, z forward. Poses are camera-to-world 4x4 matrices. Intrinsics are
(fx, fy, cx, cy) in pixels, pixel (u, v) has its centre at (u + 0.5, v + 0.5).
"""

from __future__ import annotations

import numpy as np


def pixel_rays(c2w: np.ndarray, intrinsics, height: int, width: int,
               pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through pixel centres.

    c2w: (4, 4) or (3, 4) camera-to-world; intrinsics: (fx, fy, cx, cy).
    pixels: optional (M, 2) integer (u, v) = (column, row); default all pixels in row-major order.
    Returns origins (M, 3) and unit directions (M, 3), float32.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    if pixels is None:
        v, u = np.mgrid[0:height, 0:width]
        u = u.reshape(-1)
        v = v.reshape(-1)
    else:
        u, v = pixels[:, 0], pixels[:, 1]
    x = (u + 0.5 - cx) / fx
    y = (v + 0.5 - cy) / fy
    d_cam = np.stack([x, y, np.ones_like(x, dtype=np.float64)], axis=-1)
    rot = np.asarray(c2w, dtype=np.float64)[:3, :3]
    d = d_cam @ rot.T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(np.asarray(c2w, dtype=np.float64)[:3, 3], d.shape)
    return np.ascontiguousarray(o, dtype=np.float32), np.ascontiguousarray(d, dtype=np.float32)


def project(points: np.ndarray, c2w: np.ndarray, intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (M, 3) into a camera.

    Returns pixel coordinates (M, 2) as continuous (x, y) in pixel units (a pixel centre is at
    integer + 0.5) and the depth along the camera's z axis (M,). Points behind the camera have
    depth <= 0.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
    p = np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy], axis=-1)
    return uv, z


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world (4, 4) at ``eye`` looking at ``target``; ``up`` is world up (image y points away from it)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))  # right = forward x up
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # down (OpenCV: x right, y down, z forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def orbit_poses(n: int, radius: float, elevation_deg: float = 20.0, up=(0.0, 0.0, 1.0),
                target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(n, 4, 4) camera-to-world poses on a circle around ``target`` about the world ``up`` axis.

    The circle lies in the plane perpendicular to ``up`` (default +z, the unit cube's up axis after
    normalisation), at ``elevation_deg`` above it.
    """
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    a = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    el = np.deg2rad(elevation_deg)
    poses = []
    for t in np.linspace(0.0, 2.0 * np.pi, n, endpoint=False):
        eye = np.asarray(target) + radius * (np.cos(el) * (np.cos(t) * e1 + np.sin(t) * e2) + np.sin(el) * up)
        poses.append(look_at(eye, target, up))
    return np.stack(poses)
