"""The last steps every loader shares: split, classify the capture, normalise into the unit cube, build the Scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.geometry import BACKGROUND_FRAME, CAPTURE_KINDS, OBJECT_KINDS, detect_capture_kind
from plenopack.scene.normalize import (apply_to_poses, largest_cube_behind_focus, push_cameras_outside,
                                       scene_centric, tighten_with_visual_hull)
from plenopack.scene.normalize import object_centric as object_centric_transform


def check_poses(c2w: np.ndarray, names: list[str], where: Path) -> None:
    """Reject non-finite or degenerate camera-to-world matrices, naming the first bad view."""
    for pose, name in zip(c2w, names):
        if not np.all(np.isfinite(pose)):
            raise PlenopackError(f"non-finite camera pose for {name}", where)
        if abs(np.linalg.det(pose[:3, :3])) < 1e-6:
            raise PlenopackError(f"degenerate camera rotation for {name}", where)


def every_nth_split(n: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Test = views i with i % every == 0, train = the rest (every <= 0: no test views)."""
    ids = np.arange(n)
    if every <= 0:
        return ids, ids[:0]
    test = ids[ids % every == 0]
    return np.setdiff1d(ids, test), test


def check_capture_kind(kind: str | None, where: Path) -> None:
    """Reject a ``capture_kind`` option that is not one of `CAPTURE_KINDS`."""
    if kind is not None and kind not in CAPTURE_KINDS:
        raise PlenopackError(f"unknown capture_kind {kind!r} (expected one of: {', '.join(CAPTURE_KINDS)})", where)


def frustum_points(c2w: np.ndarray) -> np.ndarray:
    """Stand-in scene points when none are known: each camera centre moved along its optical axis by the
    largest distance between two cameras (at least a unit, for coincident cameras)."""
    centres = c2w[:, :3, 3]
    reach = max(float(np.ptp(centres, axis=0).max()), 1.0)
    return np.concatenate([centres, centres + reach * c2w[:, :3, 2]])


def finish_scene(*, name: str, root: Path, fmt: str, images, masks, intrinsics, c2w_world, train_ids, test_ids,
                 options: dict, object_centric: bool | None = None, capture_kind: str | None = None,
                 cam_scale_factor: float = 1.5, visual_hull: bool = True, scene_points: np.ndarray | None = None,
                 scene_points_label: str = "camera frusta", near_far_world: np.ndarray | None = None,
                 category: str | None = None, image_paths=(), composited_on=None,
                 source_info: dict | None = None) -> Scene:
    """Classify the capture, normalise it and build the Scene.

    ``capture_kind`` (None: detected from the poses, `plenopack.scene.geometry`) decides the normalisation
    unless ``object_centric`` is given: object kinds use `normalize.object_centric` (object arcs sized by
    `largest_cube_behind_focus`), then the masks' visual hull frames the object, or, without one, every
    camera is kept outside the cube (`push_cameras_outside`);
    the others `normalize.scene_centric` on the cameras and ``scene_points`` (default: `frustum_points`).
    ``options`` are the loader's effective options; the chosen ``object_centric`` and ``capture_kind`` are
    added, so that loading again with them reproduces this scene (`Scene.loader_options`).
    """
    check_capture_kind(capture_kind, root)
    intrinsics = np.asarray(intrinsics, np.float64)
    kind = capture_kind or detect_capture_kind(c2w_world, intrinsics)
    is_object = kind in OBJECT_KINDS if object_centric is None else bool(object_centric)
    if is_object:
        world_to_unit = object_centric_transform(c2w_world, cam_scale_factor)
        how = f"object-centric (PeRFception), cam_scale_factor={cam_scale_factor}"
        if kind == "object-arc":
            world_to_unit = largest_cube_behind_focus(world_to_unit, c2w_world)
            how = "object-centric, largest cube behind the focus with every camera outside"
        tightened = world_to_unit
        if masks is not None and visual_hull:
            c2w_unit = apply_to_poses(world_to_unit, c2w_world)
            tightened = tighten_with_visual_hull(world_to_unit, masks, intrinsics, c2w_unit)
        if tightened is not world_to_unit:
            world_to_unit = tightened
            how += " + mask visual hull"
        else:
            pushed = push_cameras_outside(world_to_unit, c2w_world)
            if pushed is not world_to_unit:
                world_to_unit = pushed
                how += ", cameras pushed outside the cube"
    else:
        centres = c2w_world[:, :3, 3]
        if scene_points is None or len(scene_points) == 0:
            scene_points, scene_points_label = frustum_points(c2w_world), "camera frusta"
        world_to_unit = scene_centric(scene_points, up=-c2w_world[:, :3, 1].mean(0), cameras=centres)
        how = f"scene-centric: cameras and {scene_points_label}"
    scale = float(np.cbrt(np.linalg.det(world_to_unit[:3, :3])))
    return Scene(
        name=name, images=images, intrinsics=intrinsics,
        c2w=apply_to_poses(world_to_unit, c2w_world), train_ids=np.asarray(train_ids, np.int64),
        test_ids=np.asarray(test_ids, np.int64), world_to_unit=world_to_unit, source_format=fmt,
        source_path=str(root), masks=masks, image_paths=[str(p) for p in image_paths], category=category,
        near_far=None if near_far_world is None else np.asarray(near_far_world, np.float64) * scale,
        normalisation=how, is_object_centric=is_object,
        composited_on=None if composited_on is None else tuple(float(c) for c in composited_on),
        capture_kind=kind, background_frame=BACKGROUND_FRAME.get(kind, "world"),
        loader_options={**options, "object_centric": is_object, "capture_kind": kind},
        source_info=dict(source_info or {}),
    )
