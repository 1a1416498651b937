"""Compile every numba kernel once, before a build starts its workers.

The kernels are cached on disk (``cache=True``). With a cold cache every worker of a build would compile the
same kernels at the same time (tens of CPU-seconds each, on CPUs the other workers need); instead the
coordinator runs a tiny fit of a synthetic scene (masked, and full-frame with an MSI background), an
evaluation, the autograd kernel and a loader's kernels, which compiles (or loads) every kernel signature a
scene build uses and writes the cache the workers then load.
"""

from __future__ import annotations

import numpy as np

from plenopack.cameras import orbit_poses
from plenopack.fit.config import FitConfig
from plenopack.render import orbit_intrinsics
from plenopack.scene.base import Scene

_SIZE = 16  # pixels per side of the synthetic views (SSIM needs 11)


def synthetic_scene(views: int = 6, seed: int = 0) -> Scene:
    """A tiny masked object capture (RGBA-style: composited on white) around the unit cube."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(views):
        mask = np.zeros((_SIZE, _SIZE), np.float32)
        mask[4:12, 4:12] = 1.0
        colour = rng.random((_SIZE, _SIZE, 3)).astype(np.float32)
        images.append(colour * mask[..., None] + (1.0 - mask[..., None]))
        masks.append(mask)
    return Scene(name="warm-up", images=images, intrinsics=np.tile(orbit_intrinsics(_SIZE), (views, 1)),
                 c2w=orbit_poses(views, 3.0), train_ids=np.arange(views - 1), test_ids=np.array([views - 1]),
                 world_to_unit=np.eye(4), source_format="blender", masks=masks, composited_on=(1.0, 1.0, 1.0))


def compile_kernels(config: FitConfig | None = None) -> None:
    """Run every kernel on tiny inputs with ``config``'s SH degree (compiling, or loading from the cache).
    Never raises for the fit itself: a warm-up that fails leaves the compiling to the workers."""
    from plenopack import kernels
    from plenopack.errors import PlenopackError
    from plenopack.evaluate import evaluate
    from plenopack.fit import fit
    from plenopack.kernels.capture import composite_rgba, visual_hull_counts

    base = (config or FitConfig()).replace(reso=[8, 16], steps=[2, 2], batch_rays=64, log_every=1,
                                           occupancy_every=1, lambda_sparsity=1e-3, lambda_mask=0.1,
                                           prune_threshold=0.0, init_density=1.0)
    scene = synthetic_scene()
    grid = None
    for variant in (base.replace(prune="weight"),
                    base.replace(background_model="msi", msi_layers=2, msi_height=4, use_masks=False, prune="sigma")):
        try:
            grid = fit(scene, variant).grid
            evaluate(grid, scene)
        except PlenopackError:
            continue
    if grid is None:
        return
    o = np.array([[0.0, 0.0, -3.0]], np.float32)
    d = np.array([[0.0, 0.0, 1.0]], np.float32)
    kernels.render_rays_vjp(grid.links, grid.density, grid.sh, grid.sh_degree, o, d, np.ones(3, np.float32),
                            np.ones((1, 3), np.float32), None, np.zeros_like(grid.density), np.zeros_like(grid.sh))
    kernels.tv_grad(grid.links, grid.sh, np.arange(4), 1.0, np.zeros_like(grid.sh))
    kernels.rmsprop_step(grid.sh, np.zeros_like(grid.sh), np.zeros_like(grid.sh), 0.1)
    composite_rgba(np.zeros((2, 2, 4), np.uint8), (1.0, 1.0, 1.0))  # a loader's kernels
    visual_hull_counts(np.zeros((1, 3)), scene.masks, scene.intrinsics, scene.c2w)
