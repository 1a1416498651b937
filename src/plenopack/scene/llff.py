"""LLFF captures: poses_bounds.npy + images/ (or images_N/) + optional masks/ (or masks_N/).

poses_bounds.npy is (N, 17): a 3x5 matrix per view, [R | t | (H, W, focal)] with R's columns the camera's
(down, right, back) axes in world coordinates and H, W, focal at full resolution, then near and far bounds.
Intrinsics are scaled by the actual image size over (H, W), so images_N/ needs no separate factor.
Masks are 8-bit greyscale, 255 = object, found by `plenopack.scene.masks` in masks/ (or masks_N/ beside
images_N/) or beside the images as ``*_mask.*`` (never read as images). Every 8th view (i % 8 == 0, in
sorted file order) is test. The capture kind (`plenopack.scene.geometry`) picks the normalisation:
object-centric for turntables and orbits (ethiopianHead), scene-centric on the cameras and the far-bound
frusta for forward-facing scenes (fern); ``object_centric`` or ``capture_kind`` override.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, every_nth_split, finish_scene
from plenopack.scene.io import image_size, read_frames, scale_intrinsics
from plenopack.scene.masks import find_mask, is_mask_file, require_all_or_none
from plenopack.scene.undistort import make_undistorter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG"}


def _pick_folder(root: Path, stem: str, factor: int | None) -> Path | None:
    if factor:
        p = root / f"{stem}_{factor}"
        return p if p.is_dir() else None
    if (root / stem).is_dir():
        return root / stem
    candidates = sorted(root.glob(f"{stem}_*"), key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else 0)
    return candidates[0] if candidates else None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES and not is_mask_file(p))


def load(root: Path, max_side: int = 800, factor: int | None = None, test_every: int = 8,
         object_centric: bool | None = None, capture_kind: str | None = None, cam_scale_factor: float = 1.5,
         visual_hull: bool = True, use_masks: bool = True) -> Scene:
    pb_path = root / "poses_bounds.npy"
    try:
        pb = np.load(pb_path, allow_pickle=False)
    except FileNotFoundError:
        raise PlenopackError("file is missing", pb_path) from None
    except (ValueError, OSError) as exc:
        raise PlenopackError(f"cannot read ({exc})", pb_path) from None
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise PlenopackError(f"expected an (N, 17) array, got shape {pb.shape}", pb_path)
    img_dir = _pick_folder(root, "images", factor)
    if img_dir is None:
        raise PlenopackError("no images/ or images_N/ folder", root)
    files = _image_files(img_dir)
    if len(files) != pb.shape[0]:
        raise PlenopackError(f"{len(files)} images but {pb.shape[0]} poses in poses_bounds.npy", img_dir)
    mat = pb[:, :15].reshape(-1, 3, 5)
    hwf = mat[:, :, 4]
    down, right, back = mat[:, :, 0], mat[:, :, 1], mat[:, :, 2]
    c2w = np.tile(np.eye(4), (len(pb), 1, 1))
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = down
    c2w[:, :3, 2] = -back
    c2w[:, :3, 3] = mat[:, :, 3]
    check_poses(c2w, [f.name for f in files], pb_path)
    if not np.all(np.isfinite(pb[:, 15:])) or np.any(hwf <= 0):
        raise PlenopackError("non-finite bounds or non-positive H, W, focal", pb_path)

    suffix = img_dir.name.rpartition("_")[2]
    found_factor = int(suffix) if img_dir.name != "images" and suffix.isdigit() else None
    mask_dir = _pick_folder(root, "masks", found_factor)
    found = [find_mask(f, [mask_dir] if mask_dir else []) if use_masks else None for f in files]
    mask_paths = require_all_or_none(files, found, img_dir)
    jobs = []
    for i, f in enumerate(files):
        h, w = image_size(f)
        full_h, full_w, focal = hwf[i]
        k = scale_intrinsics(np.array([focal, focal, 0.5 * full_w, 0.5 * full_h]), (full_h, full_w), (h, w))
        jobs.append((f, make_undistorter("PINHOLE", k, w, h), mask_paths[i] if mask_paths else None))
    images, masks, intr = read_frames(jobs, max_side)
    train, test = every_nth_split(len(files), test_every)
    near_far = pb[:, 15:17]
    far_points = c2w[:, :3, 3] + c2w[:, :3, 2] * near_far[:, 1:2]
    options = dict(factor=found_factor, test_every=test_every, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
                   use_masks=use_masks)
    return finish_scene(
        name=root.name, root=root, fmt="llff", images=images, masks=masks, intrinsics=np.stack(intr),
        c2w_world=c2w, train_ids=train, test_ids=test, options=options, object_centric=object_centric,
        capture_kind=capture_kind, cam_scale_factor=cam_scale_factor, visual_hull=visual_hull,
        scene_points=far_points, scene_points_label="far-bound frusta", near_far_world=near_far, image_paths=files,
    )
