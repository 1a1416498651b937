"""Compressing a fitted grid: importance, importance pruning, quantisation-aware fine-tuning, re-encoding.

The codec's grid-level steps run before encoding (`prepare`):
1. ``prune_below``: drop voxels whose importance (maximum ray weight over the training views) is below the
   threshold, as VQRF does (needs the scene, or a given importance);
2. ``finetune``: N steps of quantisation-aware training on the training views (needs the scene). The forward
   pass renders the quantised values; the gradients update the underlying float values (straight-through
   estimator) — for VQ the codebook entries themselves are trained, with indices fixed. Quantiser parameters
   (ranges, levels, codebook assignment) are those of the grid before fine-tuning; the result is re-encoded.
Without the scene, k-means and VQ weight voxels by `opacity_importance`, a proxy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack import kernels
from plenopack.codecs import CodecConfig, get_codec, vq
from plenopack.errors import PlenopackError
from plenopack.fileformat import read_plen, write_plen
from plenopack.grid import Grid


def opacity_importance(grid: Grid) -> np.ndarray:
    """Proxy importance without the training views: a voxel's opacity over one voxel length,
    1 - exp(-relu(sigma) * voxel_size) (float64, (N,))."""
    return 1.0 - np.exp(-np.maximum(grid.density.astype(np.float64), 0.0) * grid.voxel_size)


def ray_importance(grid: Grid, scene) -> np.ndarray:
    """Each voxel's maximum ray weight over every training pixel of the scene (N,)."""
    from plenopack.fit import FitConfig, TrainingRays, max_weights_over_rays

    return max_weights_over_rays(grid, TrainingRays(scene), FitConfig())


def _fixed_quantizer(values: np.ndarray, spec: dict, weights: np.ndarray | None):
    """A function x -> Q(x) with the parameters the codec picks for ``values`` (kept fixed while tuning)."""
    return get_codec(spec["codec"]).fixed_quantizer(values, spec, weights)


def finetune(grid: Grid, scene, codec: CodecConfig, steps: int, importance: np.ndarray | None = None,
             lr_sh: float = 1e-3, lr_sigma: float = 1.0, batch_rays: int = 5000, seed: int = 0,
             progress: bool = False) -> tuple[Grid, tuple | None]:
    """Quantisation-aware fine-tuning (see the module docstring). Returns (grid, vq_state or None)."""
    from rich.console import Console
    from rich.progress import track

    from plenopack.fit import TrainingRays

    rng = np.random.default_rng(seed)
    rays = TrainingRays(scene)
    sh = grid.sh.copy()
    density = grid.density.copy()
    q_density = _fixed_quantizer(density[:, None], codec.plan("density"), importance)
    sh_spec = codec.plan("sh")
    vq_state = None
    if sh_spec["codec"] == "vq":
        codebook, idx, exact = vq.quantize(sh, sh_spec["codebook"], importance, sh_spec.get("keep_exact", 0.0))
        codebook = codebook.astype(np.float32)
        exact_mask = np.zeros(len(sh), bool)
        exact_mask[exact] = True
        avg_book = np.zeros_like(codebook)
    else:
        q_sh = _fixed_quantizer(sh, sh_spec, importance)
    avg_sh = np.zeros_like(sh)
    avg_d = np.zeros_like(density)
    grad_sh = np.zeros_like(sh)
    grad_d = np.zeros_like(density)
    ws = kernels.GradWorkspace(len(density), sh.shape[1])
    occ = kernels.build_occupancy(grid.links, grid.density)
    bg_white = np.ones(3, np.float32)
    for _ in track(range(steps), description="fine-tune", disable=not progress, console=Console(stderr=True)):
        sh_q = np.where(exact_mask[:, None], sh, codebook[idx]) if sh_spec["codec"] == "vq" else q_sh(sh)
        d_q = np.ascontiguousarray(q_density(density[:, None])[:, 0])
        flat = rng.integers(0, rays.count, size=batch_rays)
        origins, dirs = rays.rays(flat)
        bg = rng.random((batch_rays, 3), dtype=np.float32) if rays.mask is not None else bg_white
        kernels.render_rays_grad(grid.links, d_q, np.ascontiguousarray(sh_q, np.float32), grid.sh_degree, origins, dirs,
                                 rays.targets(flat, bg), bg, grad_d, grad_sh, occupancy=occ, workspace=ws)
        kernels.rmsprop_step(density, grad_d, avg_d, lr_sigma)
        if sh_spec["codec"] == "vq":
            grad_book = np.zeros_like(codebook)
            np.add.at(grad_book, idx[~exact_mask], grad_sh[~exact_mask])
            grad_sh[~exact_mask] = 0.0
            kernels.rmsprop_step(codebook, grad_book, avg_book, lr_sh)
        kernels.rmsprop_step(sh, grad_sh, avg_sh, lr_sh)
    if sh_spec["codec"] == "vq":
        sh = np.where(exact_mask[:, None], sh, codebook[idx]).astype(np.float32)
        vq_state = (codebook.astype(np.float16), idx, exact)
    tuned = Grid(grid.links, np.ascontiguousarray(density), np.ascontiguousarray(sh, np.float32), grid.sh_degree,
                 grid.background)
    return tuned, vq_state


def prepare(grid: Grid, codec: CodecConfig, scene=None, importance: np.ndarray | None = None,
            progress: bool = False) -> tuple[Grid, np.ndarray, tuple | None]:
    """Run the codec's grid-level steps. Returns (grid, importance, vq_state) for `write_plen`."""
    if importance is None and scene is not None:
        importance = ray_importance(grid, scene)
    if codec.prune_below > 0:
        if importance is None:
            raise PlenopackError("importance pruning needs the training views: pass the scene (--scene)")
        keep = np.flatnonzero(importance >= codec.prune_below)
        grid, importance = grid.subset(keep), importance[keep]
    if importance is None:
        importance = opacity_importance(grid)
    vq_state = None
    if codec.finetune > 0:
        if scene is None:
            raise PlenopackError("fine-tuning needs the training views: pass the scene (--scene)")
        grid, vq_state = finetune(grid, scene, codec, codec.finetune, importance, progress=progress)
    return grid, importance, vq_state


def compress_file(src: str | Path, dst: str | Path, codec: CodecConfig, scene=None, progress: bool = False) -> dict:
    """Decode ``src``, apply ``codec`` (with the scene for importance and fine-tuning) into ``dst`` atomically."""
    f = read_plen(src)
    grid, importance, vq_state = prepare(f.grid, codec, scene, progress=progress)
    metadata = dict(f.metadata)
    metadata["compressed_from"] = {"file": Path(src).name, "bytes": f.nbytes, "codec": codec.to_dict()}
    nbytes = write_plen(dst, grid, metadata, codec, importance=importance, vq_state=vq_state)
    out = read_plen(dst)
    return {"file": str(dst), "method": codec.method, "bits": codec.bits, "label": codec.label(), "bytes": nbytes,
            "memory_mb": nbytes / 2 ** 20, "input_bytes": f.nbytes, "ratio": f.nbytes / nbytes,
            "voxels": out.grid.num_voxels, "arrays": out.array_bytes}
