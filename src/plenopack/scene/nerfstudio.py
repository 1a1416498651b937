"""nerfstudio and instant-ngp captures: one ``transforms.json`` beside the images (hand-held phone captures).

Intrinsics are top-level keys that any frame may override: ``fl_x``, ``fl_y`` (or ``camera_angle_x``,
``camera_angle_y``, radians), ``cx``, ``cy`` (pixel centres at +0.5, as COLMAP), ``w``, ``h`` (the images' size
when absent), ``camera_model`` (``OPENCV``, the default; ``OPENCV_FISHEYE``, or instant-ngp's
``"is_fisheye": true``; ``PINHOLE``) and the distortion keys ``k1 k2 k3 k4 p1 p2``. Distorted images are
undistorted on load to pinhole images cropped to valid pixels (`plenopack.scene.undistort`). ``k4`` belongs
to the fisheye model only (nerfstudio's r^8 term for OPENCV has no OpenCV equivalent).

Frames give ``file_path`` (relative to the json's folder, with or without an extension, "./images/x.jpg"
too), ``transform_matrix`` (camera-to-world, OpenGL axes; multiplied by diag(1, -1, -1, 1) to OpenCV), and
optionally ``mask_path`` and ``sharpness``. Masks are otherwise looked up as `plenopack.scene.masks` says
(``masks/``). instant-ngp's ``aabb_scale``, ``scale``, ``offset`` (and nerfstudio's ``applied_transform``,
``aabb``) are recorded in ``Scene.source_info`` but not used: plenopack normalises itself.

Split: frames sorted by ``file_path``; nerfstudio's ``train_filenames`` / ``val_filenames`` /
``test_filenames`` when present (val and test views are test views; frames in no list are left out), else
every ``test_every``-th frame (index % 8 == 0) is a test view. ``drop_blurry`` then drops blurry frames from
training, never from the test views: those whose sharpness (the file's ``sharpness``, else the variance of
the Laplacian of the loaded image, as instant-ngp's colmap2nerf measures it) is below ``drop_blurry`` times
the median of the training frames. The default 0.5 drops only clear outliers: motion blur divides this
measure several-fold, while sharp frames of one capture stay within about 2x of each other (the fox: 0.58x to
2.0x its median), and a blurred training view teaches the grid a blurred scene that costs PSNR on the sharp
test views. ``drop_blurry=false`` keeps every frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.common import check_poses, every_nth_split, finish_scene
from plenopack.scene.io import image_size, read_frames
from plenopack.scene.masks import find_mask, require_all_or_none
from plenopack.scene.undistort import Undistorter, make_undistorter, scale_camera_params

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "k1", "k2", "k3", "k4",
                  "p1", "p2", "camera_model", "is_fisheye")
RECORDED_KEYS = ("aabb_scale", "scale", "offset", "aabb", "applied_transform")
SPLIT_KEYS = {"train_filenames": "train", "val_filenames": "test", "test_filenames": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".webp", ".tif", ".tiff")
DEFAULT_DROP_BLURRY = 0.5
MAX_NAMES_SHOWN = 5


def _shorten(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else "")


def _key(file_path: str) -> str:
    """A file_path as a comparable relative path ("./images/a.jpg" -> "images/a.jpg")."""
    return os.path.normpath(file_path).replace(os.sep, "/")


def _image_path(root: Path, file_path: str) -> Path | None:
    path = root / file_path
    if path.suffix:
        return path if path.is_file() else None
    return next((path.with_suffix(s) for s in IMAGE_SUFFIXES if path.with_suffix(s).is_file()), None)


def _camera(meta: dict, image_hw: tuple[int, int], where: Path, frame: str) -> tuple[str, np.ndarray, int, int]:
    """(COLMAP model name, its parameters, width, height) for one frame's intrinsics at the image's size."""
    try:
        w = int(meta.get("w") or image_hw[1])
        h = int(meta.get("h") or image_hw[0])
        if "fl_x" in meta:
            fx = float(meta["fl_x"])
        elif "camera_angle_x" in meta:
            fx = 0.5 * w / np.tan(0.5 * float(meta["camera_angle_x"]))
        else:
            raise PlenopackError(f"frame {frame}: no focal length (fl_x or camera_angle_x)", where)
        if "fl_y" in meta:
            fy = float(meta["fl_y"])
        elif "camera_angle_y" in meta:
            fy = 0.5 * h / np.tan(0.5 * float(meta["camera_angle_y"]))
        else:
            fy = fx
        cx, cy = float(meta.get("cx", 0.5 * w)), float(meta.get("cy", 0.5 * h))
        k1, k2, k3, k4, p1, p2 = (float(meta.get(k, 0.0)) for k in ("k1", "k2", "k3", "k4", "p1", "p2"))
    except (TypeError, ValueError) as exc:
        raise PlenopackError(f"frame {frame}: malformed intrinsics ({exc})", where) from None
    model = meta.get("camera_model") or ("OPENCV_FISHEYE" if meta.get("is_fisheye") else "OPENCV")
    if model == "OPENCV_FISHEYE":
        name, params = model, [fx, fy, cx, cy, k1, k2, k3, k4]
    elif model == "OPENCV":
        if k4:
            raise PlenopackError(f"frame {frame}: k4 = {k4} with camera_model OPENCV (k4 is for OPENCV_FISHEYE)", where)
        name, params = ("FULL_OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2, k3, 0.0, 0.0, 0.0]) if k3 else \
            ("OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2])
    elif model == "PINHOLE":
        name, params = model, [fx, fy, cx, cy]
    else:
        raise PlenopackError(f"frame {frame}: camera_model {model!r} is not supported "
                             "(expected OPENCV, OPENCV_FISHEYE or PINHOLE)", where)
    if (h, w) != tuple(image_hw):
        params = scale_camera_params(name, params, (h, w), image_hw, where)
    return name, np.asarray(params, np.float64), image_hw[1], image_hw[0]


def _split(meta: dict, keys: list[str], test_every: int, split_lists: bool | None, where: Path
           ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(train indices, test indices, whether the file's split lists were used) over the sorted frames."""
    present = {k: meta[k] for k in SPLIT_KEYS if k in meta}
    use_lists = bool(present) if split_lists is None else split_lists
    if not use_lists:
        train, test = every_nth_split(len(keys), test_every)
        return train, test, False
    if not present:
        raise PlenopackError(f"split_lists=true but the file has none of {', '.join(SPLIT_KEYS)}", where)
    index = {k: i for i, k in enumerate(keys)}
    by_name: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_name.setdefault(k.rsplit("/", 1)[-1], []).append(i)
    chosen = {"train": set(), "test": set()}
    unknown = []
    for list_key, names in present.items():
        for name in names:
            k = _key(str(name))
            hits = [index[k]] if k in index else by_name.get(k.rsplit("/", 1)[-1], [])
            if len(hits) != 1:
                unknown.append(str(name))
            else:
                chosen[SPLIT_KEYS[list_key]].add(hits[0])
    if unknown:
        raise PlenopackError(f"{len(unknown)} file name(s) in the split lists match no frame: {_shorten(unknown)}", where)
    test = np.array(sorted(chosen["test"]), np.int64)
    train_set = chosen["train"] if "train_filenames" in present else set(range(len(keys))) - chosen["test"]
    return np.array(sorted(train_set - chosen["test"]), np.int64), test, True


def _laplacian_variance(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _drop_fraction(drop_blurry: float | bool | None, where: Path) -> float:
    if drop_blurry is None or drop_blurry is False:
        return 0.0
    fraction = DEFAULT_DROP_BLURRY if drop_blurry is True else float(drop_blurry)
    if not 0.0 <= fraction < 1.0:
        raise PlenopackError(f"drop_blurry must be a fraction in [0, 1) of the median sharpness, got {drop_blurry}", where)
    return fraction


def load(root: Path, max_side: int = 800, test_every: int = 8, split_lists: bool | None = None,
         drop_blurry: float | bool | None = DEFAULT_DROP_BLURRY, object_centric: bool | None = None,
         capture_kind: str | None = None, cam_scale_factor: float = 1.5, visual_hull: bool = True,
         use_masks: bool = True) -> Scene:
    path = root / "transforms.json"
    try:
        meta = json.loads(path.read_text())
        frames = sorted(meta["frames"], key=lambda f: str(f["file_path"]))
        poses = [np.asarray(f["transform_matrix"], dtype=np.float64) for f in frames]
    except FileNotFoundError:
        raise PlenopackError("file is missing", path) from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PlenopackError(f"malformed transforms file ({exc.__class__.__name__}: {exc})", path) from None
    if not frames:
        raise PlenopackError("no frames", path)
    for f, pose in zip(frames, poses):
        if pose.shape != (4, 4):
            raise PlenopackError(f"frame {f['file_path']}: transform_matrix must be 4x4, got {pose.shape}", path)
    keys = [_key(str(f["file_path"])) for f in frames]
    fraction = _drop_fraction(drop_blurry, path)
    train, test, used_lists = _split(meta, keys, test_every, split_lists, path)
    selected = np.union1d(train, test)
    image_paths = {i: _image_path(root, str(frames[i]["file_path"])) for i in selected}
    missing = [keys[i] for i in selected if image_paths[i] is None]
    if missing:
        raise PlenopackError(f"{len(missing)} of {len(selected)} frame images are missing: {_shorten(missing)}", path)

    found = [(root / frames[i]["mask_path"] if "mask_path" in frames[i] else find_mask(image_paths[i], [root / "masks"]))
             if use_masks else None for i in selected]
    mask_paths = require_all_or_none([image_paths[i] for i in selected], found, path)
    shared = {k: meta[k] for k in INTRINSIC_KEYS if k in meta}
    cameras: dict[str, Undistorter] = {}
    jobs, sharpness = [], []
    for j, i in enumerate(selected):
        frame_meta = {**shared, **{k: frames[i][k] for k in INTRINSIC_KEYS if k in frames[i]}}
        model, params, w, h = _camera(frame_meta, image_size(image_paths[i]), path, keys[i])
        cam_key = json.dumps([model, params.tolist(), w, h])
        if cam_key not in cameras:
            cameras[cam_key] = make_undistorter(model, params, w, h, where=path)
        jobs.append((image_paths[i], cameras[cam_key], mask_paths[j] if mask_paths else None))
        sharpness.append(frames[i].get("sharpness"))
    images, masks, intr = read_frames(jobs, max_side)
    measured = any(s is None for s in sharpness)
    if measured:
        sharpness = [_laplacian_variance(img) for img in images]
    sharpness = np.asarray(sharpness, np.float64)

    position = {int(i): j for j, i in enumerate(selected)}
    train_pos = np.array([position[int(i)] for i in train], np.int64)
    test_pos = np.array([position[int(i)] for i in test], np.int64)
    keep = np.ones(len(selected), bool)
    if fraction > 0 and train_pos.size:
        threshold = fraction * float(np.median(sharpness[train_pos]))
        keep[train_pos[sharpness[train_pos] < threshold]] = False
    dropped = [keys[int(selected[j])] for j in np.flatnonzero(~keep)]
    new_index = np.cumsum(keep) - 1
    c2w = np.stack([poses[i] @ OPENGL_TO_OPENCV for i in selected])[keep]
    kept_names = [keys[int(selected[j])] for j in np.flatnonzero(keep)]
    check_poses(c2w, kept_names, path)

    options = dict(test_every=test_every, split_lists=used_lists, drop_blurry=fraction or False,
                   cam_scale_factor=cam_scale_factor, visual_hull=visual_hull, use_masks=use_masks)
    source_info = {k: meta[k] for k in RECORDED_KEYS if k in meta}
    source_info["sharpness"] = "laplacian variance" if measured else "transforms.json"
    source_info["dropped_blurry"] = dropped
    source_info["camera_models"] = sorted({json.loads(k)[0] for k in cameras})
    return finish_scene(
        name=root.name, root=root, fmt="nerfstudio", images=[images[j] for j in np.flatnonzero(keep)],
        masks=None if masks is None else [masks[j] for j in np.flatnonzero(keep)],
        intrinsics=np.stack(intr)[keep], c2w_world=c2w,
        train_ids=new_index[train_pos[keep[train_pos]]], test_ids=new_index[test_pos],
        options=options, object_centric=object_centric, capture_kind=capture_kind, cam_scale_factor=cam_scale_factor,
        visual_hull=visual_hull, image_paths=[image_paths[int(selected[j])] for j in np.flatnonzero(keep)],
        source_info=source_info,
    )
