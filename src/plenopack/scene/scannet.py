"""ScanNet exports (the SensReader output): ``color/<i>.jpg``, ``pose/<i>.txt`` (4x4 camera-to-world, OpenCV
axes, metres), ``intrinsic/intrinsic_color.txt`` (4x4 K of the colour images), optional ``depth/<i>.png``
(uint16 millimetres, with ``intrinsic/intrinsic_depth.txt``).

Frames whose pose is not finite (ScanNet marks lost tracking with -inf) are dropped; ``frame_step`` keeps every
n-th frame (ScanNet streams are 30 fps). Every 10th kept frame is test. Rooms are scene captures
(``capture_kind="inside-out"`` unless given; None detects it from the poses): the scene is normalised to fit the
camera centres and the back-projected depth points (a subsample) into the cube, or, without depth, the camera
centres and points ``assumed_depth`` metres in front of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import every_nth_split, finish_scene
from plenopack.scene.io import fitted_size, image_size, read_image, scale_intrinsics


def read_matrix(path: Path) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64)
    except FileNotFoundError:
        raise PlenopackError("file is missing", path) from None
    except ValueError as exc:
        raise PlenopackError(f"not a numeric matrix ({exc})", path) from None
    if m.shape != (4, 4):
        raise PlenopackError(f"expected a 4x4 matrix, got shape {m.shape}", path)
    return m


def _frame_key(p: Path):
    return (0, int(p.stem)) if p.stem.isdigit() else (1, p.stem)


def _depth_points(depth_path: Path, k_depth: np.ndarray, c2w: np.ndarray, stride: int = 16) -> np.ndarray:
    with Image.open(depth_path) as im:
        d = np.asarray(im, dtype=np.float64)[::stride, ::stride] / 1000.0
    v, u = np.mgrid[0:d.shape[0], 0:d.shape[1]] * stride
    ok = d > 0
    x = (u[ok] + 0.5 - k_depth[0, 2]) / k_depth[0, 0] * d[ok]
    y = (v[ok] + 0.5 - k_depth[1, 2]) / k_depth[1, 1] * d[ok]
    pts = np.stack([x, y, d[ok]], -1)
    return pts @ c2w[:3, :3].T + c2w[:3, 3]


def load(root: Path, max_side: int = 800, test_every: int = 10, frame_step: int = 1,
         assumed_depth: float = 2.0, object_centric: bool | None = None, capture_kind: str | None = "inside-out",
         cam_scale_factor: float = 1.5) -> Scene:
    color_dir, pose_dir = root / "color", root / "pose"
    if not color_dir.is_dir() or not pose_dir.is_dir():
        raise PlenopackError("expected color/ and pose/ folders", root)
    k_color = read_matrix(root / "intrinsic" / "intrinsic_color.txt")
    files = sorted((p for p in color_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")), key=_frame_key)
    if not files:
        raise PlenopackError("no colour frames", color_dir)
    frames = []
    for f in files[::max(1, frame_step)]:
        pose = read_matrix(pose_dir / f"{f.stem}.txt")
        if np.all(np.isfinite(pose)):
            frames.append((f, pose))
    if not frames:
        raise PlenopackError("every pose is non-finite", pose_dir)
    images, intr, poses, points = [], [], [], []
    depth_dir = root / "depth"
    k_depth = read_matrix(root / "intrinsic" / "intrinsic_depth.txt") if depth_dir.is_dir() else None
    for f, pose in frames:
        h, w = image_size(f)
        nh, nw = fitted_size(h, w, max_side)
        images.append(read_image(f, (nh, nw)))
        intr.append(scale_intrinsics(np.array([k_color[0, 0], k_color[1, 1], k_color[0, 2], k_color[1, 2]]), (h, w), (nh, nw)))
        poses.append(pose)
        dpath = depth_dir / f"{f.stem}.png"
        if k_depth is not None and dpath.exists():
            points.append(_depth_points(dpath, k_depth, pose))
        else:
            points.append(pose[:3, 3] + assumed_depth * pose[:3, 2])
    c2w = np.stack(poses)
    train, test = every_nth_split(len(images), test_every)
    options = dict(test_every=test_every, frame_step=frame_step, assumed_depth=assumed_depth,
                   cam_scale_factor=cam_scale_factor)
    label = "depth points" if k_depth is not None else f"points {assumed_depth} m ahead"
    return finish_scene(name=root.name, root=root, fmt="scannet", images=images, masks=None,
                        intrinsics=np.stack(intr), c2w_world=c2w, train_ids=train, test_ids=test, options=options,
                        object_centric=object_centric, capture_kind=capture_kind, cam_scale_factor=cam_scale_factor,
                        scene_points=np.concatenate([np.atleast_2d(p) for p in points]), scene_points_label=label,
                        image_paths=[f for f, _ in frames])
