"""CO3D captures (v1 and v2 layouts): one sequence folder = one scene.

Layout: ``<root>/<category>/frame_annotations.jgz`` (gzipped JSON list of frames),
``<root>/<category>/sequence_annotations.jgz``, and per sequence ``<root>/<category>/<sequence>/images/`` and
``masks/``; frame paths in the annotations are relative to ``<root>``. Load a sequence by its folder.

Cameras are PyTorch3D's: X_cam = X_world @ R + T (row vectors), camera axes +x left, +y up, +z forward;
converted to OpenCV by diag(-1, -1, 1). Intrinsics are NDC: ``ndc_norm_image_bounds`` (v1: half = (W/2, H/2)
per axis) or ``ndc_isotropic`` (v2: half = min(H, W)/2 for both); in pixels f = f_ndc * half and
p = -p_ndc * half + (W/2, H/2).
As PeRFception: frames whose size is off the median by more than 10%, duplicate poses, and cameras more than
5x the median distance from the median camera are dropped; every 10th remaining frame is test; object-centric
normalisation for object captures (the capture kind, `plenopack.scene.geometry`), which the masks' visual hull
tightens unless ``visual_hull=False``. Masks are the annotated ``mask.path``, else looked up in the sequence's
``masks/`` (`plenopack.scene.masks`); some frames with masks and others without is an error.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, every_nth_split, finish_scene
from plenopack.scene.io import fitted_size, parallel_map, read_image, scale_intrinsics
from plenopack.scene.masks import find_mask, require_all_or_none

P3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


def read_jgz(path: Path):
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise PlenopackError("file is missing", path) from None
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlenopackError(f"cannot read annotations ({exc.__class__.__name__})", path) from None


def ndc_to_pixels(focal, principal, fmt: str, height: int, width: int) -> np.ndarray:
    """(fx, fy, cx, cy) in pixels from CO3D's NDC focal length and principal point."""
    if fmt == "ndc_isotropic":
        half = np.array([min(height, width) / 2.0] * 2)
    elif fmt == "ndc_norm_image_bounds":
        half = np.array([width / 2.0, height / 2.0])
    else:
        raise PlenopackError(f"unknown intrinsics_format {fmt!r}")
    f = np.asarray(focal, np.float64) * half
    p = -np.asarray(principal, np.float64) * half + np.array([width / 2.0, height / 2.0])
    return np.array([f[0], f[1], p[0], p[1]])


def viewpoint_to_c2w(R, T) -> np.ndarray:
    """OpenCV camera-to-world from a PyTorch3D viewpoint (R, T)."""
    R = np.asarray(R, np.float64)
    T = np.asarray(T, np.float64)
    w2c = np.eye(4)
    w2c[:3, :3] = P3D_TO_OPENCV @ R.T
    w2c[:3, 3] = P3D_TO_OPENCV @ T
    return np.linalg.inv(w2c)


def load(root: Path, max_side: int = 800, test_every: int = 10, cam_scale_factor: float = 1.5,
         visual_hull: bool = True, use_masks: bool = True, object_centric: bool | None = None,
         capture_kind: str | None = None) -> Scene:
    seq_dir = root
    category_dir = seq_dir.parent
    dataset_root = category_dir.parent
    frames_path = category_dir / "frame_annotations.jgz"
    frames = read_jgz(frames_path)
    if not isinstance(frames, list):
        raise PlenopackError("expected a list of frame annotations", frames_path)
    try:
        frames = sorted((f for f in frames if f["sequence_name"] == seq_dir.name), key=lambda f: f["frame_number"])
    except (KeyError, TypeError):
        raise PlenopackError("frame annotation without sequence_name/frame_number", frames_path) from None
    if not frames:
        raise PlenopackError(f"no frames of sequence {seq_dir.name!r} in the annotations", frames_path)
    try:
        sizes = np.array([f["image"]["size"] for f in frames], np.float64)  # (H, W)
        c2w = np.stack([viewpoint_to_c2w(f["viewpoint"]["R"], f["viewpoint"]["T"]) for f in frames])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlenopackError(f"malformed frame annotation ({exc})", frames_path) from None
    names = [Path(f["image"]["path"]).name for f in frames]
    check_poses(c2w, names, frames_path)
    # PeRFception's filters: odd-sized frames, duplicate poses, far-away cameras
    median_size = np.median(sizes, axis=0)
    keep = np.all(np.abs(sizes - median_size) <= 0.1 * median_size, axis=1)
    _, first = np.unique(np.round(c2w[:, :3, :], 6).reshape(len(c2w), -1), axis=0, return_index=True)
    unique = np.zeros(len(c2w), bool)
    unique[first] = True
    keep &= unique
    centres = c2w[:, :3, 3]
    med = np.median(centres[keep], axis=0)
    dist = np.linalg.norm(centres - med, axis=1)
    keep &= dist <= 5 * np.median(dist[keep])
    frames = [f for f, k in zip(frames, keep) if k]
    c2w = c2w[keep]
    paths = [dataset_root / f["image"]["path"] for f in frames]
    found = []
    for f, path in zip(frames, paths):
        annotated = (f.get("mask") or {}).get("path")
        found.append(None if not use_masks else dataset_root / annotated if annotated
                     else find_mask(path, [seq_dir / "masks"]))
    mask_paths = require_all_or_none(paths, found, frames_path)
    intr, sizes = [], []
    for f in frames:
        h, w = (int(v) for v in f["image"]["size"])
        sizes.append(fitted_size(h, w, max_side))
        vp = f["viewpoint"]
        k = ndc_to_pixels(vp["focal_length"], vp["principal_point"], vp.get("intrinsics_format", "ndc_norm_image_bounds"), h, w)
        intr.append(scale_intrinsics(k, (h, w), sizes[-1]))
    images = parallel_map(lambda i: read_image(paths[i], sizes[i]), range(len(frames)))
    masks = parallel_map(lambda i: read_image(mask_paths[i], sizes[i], mode="L"),
                         range(len(frames))) if mask_paths else None
    train, test = every_nth_split(len(images), test_every)
    options = dict(test_every=test_every, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
                   use_masks=use_masks)
    return finish_scene(
        name=seq_dir.name, root=seq_dir, fmt="co3d", images=images, masks=masks, intrinsics=np.stack(intr),
        c2w_world=c2w, train_ids=train, test_ids=test, options=options, object_centric=object_centric,
        capture_kind=capture_kind, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
        category=category_dir.name, image_paths=paths,
    )
