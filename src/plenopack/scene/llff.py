"""LLFF captures: poses_bounds.npy + images/ (or images_N/) + optional masks/ (or masks_N/).

poses_bounds.npy is (N, 17): a 3x5 matrix per view, [R | t | (H, W, focal)] with R's columns the camera's
(down, right, back) axes in world coordinates and H, W, focal at full resolution, then near and far bounds.
Intrinsics are scaled by the actual image size over (H, W), so images_N/ needs no separate factor.
Masks are 8-bit greyscale, 255 = object. Every 8th view (i % 8 == 0, in sorted file order) is test.
Captures are treated as object captures (`object_centric`) unless ``object_centric=False``: then the scene
is normalised to fit the cameras and the near/far frusta (forward-facing scenes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, every_nth_split, finish_object_scene
from plenopack.scene.io import fitted_size, read_image, scale_intrinsics
from plenopack.scene.normalize import scene_centric

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
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)


def load(root: Path, max_side: int = 800, factor: int | None = None, test_every: int = 8,
         object_centric: bool = True, cam_scale_factor: float = 1.5, visual_hull: bool = True) -> Scene:
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

    mask_dir = _pick_folder(root, "masks", int(img_dir.name.split("_")[-1]) if "_" in img_dir.name else None)
    images, masks, intr = [], [] if mask_dir else None, []
    for i, f in enumerate(files):
        first = read_image(f)
        h, w = first.shape[:2]
        nh, nw = fitted_size(h, w, max_side)
        img = first if (nh, nw) == (h, w) else read_image(f, (nh, nw))
        images.append(img)
        full_h, full_w, focal = hwf[i]
        k_full = np.array([focal, focal, 0.5 * full_w, 0.5 * full_h])
        intr.append(scale_intrinsics(k_full, (full_h, full_w), (nh, nw)))
        if mask_dir is not None:
            mpath = next((mask_dir / (f.stem + s) for s in (".png", f.suffix, ".jpg") if (mask_dir / (f.stem + s)).is_file()),
                         mask_dir / (f.stem + ".png"))
            masks.append(read_image(mpath, (nh, nw), mode="L"))
    train, test = every_nth_split(len(files), test_every)
    near_far = pb[:, 15:17]
    if object_centric:
        return finish_object_scene(
            name=root.name, root=root, fmt="llff", images=images, masks=masks, intrinsics=np.stack(intr),
            c2w_world=c2w, train_ids=train, test_ids=test, cam_scale_factor=cam_scale_factor,
            visual_hull=visual_hull, near_far_world=near_far, image_paths=files,
        )
    centres = c2w[:, :3, 3]
    far_pts = centres + c2w[:, :3, 2] * near_far[:, 1:2]
    w2u = scene_centric(far_pts, up=-c2w[:, :3, 1].mean(0), cameras=centres)
    scene = finish_object_scene(
        name=root.name, root=root, fmt="llff", images=images, masks=masks, intrinsics=np.stack(intr),
        c2w_world=c2w, train_ids=train, test_ids=test, near_far_world=near_far, image_paths=files,
        world_to_unit=w2u,
    )
    scene.is_object_centric = False
    scene.normalisation = "scene-centric: cameras and far-bound frusta"
    return scene
