"""The .plen file: round trips, determinism, clear errors for every kind of damage and hostile header, the
memory budget and the memory formula (measured)."""

import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from plenopack.codecs import CodecConfig, entropy
from plenopack.errors import PlenopackError
from plenopack.fileformat import (PREFIX, _decode_positions, memory_required, read_plen, read_plen_header,
                                  resolve_memory_budget, write_plen)
from plenopack.grid import Grid, SphereBackground
from plenopack.packed import PackedScene
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


# ---------------------------------------------------------------- hostile headers (known crashes and their kin)

FIXTURES = Path(__file__).resolve().parent / "data" / "plen_v1"


def resealed(tmp_path, edit, base="sh8_zstd.plen") -> Path:
    """A copy of a fixture with ``edit(header, payload) -> (header or header bytes, payload)`` applied and the
    header's CRC made right again, so the edit reaches the validation."""
    data = (FIXTURES / base).read_bytes()
    head_len = PREFIX.unpack_from(data)[3]
    header, payload = edit(json.loads(data[PREFIX.size:PREFIX.size + head_len]), data[PREFIX.size + head_len:])
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "edited.plen"
    path.write_bytes(PREFIX.pack(b"PLENPACK", 1, 0, len(head), zlib.crc32(head)) + head + payload)
    return path


def setting(*path_and_value):
    """An edit that sets header[path...] = value."""
    *path, value = path_and_value

    def edit(header, payload):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return header, payload
    return edit


def array_named(header, name):
    return next(a for a in header["arrays"] if a["name"] == name)


def with_array(which, **fields):
    def edit(header, payload):
        array_named(header, which).update(fields)
        return header, payload
    return edit


def repeated_density(header, payload):
    header["arrays"].append(dict(array_named(header, "density")))
    return header, payload


def stream_replaced(name, stream):
    """An edit that points array ``name`` at new bytes (appended), with the right length and CRC."""
    def edit(header, payload):
        array_named(header, name).update(offset=len(payload), length=len(stream), crc32=zlib.crc32(stream))
        return header, payload + stream
    return edit


HOSTILE = {
    "params as a list": (with_array("sh", params=[8, [0.0], [1.0]]), "parameters must be an object"),
    "metadata not an object": (setting("metadata", [1, 2]), "metadata must be an object"),
    "metadata.scene not an object": (setting("metadata", "scene", "lego"), "metadata.scene must be an object"),
    "world_to_unit not 4x4": (setting("metadata", "scene", "world_to_unit", [[1, 0], [0, 1]]), "world_to_unit"),
    "eval_background of strings": (setting("metadata", "eval_background", ["white"] * 3), "eval_background"),
    "array names repeated": (repeated_density, "unknown or repeated"),
    "unknown array name": (with_array("sh", name="colour"), "unknown or repeated"),
    "negative voxel count": (setting("num_voxels", -1), "voxel count"),
    "voxel count above R^3": (setting("num_voxels", 12 ** 3 + 1), "voxel count"),
    "voxel count a bool": (setting("num_voxels", True), "voxel count"),
    "voxel count a float": (setting("num_voxels", 300.0), "voxel count"),
    "resolution too large": (setting("resolution", 8192), "resolution"),
    "SH degree 4": (setting("sh_degree", 4), "SH degree"),
    "format missing": (setting("format", None), "format"),
    "background shape of 3": (setting("background", "shape", [2, 4, 8]), "background shape"),
    "background shape zero": (setting("background", "shape", [0, 4, 8, 4]), "background layers"),
    "background shape strings": (setting("background", "shape", ["2", 4, 8, 4]), "background layers"),
    "background radii short": (setting("background", "radii", [3.0]), "background radii"),
    "background turntable bent": (setting("background", "turntable", [[0, 0, 2], [0, 0, 0]]), "unit vector"),
    "background description missing": (setting("background", None), "background"),
    "unknown codec": (with_array("sh", codec="lzma"), "unknown array codec 'lzma'"),
    "unknown entropy coder": (with_array("sh", entropy="lz4"), "unknown entropy coder 'lz4'"),
    "positions codec swapped": (with_array("positions", codec="uniform"), "positions codec"),
    "raw_length lies": (with_array("sh", raw_length=10 ** 12), "raw_length"),
    "uniform lo too short": (lambda h, p: (array_named(h, "sh")["params"].update(lo=[0.0]) or h, p), "uniform lo"),
    "bits as a string": (lambda h, p: (array_named(h, "sh")["params"].update(bits="8") or h, p), "uniform bits"),
    "offset negative": (with_array("sh", offset=-5), "offset of sh"),
    "crc32 too large": (with_array("sh", crc32=2 ** 40), "crc32 of sh"),
    "arrays not a list": (setting("arrays", {"sh": 1}), "arrays must be a list"),
    "codec not an object": (setting("codec", "sh/8"), "codec must be an object"),
    "header a list": (lambda h, p: ([h], p), "header must be an object"),
    "NaN in the header": (lambda h, p: (json.dumps(h).replace('"num_voxels": 300', '"num_voxels": NaN').encode(), p),
                          "not valid JSON"),
    "repeated key": (lambda h, p: (json.dumps(h)[:-1].encode() + b', "resolution": 12}', p), "not valid JSON"),
    "deep nesting": (lambda h, p: (b"[" * 50000 + b"]" * 50000, p), "not valid JSON"),
    "not UTF-8": (lambda h, p: (b'{"format": "\xff"}', p), "not valid JSON"),
    "a 10,000-digit number": (lambda h, p: (b'{"resolution": 1' + b"0" * 10000 + b"}", p), "not valid JSON"),
    "uncompressed stream too short": (lambda h, p: (array_named(h, "density").update(entropy=None) or h, p),
                                      "density' has"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header_gives_one_clear_error(tmp_path, case):
    edit, message = HOSTILE[case]
    path = resealed(tmp_path, edit)
    for read in (read_plen_header, read_plen, PackedScene):
        with pytest.raises(PlenopackError, match=message) as info:
            read(path)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def zstd_rle_frame(blocks: int, block_size: int, claimed: int | None, fill: int = 0) -> bytes:
    out = struct.pack("<I", 0xFD2FB528) + (bytes([0xC0, 0x50]) + struct.pack("<Q", claimed) if claimed is not None
                                           else bytes([0x00, 0x50]))
    block = ((1 << 1) | (block_size << 3)).to_bytes(3, "little") + bytes([fill])
    last = (1 | (1 << 1) | (block_size << 3)).to_bytes(3, "little") + bytes([fill])
    return out + block * (blocks - 1) + last


def test_huge_grid_in_a_tiny_file_is_refused_before_allocation(tmp_path):
    """The known crash: a 2048^3 positions stream that is a small zstd frame made read_plen allocate 8 GiB."""
    bomb = zstd_rle_frame(1, 1000, claimed=2048 ** 3 // 8)
    path = resealed(tmp_path, lambda h, p: stream_replaced("positions", bomb)(setting("resolution", 2048)(h, p)[0], p))
    assert path.stat().st_size < 30_000
    assert read_plen_header(path)["resolution"] == 2048  # the header alone is fine (plenopack info works)
    tracemalloc.start()
    try:
        for read in (read_plen, PackedScene):
            with pytest.raises(PlenopackError, match=r"needs 32\.\d+ GiB .* over the memory budget of 4\.00 GiB"):
                read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_occupancy_is_decoded_piecewise_never_as_r3_bits():
    """A 1024^3 bitfield (128 MiB of bits) decodes with a working set of a few MiB; lies are caught."""
    r = 1024
    stream = zstd_rle_frame(r ** 3 // 8 // (1 << 17), 1 << 17, claimed=r ** 3 // 8)  # really 128 MiB of zeros
    tracemalloc.start()
    try:
        assert _decode_positions(stream, r, 0).size == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    with pytest.raises(ValueError, match="holds 0 voxels, header says 5"):
        _decode_positions(stream, r, 5)
    full = zstd_rle_frame(1, 1 << 10, claimed=1 << 10, fill=0xFF)  # 8192 set bits for a 20^3 grid
    with pytest.raises(ValueError, match="more than"):
        _decode_positions(full, 20, 100)
    with pytest.raises(ValueError, match="zstd"):
        _decode_positions(zstd_rle_frame(1, 1000, claimed=1 << 40), r, 0)


# ---------------------------------------------------------------- the memory budget

def test_memory_budget_from_parameter_and_environment(tmp_path, monkeypatch):
    path = FIXTURES / "float32.plen"
    need = memory_required(read_plen_header(path))
    assert read_plen(path, memory_budget=need).grid.num_voxels == 300
    with pytest.raises(PlenopackError, match="over the memory budget"):
        read_plen(path, memory_budget=need - 1)
    with pytest.raises(PlenopackError, match="over the memory budget of 100.0 MiB"):
        PackedScene(path, memory_budget="100M")
    monkeypatch.setenv("PLENOPACK_MEMORY_BUDGET", "100MiB")
    with pytest.raises(PlenopackError, match="PLENOPACK_MEMORY_BUDGET"):
        read_plen(path)
    assert read_plen(path, memory_budget="1G").grid.num_voxels == 300  # the parameter wins
    monkeypatch.setenv("PLENOPACK_MEMORY_BUDGET", "lots")
    with pytest.raises(PlenopackError, match="PLENOPACK_MEMORY_BUDGET must be a positive size"):
        read_plen(path)
    monkeypatch.setenv("PLENOPACK_MEMORY_BUDGET", "1.5g")
    assert resolve_memory_budget() == 3 << 29
    monkeypatch.delenv("PLENOPACK_MEMORY_BUDGET")
    assert resolve_memory_budget() == 4 << 30
    for bad in (0, -5, "5 parsecs", True, 1.5e9):
        with pytest.raises(PlenopackError, match="memory_budget"):
            resolve_memory_budget(bad)


@pytest.mark.parametrize("codec", [CodecConfig(), CodecConfig("sh", 8, "zstd"), CodecConfig("sh+d", 16),
                                   CodecConfig("kmeans", 4, "zstd"), CodecConfig("vq", codebook=16, keep_exact=0.2)],
                         ids=lambda c: c.label())
def test_memory_required_bounds_what_reading_allocates(tmp_path, codec):
    """Measured with tracemalloc (numpy reports its buffers to it); the zstd decoder's own allocations are not
    traced, so they are taken out of the bound."""
    rng = np.random.default_rng(7)
    reso, n = 64, 15000
    flat = np.sort(rng.choice(reso ** 3, n, replace=False))
    grid = Grid.from_coords(reso, np.stack(np.unravel_index(flat, (reso,) * 3), -1),
                            rng.normal(size=n).astype(np.float32), rng.normal(size=(n, 27)).astype(np.float32), 2,
                            SphereBackground(rng.normal(size=(2, 32, 64, 4)).astype(np.float32),
                                             np.array([2.0, 4.0], np.float32)))
    write_plen(tmp_path / "m.plen", grid, {}, codec)
    need = memory_required(read_plen_header(tmp_path / "m.plen"))
    tracemalloc.start()
    try:
        read_plen(tmp_path / "m.plen")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 4 * reso ** 3 + 4 * 28 * n < peak <= need - entropy.DECODER_MEMORY


def test_writer_refuses_metadata_the_reader_would_refuse(tmp_path):
    grid = Grid.dense(4, 0)
    with pytest.raises(PlenopackError, match="cannot write an invalid scene file: metadata.scene.world_to_unit"):
        write_plen(tmp_path / "w.plen", grid, {"scene": {"world_to_unit": np.eye(3)}})
    assert list(tmp_path.iterdir()) == []
