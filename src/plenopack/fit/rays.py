"""Training rays of a scene: every training pixel with its target colour and mask, sampled per batch."""

from __future__ import annotations

import numpy as np

from plenopack import kernels
from plenopack.scene.base import Scene


class TrainingRays:
    """All training pixels of a scene, with the targets and masks, for uniform batch sampling (`draw`).

    Rays are generated per batch from (view, pixel) indices, so memory holds only colours (float32) and
    masks, not origins and directions. Pixel centres are at +0.5 (plenopack's convention).
    """

    def __init__(self, scene: Scene, ids: np.ndarray | None = None, use_masks: bool = True):
        ids = scene.train_ids if ids is None else ids
        self.c2w = scene.c2w[ids].astype(np.float64)
        self.intrinsics = scene.intrinsics[ids].astype(np.float64)
        sizes = [scene.image_size(i) for i in ids]
        counts = np.array([h * w for h, w in sizes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.widths = np.array([w for _, w in sizes], dtype=np.int64)
        self.rgb = np.concatenate([scene.images[i].reshape(-1, 3) for i in ids], dtype=np.float32)
        self.mask = None  # masks the targets are composited with (use_masks), else None
        self.object_mask = None  # the scene's masks whether or not targets use them (foreground sampling, lambda_mask)
        self.premultiplied = False  # rgb already holds colour x mask (RGBA captures)
        if scene.masks is not None:
            self.object_mask = np.concatenate([scene.masks[i].reshape(-1) for i in ids], dtype=np.float32)
        if self.object_mask is not None and use_masks:
            self.mask = self.object_mask
            if scene.composited_on is not None:  # undo the loader's compositing: keep premultiplied colour
                kernels.uncomposite(self.rgb, self.mask, scene.composited_on)
                self.premultiplied = True
        self.count = int(self.offsets[-1])
        self.foreground = None if self.object_mask is None else np.flatnonzero(self.object_mask > 0.5)

    def draw(self, n: int, pixel_key: np.uint64, foreground_fraction: float = 0.0, bg_key: np.uint64 | None = None,
             background: np.ndarray | None = None):
        """A batch of ``n`` training pixels drawn in one parallel kernel from the counter-based stream
        ``pixel_key`` (`plenopack.kernels.counter_rng`): uniform over all pixels, except that a
        ``foreground_fraction`` share is drawn uniformly from mask pixels (when the scene has masks), spread
        evenly over the batch. With ``bg_key`` every ray gets a random background colour from that stream.
        Returns (flat indices, origins, dirs, targets, object-mask values or None, background) as `batch`."""
        return kernels.draw_pixel_rays(n, pixel_key, self.foreground, foreground_fraction, bg_key, self.offsets,
                                       self.widths, self.c2w, self.intrinsics, self.rgb, self.mask,
                                       self.premultiplied, background, self.object_mask)

    def batch(self, flat: np.ndarray, background: np.ndarray | None = None):
        """One parallel kernel (`plenopack.kernels.pixel_rays`) for the pixels with these flat indices:
        origins and unit directions (float32 (B, 3)), target colours (B, 3) composited on ``background``
        ((B, 3) or (3,)) where masks exist, and the object-mask values (B,) (None without masks)."""
        return kernels.pixel_rays(flat, self.offsets, self.widths, self.c2w, self.intrinsics, self.rgb, self.mask,
                                  self.premultiplied, background, self.object_mask)

    def rays(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origins and unit directions (float32) of the pixels with these flat indices."""
        origins, dirs, _, _ = kernels.pixel_rays(flat, self.offsets, self.widths, self.c2w, self.intrinsics, self.rgb)
        return origins, dirs
