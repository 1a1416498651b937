"""One training step of a grid (and its background model) on a scene's rays: the loop body that fitting
and quantisation-aware fine-tuning share.

Loss = MSE + lambda_tv TV(density) + lambda_tv_sh TV(SH) + lambda_sparsity Cauchy(density) + lambda_beta beta(acc)
(+ lambda_mask opacity floor on object pixels of full-frame fits); TV and sparsity on ``tv_fraction`` of the
occupied voxels per step; RMSProp on the rows a step touched. Masked scenes train against a random
background colour per ray; full-frame fits with an MSI train the MSI jointly (its own RMSProp and TV).

A `ValueQuantizer` makes the step quantisation-aware: the forward pass renders the quantised values, the
gradients update the float values (straight-through estimator), and the quantizer may route the SH gradient
to parameters of its own (a VQ codebook).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from plenopack import kernels
from plenopack.kernels import counter_rng
from plenopack.errors import PlenopackError
from plenopack.fit.background import background_mode, fixed_colour, init_background
from plenopack.fit.config import FitConfig
from plenopack.fit.rays import TrainingRays
from plenopack.grid import Grid


class ValueQuantizer(Protocol):
    """What quantisation-aware training needs from a codec (see `plenopack.compress`)."""

    def values(self, density: np.ndarray, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (density (N,), sh (N, C)) float32 values the forward pass renders."""

    def route_sh_gradient(self, grad_sh: np.ndarray, lr_sh: float) -> None:
        """Take the SH gradient rows that train the quantizer's own parameters (zeroing them in ``grad_sh``),
        updating those at the step's SH learning rate ``lr_sh``."""


class Trainer:
    """Trains ``grid`` (in place) on ``rays`` with ``config``; `set_grid` after each resampling.

    Deterministic for a given ``rng`` state, whatever the numba thread count.
    """

    def __init__(self, rays: TrainingRays, grid: Grid, config: FitConfig, mode: str,
                 rng: np.random.Generator, quantizer: ValueQuantizer | None = None):
        self.rays, self.config, self.quantizer = rays, config, quantizer
        self.seed = int(rng.integers(2 ** 63))  # the counter-based streams of every step derive from it
        self.mode = mode  # constant-background mode: "random", "white" or "black"
        self.fixed_bg = fixed_colour(mode)
        if config.background_model == "msi" and grid.background is None:
            grid.background = init_background(config, rays.c2w[:, :3, 3])
        self.msi = grid.background if config.background_model == "msi" else None
        if self.msi is not None:
            self.msi_flat = self.msi.layers.reshape(-1, 4)
            self.msi_grad = np.zeros_like(self.msi_flat)
            self.msi_avg = np.zeros_like(self.msi_flat)
        # object pixels must stay opaque in the grid when frames are fitted whole (else a background model can
        # paint the object from behind); masked fits get this from the random background already
        self.floor_weight = config.lambda_mask if rays.mask is None and rays.object_mask is not None else 0.0
        self.set_grid(grid)

    @classmethod
    def for_scene(cls, scene, grid: Grid, config: FitConfig, rng: np.random.Generator,
                  quantizer: ValueQuantizer | None = None) -> "Trainer":
        """A trainer on the scene's training views (full frames when the config learns a background model)."""
        rays = TrainingRays(scene, use_masks=config.use_masks and config.background_model == "none")
        return cls(rays, grid, config, background_mode(config, scene), rng, quantizer)

    def set_grid(self, grid: Grid) -> None:
        """Train ``grid`` from now on (fresh optimiser state; the background model is kept)."""
        if grid.num_voxels == 0:
            raise PlenopackError("the grid has no voxels left to train")
        grid.background = self.msi if self.msi is not None else grid.background
        self.grid = grid
        n, c = grid.num_voxels, grid.sh.shape[1]
        self.grad_density = np.zeros(n, np.float32)
        self.grad_sh = np.zeros((n, c), np.float32)
        self.avg_density = np.zeros(n, np.float32)
        self.avg_sh = np.zeros((n, c), np.float32)
        self.workspace = kernels.GradWorkspace(n, c)
        self.row_flags = self.workspace.row_flags  # rows given a gradient this step (the optimiser visits only these)
        self.reg_draws = max(1, int(self.config.tv_fraction * n))
        self.regulariser = kernels.Regulariser(grid.links, kernels.flat_of_row(grid.links, n), c, self.reg_draws)
        self.refresh_occupancy()

    def refresh_occupancy(self) -> None:
        """Rebuild the empty-space field from the current densities."""
        self.occupancy = kernels.build_occupancy(self.grid.links, self._rendered()[0])

    def _rendered(self) -> tuple[np.ndarray, np.ndarray]:
        if self.quantizer is None:
            return self.grid.density, self.grid.sh
        return self.quantizer.values(self.grid.density, self.grid.sh)

    def _step_background(self, rgb, acc, target, bg, bg_rays) -> None:
        """d loss / d background = (1 - acc) d loss / d rgb; RMSProp on the MSI texels with its TV."""
        cfg, msi = self.config, self.msi
        grad_bg = (1.0 - acc)[:, None] * (2.0 / (3 * len(rgb))) * (rgb - target)
        grad_layers = self.msi_grad.reshape(msi.layers.shape)
        kernels.msi_grad(msi.layers, msi.radii, msi.brightness, bg_rays[0], bg_rays[1], bg, grad_bg, grad_layers)
        kernels.msi_tv_grad(msi.layers, cfg.lambda_tv_background_color, cfg.lambda_tv_background_sigma, grad_layers)
        kernels.rmsprop_step(self.msi_flat, self.msi_grad, self.msi_avg, cfg.lr_background, cfg.rmsprop_beta)

    def step(self, step: int, horizon: int, tv_scale: float = 1.0) -> float:
        """One optimisation step (``step`` of ``horizon`` sets the learning rates); returns the batch MSE.

        Every stage is a parallel kernel (pixel and background draws with ray generation, march + scatter,
        regularisers, optimiser); the random draws are counter-based (`plenopack.kernels.counter_rng`), so a
        step is the same for any thread count. What runs serially is the calls themselves."""
        cfg, grid, rays = self.config, self.grid, self.rays
        random_bg = self.mode == "random" and rays.mask is not None
        _, origins, dirs, target, object_values, bg = rays.draw(
            cfg.batch_rays, counter_rng.stream_key(self.seed, step, counter_rng.PIXELS), cfg.foreground_fraction,
            counter_rng.stream_key(self.seed, step, counter_rng.BACKGROUND) if random_bg else None, self.fixed_bg)
        bg_rays = None
        if self.msi is not None:  # full frames: the targets do not depend on the background
            bg_rays = self.msi.to_frame(origins, dirs)
            bg = kernels.msi_colour(self.msi.layers, self.msi.radii, self.msi.brightness, *bg_rays)
        density, sh = self._rendered()
        rgb, acc, mse = kernels.render_rays_grad(
            grid.links, density, sh, grid.sh_degree, origins, dirs, target, bg, self.grad_density, self.grad_sh,
            cfg.step_size, cfg.stop_thresh, self.occupancy, cfg.lambda_beta, near=cfg.near_clip,
            workspace=self.workspace, min_acc=object_values if self.floor_weight else None,
            min_acc_weight=self.floor_weight, row_flags=self.row_flags)
        if self.msi is not None:
            self._step_background(rgb, acc, target, bg, bg_rays)
        if not math.isfinite(mse):
            raise PlenopackError(f"training diverged at step {step} (loss {mse}); lower the learning rates")
        if cfg.lambda_tv or cfg.lambda_tv_sh or cfg.lambda_sparsity:
            self.regulariser(counter_rng.stream_key(self.seed, step, counter_rng.VOXELS), grid.density,
                             self.grad_density, cfg.lambda_tv * tv_scale, grid.sh, self.grad_sh,
                             cfg.lambda_tv_sh * tv_scale, cfg.lambda_sparsity, self.row_flags)
        lr_sigma, lr_sh = cfg.learning_rates(step, horizon)
        if self.quantizer is not None:
            self.quantizer.route_sh_gradient(self.grad_sh, lr_sh)
        kernels.rmsprop_flagged(grid.density, self.grad_density, self.avg_density, lr_sigma, grid.sh, self.grad_sh,
                                self.avg_sh, lr_sh, self.row_flags, cfg.rmsprop_beta)
        return mse

    def check_finite(self, step: int) -> None:
        if not kernels.all_finite(self.grid.density, self.grid.sh):
            raise PlenopackError(f"training diverged at step {step} (non-finite parameters)")
