"""Fitting a Plenoxels grid to a Scene: coarse-to-fine training with progressive scaling (pruning).

PeRFception's CO3D recipe on the CPU kernels, split by job:
- `plenopack.fit.config`: `FitConfig` (every hyperparameter, range-checked) and the named presets;
- `plenopack.fit.rays`: the training pixels, batches drawn uniformly over them (pixel centres at +0.5), or
  with ``foreground_fraction`` > 0 that share drawn from mask pixels;
- `plenopack.fit.background`: constant / random / MSI backgrounds; masked scenes train against a random
  colour per ray so the grid cannot paint the background into the object;
- `plenopack.fit.trainer`: one optimisation step (losses, RMSProp), shared with quantisation-aware
  fine-tuning;
- `plenopack.fit.prune`: coarse-to-fine resampling with progressive scaling between stages.

`fit` runs the stages: at each new resolution the grid is resampled and pruned, TV weights are halved, and
training goes on; no pruning after the final resolution unless ``prune_final``. It reports progress through
``progress`` (see `plenopack.progress`) and prints nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.fit.background import background_mode, eval_background, init_background, turntable_axis
from plenopack.fit.config import FitConfig, learning_rate, load_preset, preset_names, preset_values
from plenopack.fit.prune import grid_from_mask, max_weights_over_rays, prune_mask, resample, weights_over_rays
from plenopack.fit.rays import TrainingRays
from plenopack.fit.trainer import Trainer, ValueQuantizer
from plenopack.grid import Grid
from plenopack.progress import ProgressCallback, report
from plenopack.scene.base import Scene


@dataclass
class FitResult:
    grid: Grid
    log: list[dict]  # one entry per ``log_every`` steps: step, reso, psnr (smoothed train PSNR), voxels, seconds
    seconds: float
    config: FitConfig


def fit(scene: Scene, config: FitConfig, progress: ProgressCallback | None = None, grid: Grid | None = None) -> FitResult:
    """Fit a grid to the scene's training views. Deterministic for a given seed, whatever the thread count.

    ``progress`` receives "fit" events (steps done of ``config.total_steps``; fields stage, psnr, voxels).
    ``grid``: start from this grid instead of a dense one at the first resolution.
    """
    t_start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    if grid is None:
        grid = grid_from_mask(None, np.ones((config.reso[0],) * 3, bool), config.sh_degree, config.init_density)
    trainer = Trainer.for_scene(scene, grid, config, rng)
    horizon = config.lr_sh_decay_steps or config.total_steps
    tv_scale = 1.0
    log: list[dict] = []
    step = 0
    psnr_avg = 0.0
    for stage, (reso, stage_steps) in enumerate(zip(config.reso, config.steps)):
        if stage > 0:
            grid = resample(trainer.grid, reso, config, trainer.rays)
            if grid.num_voxels == 0:
                raise PlenopackError(f"pruning removed every voxel at resolution {reso} "
                                     f"(prune {config.prune}, threshold {config.prune_threshold})")
            trainer.set_grid(grid)
            if config.tv_halve_on_upsample:
                tv_scale *= 0.5
        report(progress, "fit", step, config.total_steps, stage=f"{reso}^3", psnr=psnr_avg,
               voxels=trainer.grid.num_voxels)
        for _ in range(stage_steps):
            mse = trainer.step(step, horizon, tv_scale)
            step += 1
            psnr = -10.0 * math.log10(max(mse, 1e-10))
            psnr_avg = psnr if step == 1 else 0.9 * psnr_avg + 0.1 * psnr
            if step % config.occupancy_every == 0:
                trainer.refresh_occupancy()
            if step % config.log_every == 0 or step == config.total_steps:
                trainer.check_finite(step)
                log.append({"step": step, "reso": reso, "psnr": round(psnr_avg, 3),
                            "voxels": trainer.grid.num_voxels, "seconds": round(time.perf_counter() - t_start, 2)})
                report(progress, "fit", step, config.total_steps, stage=f"{reso}^3", psnr=psnr_avg,
                       voxels=trainer.grid.num_voxels)
    grid = trainer.grid
    if config.prune_final and config.prune != "none":
        grid = resample(grid, grid.resolution, config, trainer.rays)
    return FitResult(grid=grid, log=log, seconds=time.perf_counter() - t_start, config=config)


__all__ = ["FitConfig", "FitResult", "Trainer", "TrainingRays", "ValueQuantizer", "background_mode",
           "eval_background", "fit", "init_background", "learning_rate", "load_preset", "max_weights_over_rays",
           "preset_names", "preset_values", "prune_mask", "resample", "turntable_axis",
           "weights_over_rays"]
