"""Structure-aware fuzzing of the .plen reader, run by tests/test_fileformat_fuzz.py in a child process.

Usage: python tests/plen_fuzz_child.py EXAMPLES [FAILING_FILE]

The child caps its address space (RLIMIT_AS: what it has mapped after its imports plus 1 GiB) and reads
files with a 256 MiB memory budget, so a reader that allocates what a hostile header claims dies with
MemoryError here instead of taking the machine down. Each example starts from a real small file (the
version-1 fixtures in tests/data/plen_v1 and two written here), applies one to four hostile edits to its
header and streams, re-seals every CRC so that the edits reach the decoder, and asserts that reading,
opening as a PackedScene and touching what the library reads back either succeed or raise PlenopackError.
Exit status 0 when every example passes; otherwise hypothesis prints the traceback of the (shrunk) failing
example, which is also saved as FAILING_FILE.
"""

from __future__ import annotations

import copy
import json
import resource
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plenopack.codecs import CodecConfig, codec_names
from plenopack.errors import PlenopackError
from plenopack.fileformat import PREFIX, encode_grid, memory_required, read_plen, read_plen_header
from plenopack.grid import Grid
from plenopack.packed import PackedScene

BUDGET = 256 << 20
HERE = Path(__file__).resolve().parent


def split(data: bytes) -> tuple[dict, bytes]:
    """(header, payload region) of a valid file."""
    _, _, _, head_len, _ = PREFIX.unpack_from(data, 0)
    return json.loads(data[PREFIX.size:PREFIX.size + head_len]), data[PREFIX.size + head_len:]


def seal(head: bytes, payload: bytes, version: int = 1) -> bytes:
    """A file with this header text and payload region, with the header's CRC right."""
    return PREFIX.pack(b"PLENPACK", version, 0, len(head), zlib.crc32(head)) + head + payload


def zstd_frame(blocks: int, block_size: int, fill: int, claimed: int | None, window_byte: int) -> bytes:
    """A hand-made zstd frame of ``blocks`` RLE blocks of ``block_size`` bytes of ``fill`` that declares
    ``claimed`` bytes of content (None: no size), with window descriptor ``window_byte`` — so a few bytes
    can claim, or really hold, gigabytes."""
    descriptor = 0xC0 if claimed is not None else 0x00  # 8-byte content size, or none; not single-segment
    out = struct.pack("<I", 0xFD2FB528) + bytes([descriptor, window_byte])
    if claimed is not None:
        out += struct.pack("<Q", claimed)
    block = ((1 << 1) | (block_size << 3)).to_bytes(3, "little") + bytes([fill])  # RLE block of block_size
    last = ((1 << 0) | (1 << 1) | (block_size << 3)).to_bytes(3, "little") + bytes([fill])  # ... and the last one
    return out + block * (blocks - 1) + last


def base_files() -> list[bytes]:
    files = [p.read_bytes() for p in sorted((HERE / "data" / "plen_v1").glob("*.plen"))]
    rng = np.random.default_rng(0)
    coords = np.unique(rng.integers(0, 6, (40, 3)), axis=0)
    grid = Grid.from_coords(6, coords, rng.normal(size=len(coords)).astype(np.float32),
                            rng.normal(size=(len(coords), 3)).astype(np.float32), 0)
    files.append(encode_grid(grid, {"eval_background": [1, 1, 1]}, CodecConfig("sh", 3, density="kmeans")))
    files.append(encode_grid(grid, {}, CodecConfig("vq", codebook=4, keep_exact=0.5)))
    return files


BASES = base_files()
CODEC_NAMES = codec_names() + ["bitfield+zstd", "nope", ""]

hostile = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 255, 4096, 4097, 2048, 2 ** 31, 2 ** 32, 2 ** 63, -2 ** 63]),
    st.integers(-2 ** 200, 2 ** 200), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 3.5e38, 1e-320, 0.5, -0.0]),
    st.text(max_size=6), st.sampled_from(["zstd", "uniform", "kmeans", "vq", "float16", "positions", "sh"]),
    st.lists(st.one_of(st.integers(-3, 300), st.floats(-1e3, 1e3)), max_size=8),
    st.lists(st.lists(st.integers(-2, 5), max_size=5), max_size=5),
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=3),
)


def paths(node, prefix=()) -> list[tuple]:
    """Every place in a JSON tree (list indices: the first three and the last)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i in sorted({*range(min(3, len(node))), len(node) - 1} - {-1}):
            out += paths(node[i], prefix + (i,))
    return out


def parent_of(header: dict, path: tuple):
    node = header
    for key in path[:-1]:
        node = node[key]
    return node


EDITS = ["set"] * 4 + ["delete", "codec", "codec", "size", "size"] + ["frame"] * 3 + ["random_stream"] * 3
RAW_HEADERS = [b"[" * 100000 + b"]" * 100000, b'{"a": NaN}', b'{"resolution": Infinity}', b"\xff\xfe{}",
               b'{"format": "plenopack-grid", "format": "x"}', b"", b"null", b'"text"', b"[]", b"1e999",
               b'{"resolution": 1' + b"0" * 5000 + b"}"]


@st.composite
def hostile_file(draw) -> bytes:
    data = draw(st.sampled_from(BASES))
    header, payload = split(data)
    special = draw(st.integers(0, 39))
    if special == 0:
        return seal(draw(st.sampled_from(RAW_HEADERS)), payload)
    if special == 1:
        return seal(data[PREFIX.size:len(data) - len(payload)], payload, draw(st.sampled_from([0, 2, 65535])))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(EDITS))
        arrays = header.get("arrays") if isinstance(header, dict) else None
        arrays = [a for a in arrays if isinstance(a, dict)] if isinstance(arrays, list) else []
        if kind in ("set", "delete"):
            path = draw(st.sampled_from(paths(header)[1:] or [()]))
            if not path:
                continue
            node = parent_of(header, path)
            if kind == "set":
                node[path[-1]] = draw(hostile)
            elif isinstance(node, dict):
                del node[path[-1]]
            else:
                node.pop(path[-1])
        elif kind == "codec" and arrays:
            a = draw(st.sampled_from(arrays))
            a["codec"] = draw(st.sampled_from(CODEC_NAMES))
            if draw(st.booleans()):
                other = draw(st.sampled_from(arrays))
                a["params"] = copy.deepcopy(other.get("params", {}))
                a["raw_length"] = other.get("raw_length")
        elif kind in ("frame", "random_stream") and arrays:
            a = draw(st.sampled_from(arrays))
            if kind == "frame":
                block = draw(st.sampled_from([1, 1000, 1 << 17]))
                stream = zstd_frame(draw(st.integers(1, 4096)), block, draw(st.sampled_from([0, 0xFF, 0x81])),
                                    draw(st.one_of(st.none(), st.sampled_from([0, 1, 1 << 30, 1 << 40, 2 ** 64 - 1]),
                                                   st.integers(0, 1 << 34))),
                                    draw(st.sampled_from([0x50, 0x00, 0x88, 0xF8, 0x58])))
                a["entropy"] = "zstd"
            else:
                stream = draw(st.binary(max_size=300))
            a["offset"], a["length"], a["crc32"] = len(payload), len(stream), zlib.crc32(stream)
            payload += stream
        elif kind == "size" and isinstance(header, dict):
            key = draw(st.sampled_from(["resolution", "num_voxels", "sh_degree"]))
            header[key] = draw(st.sampled_from([0, 1, 2, 3, 4, 200, 255, 256, 400, 1024, 2048, 4096, 10 ** 6, -1]))
    return seal(json.dumps(header).encode(), payload)


def exercise(path: Path) -> None:
    """Everything a user does with a file; only PlenopackError may come out."""
    try:
        header = read_plen_header(path, BUDGET)
        memory_required(header)
        scene = PackedScene(path, memory_budget=BUDGET)
        scene.metadata, scene.world_to_unit, scene.background, scene.resolution, scene.num_voxels, scene.nbytes
        grid = read_plen(path, BUDGET).grid
        grid.validate()
    except PlenopackError:
        pass


def limit_address_space() -> None:
    """Cap the address space at what is mapped now plus 1 GiB, and check that the cap holds."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/status") as fh:
            mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize"))
    except OSError:  # not Linux: RLIMIT_AS may not be enforced; the memory budget still applies
        return
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (1 << 30), hard))
    try:
        np.empty(3 << 30, np.uint8)  # untouched, so harmless if the cap were missing
    except MemoryError:
        return
    raise SystemExit("the address-space limit is not in force")


def main(examples: int, failing: Path | None) -> None:
    limit_address_space()
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="plen-fuzz-", dir=shm if shm.is_dir() else None))
    path = folder / "case.plen"

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(hostile_file())
    def read_anything(data: bytes) -> None:
        path.write_bytes(data)
        try:
            exercise(path)
        except BaseException:
            if failing is not None:
                failing.write_bytes(data)
            raise

    try:
        read_anything()
    finally:
        path.unlink(missing_ok=True)
        folder.rmdir()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, Path(sys.argv[2]) if len(sys.argv) > 2 else None)
