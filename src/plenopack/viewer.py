"""Interactive browser viewer of a scene file (`plenopack view`), built on viser.

Every connected browser gets renders from its own camera with the fused renderer (`PackedScene.render`),
sent as the viewport's background image: a preview at ``preview_scale`` of the canvas while the camera
moves, then the full canvas resolution once it has rested for ``rest_seconds``.

Camera convention (checked in viser's source, ``CameraHandle`` in ``_viser.py`` and the client's
``CameraControls.tsx``, which turns three.js's camera into it): a browser's camera is ``wxyz`` (w, x, y, z
unit quaternion) and ``position`` with P_world = R(wxyz) p_camera + position, where the camera looks along
its +z axis with +y pointing down the image: OpenCV axes. Positions are in viser's world frame, which the
viewer makes the scene's unit-cube frame (z up). ``fov`` is the *vertical* field of view in radians and
``image_width`` x ``image_height`` the canvas in device pixels. So the OpenCV camera-to-world matrix is
[R | position] and the pinhole intrinsics are fx = fy = (H / 2) / tan(fov / 2), cx = W / 2, cy = H / 2.

viser is an optional extra (``pip install plenopack[viewer]``); it is imported when a viewer starts.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from plenopack.errors import PlenopackError
from plenopack.packed import PackedScene
from plenopack.render import colour_depth, depth_range, surface_distance

# The first view of a new browser: `render --orbit`'s first frame (azimuth 0, 25 degrees up, 3.2 away, 40 deg).
INITIAL_EYE = 3.2 * np.array([np.cos(np.deg2rad(25.0)), 0.0, np.sin(np.deg2rad(25.0))])
INITIAL_FOV = np.deg2rad(40.0)


def camera_to_c2w(wxyz, position) -> np.ndarray:
    """OpenCV camera-to-world (4, 4) of a viser camera (see the module docstring)."""
    from viser.transforms import SO3

    c2w = np.eye(4)
    c2w[:3, :3] = SO3(np.asarray(wxyz, np.float64)).as_matrix()
    c2w[:3, 3] = np.asarray(position, np.float64)
    return c2w


def camera_intrinsics(fov_y: float, width: int, height: int) -> np.ndarray:
    """(fx, fy, cx, cy) in pixels of a ``width`` x ``height`` image with vertical field of view ``fov_y``
    (radians), square pixels and the principal point at the centre."""
    f = 0.5 * height / np.tan(0.5 * fov_y)
    return np.array([f, f, 0.5 * width, 0.5 * height])


def find_manifest_row(path: str | Path, levels: int = 4) -> dict | None:
    """The manifest row of a scene file inside a built dataset (a folder above it with manifest.parquet whose
    ``path`` column names this file), or None."""
    from plenopack.build.manifest import read_manifest

    target = Path(path).resolve()
    for folder in list(target.parents)[:levels]:
        manifest = folder / "manifest.parquet"
        if manifest.exists():
            for row in read_manifest(manifest):
                if row.get("path") and (folder / row["path"]).resolve() == target:
                    return row
    return None


def scene_facts(scene: PackedScene) -> dict[str, str]:
    """What the viewer's panel shows about a scene: name, codec, bytes, resolution, voxels, SH degree,
    background model, and the dataset manifest's PSNR / SSIM when the file belongs to a built dataset."""
    h = scene.header
    codec = h.get("codec") or {}
    method = codec.get("method", "float32")
    bits = codec.get("bits")
    if method == "vq":
        codec_text = f"vq, {codec.get('codebook')} codes"
    else:
        codec_text = method + (f" {bits}-bit" if bits and method != "float32" else "")
    if codec.get("entropy"):
        codec_text += f" + {codec['entropy']}"
    facts = {"scene": str(scene.metadata.get("scene", {}).get("name") or scene.path.stem),
             "codec": codec_text,
             "bytes": f"{scene.nbytes:,} ({scene.nbytes / 2 ** 20:.2f} MB)",
             "resolution": f"{scene.resolution}^3",
             "voxels": f"{scene.num_voxels:,}",
             "SH degree": str(h.get("sh_degree")),
             "background model": "MSI" if h.get("background") else "none"}
    row = find_manifest_row(scene.path)
    if row is None:
        facts["PSNR"] = "n/a (not in a built dataset)"
    else:
        for key, label, unit in (("psnr", "PSNR", " dB"), ("psnr_masked", "PSNR (object)", " dB"),
                                 ("ssim", "SSIM", "")):
            if row.get(key) is not None:
                facts[label] = f"{row[key]:.2f}{unit}" if unit else f"{row[key]:.4f}"
        facts.setdefault("PSNR", "n/a (not evaluated)")
        facts["category"] = str(row.get("category"))
    return facts


@dataclass
class ViewerFrame:
    """One image the viewer sent to a browser (passed to ``on_frame``)."""

    client_id: int
    c2w: np.ndarray  # (4, 4) OpenCV camera-to-world, unit-cube frame
    intrinsics: np.ndarray  # (fx, fy, cx, cy) of ``image``
    image: np.ndarray  # (H, W, 3) uint8, as sent (before JPEG encoding)
    full: bool  # full canvas resolution (the camera rested), else a preview
    depth: bool  # the depth view
    seconds: float  # render time


class SceneViewer:
    """A viser server showing one scene file to every browser that connects (see the module docstring).

    ``on_frame``: optional callback called with each `ViewerFrame` after it was queued for the browser.
    ``port``: the first port tried; `start` moves on to the next free one (``port`` then holds it).
    """

    def __init__(self, path: str | Path, host: str = "127.0.0.1", port: int = 8080, preview_scale: float = 0.25,
                 rest_seconds: float = 0.3, jpeg_quality: int = 90,
                 on_frame: Callable[[ViewerFrame], None] | None = None):
        if not 0.0 < preview_scale <= 1.0:
            raise PlenopackError(f"preview scale must be in (0, 1], got {preview_scale}")
        self.scene = PackedScene(path)
        self.host, self.port = host, port
        self.preview_scale, self.rest_seconds, self.jpeg_quality = preview_scale, rest_seconds, jpeg_quality
        self.on_frame = on_frame
        self._render_lock = threading.Lock()  # numba's workqueue pool and the lazy decode are single-caller
        self._loops: dict[int, _ClientLoop] = {}
        self._server = None

    @property
    def server(self):
        """The running `viser.ViserServer` (None before `start`)."""
        return self._server

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> SceneViewer:
        """Decode the scene, start the server and return at once (the server runs in its own threads)."""
        try:
            import viser
        except ImportError:
            raise PlenopackError("the viewer needs the viser package (pip install 'plenopack[viewer]')") from None
        _ = self.scene.grid  # decode before the first browser waits for it
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner; the library stays quiet
            server = viser.ViserServer(host=self.host, port=self.port, verbose=False)
        self._server = server
        self.port = server.get_port()  # viser moves on to the next free port when this one is taken
        server.scene.set_up_direction("+z")
        server.initial_camera.position = tuple(INITIAL_EYE)
        server.initial_camera.look_at = (0.0, 0.0, 0.0)
        server.initial_camera.up = (0.0, 0.0, 1.0)
        server.initial_camera.fov = float(INITIAL_FOV)
        self._build_gui(server)
        server.on_client_connect(self._connect)
        server.on_client_disconnect(self._disconnect)
        return self

    def stop(self) -> None:
        for loop in list(self._loops.values()):
            loop.close()
        if self._server is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                self._server.stop()
            self._server = None

    def __enter__(self) -> SceneViewer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- GUI and clients
    def _build_gui(self, server) -> None:
        gui = server.gui
        with gui.add_folder("Scene"):
            rows = "\n".join(f"| {k} | {v} |" for k, v in scene_facts(self.scene).items())
            gui.add_markdown(f"| | |\n|---|---|\n{rows}")
        with gui.add_folder("View"):
            has_model = bool(self.scene.header.get("background"))
            self.background_toggle = gui.add_checkbox(
                "Background", initial_value=True, disabled=not has_model,
                hint="Show the scene's background model (MSI); off: the object alone." if has_model
                else "This scene has no background model: the object is shown on its evaluation colour.")
            self.depth_toggle = gui.add_checkbox("Depth", initial_value=False,
                                                 hint="Distance along each ray, colour-mapped (near: dark).")
            self.status = gui.add_text("Last frame", initial_value="", disabled=True)
        for handle in (self.background_toggle, self.depth_toggle):
            handle.on_update(lambda _event: self._refresh_all())

    def _refresh_all(self) -> None:
        for loop in list(self._loops.values()):
            loop.touch()

    def _connect(self, client) -> None:
        loop = _ClientLoop(self, client)
        self._loops[client.client_id] = loop
        loop.start()

    def _disconnect(self, client) -> None:
        loop = self._loops.pop(client.client_id, None)
        if loop is not None:
            loop.close()

    # ---------------------------------------------------------------- rendering
    def render_for(self, camera, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Render what a viser camera sees at ``scale`` of its canvas: (uint8 image, c2w, intrinsics, depth view)."""
        width = max(1, int(round(camera.image_width * scale)))
        height = max(1, int(round(camera.image_height * scale)))
        c2w = camera_to_c2w(camera.wxyz, camera.position)
        k = camera_intrinsics(camera.fov, width, height)
        depth_view = bool(self.depth_toggle.value)
        background = None if self.background_toggle.value else False
        with self._render_lock:
            out = self.scene.render(c2w, k, height, width, background)
        if depth_view:
            image = colour_depth(surface_distance(out.depth, out.acc), *depth_range(c2w))
        else:
            image = (out.rgb * 255 + 0.5).astype(np.uint8)
        return image, c2w, k, depth_view

    def send_frame(self, client, full: bool) -> None:
        camera = client.camera
        if camera.image_width <= 0 or camera.image_height <= 0:
            return
        start = time.perf_counter()
        image, c2w, k, depth_view = self.render_for(camera, 1.0 if full else self.preview_scale)
        seconds = time.perf_counter() - start
        client.scene.set_background_image(image, format="jpeg", jpeg_quality=self.jpeg_quality)
        self.status.value = (f"{image.shape[1]}x{image.shape[0]} {'full' if full else 'preview'}, "
                             f"{seconds * 1000:.0f} ms")
        if self.on_frame is not None:
            self.on_frame(ViewerFrame(client.client_id, c2w, k, image, full, depth_view, seconds))


class _ClientLoop:
    """One browser's render thread: a preview as soon as its camera (or a toggle) changes, the full
    resolution once nothing has changed for ``rest_seconds``."""

    def __init__(self, viewer: SceneViewer, client):
        self.viewer, self.client = viewer, client
        self._cond = threading.Condition()
        self._version = 0  # bumped on every change
        self._changed_at = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"plenopack-view-{client.client_id}")
        client.camera.on_update(lambda _camera: self.touch())

    def start(self) -> None:
        self.touch()
        self._thread.start()

    def touch(self) -> None:
        with self._cond:
            self._version += 1
            self._changed_at = time.monotonic()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _next_job(self, previewed: int, full_shown: int) -> tuple[int, bool] | None:
        """Wait for work: (version, full) to render, or None once closed."""
        with self._cond:
            while not self._closed:
                if self._version != previewed:
                    return self._version, False
                if full_shown != self._version:
                    wait = self._changed_at + self.viewer.rest_seconds - time.monotonic()
                    if wait <= 0:
                        return self._version, True
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        previewed = full_shown = -1
        while (job := self._next_job(previewed, full_shown)) is not None:
            version, full = job
            full = full or self.viewer.preview_scale >= 1.0  # a preview at full scale is the full frame
            self.viewer.send_frame(self.client, full)
            previewed = version
            if full:
                full_shown = version
