"""The hot kernels, fused with numba (``parallel=True``, ``fastmath``), each written like a CUDA
kernel (one ray, voxel or column per parallel iteration). `reference` holds plain NumPy versions of the
same maths that the tests hold the kernels against.

Conventions are those of `plenopack.grid` (links, density, SH layout, colour and density activations);
rays are in the unit-cube frame with unit directions.
"""

import hashlib
from pathlib import Path

from plenopack.resources import default_threading

# A fork-safe threading layer unless the process chose one (plenopack.resources.configure_threading).
default_threading()


def _drop_stale_kernel_cache() -> None:
    """numba keys each cached kernel on its own file only, but the kernels inline device functions from the
    other files here (device.py, counter_rng.py, ...): after an edit or upgrade of one of those, a kernel in an
    unchanged file would load stale machine code. So the cache lives with a digest of all kernel sources and
    is dropped when they change."""
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py")))).hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "kernel-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == digest:
            return
        for old in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            old.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        pass


_drop_stale_kernel_cache()

from plenopack.kernels.codebook import (  # noqa: E402
    gather_codebook_rows, nearest_entries, prefer_runs, scatter_codebook_gradient)
from plenopack.kernels.device import sh_basis  # noqa: E402
from plenopack.kernels.msi import msi_colour, msi_grad, msi_tv_grad  # noqa: E402
from plenopack.kernels.occupancy import Occupancy, build_occupancy  # noqa: E402
from plenopack.kernels.optim import all_finite, rmsprop_flagged, rmsprop_step  # noqa: E402
from plenopack.kernels.rays import draw_pixel_rays, pixel_rays, uncomposite  # noqa: E402
from plenopack.kernels.regularizers import Regulariser, tv_grad  # noqa: E402
from plenopack.kernels.render import GradWorkspace, render_pinhole, render_rays, render_rays_grad  # noqa: E402
from plenopack.kernels.render_vjp import render_rays_vjp  # noqa: E402
from plenopack.kernels.sampling import ray_weights, trilinear_sample  # noqa: E402
from plenopack.kernels.voxels import box_dilate, empty_links, flat_of_row, morton_coords, prune_mask  # noqa: E402

__all__ = [
    "GradWorkspace", "Occupancy", "Regulariser", "all_finite", "box_dilate", "build_occupancy", "draw_pixel_rays",
    "empty_links", "flat_of_row", "gather_codebook_rows", "morton_coords", "msi_colour", "msi_grad", "msi_tv_grad",
    "nearest_entries", "pixel_rays", "prefer_runs", "prune_mask", "ray_weights", "render_pinhole", "render_rays",
    "render_rays_grad", "render_rays_vjp", "rmsprop_flagged", "rmsprop_step", "scatter_codebook_gradient", "sh_basis",
    "trilinear_sample", "tv_grad", "uncomposite",
]
