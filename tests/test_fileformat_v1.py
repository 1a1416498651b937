"""Version-1 files written before the codec registry and the hardened reader (tests/data/plen_v1, written at
commit 3d44d98 by make_fixtures.py there) still read to the same values, and today's writer still writes the
same descriptors and the same uncompressed streams for the same grid as version 1. Entropy-coded streams of
integer codes are now written in the byte layout, as version 2: those are held to the same decoded values."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import zstandard

from plenopack.codecs import CodecConfig, vq
from plenopack.fileformat import PREFIX, encode_grid, read_plen, read_plen_header
from plenopack.packed import PackedScene

FIXTURES = Path(__file__).resolve().parent / "data" / "plen_v1"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)


def split(data: bytes) -> tuple[dict, bytes]:
    head_len = PREFIX.unpack_from(data)[3]
    return json.loads(data[PREFIX.size:PREFIX.size + head_len]), data[PREFIX.size + head_len:]


@pytest.mark.parametrize("name", list(make_fixtures.CODECS))
def test_version_1_fixture_decodes_to_the_recorded_values(name):
    expected = np.load(FIXTURES / "expected.npz")
    f = read_plen(FIXTURES / f"{name}.plen")
    assert f.version == 1 and f.metadata["fixture"] == name
    assert np.array_equal(f.grid.links, expected["links"])
    assert np.array_equal(f.grid.density, expected[f"{name}/density"])
    assert np.array_equal(f.grid.sh, expected[f"{name}/sh"])
    assert np.array_equal(f.grid.background.layers, expected[f"{name}/background"])
    assert np.array_equal(f.grid.background.turntable, [[0, 0, 1], [0, np.float32(0.1), 0]])
    scene = PackedScene(FIXTURES / f"{name}.plen")
    assert scene.num_voxels == 300 and np.array_equal(scene.world_to_unit, np.eye(4))
    assert CodecConfig(**read_plen_header(FIXTURES / f"{name}.plen")["codec"]) == make_fixtures.CODECS[name]


CHANGED_DEFAULTS = {("vq16", "density"): "uniform"}  # the vq method's density: float16 before, uniform at `bits` now


@pytest.mark.parametrize("name", list(make_fixtures.CODECS))
def test_writer_still_writes_the_version_1_layout(name):
    old_header, old_payload = split((FIXTURES / f"{name}.plen").read_bytes())
    grid = make_fixtures.synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    codec = dataclasses.replace(make_fixtures.CODECS[name], codebook_bits=16)  # VQ codebooks were float16 then
    data = encode_grid(grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}, "fixture": name},
                       codec, importance)
    new_header, new_payload = split(data)
    byte_layout = [a["name"] for a in new_header["arrays"] if "layout" in a.get("params", {})]
    assert PREFIX.unpack_from(data)[1] == (2 if byte_layout else 1)
    assert byte_layout == [a["name"] for a in old_header["arrays"] if a.get("entropy") and (
        a["codec"] in ("uniform", "kmeans", "vq") or CHANGED_DEFAULTS.get((name, a["name"])) == "uniform")]
    assert sorted(new_header) == sorted(old_header)
    for key in old_header:
        if key == "codec":  # the codec record has gained codebook_bits and the residual stage's keys since
            gained = ("codebook_bits", "residual_rows", "residual_codebook", "prefer_runs")
            assert {k: v for k, v in new_header[key].items() if k not in gained} == old_header[key]
        elif key != "arrays":
            assert new_header[key] == old_header[key], key
    assert len(new_header["arrays"]) == len(old_header["arrays"])
    for new, old in zip(new_header["arrays"], old_header["arrays"]):
        if (name, old["name"]) in CHANGED_DEFAULTS:
            assert new["codec"] == CHANGED_DEFAULTS[name, old["name"]]
            continue
        assert sorted(new) == sorted(old)
        for key in ("name", "codec", "entropy") + (() if new["name"] in byte_layout else ("raw_length",)):
            assert new.get(key) == old.get(key), (old["name"], key)
        new_params = {k: v for k, v in new.get("params", {}).items() if k != "layout"}
        if old["name"] == "sh" and old["codec"] == "vq":  # the codebook comes from BLAS-based k-means
            assert new_params.keys() == old["params"].keys()
        elif "params" in old:
            assert new_params == old["params"]
        if "entropy" not in old and old["name"] != "positions":  # uncompressed streams are byte-identical
            assert (new_payload[new["offset"]:new["offset"] + new["length"]]
                    == old_payload[old["offset"]:old["offset"] + old["length"]])


def test_byte_layout_files_are_version_2_and_decode_to_what_version_1_stored(tmp_path):
    """The same grid and codec written today (version 2, bytes layout) and at 3d44d98 (version 1, bit planes)
    decode to the same values (VQ aside: its codebook comes from BLAS-based k-means); a version-1 header that
    names a layout is refused."""
    from plenopack.errors import PlenopackError
    from plenopack.fileformat import write_plen

    grid = make_fixtures.synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    expected = np.load(FIXTURES / "expected.npz")
    for name in ("sh8_zstd", "kmeans3_zstd"):
        path = tmp_path / f"{name}.plen"
        write_plen(path, grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}}, make_fixtures.CODECS[name],
                   importance=importance)
        f = read_plen(path)
        assert f.version == 2
        assert np.array_equal(f.grid.sh, expected[f"{name}/sh"]) and np.array_equal(f.grid.density,
                                                                                     expected[f"{name}/density"])
        data = bytearray(path.read_bytes())
        data[8:10] = (1).to_bytes(2, "little")
        path.write_bytes(bytes(data))
        with pytest.raises(PlenopackError, match="layout parameter needs format version 2"):
            read_plen(path)


def test_vq_codebooks_in_codes_are_version_5_column_by_column_and_row_by_row_8bit_streams_still_decode(tmp_path):
    """Codebooks of 6- to 8-bit codes are stored column by column (version 5), float16 codebooks as in version 2;
    an 8-bit codebook stored row by row (versions 3 and 4, no ``codebook_order``) decodes to the same grid, and
    a version-4 header naming a column-by-column codebook is refused."""
    from plenopack.errors import PlenopackError
    from plenopack.fileformat import write_plen

    grid = make_fixtures.synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    sizes = {}
    for bits, version in ((7, 5), (8, 5), (16, 2)):
        path = tmp_path / f"vq{bits}.plen"
        sizes[bits] = write_plen(path, grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}},
                                 CodecConfig("vq", codebook=256, codebook_bits=bits, entropy="zstd"),
                                 importance=importance)
        f = read_plen(path)
        assert f.version == version and np.abs(f.grid.sh - grid.sh).mean() < np.abs(grid.sh).mean()
    assert sizes[7] < sizes[8] < sizes[16]
    # the same 8-bit stream row by row, as versions 3 and 4 wrote it
    header, payload = split((tmp_path / "vq8.plen").read_bytes())
    sh = next(a for a in header["arrays"] if a["name"] == "sh")
    params, cols = sh["params"], grid.sh.shape[1]
    raw = zstandard.ZstdDecompressor().decompress(payload[sh["offset"]:sh["offset"] + sh["length"]])
    k = params["codebook_size"]
    columns = np.frombuffer(raw[:k * cols], np.uint8).reshape(cols, k)
    rows = {key: value for key, value in params.items() if key != "codebook_order"}
    np.testing.assert_array_equal(vq.decode(columns.T.tobytes() + raw[k * cols:], rows, grid.num_voxels, cols),
                                  read_plen(tmp_path / "vq8.plen").grid.sh)
    data = bytearray((tmp_path / "vq8.plen").read_bytes())
    data[8:10] = (4).to_bytes(2, "little")
    (tmp_path / "vq8.plen").write_bytes(bytes(data))
    with pytest.raises(PlenopackError, match="column by column needs format version 5"):
        read_plen(tmp_path / "vq8.plen")


def test_vq_residual_stages_are_version_4_and_a_version_3_header_with_one_is_refused(tmp_path):
    from plenopack.errors import PlenopackError
    from plenopack.fileformat import write_plen

    grid = make_fixtures.synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    path = tmp_path / "residual.plen"
    write_plen(path, grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}},
               CodecConfig("vq", codebook=64, residual_rows=0.25, residual_codebook=16, entropy="zstd",
                           codebook_bits=16),
               importance=importance)
    f = read_plen(path)
    plain = tmp_path / "plain.plen"
    write_plen(plain, grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)}},
               CodecConfig("vq", codebook=64, entropy="zstd", codebook_bits=16), importance=importance)
    g = read_plen(plain)
    assert f.version == 4 and g.version == 2
    err = [np.mean(importance[:, None] * (h.grid.sh - grid.sh) ** 2) for h in (f, g)]
    assert err[0] < err[1]
    data = bytearray(path.read_bytes())
    data[8:10] = (3).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(PlenopackError, match="residual stage needs format version 4"):
        read_plen(path)
