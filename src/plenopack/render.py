"""Rendering whole views and orbits of a grid, and writing them out as they come.

A view is rendered by one kernel that makes each pixel's ray itself (no per-ray arrays), orbits and camera
lists are generators, and the writers (`AnimationWriter`, `DepthWriter`) take one frame at a time, so memory
stays flat however many frames a render has. Depth: the renderer's ``depth`` is the opacity-weighted distance
along each ray in unit-cube units, sum_k w_k t_k (not divided by acc); `surface_distance` turns it into the
expected distance of the surface the ray stops at.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from plenopack.atomic import atomic_path
from plenopack.cameras import orbit_poses, pixel_rays
from plenopack.errors import PlenopackError
from plenopack.grid import Grid
from plenopack.kernels import Occupancy, build_occupancy, msi_colour, render_pinhole

RENDER_STOP_THRESH = 1e-3  # images stop marching a ray once its transmittance is below this: what is left can change
# a pixel by at most 1e-3 (a quarter of an 8-bit level); on lego at 800 px 1.2x faster than the fits' 1e-4, and
# the val PSNR moves by 0.0004 dB. Fits keep their own threshold (`FitConfig.stop_thresh`) for the gradients.
TILE = 16  # views are rendered in TILE x TILE pixel tiles, one parallel task each: a compact bundle of rays
# that reads the same voxels, not a third of a row of an 800 px image (measured: 25% faster at 800 x 800)


RENDER_STEP_SIZE = 0.5  # voxels between samples along a ray when a view is rendered (a fit's default render_step_size)


def recorded_render_options(metadata: dict) -> dict[str, float]:
    """How the views of a stored fit are rendered, as `render_view` keywords: ``step_size`` (voxels; the fit's
    ``render_step_size``) and ``near`` (unit-cube units in front of the camera where rays start; its
    ``near_clip``: what lies nearer was never trained), from the fit configuration in the file's metadata, so
    that every image of a file (`render`, the viewer, `PackedScene.render`) is rendered as `eval` scores it.
    Files without a recorded fit get the renderer's defaults."""
    fit = metadata.get("fit")
    config = fit.get("config") if isinstance(fit, dict) else None
    config = config if isinstance(config, dict) else {}
    step, near = config.get("render_step_size"), config.get("near_clip")
    return {"step_size": float(step) if _finite_number(step) and step > 0 else RENDER_STEP_SIZE,
            "near": float(near) if _finite_number(near) and near >= 0 else 0.0}


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


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
                step_size: float = RENDER_STEP_SIZE, stop_thresh: float = RENDER_STOP_THRESH,
                occupancy: Occupancy | None = None, near: float = 0.0, use_background_model: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one pinhole view (OpenCV c2w in the unit-cube frame; intrinsics fx, fy, cx, cy in pixels).

    Returns rgb (H, W, 3) float32 in [0, 1], depth (H, W) (opacity-weighted distance along the ray, unit-cube
    units) and acc (H, W) accumulated opacity of the foreground grid. The foreground is composited on the
    grid's background model when it has one (and ``use_background_model``), else on the constant
    ``background`` colour (or a per-pixel (H, W, 3) image).
    """
    if occupancy is None:
        occupancy = occupancy_for(grid)
    rgb, depth, acc = render_pinhole(grid.links, grid.density, grid.sh, grid.sh_degree, c2w, intrinsics, height,
                                     width, step_size, stop_thresh, occupancy, near, TILE)
    if grid.background is not None and use_background_model:
        behind = background_image(grid, c2w, intrinsics, height, width)
    else:
        behind = np.asarray(background, dtype=np.float32)
        behind = behind.reshape(height, width, 3) if behind.size == 3 * height * width and behind.size != 3 else behind
    rgb += (1.0 - acc)[..., None] * behind
    return np.clip(rgb, 0.0, 1.0, out=rgb), depth, acc


def orbit_intrinsics(size: int, fov_deg: float = 40.0) -> np.ndarray:
    """Square pinhole intrinsics with the given horizontal field of view."""
    f = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([f, f, size / 2, size / 2])


def iter_views(grid: Grid, poses: Iterable[np.ndarray], intrinsics, height: int, width: int,
               background=(1.0, 1.0, 1.0), step_size: float = RENDER_STEP_SIZE, near: float = 0.0
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Render views one at a time: yields (rgb, depth, acc) as `render_view` returns them.

    ``intrinsics``: one (fx, fy, cx, cy) for every view, or one row per pose; ``step_size`` and ``near`` as
    `render_view`'s (a stored fit's: `recorded_render_options`).
    """
    occ = occupancy_for(grid)
    k = np.asarray(intrinsics, np.float64)
    for i, pose in enumerate(poses):
        yield render_view(grid, pose, k if k.ndim == 1 else k[i], height, width, background, step_size=step_size,
                          occupancy=occ, near=near)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to uint8 (rounded)."""
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def render_orbit(grid: Grid, n: int, radius: float = 3.0, elevation: float = 25.0, size: int = 256,
                 fov_deg: float = 40.0, background=(1.0, 1.0, 1.0)) -> Iterator[np.ndarray]:
    """Frames (uint8 H x W x 3) of a turntable around the unit cube's z axis (the scene's up), one at a time."""
    poses = orbit_poses(n, radius, elevation)
    for rgb, _, _ in iter_views(grid, poses, orbit_intrinsics(size, fov_deg), size, size, background):
        yield to_uint8(rgb)


# ---------------------------------------------------------------- depth
SURFACE_MIN_ACC = 0.5  # rays less opaque than this have no surface (NaN distance)


def surface_distance(depth: np.ndarray, acc: np.ndarray, min_acc: float = SURFACE_MIN_ACC) -> np.ndarray:
    """Expected distance to the surface along each ray, depth / acc (the render's units), NaN where
    acc < ``min_acc`` (the ray mostly passes through the grid)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(acc >= min_acc, depth / np.maximum(acc, 1e-12), np.nan).astype(np.float32)


def depth_range(c2w: np.ndarray) -> tuple[float, float]:
    """Nearest and farthest distance (unit-cube units) from a camera to the unit cube's bounding sphere."""
    distance = float(np.linalg.norm(np.asarray(c2w, np.float64)[:3, 3]))
    return max(distance - np.sqrt(3.0), 0.0), distance + np.sqrt(3.0)


def colour_depth(distance: np.ndarray, near: float, far: float, cmap: str = "turbo") -> np.ndarray:
    """Colour-map distances (H, W) over [near, far] with a matplotlib colormap: uint8 (H, W, 3); NaN is black."""
    from matplotlib import colormaps

    t = np.clip((distance - near) / max(far - near, 1e-12), 0.0, 1.0)
    image = colormaps[cmap](np.nan_to_num(t, nan=0.0), bytes=True)[..., :3]
    image[~np.isfinite(distance)] = 0
    return image


def world_scale(world_to_unit: np.ndarray) -> float:
    """Scale s of the similarity x_unit = s R x_world + t: unit-cube lengths divided by s are world lengths."""
    return float(np.cbrt(abs(np.linalg.det(np.asarray(world_to_unit, np.float64)[:3, :3]))))


# ---------------------------------------------------------------- writing
class _AtomicTarget:
    """A temporary file next to ``path`` that replaces it atomically on `commit` (see `plenopack.atomic`)."""

    def __init__(self, path: Path):
        self._stack = ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(path))

    def commit(self) -> None:
        self._stack.close()

    def abandon(self, exc: BaseException) -> None:
        self._stack.__exit__(type(exc), exc, exc.__traceback__)


class AnimationWriter:
    """Write frames (uint8 H x W x 3, all the same size) as they come, as a looping GIF or, when the path
    ends in .mp4, an H.264 MP4 (needs imageio-ffmpeg). Use as a context manager: the file appears under its
    name only when the block ends without an error.

    MP4 frames stream to ffmpeg (an odd width or height gets its last column or row repeated: H.264 needs even
    sizes). A GIF needs all frames before it is written (Pillow's encoder): each frame is kept palettised (one
    byte per pixel, as the GIF stores it) until the end.
    """

    def __init__(self, path: str | Path, fps: int = 20):
        self.path = Path(path)
        self.fps = fps
        self.mp4 = self.path.suffix.lower() == ".mp4"
        self.count = 0
        self._shape = None
        self._gif_frames: deque = deque()
        self._video = None
        if self.mp4:
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise PlenopackError("writing .mp4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg)",
                                     self.path) from None
        self._target = _AtomicTarget(self.path)
        self._tmp = self._target.tmp

    def __enter__(self) -> AnimationWriter:
        return self

    def append(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise PlenopackError(f"frames must be uint8 H x W x 3, got {frame.dtype} {frame.shape}", self.path)
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise PlenopackError(f"frame {self.count} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                                 f"{self._shape[1]}x{self._shape[0]}: an animation needs one size", self.path)
        if self.mp4:
            if self._video is None:
                import imageio.v2 as iio2

                self._video = iio2.get_writer(self._tmp, format="FFMPEG", mode="I", fps=self.fps, codec="libx264",
                                              macro_block_size=1, ffmpeg_log_level="error")
            h, w = frame.shape[:2]  # H.264's 4:2:0 needs even sizes: repeat the last row / column when odd
            self._video.append_data(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
        else:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None:
                raise exc
            if not self.count:
                raise PlenopackError("no frames to write", self.path)
            if self.mp4:
                self._video.close()
                self._video = None
            else:
                self._save_gif()
        except BaseException as failure:
            self._close()
            self._target.abandon(failure)
            raise
        self._close()
        self._target.commit()

    def _close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None
        self._gif_frames = deque()

    def _save_gif(self) -> None:
        frames = self._gif_frames
        first = frames.popleft()

        def rest():  # hand the frames over one by one: each is freed once the encoder has its own copy
            while frames:
                yield frames.popleft()

        first.save(self._tmp, format="GIF", save_all=True, append_images=rest(), duration=1000 / self.fps, loop=0)


def write_animation(frames: Iterable[np.ndarray], path: str | Path, fps: int = 20) -> int:
    """Write frames (uint8, any iterable: a generator streams) as a GIF, or an MP4 when the suffix is .mp4.
    Returns the number of frames."""
    with AnimationWriter(path, fps) as writer:
        for frame in frames:
            writer.append(frame)
    return writer.count


class DepthWriter:
    """Depth of ``count`` frames, written as they come into a folder: ``depth.npy`` (count, H, W) float32,
    distance along each ray to the surface in the capture's world units (NaN where a ray meets no surface,
    see `surface_distance`), appended frame by frame after its header; and ``depth_0000.png`` ... colour-mapped
    (turbo, near dark blue, far red; black: no surface) over the distances from each camera to the unit
    cube's bounding sphere. ``world_scale``: s of the scene's world_to_unit (1 keeps unit-cube units)."""

    def __init__(self, folder: str | Path, count: int, world_scale: float = 1.0):
        self.folder = Path(folder)
        self.count, self.scale = count, world_scale
        self.index = 0
        self.path = self.folder / "depth.npy"
        self._target: _AtomicTarget | None = None
        self._file = None
        self._shape = None

    def __enter__(self) -> DepthWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._target = _AtomicTarget(self.path)
        return self

    def append(self, depth: np.ndarray, acc: np.ndarray, c2w: np.ndarray) -> None:
        from numpy.lib import format as npy
        from PIL import Image

        if self.index >= self.count:
            raise PlenopackError(f"more than the {self.count} depth frames announced", self.path)
        if self._file is None:
            self._shape = depth.shape
            self._file = open(self._target.tmp, "wb")
            npy.write_array_header_1_0(self._file, {"descr": npy.dtype_to_descr(np.dtype("<f4")),
                                                    "fortran_order": False, "shape": (self.count,) + depth.shape})
        elif depth.shape != self._shape:
            raise PlenopackError(f"depth frame {self.index} is {depth.shape}, the first was {self._shape}", self.path)
        distance = surface_distance(depth, acc)
        self._file.write((distance / self.scale).astype("<f4").tobytes())
        png = self.folder / f"depth_{self.index:04d}.png"
        with atomic_path(png) as tmp:
            Image.fromarray(colour_depth(distance, *depth_range(c2w))).save(tmp, format="PNG")
        self.index += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None:
                raise exc
            if self.index != self.count:
                raise PlenopackError(f"{self.index} depth frames written, {self.count} announced", self.path)
        except BaseException as failure:
            if self._file is not None:
                self._file.close()
            self._target.abandon(failure)
            raise
        self._file.close()
        self._target.commit()
