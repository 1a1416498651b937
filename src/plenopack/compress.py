"""Compressing a fitted grid: importance, importance pruning, quantisation-aware fine-tuning, re-encoding.

The codec's grid-level steps run before encoding (`prepare`):
1. ``prune_below``: drop voxels whose maximum ray weight over the training views is below the threshold, as
   VQRF prunes by importance (needs the scene, or a given importance);
2. ``finetune``: N steps of quantisation-aware training on the training views (needs the scene), with the
   fit's own trainer (`plenopack.fit.Trainer`: the same losses, background model and near clip as the fit
   that made the grid). The forward pass renders the quantised values; the gradients update the underlying
   float values (straight-through estimator); for VQ the codebook entries themselves are trained (those of
   the residual stage too), with indices fixed, and the tuned grid holds the codebooks and exact rows as
   stored. Quantiser parameters (ranges, levels, codebook assignment) are those of the grid before
   fine-tuning; the result is re-encoded.
k-means and VQ weight each voxel by its total ray weight (the colour it carries, summed over the training
rays): on the lego800 blender fit VQ 8,192 loses 0.74 dB with these weights against 0.87 dB weighted by the
maximum ray weight (first 20 val views, no fine-tuning). Without the scene both are `opacity_importance`, a
proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plenopack import kernels
from plenopack.cameras import pixel_rays
from plenopack.codecs import CodecConfig, get_codec, vq
from plenopack.errors import PlenopackError
from plenopack.fit import FitConfig, Trainer, TrainingRays, weights_over_rays
from plenopack.grid import Grid, sh_basis_count
from plenopack.progress import ProgressCallback, report

FINETUNE_LR_SIGMA = 1.0  # constant learning rates of fine-tuning (the fit's final rates are far lower for SH)
FINETUNE_LR_SH = 1e-3
FINETUNE_LR_SH_FINAL = 1e-3  # (log-linear decay when below FINETUNE_LR_SH; on lego800's converged blender fit a
# VQ codebook gained nothing from 400 steps at any schedule tried: 1e-3 -0.04 dB, 1e-4 +0.008, 1e-3 -> 1e-5 -0.016)


@dataclass
class VoxelImportance:
    """How much each voxel of a grid shows in the training views (rows of the grid).

    ``max_weight`` (N,): the largest sample weight T * alpha (0..1) of any training ray crediting the voxel
    (the unit of ``prune_below``); ``total_weight`` (N,): the sample weights times the voxel's trilinear
    weight, summed over every training ray (pixels' worth of colour the voxel carries; the codebooks'
    weights, ``codec_weights``)."""

    max_weight: np.ndarray
    total_weight: np.ndarray

    @property
    def codec_weights(self) -> np.ndarray:
        return self.total_weight

    def subset(self, keep: np.ndarray) -> "VoxelImportance":
        return VoxelImportance(self.max_weight[keep], self.total_weight[keep])


def opacity_importance(grid: Grid) -> VoxelImportance:
    """Proxy importance without the training views: a voxel's opacity over one voxel length,
    1 - exp(-relu(sigma) * voxel_size) (float64, (N,)), as both weights."""
    opacity = 1.0 - np.exp(-np.maximum(grid.density.astype(np.float64), 0.0) * grid.voxel_size)
    return VoxelImportance(opacity, opacity)


def ray_importance(grid: Grid, scene, fit_config: FitConfig | None = None) -> VoxelImportance:
    """Each voxel's maximum and total ray weight over every training pixel of the scene, marched as the fit
    marched (its step size, stop threshold and near clip)."""
    config = (fit_config or FitConfig()).replace(weight_prune_stride=1)
    return VoxelImportance(*weights_over_rays(grid, TrainingRays(scene), config, totals=True))


METRIC_RAYS = 1 << 20  # training rays whose directions give the SH error metric


def view_metric(scene, sh_degree: int, seed: int = 0) -> np.ndarray:
    """The SH error metric of the training views: M (C, C) such that e^T M e is the mean squared colour error
    that an SH error e of a voxel makes over the directions of the training rays (up to `METRIC_RAYS`, drawn at
    random with replacement), scaled by 4 pi so that uniform directions give the identity. Block-diagonal, one
    (deg+1)^2 block per colour channel (the columns of `Grid.sh`). Orbits from above (lego's cameras) make it
    far from the identity: an error in the DC coefficient and one in the z coefficient largely cancel; on the
    lego800 blender fit VQ 16,384 with a 2,048-entry residual stage on 10% of voxels loses 0.26 dB instead of
    0.31 dB with it (first 20 val views, no fine-tuning)."""
    sizes = [scene.image_size(i) for i in scene.train_ids]  # from the cameras alone: no training colours needed
    offsets = np.concatenate([[0], np.cumsum([h * w for h, w in sizes])]).astype(np.int64)
    count = min(int(offsets[-1]), METRIC_RAYS)
    flat = np.sort(np.random.default_rng(seed).integers(0, offsets[-1], size=count, dtype=np.int64))
    block = np.zeros((sh_basis_count(sh_degree),) * 2)
    for k, view in enumerate(scene.train_ids):
        local = flat[np.searchsorted(flat, offsets[k]):np.searchsorted(flat, offsets[k + 1])] - offsets[k]
        width = sizes[k][1]
        _, dirs = pixel_rays(scene.c2w[view], scene.intrinsics[view], *sizes[k],
                             pixels=np.stack([local % width, local // width], axis=1))
        basis = kernels.sh_basis(sh_degree, dirs).astype(np.float64)
        block += basis.T @ basis
    return np.kron(np.eye(3), block * (4.0 * np.pi / count))


def vq_state(grid: Grid, spec: dict, weights: np.ndarray | None, metric: np.ndarray | None = None) -> vq.VQState:
    """The VQ quantisation of a grid's SH by a vq codec spec (`CodecConfig.plan`), rows taken in the file's
    order (`Grid.raster_order`: what ``prefer_runs`` looks along), returned in the grid's."""
    order, _ = grid.raster_order()
    state = vq.quantize_spec(grid.sh[order], spec, None if weights is None else np.asarray(weights)[order], metric)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return state.reordered(back)


def _fixed_quantizer(values: np.ndarray, spec: dict, weights: np.ndarray | None):
    """A function x -> Q(x) with the parameters the codec picks for ``values`` (kept fixed while tuning)."""
    return get_codec(spec["codec"]).fixed_quantizer(values, spec, weights)


class FixedQuantizer:
    """Quantisation-aware training with per-array quantisers whose parameters stay fixed (uniform, k-means,
    float16): the forward pass renders Q(density), Q(sh)."""

    def __init__(self, q_density, q_sh):
        self.q_density, self.q_sh = q_density, q_sh

    def values(self, density: np.ndarray, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.ascontiguousarray(self.q_density(density[:, None])[:, 0], np.float32),
                np.ascontiguousarray(self.q_sh(sh), np.float32))

    def route_sh_gradient(self, grad_sh: np.ndarray, lr_sh: float) -> None:
        """The float SH are the parameters: nothing to route."""


class CodebookQuantizer:
    """Quantisation-aware training of VQ codebooks: rows not kept exact render (and hold) their codebook entry,
    plus their residual entry where they have a residual stage; a row's SH gradient is summed into each entry it
    holds, and RMSProp updates both codebooks (indices fixed)."""

    def __init__(self, q_density, state: vq.VQState, num_rows: int, beta: float):
        self.q_density = q_density
        self.state = state.with_codebooks(lambda book: book.astype(np.float32))  # copies, trained in place
        exact = np.zeros(num_rows, bool)
        exact[state.exact_rows] = True
        self.quantised_rows = np.flatnonzero(~exact)
        self.quantised_entries = np.asarray(state.index, np.int64)[self.quantised_rows]
        self.avg = np.zeros_like(self.state.codebook)
        residual_codebook = self.state.residual_codebook
        self.residual_avg = None if residual_codebook is None else np.zeros_like(residual_codebook)
        self.beta = beta

    def values(self, density: np.ndarray, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state = self.state  # the float SH of quantised rows are their codebook entries
        kernels.gather_codebook_rows(sh, self.quantised_rows, self.quantised_entries, state.codebook)
        if len(state.residual_rows):
            kernels.gather_codebook_rows(sh, state.residual_rows, state.residual_index, state.residual_codebook,
                                         add=True)
        return np.ascontiguousarray(self.q_density(density[:, None])[:, 0], np.float32), sh

    def route_sh_gradient(self, grad_sh: np.ndarray, lr_sh: float) -> None:
        state = self.state
        if len(state.residual_rows):  # before the rows' gradient moves to their first-stage entries
            grad_residual = np.zeros_like(state.residual_codebook)
            kernels.scatter_codebook_gradient(grad_residual, state.residual_rows, state.residual_index, grad_sh,
                                              clear=False)
            kernels.rmsprop_step(state.residual_codebook, grad_residual, self.residual_avg, lr_sh, self.beta)
        grad_book = np.zeros_like(state.codebook)
        kernels.scatter_codebook_gradient(grad_book, self.quantised_rows, self.quantised_entries, grad_sh)
        kernels.rmsprop_step(state.codebook, grad_book, self.avg, lr_sh, self.beta)


def finetune(grid: Grid, scene, codec: CodecConfig, steps: int, weights: np.ndarray | None = None,
             fit_config: FitConfig | None = None, progress: ProgressCallback | None = None,
             seed: int = 0, state: vq.VQState | None = None) -> tuple[Grid, vq.VQState | None]:
    """Quantisation-aware fine-tuning (see the module docstring). Returns (grid, vq_state or None).

    ``weights``: the codebooks' per-voxel weights (`VoxelImportance.codec_weights`); ``state``: for a vq codec,
    the VQ quantisation to start from (default: `vq_state` of the grid, without a metric).
    ``fit_config``: the configuration the grid was fitted with (losses, background model, near clip, batch
    size); the learning rates become `FINETUNE_LR_SIGMA` and `FINETUNE_LR_SH` (to `FINETUNE_LR_SH_FINAL`; VQ
    codebooks follow the same rate) and TV weights are those
    of the fit's last stage. ``progress`` receives "finetune" events.
    """
    base = fit_config or FitConfig()
    config = base.replace(lr_sigma=FINETUNE_LR_SIGMA, lr_sigma_final=FINETUNE_LR_SIGMA, lr_sigma_delay_steps=0,
                          lr_sh=FINETUNE_LR_SH, lr_sh_final=FINETUNE_LR_SH_FINAL, seed=seed)
    tuned = Grid(grid.links, grid.density.copy(), grid.sh.copy(), grid.sh_degree, grid.background)
    if tuned.background is not None:
        tuned.background = type(tuned.background)(tuned.background.layers.copy(), tuned.background.radii,
                                                  tuned.background.brightness, tuned.background.turntable)
    if config.background_model == "msi" and tuned.background is None:
        config = config.replace(background_model="none")
    q_density = _fixed_quantizer(tuned.density[:, None], codec.plan("density"), weights)
    sh_spec = codec.plan("sh")
    if sh_spec["codec"] == "vq":
        state = state if state is not None else vq_state(tuned, sh_spec, weights)
        quantizer = CodebookQuantizer(q_density, state, tuned.num_voxels, config.rmsprop_beta)
    else:
        quantizer = FixedQuantizer(q_density, _fixed_quantizer(tuned.sh, sh_spec, weights))
    trainer = Trainer.for_scene(scene, tuned, config, np.random.default_rng(seed), quantizer)
    tv_scale = 0.5 ** (len(config.reso) - 1) if config.tv_halve_on_upsample else 1.0
    for step in range(steps):
        trainer.step(step, steps, tv_scale)
        if (step + 1) % config.occupancy_every == 0:
            trainer.refresh_occupancy()
        if (step + 1) % config.log_every == 0 or step + 1 == steps:
            report(progress, "finetune", step + 1, steps)
    trainer.check_finite(steps)
    if sh_spec["codec"] != "vq":
        return tuned, None
    bits = vq.spec_codebook_bits(sh_spec)  # the codebooks as stored, so that the grid holds what the file will
    quantizer.state = state = quantizer.state.with_codebooks(lambda book: vq.stored_codebook(book, bits))
    quantizer.values(tuned.density, tuned.sh)
    tuned.sh[state.exact_rows] = tuned.sh[state.exact_rows].astype(np.float16)
    return tuned, state


def prepare(grid: Grid, codec: CodecConfig, scene=None, importance: VoxelImportance | None = None,
            fit_config: FitConfig | None = None,
            progress: ProgressCallback | None = None) -> tuple[Grid, VoxelImportance, vq.VQState | None]:
    """Run the codec's grid-level steps. Returns (grid, importance, vq_state); `write_plen` takes
    ``importance.codec_weights`` and ``vq_state``. With the scene, a vq codec measures SH errors in the
    training views' `view_metric`."""
    if importance is None and scene is not None:
        importance = ray_importance(grid, scene, fit_config)
    if codec.prune_below > 0:
        if importance is None:
            raise PlenopackError("importance pruning needs the training views: pass the scene (--scene)")
        keep = np.flatnonzero(importance.max_weight >= codec.prune_below)
        if len(keep) == 0:
            raise PlenopackError(f"importance pruning at {codec.prune_below:g} removes every voxel")
        grid, importance = grid.subset(keep), importance.subset(keep)
    if importance is None:
        importance = opacity_importance(grid)
    if codec.finetune > 0 and scene is None:
        raise PlenopackError("fine-tuning needs the training views: pass the scene (--scene)")
    state = None
    sh_spec = codec.plan("sh")
    if sh_spec["codec"] == "vq" and scene is not None:
        state = vq_state(grid, sh_spec, importance.codec_weights, view_metric(scene, grid.sh_degree))
    if codec.finetune > 0:
        grid, state = finetune(grid, scene, codec, codec.finetune, importance.codec_weights, fit_config, progress,
                               state=state)
    return grid, importance, state
