"""Rendering whole views and orbits of a grid (chunked over rays so memory stays bounded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plenopack.atomic import atomic_path
from plenopack.cameras import orbit_poses, pixel_rays
from plenopack.errors import PlenopackError
from plenopack.grid import Grid
from plenopack.kernels import Occupancy, build_occupancy, msi_colour, render_rays

CHUNK_RAYS = 1 << 16


def occupancy_for(grid: Grid) -> Occupancy:
    """The occupancy field renders of this grid skip empty space with."""
    return build_occupancy(grid.links, grid.density, block=4)


def background_colour(grid: Grid, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(B, 3) colour of the grid's background model along rays given in the unit-cube frame."""
    bg = grid.background
    o, d = bg.to_frame(origins, dirs)
    return msi_colour(bg.layers, bg.radii, bg.brightness, o, d)


def background_image(grid: Grid, c2w: np.ndarray, intrinsics, height: int, width: int) -> np.ndarray:
    """(H, W, 3) colour of the grid's background model (MSI) behind every pixel of a view."""
    if grid.background is None:
        raise PlenopackError("the grid has no background model")
    origins, dirs = pixel_rays(c2w, intrinsics, height, width)
    return background_colour(grid, origins, dirs).reshape(height, width, 3)


def render_view(grid: Grid, c2w: np.ndarray, intrinsics, height: int, width: int, background=(1.0, 1.0, 1.0),
                step_size: float = 0.5, stop_thresh: float = 1e-4, occupancy: Occupancy | None = None,
                near: float = 0.0, use_background_model: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one pinhole view (OpenCV c2w in the unit-cube frame; intrinsics fx, fy, cx, cy in pixels).

    Returns rgb (H, W, 3) float32 in [0, 1], depth (H, W) (opacity-weighted distance along the ray, unit-cube
    units) and acc (H, W) accumulated opacity of the foreground grid. The foreground is composited on the
    grid's background model when it has one (and ``use_background_model``), else on the constant
    ``background`` colour (or a per-pixel (H, W, 3) image).
    """
    if occupancy is None:
        occupancy = occupancy_for(grid)
    origins, dirs = pixel_rays(c2w, intrinsics, height, width)
    n = origins.shape[0]
    if grid.background is not None and use_background_model:
        bg = background_colour(grid, origins, dirs)
    else:
        bg = np.asarray(background, dtype=np.float32)
        bg = bg.reshape(n, 3) if bg.size == 3 * n and bg.size != 3 else bg
    rgb = np.empty((n, 3), np.float32)
    depth = np.empty(n, np.float32)
    acc = np.empty(n, np.float32)
    for s in range(0, n, CHUNK_RAYS):
        e = min(s + CHUNK_RAYS, n)
        rgb[s:e], depth[s:e], acc[s:e] = render_rays(grid.links, grid.density, grid.sh, grid.sh_degree,
                                                     origins[s:e], dirs[s:e], bg if bg.ndim == 1 else bg[s:e],
                                                     step_size, stop_thresh, occupancy, near)
    return (np.clip(rgb, 0.0, 1.0).reshape(height, width, 3), depth.reshape(height, width),
            acc.reshape(height, width))


def orbit_intrinsics(size: int, fov_deg: float = 40.0) -> np.ndarray:
    """Square pinhole intrinsics with the given horizontal field of view."""
    f = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([f, f, size / 2, size / 2])


def render_orbit(grid: Grid, n: int, radius: float = 3.0, elevation: float = 25.0, size: int = 256,
                 fov_deg: float = 40.0, background=(1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """Frames (uint8 H x W x 3) of a turntable around the unit cube's z axis (the scene's up)."""
    occ = occupancy_for(grid)
    k = orbit_intrinsics(size, fov_deg)
    frames = []
    for pose in orbit_poses(n, radius, elevation):
        rgb, _, _ = render_view(grid, pose, k, size, size, background, occupancy=occ)
        frames.append((rgb * 255 + 0.5).astype(np.uint8))
    return frames


def write_animation(frames: list[np.ndarray], path: str | Path, fps: int = 20) -> None:
    """Write frames as a looping GIF, or an MP4 when the suffix is .mp4 (needs imageio-ffmpeg)."""
    import imageio.v3 as iio

    path = Path(path)
    if not frames:
        raise PlenopackError("no frames to write", path)
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise PlenopackError("writing .mp4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg)", path) from None
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, np.stack(frames), fps=fps, codec="libx264", extension=".mp4")
        return
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(frames), duration=1000 / fps, loop=0, extension=".gif")
