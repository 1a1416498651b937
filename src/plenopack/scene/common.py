"""The last steps every loader shares: resize, normalise into the unit cube, build the Scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.scene.base import Scene
from plenopack.scene.normalize import apply_to_poses, object_centric, tighten_with_visual_hull


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


def finish_object_scene(*, name: str, root: Path, fmt: str, images, masks, intrinsics, c2w_world,
                        train_ids, test_ids, cam_scale_factor: float = 1.5, visual_hull: bool = True,
                        near_far_world: np.ndarray | None = None, category: str | None = None,
                        image_paths=(), world_to_unit: np.ndarray | None = None,
                        composited_on=None) -> Scene:
    """Normalise an object capture (object_centric, then the masks' visual hull) and build the Scene."""
    if world_to_unit is None:
        world_to_unit = object_centric(c2w_world, cam_scale_factor)
        how = f"object-centric (PeRFception), cam_scale_factor={cam_scale_factor}"
        if masks is not None and visual_hull:
            c2w_unit = apply_to_poses(world_to_unit, c2w_world)
            tightened = tighten_with_visual_hull(world_to_unit, masks, intrinsics, c2w_unit)
            if tightened is not world_to_unit:
                world_to_unit = tightened
                how += " + mask visual hull"
    else:
        how = "given"
    scale = float(np.cbrt(np.linalg.det(world_to_unit[:3, :3])))
    return Scene(
        name=name, images=images, intrinsics=np.asarray(intrinsics, np.float64),
        c2w=apply_to_poses(world_to_unit, c2w_world), train_ids=np.asarray(train_ids, np.int64),
        test_ids=np.asarray(test_ids, np.int64), world_to_unit=world_to_unit, source_format=fmt,
        source_path=str(root), masks=masks, image_paths=[str(p) for p in image_paths], category=category,
        near_far=None if near_far_world is None else np.asarray(near_far_world, np.float64) * scale,
        normalisation=how, is_object_centric=True,
        composited_on=None if composited_on is None else tuple(float(c) for c in composited_on),
    )
