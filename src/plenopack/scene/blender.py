"""NeRF-synthetic (Blender) captures: transforms_{train,val,test}.json + RGBA PNGs.

Cameras are Blender/OpenGL (x right, y up, z back) and are flipped to OpenCV. The alpha channel becomes
the foreground mask and the colour is composited on ``background`` (default white, as the NeRF papers).
Train = transforms_train.json; test = transforms_test.json (transforms_val.json is ignored unless
``use_val=True``, which appends it to the test split). The split comes from the files, so there is no
``test_every``; ``object_centric`` and ``capture_kind`` are as for every loader (`plenopack.scene.common`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.kernels.capture import composite_rgba
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, finish_scene
from plenopack.scene.io import decode_image, fitted_size, image_size, parallel_map, resize_pixels, scale_intrinsics

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def _read_split(root: Path, split: str):
    path = root / f"transforms_{split}.json"
    try:
        meta = json.loads(path.read_text())
        angle = float(meta["camera_angle_x"])
        frames = meta["frames"]
        poses = [np.asarray(f["transform_matrix"], dtype=np.float64) for f in frames]
        files = [f["file_path"] for f in frames]
    except FileNotFoundError:
        raise PlenopackError("file is missing", path) from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PlenopackError(f"malformed transforms file ({exc.__class__.__name__}: {exc})", path) from None
    for p in poses:
        if p.shape != (4, 4):
            raise PlenopackError(f"transform_matrix must be 4x4, got {p.shape}", path)
    return angle, files, poses


def _image_path(root: Path, file_path: str) -> Path:
    p = (root / file_path).resolve()
    return p if p.suffix else p.with_suffix(".png")


def load(root: Path, max_side: int = 800, background: tuple[float, float, float] | list[float] = (1.0, 1.0, 1.0),
         use_val: bool = False, cam_scale_factor: float = 1.5, visual_hull: bool = True,
         object_centric: bool | None = None, capture_kind: str | None = None) -> Scene:
    splits = ["train", "test"] + (["val"] if use_val else [])
    poses, intr, paths, sizes, split_of = [], [], [], [], []
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape != (3,):
        raise PlenopackError(f"background must be three numbers, got {background!r}", root)
    for split in splits:
        angle, files, split_poses = _read_split(root, split)
        for file_path, pose in zip(files, split_poses):
            path = _image_path(root, file_path)
            h, w = image_size(path)
            nh, nw = fitted_size(h, w, max_side)
            focal = 0.5 * w / np.tan(0.5 * angle)
            intr.append(scale_intrinsics(np.array([focal, focal, 0.5 * w, 0.5 * h]), (h, w), (nh, nw)))
            poses.append(pose @ OPENGL_TO_OPENCV)
            paths.append(path)
            sizes.append((nh, nw))
            split_of.append(split)
    if not paths:
        raise PlenopackError("no frames in the transforms files", root)

    def composited(frame: tuple[Path, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(RGB composited on the background, alpha) of one RGBA frame."""
        return composite_rgba(resize_pixels(decode_image(frame[0], "RGBA"), frame[1]), bg)

    images, masks = map(list, zip(*parallel_map(composited, zip(paths, sizes))))
    c2w = np.stack(poses)
    check_poses(c2w, [p.name for p in paths], root)
    split_of = np.array(split_of)
    options = dict(background=[float(c) for c in bg], use_val=use_val, cam_scale_factor=cam_scale_factor,
                   visual_hull=visual_hull)
    return finish_scene(
        name=root.name, root=root, fmt="blender", images=images, masks=masks, intrinsics=np.stack(intr),
        c2w_world=c2w, train_ids=np.flatnonzero(split_of == "train"), test_ids=np.flatnonzero(split_of != "train"),
        options=options, object_centric=object_centric, capture_kind=capture_kind,
        cam_scale_factor=cam_scale_factor, visual_hull=visual_hull, image_paths=paths, composited_on=bg,
    )
