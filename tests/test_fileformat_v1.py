"""Version-1 files written before the codec registry and the hardened reader (tests/data/plen_v1, written at
commit 3d44d98 by make_fixtures.py there) still read to the same values, and today's writer still writes the
same descriptors and the same uncompressed streams for the same grid."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from plenopack.codecs import CodecConfig
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


@pytest.mark.parametrize("name", list(make_fixtures.CODECS))
def test_writer_still_writes_the_version_1_layout(name):
    old_header, old_payload = split((FIXTURES / f"{name}.plen").read_bytes())
    grid = make_fixtures.synthetic_grid()
    importance = np.linspace(0.0, 1.0, grid.num_voxels)
    new_header, new_payload = split(encode_grid(grid, {"scene": {"name": "synthetic", "world_to_unit": np.eye(4)},
                                                       "fixture": name}, make_fixtures.CODECS[name], importance))
    assert sorted(new_header) == sorted(old_header)
    for key in old_header:
        if key != "arrays":
            assert new_header[key] == old_header[key], key
    assert len(new_header["arrays"]) == len(old_header["arrays"])
    for new, old in zip(new_header["arrays"], old_header["arrays"]):
        assert sorted(new) == sorted(old)
        for key in ("name", "codec", "entropy", "raw_length"):
            assert new.get(key) == old.get(key), (old["name"], key)
        if old["name"] == "sh" and old["codec"] == "vq":  # the codebook comes from BLAS-based k-means
            assert new["params"].keys() == old["params"].keys()
        else:
            assert new["params" if "params" in old else "codec"] == old["params" if "params" in old else "codec"]
        if "entropy" not in old and old["name"] != "positions":  # uncompressed streams are byte-identical
            assert (new_payload[new["offset"]:new["offset"] + new["length"]]
                    == old_payload[old["offset"]:old["offset"] + old["length"]])
