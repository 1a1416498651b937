"""The .plen file: round trips, determinism, and clear errors for every kind of damage."""

import subprocess
import sys

import numpy as np
import pytest

from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError
from plenopack.fileformat import read_plen, read_plen_header, write_plen
from plenopack.grid import Grid, SphereBackground
from plenopack.render import render_view


def same_voxels(a: Grid, b: Grid):
    """Rows of b in the order of a's voxels."""
    coords = a.occupied_coords()
    return b.links[tuple(coords.T)]


@pytest.fixture(scope="module")
def real_plen(tmp_path_factory, tiny_fit):
    path = tmp_path_factory.mktemp("plen") / "lego.plen"
    write_plen(path, tiny_fit.grid, {"scene": {"name": "lego"}}, CodecConfig("sh", 8, "zstd"))
    return path


def test_float32_round_trip_is_exact_and_renders_identically(tmp_path, tiny_fit):
    g = tiny_fit.grid
    path = tmp_path / "a.plen"
    nbytes = write_plen(path, g, {"note": "x", "array": np.arange(3)})
    f = read_plen(path)
    assert f.nbytes == nbytes == path.stat().st_size
    rows = same_voxels(g, f.grid)
    assert np.array_equal(f.grid.density[rows], g.density)
    assert np.array_equal(f.grid.sh[rows], g.sh)
    assert f.metadata == {"note": "x", "array": [0, 1, 2]}
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, -3]
    k = [40, 40, 20, 20]
    np.testing.assert_allclose(render_view(g, pose, k, 40, 40)[0], render_view(f.grid, pose, k, 40, 40)[0], atol=1e-6)
    assert f.array_bytes["positions"] < g.num_voxels  # far less than one byte per voxel for positions


def test_background_is_stored(tmp_path):
    g = Grid.dense(4, 0)
    layers = np.random.default_rng(0).normal(size=(3, 8, 16, 4)).astype(np.float32)
    g.background = SphereBackground(layers, np.array([2.0, 4.0, 8.0], np.float32))
    write_plen(tmp_path / "b.plen", g, {})
    back = read_plen(tmp_path / "b.plen").grid.background
    assert np.array_equal(back.layers, layers) and np.array_equal(back.radii, [2, 4, 8])
    write_plen(tmp_path / "c.plen", g, {}, CodecConfig("sh", 8))
    q = read_plen(tmp_path / "c.plen").grid.background.layers
    step = (layers.max(axis=(1, 2)) - layers.min(axis=(1, 2))) / 255  # per (layer, channel)
    assert np.all(np.abs(q - layers) <= step[:, None, None, :] / 2 + 1e-6)


def test_files_are_byte_identical_for_same_input(tmp_path, tiny_fit):
    for codec in (CodecConfig(), CodecConfig("kmeans", 4, "zstd"), CodecConfig("vq", codebook=64, keep_exact=0.1)):
        write_plen(tmp_path / "1.plen", tiny_fit.grid, {"k": 1}, codec)
        write_plen(tmp_path / "2.plen", tiny_fit.grid, {"k": 1}, codec)
        assert (tmp_path / "1.plen").read_bytes() == (tmp_path / "2.plen").read_bytes()


def test_header_and_version_checks(tmp_path, real_plen):
    data = bytearray(real_plen.read_bytes())
    h = read_plen_header(real_plen)
    assert h["resolution"] == 32 and h["nbytes"] == len(data)
    bad = tmp_path / "v.plen"
    v = bytearray(data)
    v[8] = 7
    bad.write_bytes(bytes(v))
    with pytest.raises(PlenopackError, match="unsupported format version 7"):
        read_plen(bad)
    m = bytearray(data)
    m[:8] = b"NOTPLEN!"
    bad.write_bytes(bytes(m))
    with pytest.raises(PlenopackError, match="bad magic"):
        read_plen(bad)
    with pytest.raises(PlenopackError, match="no such scene file"):
        read_plen(tmp_path / "missing.plen")


def test_fuzz_truncation_and_bit_flips_always_give_clear_error(tmp_path, real_plen):
    data = real_plen.read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "fuzz.plen"
    cuts = sorted(set(rng.integers(0, len(data), 60).tolist()) | {0, 5, 19, 20, 21, len(data) - 1})
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(PlenopackError):
            read_plen(path)
    for _ in range(150):
        flipped = bytearray(data)
        pos = int(rng.integers(0, len(data)))
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(flipped))
        with pytest.raises(PlenopackError):
            read_plen(path)


def test_cli_reports_corrupt_file_in_one_line(tmp_path, real_plen):
    path = tmp_path / "cut.plen"
    path.write_bytes(real_plen.read_bytes()[:300])
    for verb in ("info", "render"):
        args = [verb, str(path)] + (["-o", str(tmp_path / "x.gif")] if verb == "render" else [])
        r = subprocess.run([sys.executable, "-m", "plenopack", *args], capture_output=True, text=True)
        assert r.returncode == 2
        assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
        assert "cut.plen" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.gif").exists()


def test_write_is_atomic(tmp_path, tiny_fit, monkeypatch):
    path = tmp_path / "atomic.plen"
    write_plen(path, tiny_fit.grid, {})
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("plenopack.fileformat.os.replace", boom)
    with pytest.raises(RuntimeError):
        write_plen(path, tiny_fit.grid, {"changed": True})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["atomic.plen"]
