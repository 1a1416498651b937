"""The `Scene` every loader produces and every later stage consumes.

Conventions (the same everywhere in plenopack):
- Images are float32 arrays H x W x 3, RGB in [0, 1], as stored in the file (sRGB values, no
  linearisation). Masks are float32 H x W in [0, 1], 1 = object.
- Intrinsics are float64 rows (fx, fy, cx, cy) in pixels. Pixel (u, v) (column, row) covers
  [u, u + 1) x [v, v + 1), so its centre is at (u + 0.5, v + 0.5).
- Poses are camera-to-world 4x4 float64 matrices in the OpenCV convention: camera x right,
  y down, z forward (the viewing direction).
- ``loader_options`` are the effective options of the loader (detected ones included, e.g. ``capture_kind``
  and ``object_centric``): ``load_scene(source_path, format=source_format, max_side=..., **loader_options)``
  loads the same views with the same split and normalisation.
- Poses are stored in the *unit-cube frame*: the loader has already applied the similarity
  `world_to_unit` (x_unit = s * R @ x_world + t) that puts the region of interest inside
  [-1, 1]^3, where the voxel grid lives. `world_to_unit` is kept so results can be mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plenopack.errors import PlenopackError


@dataclass
class Scene:
    """A multi-view capture normalised into the unit cube (see the module docstring)."""

    name: str
    images: list[np.ndarray]
    intrinsics: np.ndarray  # (N, 4) float64: fx, fy, cx, cy in pixels
    c2w: np.ndarray  # (N, 4, 4) float64, OpenCV axes, unit-cube frame
    train_ids: np.ndarray  # (n_train,) int64 view indices
    test_ids: np.ndarray  # (n_test,) int64 view indices
    world_to_unit: np.ndarray  # (4, 4) float64 similarity: source world -> unit cube
    source_format: str  # a key of plenopack.scene.LOADERS: "blender", "nerfstudio", "llff", "co3d", "colmap", ...
    source_path: str = ""
    masks: list[np.ndarray] | None = None
    image_paths: list[str] = field(default_factory=list)
    category: str | None = None  # CO3D category, or None
    near_far: np.ndarray | None = None  # (N, 2) float64 ray bounds in unit-cube units
    depths: list[np.ndarray] | None = None  # metric depth maps in unit-cube units (ScanNet)
    normalisation: str = ""  # how world_to_unit was chosen, for the record
    is_object_centric: bool = True  # object capture (cameras around it) vs. scene capture
    composited_on: tuple[float, float, float] | None = None  # RGBA captures: colour the images were composited on
    capture_kind: str = ""  # plenopack.scene.geometry.CAPTURE_KINDS: object-orbit, object-arc, turntable, ...
    background_frame: str = "world"  # suggested frame of a background model: "turntable" or "world"
    loader_options: dict = field(default_factory=dict)  # JSON-able effective loader options, detected ones included
    source_info: dict = field(default_factory=dict)  # JSON-able facts of the source kept for the record

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ basic facts
    @property
    def num_views(self) -> int:
        return len(self.images)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def image_size(self, view: int) -> tuple[int, int]:
        """(height, width) of one view in pixels."""
        h, w = self.images[view].shape[:2]
        return int(h), int(w)

    def camera_centres(self) -> np.ndarray:
        """(N, 3) camera centres in the unit-cube frame."""
        return self.c2w[:, :3, 3].copy()

    def split_ids(self, split: str) -> np.ndarray:
        """View indices of ``"train"``, ``"test"`` or ``"all"``."""
        if split == "train":
            return self.train_ids
        if split == "test":
            return self.test_ids
        if split == "all":
            return np.arange(self.num_views)
        raise PlenopackError(f"unknown split {split!r} (expected train, test or all)")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise PlenopackError when shapes, ranges or indices are inconsistent."""
        where = self.source_path or self.name
        n = len(self.images)
        if n == 0:
            raise PlenopackError("scene has no views", where)
        if self.intrinsics.shape != (n, 4):
            raise PlenopackError(f"intrinsics shape {self.intrinsics.shape}, expected ({n}, 4)", where)
        if self.c2w.shape != (n, 4, 4):
            raise PlenopackError(f"poses shape {self.c2w.shape}, expected ({n}, 4, 4)", where)
        if not np.all(np.isfinite(self.c2w)):
            raise PlenopackError("non-finite camera pose", where)
        if not np.all(np.isfinite(self.intrinsics)) or np.any(self.intrinsics[:, :2] <= 0):
            raise PlenopackError("non-finite or non-positive intrinsics", where)
        for i, img in enumerate(self.images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.float32:
                raise PlenopackError(f"view {i}: image must be float32 H x W x 3, got {img.dtype} {img.shape}", where)
        if self.masks is not None:
            if len(self.masks) != n:
                raise PlenopackError(f"{len(self.masks)} masks for {n} views", where)
            for i, (m, img) in enumerate(zip(self.masks, self.images)):
                if m.shape != img.shape[:2]:
                    raise PlenopackError(f"view {i}: mask shape {m.shape} != image shape {img.shape[:2]}", where)
        ids = np.concatenate([self.train_ids, self.test_ids])
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise PlenopackError("train/test view index out of range", where)
        if self.train_ids.size == 0:
            raise PlenopackError("scene has no training views", where)
        if self.world_to_unit.shape != (4, 4) or not np.all(np.isfinite(self.world_to_unit)):
            raise PlenopackError("world_to_unit must be a finite 4x4 matrix", where)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """A JSON-friendly description: views, resolution, split sizes, bounds."""
        sizes = sorted({self.image_size(i) for i in range(self.num_views)})
        centres = self.camera_centres()
        dist = np.linalg.norm(centres, axis=1)
        return {
            "name": self.name,
            "format": self.source_format,
            "source": self.source_path,
            "category": self.category,
            "views": self.num_views,
            "train_views": int(self.train_ids.size),
            "test_views": int(self.test_ids.size),
            "image_sizes_hw": [list(s) for s in sizes],
            "masks": self.has_masks,
            "object_centric": self.is_object_centric,
            "capture_kind": self.capture_kind,
            "background_frame": self.background_frame,
            "normalisation": self.normalisation,
            "camera_distance_min": float(dist.min()),
            "camera_distance_median": float(np.median(dist)),
            "camera_distance_max": float(dist.max()),
            "camera_cube_norm_min": float(np.abs(centres).max(axis=1).min()),  # > 1: every camera outside the cube
            "camera_bounds_min": centres.min(0).tolist(),
            "camera_bounds_max": centres.max(0).tolist(),
            "near_far": None if self.near_far is None else [float(self.near_far[:, 0].min()), float(self.near_far[:, 1].max())],
            "world_to_unit_scale": float(np.cbrt(abs(np.linalg.det(self.world_to_unit[:3, :3])))),
            "loader_options": self.loader_options,
            "source_info": self.source_info,
        }
