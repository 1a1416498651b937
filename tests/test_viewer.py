"""`plenopack view`: the viser viewer driven by a real headless Chromium (playwright), and its camera maths."""

import base64
import io
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import plenopack
from plenopack.build.manifest import write_manifest
from plenopack.cameras import look_at
from plenopack.codecs import CodecConfig
from plenopack.fileformat import write_plen
from plenopack.metrics import psnr
from plenopack.render import colour_depth, depth_range, surface_distance
from plenopack.viewer import SceneViewer, camera_intrinsics, camera_to_c2w, find_manifest_row, scene_facts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_fit):
    """A built-dataset folder holding one scene file of the tiny lego fit, with its manifest row."""
    root = tmp_path_factory.mktemp("viewer")
    path = root / "scenes" / "lego" / "lego.plen"
    path.parent.mkdir(parents=True)
    nbytes = write_plen(path, tiny_fit.grid, {"scene": {"name": "lego", "world_to_unit": np.eye(4).tolist()},
                                              "eval_background": [1, 1, 1]}, CodecConfig("sh", 8, "zstd"))
    write_manifest(root / "manifest.parquet", [
        {"id": "lego", "category": "lego", "path": "scenes/lego/lego.plen", "status": "ok", "bytes": nbytes,
         "psnr": 21.25, "ssim": 0.8125},
        {"id": "other", "category": "lego", "path": "scenes/lego/other.plen", "status": "ok", "psnr": 30.0}])
    return root, path


def test_viser_camera_is_opencv_c2w():
    """A viser camera (R | t, OpenCV axes) maps to the same matrix plenopack's look_at builds."""
    from viser.transforms import SO3

    c2w = look_at([2.0, -1.0, 0.7])
    got = camera_to_c2w(SO3.from_matrix(c2w[:3, :3]).wxyz, c2w[:3, 3])
    np.testing.assert_allclose(got, c2w, atol=1e-12)
    fx, fy, cx, cy = camera_intrinsics(math.radians(90.0), 64, 32)
    assert (fx, fy, cx, cy) == pytest.approx((16.0, 16.0, 32.0, 16.0))  # tan(45 deg) = 1: f = H / 2


def test_scene_facts_read_the_manifest(dataset, tmp_path):
    root, path = dataset
    assert find_manifest_row(path)["id"] == "lego"
    facts = scene_facts(plenopack.open(path))
    assert facts["PSNR"] == "21.25 dB" and facts["SSIM"] == "0.8125" and facts["codec"] == "sh 8-bit + zstd"
    assert facts["resolution"] == "32^3" and facts["background model"] == "none"
    alone = tmp_path / "alone.plen"
    alone.write_bytes(path.read_bytes())
    assert find_manifest_row(alone) is None
    assert scene_facts(plenopack.open(alone))["PSNR"].startswith("n/a")


def test_viewer_toggles_and_background_model(tmp_path, tiny_fit):
    """The panel's toggles pick what is rendered: the MSI background or the object alone; colour or depth."""
    from types import SimpleNamespace

    from viser.transforms import SO3

    from plenopack.grid import Grid, SphereBackground

    layers = np.zeros((1, 4, 8, 4), np.float32)
    layers[..., :3], layers[..., 3] = -2.0, 5.0  # an opaque dark sphere behind the object
    g = tiny_fit.grid
    path = tmp_path / "msi.plen"
    write_plen(path, Grid(g.links, g.density, g.sh, g.sh_degree, SphereBackground(layers, np.array([3.0], np.float32))),
               {"eval_background": [1, 1, 1]})
    c2w = look_at([0.0, -2.6, 1.0])
    camera = SimpleNamespace(wxyz=SO3.from_matrix(c2w[:3, :3]).wxyz, position=c2w[:3, 3], fov=math.radians(45),
                             image_width=40, image_height=30)
    k = camera_intrinsics(camera.fov, 40, 30)
    scene = plenopack.open(path)
    with SceneViewer(path, port=free_port()) as viewer:
        assert not viewer.background_toggle.disabled  # the scene has a background model
        image, got_c2w, got_k, depth = viewer.render_for(camera, 1.0)
        np.testing.assert_allclose(got_c2w, c2w, atol=1e-12)
        np.testing.assert_array_equal(image, (scene.render(c2w, k, 30, 40).rgb * 255 + 0.5).astype(np.uint8))
        on_white = (scene.render(c2w, k, 30, 40, background=False).rgb * 255 + 0.5).astype(np.uint8)
        assert np.abs(image.astype(int) - on_white).max() > 100  # the dark MSI shows around the object
        viewer.background_toggle.value = False
        image, _, _, _ = viewer.render_for(camera, 0.5)
        alone = scene.render(c2w, camera_intrinsics(camera.fov, 20, 15), 15, 20, background=False)
        np.testing.assert_array_equal(image, (alone.rgb * 255 + 0.5).astype(np.uint8))
        viewer.depth_toggle.value = True
        image, _, _, depth = viewer.render_for(camera, 0.5)
        assert depth and image.shape == (15, 20, 3)
        np.testing.assert_array_equal(image, colour_depth(surface_distance(alone.depth, alone.acc), *depth_range(c2w)))
    plain = tmp_path / "plain.plen"
    write_plen(plain, g, {})
    with SceneViewer(plain, port=free_port()) as viewer:
        assert viewer.background_toggle.disabled  # nothing to switch off


def test_view_reports_a_bad_file(tmp_path):
    bad = tmp_path / "bad.plen"
    bad.write_bytes(b"not a scene")
    r = subprocess.run([sys.executable, "-m", "plenopack", "view", str(bad), "--port", "1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {bad}") and "Traceback" not in r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def canvas_pixels(page) -> np.ndarray:
    """What the viewer's WebGL canvas shows (viser keeps its drawing buffer), as float RGB in [0, 1]."""
    from PIL import Image

    url = page.evaluate("() => Array.from(document.querySelectorAll('canvas'))"
                        ".filter(c => c.width > 0)[0].toDataURL('image/png')")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image, np.float32) / 255.0


def wait_for_canvas(page, reference: np.ndarray, what: str, timeout: float = 10.0) -> np.ndarray:
    """The canvas once it shows ``reference`` (uint8, as sent; JPEG-streamed, so within 30 dB)."""
    target = reference.astype(np.float32) / 255

    def shown():
        pixels = canvas_pixels(page)
        return pixels if pixels.shape == target.shape and psnr(pixels, target) > 30 else None

    return wait_for(shown, timeout, what)


def wait_for(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: the viewer's browser test needs "
                    "Debian's chromium (apt-get install -y chromium; .ci/run installs it)")
def test_viewer_in_a_real_browser(dataset, tmp_path):
    """Set a camera, wait for the full-resolution render, read the canvas, compare with PackedScene.render."""
    from playwright.sync_api import sync_playwright

    _, path = dataset
    frames, lock = [], threading.Lock()

    def record(frame):
        with lock:
            frames.append(frame)

    width, height = 320, 240
    eye, fov = np.array([1.9, -1.5, 1.1]), math.radians(50.0)
    expected_c2w = look_at(eye)  # OpenCV, built independently of the viewer's conversion
    scene = plenopack.open(path)
    with SceneViewer(path, port=free_port(), on_frame=record) as viewer, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height}, device_scale_factor=1)
        try:
            page = browser.new_page()
            page.goto(viewer.url)
            client = wait_for(lambda: next(iter(viewer.server.get_clients().values()), None), 20, "the browser")
            camera = client.camera
            camera.fov = fov
            camera.position = tuple(eye)
            camera.look_at = (0.0, 0.0, 0.0)
            camera.up_direction = (0.0, 0.0, 1.0)

            def latest_full(depth: bool):
                with lock:
                    return next((f for f in reversed(frames) if f.full and f.depth == depth
                                 and np.allclose(f.c2w, expected_c2w, atol=1e-4)), None)

            full = wait_for(lambda: latest_full(False), 20, "the full-resolution render of the camera we set")
            assert full.image.shape == (height, width, 3)
            np.testing.assert_allclose(full.intrinsics, camera_intrinsics(fov, width, height), atol=1e-6)
            with lock:  # progressive: a low-resolution preview came first
                assert any(not f.full and f.image.shape[1] == width // 4 for f in frames)
            shown = wait_for_canvas(page, full.image, "the browser to show the full-resolution frame")
            f = height / 2 / math.tan(fov / 2)
            expected = scene.render(expected_c2w, (f, f, width / 2, height / 2), height, width)
            assert (expected.acc > 0.5).mean() > 0.1  # the object fills a good part of the view
            assert psnr(shown, expected.rgb) >= 30.0
            assert psnr(shown, expected.rgb[::-1]) < 25.0  # an upside-down camera would not pass

            page.get_by_text("Depth", exact=True).click()  # the depth toggle, clicked in the page
            depth = wait_for(lambda: latest_full(True), 20, "the depth view")
            want = colour_depth(surface_distance(expected.depth, expected.acc), *depth_range(expected_c2w))
            shown = wait_for_canvas(page, depth.image, "the browser to show the depth view")
            assert psnr(shown, want.astype(np.float32) / 255) >= 25.0
        finally:
            browser.close()
