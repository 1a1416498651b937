"""Fitting a Plenoxels grid to a Scene: coarse-to-fine training with progressive scaling (pruning).

Training (PeRFception's CO3D recipe, on the CPU kernels):
- batches of ``batch_rays`` rays drawn uniformly over all training pixels (pixel centres at +0.5); with
  ``foreground_fraction`` > 0 that share of each batch is drawn from mask pixels instead, so the object
  (what masked metrics score) gets more of the gradient than the easy background;
- loss = MSE + lambda_tv TV(density) + lambda_tv_sh TV(SH) + lambda_sparsity Cauchy(density)
  + lambda_beta beta(acc); TV and sparsity on ``tv_fraction`` of the occupied voxels per step, TV weights
  halved at each upsampling; RMSProp (beta 0.95), lr_sigma constant by default, lr_sh decaying
  log-linearly from lr_sh to lr_sh_final over ``lr_sh_decay_steps`` (default: the whole fit);
- scenes with masks (or alpha) train against a random background colour per ray so that the grid cannot
  paint the background into the object: target = foreground + (1 - mask) * random colour;
- full-frame fits (``use_masks`` false, or a background model) of scenes with masks can add an opacity floor,
  ``lambda_mask`` * mean(max(0, mask - acc)^2), so that object pixels stay opaque in the grid;
- coarse-to-fine: at each new resolution the grid is resampled trilinearly at the new voxel centres, and
  progressive scaling prunes it: "sigma" keeps voxels whose density > T; "weight" renders every training
  pixel and keeps voxels whose maximum ray weight >= T / R_new (PeRFception: T = 1.28 -> 0.005 at 256);
  the kept set is dilated ``dilate`` times (3x3x3). No pruning after the final resolution unless
  ``prune_final``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from scipy import ndimage

from plenopack import kernels
from plenopack.errors import PlenopackError
from plenopack.grid import Grid, SphereBackground, morton_order, sh_basis_count
from plenopack.scene.base import Scene

PRUNE_MODES = ("sigma", "weight", "none")
BACKGROUNDS = ("auto", "white", "black", "random")


@dataclass
class FitConfig:
    """Every hyperparameter of a fit. Presets in plenopack/presets/<name>.json fill these."""

    reso: list[int] = field(default_factory=lambda: [64, 128])  # resolution of each stage
    steps: list[int] = field(default_factory=lambda: [1000, 2000])  # optimisation steps of each stage
    batch_rays: int = 5000
    sh_degree: int = 2
    init_density: float = 0.1
    lr_sigma: float = 30.0
    lr_sigma_final: float = 30.0
    lr_sigma_delay_steps: int = 0  # svox2's warm-up: lr scaled by delay_mult rising to 1 (sine) over these steps
    lr_sigma_delay_mult: float = 1.0
    lr_sh: float = 1e-2
    lr_sh_final: float = 5e-6
    lr_sh_decay_steps: int = 0  # 0: decay over the whole fit
    rmsprop_beta: float = 0.95
    lambda_tv: float = 5e-5
    lambda_tv_sh: float = 5e-3
    tv_fraction: float = 0.01
    tv_halve_on_upsample: bool = True
    lambda_sparsity: float = 1e-10
    lambda_beta: float = 1e-5
    lambda_mask: float = 0.0  # full-frame fits of scenes with masks: lambda * mean(max(0, mask - acc)^2) keeps the object opaque in the grid
    step_size: float = 0.5  # voxels per ray-marching step
    stop_thresh: float = 1e-4  # early termination when transmittance falls below
    prune: str = "sigma"
    prune_threshold: float = 20.0
    dilate: int = 2
    prune_final: bool = False
    weight_prune_stride: int = 1  # render every n-th training pixel for weight pruning
    background: str = "auto"  # auto = random where masks exist, else white
    use_masks: bool = True  # train on foreground masks (random background) where the scene has them
    foreground_fraction: float = 0.0  # share of each batch drawn from mask pixels (0: uniform over all pixels)
    background_model: str = "none"  # "msi": learn svox2's multi-sphere background (trains on the raw full frames)
    msi_layers: int = 8
    msi_height: int = 64  # equirectangular rows (polar angle); columns = 2 x rows
    msi_far: float = 16.0  # radius of the outermost sphere, unit-cube units (spacing uniform in 1/r)
    msi_brightness: float = 0.5
    msi_frame: str = "world"  # "turntable": the room turns with the cameras (object on a turntable), see init_background
    lr_background: float = 0.1
    lambda_tv_background_color: float = 1e-3  # PeRFception/svox2's background TV weights
    lambda_tv_background_sigma: float = 1e-2
    near_clip: float = 0.0  # rays start this far from the camera (unit-cube units)
    occupancy_every: int = 50  # steps between rebuilds of the empty-space field
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.reso or len(self.reso) != len(self.steps):
            raise PlenopackError(f"reso {self.reso} and steps {self.steps} must be lists of equal length")
        if any(r < 4 or r > 1024 for r in self.reso) or any(b <= a for a, b in zip(self.reso, self.reso[1:])):
            raise PlenopackError(f"resolutions must increase and lie in 4..1024, got {self.reso}")
        if any(s < 0 for s in self.steps):
            raise PlenopackError("steps must be non-negative")
        sh_basis_count(self.sh_degree)
        if self.prune not in PRUNE_MODES:
            raise PlenopackError(f"unknown prune mode {self.prune!r} (expected {', '.join(PRUNE_MODES)})")
        if self.background not in BACKGROUNDS:
            raise PlenopackError(f"unknown background {self.background!r} (expected {', '.join(BACKGROUNDS)} or msi)")
        if self.background_model not in ("none", "msi"):
            raise PlenopackError(f"unknown background model {self.background_model!r} (expected none or msi)")
        if self.msi_frame not in ("world", "turntable"):
            raise PlenopackError(f"unknown msi_frame {self.msi_frame!r} (expected world or turntable)")
        if self.batch_rays < 1:
            raise PlenopackError("batch_rays must be positive")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise PlenopackError(f"foreground_fraction must lie in [0, 1], got {self.foreground_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FitConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PlenopackError(f"unknown fit option(s): {', '.join(unknown)}")
        return cls(**values)

    def config_hash(self) -> str:
        """Stable hash of every setting that changes the result (16 hex digits)."""
        d = self.to_dict()
        for k in ("log_every",):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def total_steps(self) -> int:
        return int(sum(self.steps))


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("plenopack.presets").iterdir() if p.name.endswith(".json"))


def load_preset(name: str, **overrides) -> FitConfig:
    """The named preset (fast, blender, llff, co3d, ...) with any fields overridden."""
    path = resources.files("plenopack.presets") / f"{name}.json"
    if not path.is_file():
        raise PlenopackError(f"unknown preset {name!r} (available: {', '.join(preset_names())})")
    values = json.loads(path.read_text())
    values.pop("description", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FitConfig.from_dict(values)


@dataclass
class FitResult:
    grid: Grid
    log: list[dict]
    seconds: float
    config: FitConfig


class TrainingRays:
    """All training pixels of a scene, with the targets and masks, for uniform batch sampling.

    Rays are generated per batch from (view, pixel) indices, so memory holds only colours (float32) and
    masks, not origins and directions.
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


def _background_mode(config: FitConfig, scene: Scene) -> str:
    if config.background == "auto":
        return "random" if scene.masks is not None and config.use_masks else "white"
    return config.background


def turntable_axis(camera_centres: np.ndarray) -> np.ndarray:
    """(2, 3) float32 (unit axis, point) of a turntable capture, from the circle the camera centres trace
    around the turning object: the axis is the normal of their best-fit plane (oriented towards +z), the
    point the centre of the least-squares circle in that plane."""
    centres = np.asarray(camera_centres, np.float64)
    if len(centres) < 3:
        raise PlenopackError("a turntable background needs at least 3 training cameras")
    mean = centres.mean(axis=0)
    _, _, (e1, e2, axis) = np.linalg.svd(centres - mean)
    x, y = (centres - mean) @ e1, (centres - mean) @ e2
    (d, e, _), *_ = np.linalg.lstsq(np.stack([x, y, np.ones_like(x)], 1), -(x * x + y * y), rcond=None)
    point = mean - 0.5 * d * e1 - 0.5 * e * e2
    return np.stack([axis if axis[2] >= 0 else -axis, point]).astype(np.float32)


def init_background(config: FitConfig, camera_centres: np.ndarray | None = None) -> SphereBackground:
    """svox2-style MSI: ``msi_layers`` spheres from just outside the cube to ``msi_far``, uniform in 1/r;
    grey colour (raw 0) and a little density so that gradients flow through ReLU. With ``msi_frame``
    "turntable" the spheres are fixed to the room of a turntable capture (axis from ``camera_centres``)."""
    inner = 1.05 * math.sqrt(3.0)
    radii = 1.0 / np.linspace(1.0 / inner, 1.0 / config.msi_far, config.msi_layers)
    layers = np.zeros((config.msi_layers, config.msi_height, 2 * config.msi_height, 4), np.float32)
    layers[..., 3] = 0.5
    turntable = turntable_axis(camera_centres) if config.msi_frame == "turntable" else None
    return SphereBackground(layers, radii.astype(np.float32), config.msi_brightness, turntable)


def eval_background(config: FitConfig, scene: Scene) -> tuple[float, float, float]:
    """Constant background colour the fitted grid is evaluated and rendered on."""
    if scene.composited_on is not None:
        return scene.composited_on
    return (0.0, 0.0, 0.0) if _background_mode(config, scene) == "black" else (1.0, 1.0, 1.0)


def _voxel_centres(coords: np.ndarray, reso: int) -> np.ndarray:
    return (-1.0 + (coords + 0.5) * (2.0 / reso)).astype(np.float32)


def _grid_from_mask(old: Grid | None, mask: np.ndarray, sh_degree: int, init_density: float) -> Grid:
    """A grid occupying ``mask`` (R^3 bool), values resampled from ``old`` (or initialised); rows in Morton
    order (memory locality for the kernels)."""
    reso = mask.shape[0]
    coords = np.argwhere(mask).astype(np.int32)
    coords = coords[morton_order(coords)]
    if old is None:
        n = len(coords)
        density = np.full(n, init_density, np.float32)
        sh = np.zeros((n, 3 * sh_basis_count(sh_degree)), np.float32)
    else:
        density, sh = kernels.trilinear_sample(old.links, old.density, old.sh, _voxel_centres(coords, reso))
    return Grid.from_coords(reso, coords, density, sh, sh_degree)


def _candidate_mask(old: Grid, reso: int) -> np.ndarray:
    """New-resolution voxels whose centre falls in or next to an occupied old voxel."""
    occupied = ndimage.binary_dilation(old.links >= 0, iterations=1)
    idx = np.minimum(((np.arange(reso) + 0.5) * old.resolution / reso).astype(np.int64), old.resolution - 1)
    return occupied[np.ix_(idx, idx, idx)]


def _no_columns(grid: Grid) -> np.ndarray:
    return np.empty((grid.num_voxels, 0), np.float32)


def prune_mask(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None) -> np.ndarray:
    """Boolean R_new^3 mask of the voxels progressive scaling keeps when moving ``grid`` to ``reso``."""
    cand = _candidate_mask(grid, reso)
    coords = np.argwhere(cand)
    centres = _voxel_centres(coords, reso)
    if config.prune == "none":
        keep = np.ones(len(coords), bool)
    elif config.prune == "sigma":
        density, _ = kernels.trilinear_sample(grid.links, grid.density, _no_columns(grid), centres)
        keep = density > config.prune_threshold
    else:
        if rays is None:
            raise PlenopackError("weight pruning needs the training rays")
        weights = max_weights_over_rays(grid, rays, config)
        w_new, _ = kernels.trilinear_sample(grid.links, weights, _no_columns(grid), centres)
        keep = w_new >= config.prune_threshold / reso
    mask = np.zeros((reso,) * 3, bool)
    mask[tuple(coords[keep].T)] = True
    if config.dilate > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool), iterations=config.dilate)
    return mask


def max_weights_over_rays(grid: Grid, rays: TrainingRays, config: FitConfig, chunk: int = 1 << 16) -> np.ndarray:
    """Per-voxel max ray weight over every ``weight_prune_stride``-th training pixel."""
    occ = kernels.build_occupancy(grid.links, grid.density)
    out = np.zeros(grid.num_voxels, np.float32)
    flat_all = np.arange(0, rays.count, max(1, config.weight_prune_stride), dtype=np.int64)
    for s in range(0, len(flat_all), chunk):
        o, d = rays.rays(flat_all[s:s + chunk])
        kernels.max_ray_weights(grid.links, grid.density, o, d, config.step_size, config.stop_thresh, occ, out=out)
    return out


def resample(grid: Grid, reso: int, config: FitConfig, rays: TrainingRays | None = None) -> Grid:
    """Upsample ``grid`` to ``reso`` with progressive-scaling pruning (see the module docstring)."""
    return _grid_from_mask(grid, prune_mask(grid, reso, config, rays), grid.sh_degree, config.init_density)


def _lr(start: float, end: float, step: int, horizon: int, delay_steps: int = 0, delay_mult: float = 1.0) -> float:
    """Log-linear decay from start to end over ``horizon`` steps, with svox2's optional sine warm-up."""
    t = min(step / horizon, 1.0) if horizon > 0 else 0.0
    lr = start if start == end else math.exp(math.log(start) * (1 - t) + math.log(end) * t)
    if delay_steps > 0:
        lr *= delay_mult + (1 - delay_mult) * math.sin(0.5 * math.pi * min(step / delay_steps, 1.0))
    return float(lr)


class _Optimiser:
    """RMSProp state and gradient buffers for one grid (rebuilt when the grid changes)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        n, c = grid.num_voxels, grid.sh.shape[1]
        self.grad_density = np.zeros(n, np.float32)
        self.grad_sh = np.zeros((n, c), np.float32)
        self.avg_density = np.zeros(n, np.float32)
        self.avg_sh = np.zeros((n, c), np.float32)
        self.workspace = kernels.GradWorkspace(n, c)
        self.row_flags = self.workspace.row_flags  # rows given a gradient this step (the optimiser visits only these)
        self.flat_of_row = np.ravel_multi_index(tuple(grid.occupied_coords().T.astype(np.int64)), grid.links.shape)


def fit(scene: Scene, config: FitConfig, progress: bool = True, grid: Grid | None = None) -> FitResult:
    """Fit a grid to the scene's training views. Deterministic for a given seed and thread count."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t_start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    use_msi = config.background_model == "msi"
    rays = TrainingRays(scene, use_masks=config.use_masks and not use_msi)  # a background model fits full frames
    bg_mode = _background_mode(config, scene)
    fixed_bg = np.array([0.0, 0.0, 0.0] if bg_mode == "black" else [1.0, 1.0, 1.0], np.float32)
    if grid is None:
        grid = _grid_from_mask(None, np.ones((config.reso[0],) * 3, bool), config.sh_degree, config.init_density)
    if use_msi and grid.background is None:
        grid.background = init_background(config, rays.c2w[:, :3, 3])
    msi = grid.background if use_msi else None
    if msi is not None:
        msi_flat = msi.layers.reshape(-1, 4)
        msi_grad = np.zeros_like(msi_flat)
        msi_avg = np.zeros_like(msi_flat)
    # object pixels must stay opaque in the grid when the frames are fitted whole (else a background model
    # can paint the object from behind); masked fits get this from the random background already
    floor_weight = config.lambda_mask if rays.mask is None and rays.object_mask is not None else 0.0
    opt = _Optimiser(grid)
    occ = kernels.build_occupancy(grid.links, grid.density)
    horizon = config.lr_sh_decay_steps or config.total_steps
    tv_scale = 1.0
    log: list[dict] = []
    step = 0
    psnr_avg = None
    columns = [TextColumn("[bold]fit[/] {task.fields[stage]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("psnr {task.fields[psnr]:.2f}"), TextColumn("voxels {task.fields[voxels]:,}"),
               TimeElapsedColumn()]
    with Progress(*columns, disable=not progress, console=Console(stderr=True)) as bar:
        task = bar.add_task("fit", total=config.total_steps, stage="", psnr=0.0, voxels=grid.num_voxels)
        for stage, (reso, stage_steps) in enumerate(zip(config.reso, config.steps)):
            if stage > 0:
                grid = resample(grid, reso, config, rays)
                grid.background = msi
                if grid.num_voxels == 0:
                    raise PlenopackError(f"pruning removed every voxel at resolution {reso} "
                                         f"(prune {config.prune}, threshold {config.prune_threshold})")
                opt = _Optimiser(grid)
                occ = kernels.build_occupancy(grid.links, grid.density)
                if config.tv_halve_on_upsample:
                    tv_scale *= 0.5
            bar.update(task, stage=f"{reso}^3")
            for _ in range(stage_steps):
                flat = rays.sample(rng, config.batch_rays, config.foreground_fraction)
                origins, dirs = rays.rays(flat)
                if msi is not None:
                    bg_origins, bg_dirs = msi.to_frame(origins, dirs)
                    bg = kernels.msi_colour(msi.layers, msi.radii, msi.brightness, bg_origins, bg_dirs)
                elif bg_mode == "random" and rays.mask is not None:
                    bg = rng.random((config.batch_rays, 3), dtype=np.float32)
                else:
                    bg = fixed_bg
                target = rays.targets(flat, bg)
                rgb, acc, mse = kernels.render_rays_grad(
                    grid.links, grid.density, grid.sh, grid.sh_degree, origins, dirs, target, bg,
                    opt.grad_density, opt.grad_sh, config.step_size, config.stop_thresh, occ,
                    config.lambda_beta, near=config.near_clip, workspace=opt.workspace,
                    min_acc=rays.object_mask[flat] if floor_weight else None, min_acc_weight=floor_weight,
                    row_flags=opt.row_flags, reduce=False)
                if msi is not None:  # d loss / d background = (1 - acc) d loss / d rgb
                    grad_bg = (1.0 - acc)[:, None] * (2.0 / (3 * len(flat))) * (rgb - target)
                    kernels.msi_grad(msi.layers, msi.radii, msi.brightness, bg_origins, bg_dirs, bg, grad_bg,
                                     msi_grad.reshape(msi.layers.shape))
                    kernels.msi_tv_grad(msi.layers, config.lambda_tv_background_color,
                                        config.lambda_tv_background_sigma, msi_grad.reshape(msi.layers.shape))
                    kernels.rmsprop_step(msi_flat, msi_grad, msi_avg, config.lr_background, config.rmsprop_beta)
                if not math.isfinite(mse):
                    raise PlenopackError(f"training diverged at step {step} (loss {mse}); lower the learning rates")
                n_reg = max(1, int(config.tv_fraction * grid.num_voxels))
                rows = np.sort(rng.integers(0, grid.num_voxels, size=n_reg))  # sorted: neighbours share cache lines
                ids = opt.flat_of_row[rows]
                if config.lambda_tv:
                    kernels.tv_grad(grid.links, grid.density, ids, config.lambda_tv * tv_scale, opt.grad_density,
                                    row_flags=opt.row_flags)
                if config.lambda_tv_sh:
                    kernels.tv_grad(grid.links, grid.sh, ids, config.lambda_tv_sh * tv_scale, opt.grad_sh,
                                    row_flags=opt.row_flags)
                if config.lambda_sparsity:
                    unique_rows = np.unique(rows)
                    kernels.sparsity_grad(grid.density, unique_rows, config.lambda_sparsity, opt.grad_density)
                    opt.row_flags[unique_rows] = 1
                touched = np.flatnonzero(opt.row_flags)
                opt.row_flags[touched] = 0
                kernels.rmsprop_step(grid.density, opt.grad_density, opt.avg_density,
                                     _lr(config.lr_sigma, config.lr_sigma_final, step, horizon,
                                         config.lr_sigma_delay_steps, config.lr_sigma_delay_mult), config.rmsprop_beta,
                                     rows=touched, pending=opt.workspace.buf_density)
                kernels.rmsprop_step(grid.sh, opt.grad_sh, opt.avg_sh,
                                     _lr(config.lr_sh, config.lr_sh_final, step, horizon), config.rmsprop_beta,
                                     rows=touched, pending=opt.workspace.buf_sh)
                step += 1
                psnr = -10.0 * math.log10(max(mse, 1e-10))
                psnr_avg = psnr if psnr_avg is None else 0.9 * psnr_avg + 0.1 * psnr
                if step % config.occupancy_every == 0:
                    occ = kernels.build_occupancy(grid.links, grid.density)
                if step % config.log_every == 0 or step == config.total_steps:
                    if not (np.isfinite(grid.density).all() and np.isfinite(grid.sh).all()):
                        raise PlenopackError(f"training diverged at step {step} (non-finite parameters)")
                    log.append({"step": step, "reso": reso, "psnr": round(psnr_avg, 3), "voxels": grid.num_voxels,
                                "seconds": round(time.perf_counter() - t_start, 2)})
                    bar.update(task, completed=step, psnr=psnr_avg, voxels=grid.num_voxels)
        if config.prune_final and config.prune != "none":
            grid = resample(grid, grid.resolution, config, rays)
            grid.background = msi
        bar.update(task, completed=step, voxels=grid.num_voxels)
    return FitResult(grid=grid, log=log, seconds=time.perf_counter() - t_start, config=config)
