"""Evaluating a grid on a scene's held-out views: PSNR, SSIM, LPIPS, and masked-object PSNR.

Renders are composited on the scene's evaluation background: the colour RGBA captures were composited on
(white for NeRF-synthetic), else ``background`` (white by default). Full-frame metrics compare against the
images as stored. For scenes with masks, ``psnr_masked`` judges the object alone, as an object-only grid
(no background model) should be judged: the render's foreground is composited over the photo itself,
fg + (1 - acc) * image, and only object pixels (mask > 0.5) are compared. A grid with a background model
(MSI) is composited on it for the full-frame metrics.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np

from plenopack.grid import Grid
from plenopack.kernels.scoring import composite_over
from plenopack.metrics import psnr, ssim
from plenopack.progress import ProgressCallback, report
from plenopack.render import background_image, occupancy_for, render_view
from plenopack.scene.base import Scene


def evaluate(grid: Grid, scene: Scene, split: str = "test", background=None, lpips=None,
             step_size: float = 0.5, max_views: int | None = None, progress: ProgressCallback | None = None,
             near: float = 0.0, on_view: Callable[[int, np.ndarray, np.ndarray, dict], None] | None = None
             ) -> dict:
    """Render the split's views and score them.

    ``lpips``: a callable (pred, target) -> float (see plenopack.lpips), or None (reported as null).
    ``near``: rays start this far from the camera (unit-cube units), as the fit's ``near_clip``.
    ``progress`` receives "evaluate" events (views done). ``on_view(view, render, photo, scores)``, if given,
    is called for each view with the composited render and the photo ((h, w, 3) float32 in [0, 1]) and that
    view's scores (e.g. `plenopack.contact_sheet.ContactSheet`).
    Returns psnr, ssim, lpips (means over views), psnr_masked (scenes with masks), views, psnr_worst and
    worst_view (the lowest-PSNR view: floaters show there first), per_view.
    """
    ids = scene.split_ids(split)
    if max_views is not None:
        ids = ids[:max_views]
    if background is None:
        background = scene.composited_on or (1.0, 1.0, 1.0)
    occ = occupancy_for(grid)

    def score(i: int, foreground: np.ndarray, acc: np.ndarray, behind: np.ndarray
              ) -> tuple[dict, np.ndarray, np.ndarray]:
        """Composite view i's foreground on what lies behind it and score it: (row, render, photo). Runs beside
        the next view's render, so it launches no parallel numba kernel (not every threading layer takes two at
        once); the serial ones of `plenopack.kernels.scoring` release the GIL."""
        rgb = composite_over(foreground, acc, behind)
        target = scene.images[i]
        row = {"view": i, "psnr": psnr(rgb, target), "ssim": ssim(rgb, target)}
        if lpips is not None:
            row["lpips"] = float(lpips(rgb, target))
        if scene.masks is not None:
            row["psnr_masked"] = psnr(composite_over(foreground, acc, target), target, scene.masks[i])
        return row, rgb, target

    per_view = []

    def finish(scored: Future) -> None:
        row, rgb, target = scored.result()
        per_view.append(row)
        if on_view is not None:
            on_view(row["view"], rgb, target, row)

    # view k is scored on a second thread while view k + 1 renders (the render kernel releases the GIL): the
    # scoring is mostly single-threaded, so the core it would leave idle renders instead
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plenopack-score") as scorer:
        scoring = None
        for done, i in enumerate(ids):
            report(progress, "evaluate", done, len(ids))
            h, w = scene.image_size(int(i))
            foreground, _, acc = render_view(grid, scene.c2w[i], scene.intrinsics[i], h, w, (0.0, 0.0, 0.0),
                                             step_size=step_size, occupancy=occ, near=near,
                                             use_background_model=False)
            behind = (background_image(grid, scene.c2w[i], scene.intrinsics[i], h, w) if grid.background is not None
                      else np.asarray(background, np.float32))
            if scoring is not None:
                finish(scoring)
            scoring = scorer.submit(score, int(i), foreground, acc, behind)
        if scoring is not None:
            finish(scoring)
    report(progress, "evaluate", len(ids), len(ids))

    def mean(key):
        vals = [r[key] for r in per_view if key in r and np.isfinite(r[key])]
        return float(np.mean(vals)) if vals else None

    worst = min(per_view, key=lambda r: r["psnr"]) if per_view else None
    result = {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips"), "views": len(per_view),
              "split": split, "psnr_worst": worst and worst["psnr"], "worst_view": worst and worst["view"],
              "per_view": per_view}
    if scene.masks is not None:
        result["psnr_masked"] = mean("psnr_masked")
    return result
