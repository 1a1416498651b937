"""PyTorch datasets over a built plenopack dataset (see plenopack.build): rendered views and sparse voxels.

A dataset folder holds ``manifest.parquet`` (one row per scene: id, category, status, path, ...) and the scene
files. Only rows with status "ok" are used. Labels are the sorted categories (``classes``,
``class_to_idx`` as in torchvision). Splits: a scene is in "test" when a stable hash of its id falls in the
last ``test_fraction`` (default 10%), else "train"; "all" takes every scene.

Quality filters: ``min_psnr`` keeps the scenes whose manifest ``metric`` ("psnr", the full-frame test PSNR,
or "psnr_masked", the object's) is at least that many dB; scenes without a value are left out with a warning.
Labels (``classes``) are still those of every scene in the manifest, so they do not change with the filter.

Datasets hold only paths until an item is read; each worker process decodes scenes on demand and keeps a few
(``cache_scenes``) decoded, so they work with DataLoader workers (fork or spawn). torch is imported lazily
(the ``torch`` extra).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from plenopack.build.manifest import QUALITY_METRICS
from plenopack.cameras import look_at
from plenopack.errors import PlenopackError
from plenopack.render import orbit_intrinsics

SPLITS = ("train", "test", "all")


def read_manifest_rows(dataset_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    path = Path(dataset_dir) / "manifest.parquet"
    if not path.exists():
        raise PlenopackError("no manifest.parquet: not a plenopack dataset", dataset_dir)
    return [r for r in pq.read_table(path).to_pylist() if r.get("status") == "ok"]


def passing_scenes(rows: list[dict], min_psnr: float | None, metric: str = "psnr", where=None) -> list[dict]:
    """The rows whose ``metric`` is at least ``min_psnr`` (all rows when it is None); rows without a value
    are dropped with a warning naming them."""
    if metric not in QUALITY_METRICS:
        raise PlenopackError(f"unknown quality metric {metric!r} (expected {', '.join(QUALITY_METRICS)})")
    if min_psnr is None:
        return rows

    def has_value(row):
        return row.get(metric) is not None and math.isfinite(row[metric])

    missing = [r["id"] for r in rows if not has_value(r)]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.warn(f"{where}: {len(missing)} scene(s) have no {metric} in the manifest and are left out: {shown}",
                      stacklevel=4)  # the caller of RenderedViews(...) / SparseVoxels(...)
    return [r for r in rows if has_value(r) and r[metric] >= min_psnr]


def in_split(scene_id: str, split: str, test_fraction: float = 0.1) -> bool:
    if split not in SPLITS:
        raise PlenopackError(f"unknown split {split!r} (expected {', '.join(SPLITS)})")
    if split == "all":
        return True
    h = int(hashlib.sha256(scene_id.encode()).hexdigest()[:8], 16) / 2 ** 32
    return (h >= 1 - test_fraction) == (split == "test")


try:
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # the classes still describe themselves; reading items needs torch
    _DatasetBase = object


class _SceneDataset(_DatasetBase):
    def __init__(self, dataset_dir, split: str, transform, test_fraction: float, cache_scenes: int,
                 min_psnr: float | None = None, metric: str = "psnr"):
        self.dataset_dir = Path(dataset_dir)
        rows = read_manifest_rows(self.dataset_dir)
        self.classes = sorted({r["category"] for r in rows})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        rows = passing_scenes(rows, min_psnr, metric, self.dataset_dir / "manifest.parquet")
        self.scenes = [r for r in rows if in_split(r["id"], split, test_fraction)]
        self.transform = transform
        self.cache_scenes = cache_scenes
        self._cache: OrderedDict = OrderedDict()

    def _open(self, i: int):
        from plenopack.packed import PackedScene

        path = self.dataset_dir / self.scenes[i]["path"]
        if path not in self._cache:
            self._cache[path] = PackedScene(path)
            while len(self._cache) > self.cache_scenes:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        return self._cache[path]

    def label(self, i: int) -> int:
        return self.class_to_idx[self.scenes[i]["category"]]

    def __getstate__(self):  # decoded scenes stay in the process that decoded them
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state


class RenderedViews(_SceneDataset):
    """(image 3 x S x S float tensor in [0, 1], label) for ``views_per_scene`` views of every scene.

    With ``augment`` (default for "train") each item is a random camera around the object (azimuth uniform,
    elevation 5-50 degrees, distance jittered by 15%), seeded by (seed, index) so every worker is
    deterministic; otherwise views are evenly spaced on a fixed orbit (elevation 25 degrees).
    ``min_psnr`` / ``metric``: keep only scenes whose manifest value passes (see the module docstring).
    """

    def __init__(self, dataset_dir, split: str = "train", views_per_scene: int = 50, image_size: int = 224,
                 transform=None, augment: bool | None = None, radius: float = 3.2, fov_deg: float = 40.0,
                 background=None, seed: int = 0, test_fraction: float = 0.1, cache_scenes: int = 8,
                 min_psnr: float | None = None, metric: str = "psnr"):
        super().__init__(dataset_dir, split, transform, test_fraction, cache_scenes, min_psnr, metric)
        self.views_per_scene = views_per_scene
        self.image_size = image_size
        self.augment = (split == "train") if augment is None else augment
        self.radius, self.fov_deg, self.background, self.seed = radius, fov_deg, background, seed

    def __len__(self) -> int:
        return len(self.scenes) * self.views_per_scene

    def pose(self, index: int) -> np.ndarray:
        view = index % self.views_per_scene
        if self.augment:
            rng = np.random.default_rng([self.seed, index])
            az = rng.uniform(0, 2 * np.pi)
            el = np.deg2rad(rng.uniform(5, 50))
            r = self.radius * rng.uniform(0.85, 1.15)
        else:
            az, el, r = 2 * np.pi * view / self.views_per_scene, np.deg2rad(25.0), self.radius
        eye = r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        return look_at(eye)

    def __getitem__(self, index: int):
        import torch

        if not 0 <= index < len(self):
            raise IndexError(index)
        scene_index = index // self.views_per_scene
        k = orbit_intrinsics(self.image_size, self.fov_deg)
        out = self._open(scene_index).render(self.pose(index), k, self.image_size, self.image_size, self.background)
        image = torch.from_numpy(np.ascontiguousarray(out.rgb.transpose(2, 0, 1)))
        if self.transform is not None:
            image = self.transform(image)
        return image, self.label(scene_index)


class SparseVoxels(_SceneDataset):
    """(coords int32 tensor (N, 3), features float tensor (N, C), label) per scene.

    ``features``: "sh+density" (28 for degree 2), "sh", "density", "rgb" or "none"; ``resolution`` coarsens
    the grid by keeping coordinates divisible by the ratio (PeRFception's 256 -> 128). Batch with
    `collate_sparse`. ``min_psnr`` / ``metric``: keep only scenes whose manifest value passes (module docstring).
    """

    def __init__(self, dataset_dir, split: str = "train", features: str = "sh+density", resolution: int | None = None,
                 transform=None, test_fraction: float = 0.1, cache_scenes: int = 2, min_psnr: float | None = None,
                 metric: str = "psnr"):
        super().__init__(dataset_dir, split, transform, test_fraction, cache_scenes, min_psnr, metric)
        self.features, self.resolution = features, resolution

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int):
        import torch

        if not 0 <= index < len(self):
            raise IndexError(index)
        v = self._open(index).voxels(self.features, self.resolution)
        coords, feats = torch.from_numpy(v.coords), torch.from_numpy(v.features)
        if self.transform is not None:
            coords, feats = self.transform(coords, feats)
        return coords, feats, self.label(index)


def collate_sparse(batch):
    """Batch variable-size voxel sets: coords (sum N, 4) int32 with the batch index first (MinkowskiEngine /
    torchsparse layout), features (sum N, C), labels (B,)."""
    import torch

    coords = [torch.cat([torch.full((len(c), 1), i, dtype=torch.int32), c], dim=1) for i, (c, _, _) in enumerate(batch)]
    return torch.cat(coords), torch.cat([f for _, f, _ in batch]), torch.tensor([lab for _, _, lab in batch])
