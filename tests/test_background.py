"""The multi-sphere background model: gradients, joint fitting, storage, full-frame evaluation."""

import numpy as np
import pytest

from plenopack.evaluate import evaluate
from plenopack.fileformat import read_plen, write_plen
from plenopack.fit import fit, load_preset
from plenopack.kernels import msi_colour, msi_grad
from plenopack.scene import load_scene
from tests.scene_fixtures import make_cameras, write_co3d


def test_msi_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    layers = (rng.normal(size=(3, 6, 12, 4)) * 0.8).astype(np.float32)
    layers[..., 3] = np.abs(layers[..., 3]) + 0.2  # away from the ReLU kink, where differences are one-sided
    radii = np.array([2.0, 4.0, 8.0], np.float32)
    o = rng.uniform(-0.5, 0.5, (60, 3)).astype(np.float32)
    d = rng.normal(size=(60, 3))
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    target = rng.random((60, 3)).astype(np.float32)

    def loss(x):
        return float(((msi_colour(x, radii, 0.5, o, d) - target) ** 2).sum())

    c = msi_colour(layers, radii, 0.5, o, d)
    g = np.zeros_like(layers)
    msi_grad(layers, radii, 0.5, o, d, c, 2 * (c - target), g)
    for f in np.argsort(-np.abs(g).ravel())[:8]:
        plus, minus = layers.copy().ravel(), layers.copy().ravel()
        plus[f] += 1e-2
        minus[f] -= 1e-2
        fd = (loss(plus.reshape(layers.shape)) - loss(minus.reshape(layers.shape))) / 2e-2
        assert g.ravel()[f] == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_msi_fit_explains_the_background(tmp_path):
    c2w, k = make_cameras(12, 30, 40)
    seq = write_co3d(tmp_path, c2w, k, 30, 40)
    scene = load_scene(seq)
    base = dict(reso=[16, 32], steps=[100, 150], batch_rays=1024)
    plain = fit(scene, load_preset("tiny", **base))
    with_bg = fit(scene, load_preset("tiny", **base, background_model="msi", msi_layers=4, msi_height=16))
    assert with_bg.grid.background is not None and with_bg.grid.background.layers.shape == (4, 16, 32, 4)
    a = evaluate(plain.grid, scene)
    b = evaluate(with_bg.grid, scene)
    assert b["psnr"] > a["psnr"] + 3.0  # full frame: the backdrop is outside the cube
    assert b["psnr_masked"] > 15.0
    path = tmp_path / "bg.plen"
    write_plen(path, with_bg.grid, {})
    back = read_plen(path).grid
    np.testing.assert_array_equal(back.background.layers, with_bg.grid.background.layers)
    assert evaluate(back, scene)["psnr"] == pytest.approx(b["psnr"], abs=1e-4)


def test_msi_tv_gradient_matches_finite_differences():
    from plenopack.kernels import msi_tv_grad

    rng = np.random.default_rng(1)
    layers = rng.normal(size=(2, 5, 8, 4)).astype(np.float32)
    g = np.zeros_like(layers)
    msi_tv_grad(layers, 0.3, 0.7, g)
    for f in np.argsort(-np.abs(g).ravel())[:6]:
        plus, minus = layers.astype(np.float64).ravel(), layers.astype(np.float64).ravel()
        plus[f] += 1e-3
        minus[f] -= 1e-3
        fd = (msi_tv_grad(plus.reshape(layers.shape).astype(np.float32), 0.3, 0.7, np.zeros_like(layers))
              - msi_tv_grad(minus.reshape(layers.shape).astype(np.float32), 0.3, 0.7, np.zeros_like(layers))) / 2e-3
        assert g.ravel()[f] == pytest.approx(fd, rel=2e-2)


def test_packed_scene_renders_with_and_without_background(tmp_path):
    import plenopack
    from plenopack.grid import Grid
    from plenopack.fit import init_background

    g = Grid.dense(8, 0)  # empty foreground (density 0)
    g.background = init_background(load_preset("tiny", msi_layers=2, msi_height=8))
    g.background.layers[..., 0] = 3.0  # red sky
    path = tmp_path / "s.plen"
    write_plen(path, g, {"eval_background": [0.0, 0.0, 1.0]})
    s = plenopack.open(path)
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, -3]
    k = [10, 10, 5, 5]
    with_bg = s.render(pose, k, 10, 10).rgb
    alone = s.render(pose, k, 10, 10, background=False).rgb
    assert with_bg[..., 0].min() > with_bg[..., 2].max()  # the MSI (reddish) shows
    np.testing.assert_allclose(alone, np.broadcast_to([0, 0, 1.0], alone.shape))  # foreground only, on blue


def _turntable_scene(n=16, height=24, width=32, tilt_deg=8.0):
    """Cameras on a tilted circle around the cube, every view showing the same camera-fixed "room"
    (a colour ramp with a bright band), as a turntable capture does; no masks."""
    from plenopack.cameras import look_at
    from plenopack.scene.base import Scene

    tilt = np.deg2rad(tilt_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    shift = np.array([0.1, -0.2, 0.0])  # the turntable axis: rot @ +z through shift
    first = look_at(rot @ np.array([3.5, 0.0, 1.2]) + shift, rot @ np.array([0.0, 0.1, 0.3]) + shift)
    c2w = []
    for i in range(n):  # the object turns by 2 pi i / n: in its frame the fixed camera turns the other way
        a = 2 * np.pi * i / n
        turn = np.eye(4)
        turn[:3, :3] = rot @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ rot.T
        turn[:3, 3] = shift - turn[:3, :3] @ shift
        c2w.append(turn @ first)
    v, u = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    room = np.stack([0.2 + 0.6 * u, 0.8 - 0.6 * u, 0.3 + 0.5 * v], -1).astype(np.float32)
    room[height // 3: height // 3 + 3] = 0.85
    k = np.tile([1.2 * width, 1.2 * width, width / 2, height / 2], (n, 1)).astype(np.float64)
    ids = np.arange(n)
    return Scene(name="turntable", images=[room.copy() for _ in range(n)], intrinsics=k, c2w=np.stack(c2w),
                 train_ids=ids[ids % 4 != 0], test_ids=ids[ids % 4 == 0], world_to_unit=np.eye(4),
                 source_format="llff")


def test_turntable_frame_brings_every_camera_to_one_place():
    from plenopack.fit import turntable_axis
    from plenopack.grid import SphereBackground

    scene = _turntable_scene()
    centres = scene.camera_centres()
    axis, point = turntable_axis(centres)
    tilt = np.deg2rad(8.0)
    assert abs(axis @ [0, -np.sin(tilt), np.cos(tilt)]) == pytest.approx(1.0, abs=1e-5)
    bg = SphereBackground(np.zeros((1, 4, 8, 4), np.float32), np.array([2.0], np.float32), 0.5,
                          np.stack([axis, point]))
    forward = scene.c2w[:, :3, 2].astype(np.float32)
    o, d = bg.to_frame(centres.astype(np.float32), forward)
    assert np.abs(o - o[0]).max() < 1e-4 and np.abs(d - d[0]).max() < 1e-4  # one camera in the room
    np.testing.assert_allclose(np.linalg.norm(o - point, axis=1), np.linalg.norm(centres - point, axis=1), rtol=1e-5)
    world = SphereBackground(bg.layers, bg.radii)
    assert world.to_frame(centres, forward)[0] is centres  # world frame: rays untouched


def test_turntable_background_fits_a_room_that_turns_with_the_camera(tmp_path):
    scene = _turntable_scene()
    base = dict(reso=[8], steps=[300], batch_rays=1024, background_model="msi", msi_layers=2, msi_height=64,
                lr_background=0.3)
    world = fit(scene, load_preset("tiny", **base))
    turntable = fit(scene, load_preset("tiny", **base, msi_frame="turntable"))
    a = evaluate(world.grid, scene)["psnr"]
    b = evaluate(turntable.grid, scene)["psnr"]
    assert b > 25.0 and b > a + 5.0, (a, b)  # a world-fixed sphere cannot show the same room from every side
    path = tmp_path / "tt.plen"
    write_plen(path, turntable.grid, {})
    back = read_plen(path).grid
    np.testing.assert_allclose(back.background.turntable, turntable.grid.background.turntable)
    assert evaluate(back, scene)["psnr"] == pytest.approx(b, abs=1e-4)
