"""PyTorch access to a scene file: differentiable renders through the fused numba kernels (CPU tensors).

``TorchScene.from_file(path)`` decodes a `.plen` file into a ``torch.nn.Module`` whose parameters are the
grid's ``density`` (N,) and ``sh`` (N, C) (layout of `plenopack.grid`) and, when the scene has one, its MSI
background's raw ``background_layers`` (L, H, W, 4). ``render_rays(origins, dirs)`` returns each ray's colour
(B, 3) and accumulated opacity (B,) of the foreground grid; both are differentiable with respect to every
parameter (and to a background colour tensor given by the caller), for any loss: the backward pass is
`plenopack.kernels.render_vjp` (the grid) and `plenopack.kernels.msi_grad` (the background), which take the
upstream gradient per ray. Rays are in the unit-cube frame with unit directions; they are not differentiated.

The colour is not clamped to [0, 1] (as in the fit); `render` clamps it for display. Marching parameters
(``step_size`` in voxels, ``stop_thresh``, ``near``) are those of a fit by default (``stop_thresh`` 1e-4, finer
than the 1e-3 at which `plenopack.render.render_view` stops rays for images).
Empty space is skipped with an occupancy field rebuilt whenever ``density`` has changed (an optimiser step),
so skipping never changes a result. torch is an optional extra (``pip install plenopack[torch]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from plenopack.cameras import pixel_rays
from plenopack.fileformat import read_plen
from plenopack.grid import Grid, SphereBackground
from plenopack.kernels import build_occupancy, msi_colour, msi_grad, render_rays
from plenopack.kernels.render import GradWorkspace
from plenopack.kernels.render_vjp import render_rays_vjp


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 NumPy view (or copy) of a CPU tensor, outside autograd."""
    if t.device.type != "cpu":
        raise ValueError(f"plenopack.torch renders on the CPU; got a tensor on {t.device}")
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)


class _RenderRays(torch.autograd.Function):
    """(density, sh, background (B, 3)) -> (rgb (B, 3), acc (B,)) of the foreground grid, composited on background."""

    @staticmethod
    def forward(ctx, density, sh, background, origins, dirs, scene):
        d, s, bg = _numpy(density), _numpy(sh), _numpy(background)
        o, r = _numpy(origins), _numpy(dirs)
        occupancy = scene.occupancy()
        rgb, _, acc = render_rays(scene.links, d, s, scene.sh_degree, o, r, bg, scene.step_size, scene.stop_thresh,
                                  occupancy, scene.near)
        ctx.save_for_backward(density, sh, background, origins, dirs)
        ctx.scene, ctx.occupancy = scene, occupancy
        return torch.from_numpy(rgb), torch.from_numpy(acc)

    @staticmethod
    def backward(ctx, grad_rgb, grad_acc):
        density, sh, background, origins, dirs = ctx.saved_tensors
        scene = ctx.scene
        n = origins.shape[0]
        g_rgb = np.zeros((n, 3), np.float32) if grad_rgb is None else _numpy(grad_rgb)
        g_acc = None if grad_acc is None else _numpy(grad_acc)
        grad_density = np.zeros(density.shape, np.float32)
        grad_sh = np.zeros(sh.shape, np.float32)
        _, acc = render_rays_vjp(scene.links, _numpy(density), _numpy(sh), scene.sh_degree, _numpy(origins),
                                 _numpy(dirs), _numpy(background), g_rgb, g_acc, grad_density, grad_sh,
                                 scene.step_size, scene.stop_thresh, ctx.occupancy, scene.near, scene.workspace())
        grad_background = None
        if ctx.needs_input_grad[2]:  # rgb = foreground + (1 - acc) * background
            grad_background = torch.from_numpy((1.0 - acc)[:, None] * g_rgb)
        return torch.from_numpy(grad_density), torch.from_numpy(grad_sh), grad_background, None, None, None


class _MSIColour(torch.autograd.Function):
    """layers (L, H, W, 4) -> background colour (B, 3) of rays given in the background's frame."""

    @staticmethod
    def forward(ctx, layers, origins, dirs, radii, brightness):
        colour = msi_colour(_numpy(layers), radii, brightness, _numpy(origins), _numpy(dirs))
        ctx.save_for_backward(layers, origins, dirs)
        ctx.radii, ctx.brightness, ctx.colour = radii, brightness, colour
        return torch.from_numpy(colour)

    @staticmethod
    def backward(ctx, grad_colour):
        layers, origins, dirs = ctx.saved_tensors
        grad_layers = np.zeros(layers.shape, np.float32)
        msi_grad(_numpy(layers), ctx.radii, ctx.brightness, _numpy(origins), _numpy(dirs), ctx.colour,
                 _numpy(grad_colour), grad_layers)
        return torch.from_numpy(grad_layers), None, None, None, None


class TorchScene(torch.nn.Module):
    """A scene's grid (and MSI background) as PyTorch parameters, rendered by the fused kernels (module docstring).

    ``background``: the constant colour behind the grid for scenes without a background model (default: the
    file's evaluation colour).
    """

    def __init__(self, grid: Grid, background=(1.0, 1.0, 1.0), step_size: float = 0.5, stop_thresh: float = 1e-4,
                 near: float = 0.0):
        super().__init__()
        self.links = np.ascontiguousarray(grid.links, np.int32)
        self.sh_degree = grid.sh_degree
        self.step_size, self.stop_thresh, self.near = step_size, stop_thresh, near
        self.density = torch.nn.Parameter(torch.from_numpy(np.array(grid.density, np.float32)))
        self.sh = torch.nn.Parameter(torch.from_numpy(np.array(grid.sh, np.float32)))
        self.register_buffer("background_colour", torch.tensor(np.asarray(background, np.float32).reshape(3)))
        self.background_model = grid.background  # radii, brightness and turntable frame; layers live below
        if grid.background is not None:
            self.background_layers = torch.nn.Parameter(torch.from_numpy(np.array(grid.background.layers)))
        else:
            self.background_layers = None
        self._occupancy = None
        self._occupancy_version = None
        self._workspace = None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> TorchScene:
        """Decode a .plen file; keyword arguments as the constructor (background: the file's evaluation colour)."""
        f = read_plen(path)
        kwargs.setdefault("background", tuple(f.metadata.get("eval_background") or (1.0, 1.0, 1.0)))
        return cls(f.grid, **kwargs)

    # ---------------------------------------------------------------- kernel state
    def occupancy(self):
        """Empty-space field of the current density (rebuilt after any in-place change to it)."""
        version = (self.density.data_ptr(), self.density._version)
        if self._occupancy_version != version:
            self._occupancy = build_occupancy(self.links, _numpy(self.density), block=4)
            self._occupancy_version = version
        return self._occupancy

    def workspace(self) -> GradWorkspace:
        if self._workspace is None or not self._workspace.fits(self.density.shape[0], self.sh.shape[1]):
            self._workspace = GradWorkspace(self.density.shape[0], self.sh.shape[1])
        return self._workspace

    # ---------------------------------------------------------------- rendering
    def background_rays(self, origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """(B, 3) colour of the MSI background model along rays (differentiable in ``background_layers``)."""
        if self.background_layers is None:
            raise ValueError("this scene has no background model")
        bg = self.background_model
        o, d = bg.to_frame(_numpy(origins), _numpy(dirs))
        return _MSIColour.apply(self.background_layers, torch.from_numpy(np.ascontiguousarray(o)),
                                torch.from_numpy(np.ascontiguousarray(d)), np.asarray(bg.radii, np.float32),
                                float(bg.brightness))

    def render_rays(self, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour (B, 3) and accumulated opacity (B,) of rays (B, 3) (unit-cube frame, unit directions).

        ``background``: None = the MSI model when the scene has one, else the constant ``background_colour``;
        or a tensor (3,) or (B, 3), which may require grad.
        """
        n = origins.shape[0]
        if background is None:
            background = (self.background_rays(origins, dirs) if self.background_layers is not None
                          else self.background_colour)
        background = background.to(torch.float32).expand(n, 3)
        return _RenderRays.apply(self.density, self.sh, background, origins, dirs, self)

    def render(self, c2w, intrinsics, height: int, width: int, background: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A pinhole view (OpenCV c2w in the unit-cube frame; intrinsics fx, fy, cx, cy in pixels):
        rgb (H, W, 3) clamped to [0, 1] and acc (H, W), both differentiable."""
        o, d = pixel_rays(np.asarray(c2w, np.float64), intrinsics, height, width)
        rgb, acc = self.render_rays(torch.from_numpy(o), torch.from_numpy(d), background)
        return rgb.clamp(0.0, 1.0).reshape(height, width, 3), acc.reshape(height, width)

    def to_grid(self) -> Grid:
        """The current parameters as a `Grid` (copies), e.g. to write a trained scene with write_plen."""
        bg = self.background_model
        if bg is not None:
            bg = SphereBackground(_numpy(self.background_layers).copy(), bg.radii, bg.brightness, bg.turntable)
        return Grid(self.links.copy(), _numpy(self.density).copy(), _numpy(self.sh).copy(), self.sh_degree, bg)
