"""The hot kernels, fused with numba (``parallel=True``, ``fastmath``), each written like a CUDA
kernel (one ray, voxel or column per parallel iteration). `reference` holds plain NumPy versions of the
same maths that the tests hold the kernels against.

Conventions are those of `plenopack.grid` (links, density, SH layout, colour and density activations);
rays are in the unit-cube frame with unit directions.
"""

import os

import numba

# Fork safety: DataLoader workers and process pools fork, and GNU OpenMP aborts a forked child of a process that
# used it. numba's own "workqueue" thread pool survives fork. NUMBA_THREADING_LAYER still wins when set.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from plenopack.kernels.device import sh_basis  # noqa: E402
from plenopack.kernels.msi import msi_colour, msi_grad, msi_tv_grad  # noqa: E402
from plenopack.kernels.occupancy import Occupancy, build_occupancy  # noqa: E402
from plenopack.kernels.optim import rmsprop_step  # noqa: E402
from plenopack.kernels.regularizers import sparsity_grad, tv_grad  # noqa: E402
from plenopack.kernels.render import GradWorkspace, render_rays, render_rays_grad  # noqa: E402
from plenopack.kernels.render_vjp import render_rays_vjp  # noqa: E402
from plenopack.kernels.sampling import max_ray_weights, trilinear_sample  # noqa: E402

__all__ = [
    "GradWorkspace", "Occupancy", "build_occupancy", "max_ray_weights", "msi_colour", "msi_grad", "msi_tv_grad", "render_rays",
    "render_rays_grad", "render_rays_vjp",
    "rmsprop_step", "sh_basis", "sparsity_grad", "trilinear_sample", "tv_grad",
]
