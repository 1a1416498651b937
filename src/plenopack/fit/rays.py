"""Training rays of a scene: every training pixel with its target colour and mask, sampled per batch."""

from __future__ import annotations

import numpy as np

from plenopack.scene.base import Scene


class TrainingRays:
    """All training pixels of a scene, with the targets and masks, for uniform batch sampling.

    Rays are generated per batch from (view, pixel) indices, so memory holds only colours (float32) and
    masks, not origins and directions. Pixel centres are at +0.5 (plenopack's convention).
    """

    def __init__(self, scene: Scene, ids: np.ndarray | None = None, use_masks: bool = True):
        ids = scene.train_ids if ids is None else ids
        self.c2w = scene.c2w[ids].astype(np.float64)
        self.intrinsics = scene.intrinsics[ids].astype(np.float64)
        sizes = [scene.image_size(i) for i in ids]
        counts = np.array([h * w for h, w in sizes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.widths = np.array([w for _, w in sizes], dtype=np.int64)
        self.rgb = np.concatenate([scene.images[i].reshape(-1, 3) for i in ids]).astype(np.float32)
        self.mask = None  # masks the targets are composited with (use_masks), else None
        self.object_mask = None  # the scene's masks whether or not targets use them (foreground sampling, lambda_mask)
        self.premultiplied = False  # rgb already holds colour x mask (RGBA captures)
        if scene.masks is not None:
            self.object_mask = np.concatenate([scene.masks[i].reshape(-1) for i in ids]).astype(np.float32)
        if self.object_mask is not None and use_masks:
            self.mask = self.object_mask
            if scene.composited_on is not None:  # undo the loader's compositing: keep premultiplied colour
                self.rgb -= (1.0 - self.mask)[:, None] * np.asarray(scene.composited_on, np.float32)
                self.premultiplied = True
        self.count = int(self.offsets[-1])
        self.foreground = None if self.object_mask is None else np.flatnonzero(self.object_mask > 0.5)

    def sample(self, rng: np.random.Generator, n: int, foreground_fraction: float = 0.0) -> np.ndarray:
        """Flat indices of ``n`` training pixels in random order: uniform over all pixels, except that a
        ``foreground_fraction`` share is drawn uniformly from mask pixels (when the scene has masks)."""
        n_fg = int(round(foreground_fraction * n)) if self.foreground is not None and len(self.foreground) else 0
        flat = rng.integers(0, self.count, size=n)
        if n_fg:
            flat[:n_fg] = self.foreground[rng.integers(0, len(self.foreground), size=n_fg)]
            rng.shuffle(flat)  # the kernels split a batch into one contiguous share per thread: mix the costly rays
        return flat

    def rays(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origins and unit directions (float32) of the pixels with these flat indices."""
        view = np.searchsorted(self.offsets, flat, side="right") - 1
        local = flat - self.offsets[view]
        v, u = np.divmod(local, self.widths[view])
        k = self.intrinsics[view]
        d_cam = np.stack([(u + 0.5 - k[:, 2]) / k[:, 0], (v + 0.5 - k[:, 3]) / k[:, 1], np.ones(len(flat))], -1)
        rot = self.c2w[view, :3, :3]
        d = np.einsum("nij,nj->ni", rot, d_cam)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return self.c2w[view, :3, 3].astype(np.float32), d.astype(np.float32)

    def targets(self, flat: np.ndarray, background: np.ndarray) -> np.ndarray:
        """Target colours composited on ``background`` ((B, 3) or (3,)) where masks exist."""
        rgb = self.rgb[flat]
        if self.mask is None:
            return rgb
        m = self.mask[flat][:, None]
        if background.ndim == 1:
            background = background[None]
        return (rgb if self.premultiplied else rgb * m) + (1.0 - m) * background
