"""The hot kernels, fused with numba (``parallel=True``, ``fastmath``), each written like a CUDA
kernel (one ray, voxel or column per parallel iteration). `reference` holds plain NumPy versions of the
same maths that the tests hold the kernels against.

Conventions are those of `plenopack.grid` (links, density, SH layout, colour and density activations);
rays are in the unit-cube frame with unit directions.
"""

from plenopack.kernels.device import sh_basis
from plenopack.kernels.occupancy import Occupancy, build_occupancy
from plenopack.kernels.optim import rmsprop_step
from plenopack.kernels.regularizers import sparsity_grad, tv_grad
from plenopack.kernels.render import GradWorkspace, render_rays, render_rays_grad
from plenopack.kernels.sampling import max_ray_weights, trilinear_sample

__all__ = [
    "GradWorkspace", "Occupancy", "build_occupancy", "max_ray_weights", "render_rays", "render_rays_grad",
    "rmsprop_step", "sh_basis", "sparsity_grad", "trilinear_sample", "tv_grad",
]
