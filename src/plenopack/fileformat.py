"""The `.plen` scene file: a versioned, checksummed, pickle-free container of a sparse grid.

Layout (all integers little-endian; full spec in docs/format.md):

    0   8 bytes  magic b"PLENPACK"
    8   u16      format version (1)
    10  u16      reserved (0)
    12  u32      header length H (bytes)
    16  u32      CRC-32 of the header bytes
    20  H bytes  header: UTF-8 JSON (sorted keys) — resolution, SH degree, voxel count, positions and array
                 descriptors (codec, parameters, offset, length, CRC-32), user metadata
    20+H         payloads, at the offsets the header gives (relative to 20+H)

Voxels are stored in ascending linear order of (i, j, k) (flat index i*R*R + j*R + k), so their positions
are implied by an occupancy bitfield of R^3 bits (zstd-compressed); no per-voxel indices are stored.
Reading validates sizes against the file before allocating and checks every CRC, so a truncated, corrupt
or foreign file raises PlenopackError and never crashes, hangs or allocates unbounded memory.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from plenopack.codecs import CodecConfig, decode_array, encode_array, entropy
from plenopack.errors import PlenopackError
from plenopack.grid import Grid, SphereBackground, sh_basis_count

MAGIC = b"PLENPACK"
VERSION = 1
PREFIX = struct.Struct("<8sHHII")
MAX_HEADER = 64 << 20
MAX_RESOLUTION = 4096


@dataclass
class PlenFile:
    grid: Grid
    metadata: dict
    codec: dict  # CodecConfig as a dict (how the file was written)
    nbytes: int  # exact file size
    array_bytes: dict[str, int] = field(default_factory=dict)  # stored bytes per stream
    version: int = VERSION

    @property
    def memory_mb(self) -> float:
        return self.nbytes / 2 ** 20


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def sorted_rows(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Row order that sorts voxels by flat index, and the sorted flat indices."""
    coords = grid.occupied_coords().astype(np.int64)
    flat = np.ravel_multi_index(tuple(coords.T), grid.links.shape) if len(coords) else np.zeros(0, np.int64)
    order = np.argsort(flat, kind="stable")
    return order, flat[order]


def _encode_positions(flat_sorted: np.ndarray, reso: int) -> bytes:
    bits = np.zeros(reso ** 3, dtype=np.uint8)
    bits[flat_sorted] = 1
    return entropy.compress(np.packbits(bits).tobytes(), 19)


def _decode_positions(payload: bytes, reso: int, count: int) -> np.ndarray:
    nbytes = (reso ** 3 + 7) // 8
    raw = entropy.decompress(payload, nbytes)
    if len(raw) != nbytes:
        raise ValueError("occupancy bitfield has the wrong size")
    flat = np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8), count=reso ** 3))
    if len(flat) != count:
        raise ValueError(f"occupancy bitfield holds {len(flat)} voxels, header says {count}")
    return flat


def _background_rows(bg: SphereBackground) -> np.ndarray:
    """(H*W, L*4): one row per texel position, one channel per (layer, component) — PeRFception's grouping."""
    layers, h, w, _ = bg.layers.shape
    return np.ascontiguousarray(bg.layers.transpose(1, 2, 0, 3).reshape(h * w, layers * 4))


def encode_grid(grid: Grid, metadata: dict, codec: CodecConfig | None = None,
                importance: np.ndarray | None = None, vq_state: tuple | None = None) -> bytes:
    """The bytes of a .plen file (deterministic for the same input).

    ``vq_state``: (codebook, index per row, exact rows) in the grid's row order, stored as is (see compress.py).
    """
    codec = codec or CodecConfig()
    order, flat = sorted_rows(grid)
    reso = grid.resolution
    weights = None if importance is None else np.asarray(importance, np.float64)[order]
    if vq_state is not None:
        codebook, idx, exact = vq_state
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        vq_state = (codebook, np.asarray(idx)[order], np.sort(position[np.asarray(exact, np.int64)]))
    streams: list[tuple[str, bytes, dict]] = [("positions", _encode_positions(flat, reso), {"codec": "bitfield+zstd"})]
    streams.append(("density", *encode_array(grid.density[order, None], codec.plan("density"), weights)))
    streams.append(("sh", *encode_array(grid.sh[order], codec.plan("sh"), weights, vq_state)))
    header: dict[str, Any] = {
        "format": "plenopack-grid", "resolution": reso, "sh_degree": grid.sh_degree, "num_voxels": grid.num_voxels,
        "codec": codec.to_dict(), "metadata": _jsonable(metadata),
    }
    if grid.background is not None:
        bg = grid.background
        streams.append(("background", *encode_array(_background_rows(bg), codec.plan("background"))))
        header["background"] = {"shape": list(bg.layers.shape), "radii": bg.radii.tolist(),
                                "brightness": float(bg.brightness)}
        if bg.turntable is not None:
            header["background"]["turntable"] = bg.turntable.tolist()
    arrays, offset = [], 0
    for name, payload, desc in streams:
        arrays.append({**desc, "name": name, "offset": offset, "length": len(payload), "crc32": zlib.crc32(payload)})
        offset += len(payload)
    header["arrays"] = arrays
    head = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    prefix = PREFIX.pack(MAGIC, VERSION, 0, len(head), zlib.crc32(head))
    return b"".join([prefix, head] + [p for _, p, _ in streams])


def write_plen(path: str | Path, grid: Grid, metadata: dict, codec: CodecConfig | None = None,
               importance: np.ndarray | None = None, vq_state: tuple | None = None) -> int:
    """Write a scene file atomically (temporary name, fsync, rename). Returns its size in bytes.

    ``importance``: optional per-voxel weights (rows of ``grid``) that k-means and VQ codecs honour.
    """
    path = Path(path)
    data = encode_grid(grid, metadata, codec, importance, vq_state)
    if path.parent and not path.parent.exists():
        raise PlenopackError("output folder does not exist", path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(data)


def _read_header(data: memoryview, where: Path) -> tuple[dict, int]:
    if len(data) < PREFIX.size:
        raise PlenopackError(f"truncated: {len(data)} bytes is too short for a plenopack file", where)
    magic, version, _, head_len, head_crc = PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise PlenopackError("not a plenopack scene file (bad magic)", where)
    if version != VERSION:
        raise PlenopackError(f"unsupported format version {version} (this plenopack reads version {VERSION})", where)
    if head_len > MAX_HEADER or PREFIX.size + head_len > len(data):
        raise PlenopackError("truncated: header extends past the end of the file", where)
    head = bytes(data[PREFIX.size:PREFIX.size + head_len])
    if zlib.crc32(head) != head_crc:
        raise PlenopackError("checksum mismatch in the header", where)
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PlenopackError("header is not valid JSON", where) from None
    _check_header(header, len(data) - PREFIX.size - head_len, where)
    return header, PREFIX.size + head_len


def _check_header(h: Any, payload_size: int, where: Path) -> None:
    def fail(msg):
        raise PlenopackError(f"invalid header: {msg}", where)

    if not isinstance(h, dict):
        fail("not an object")
    reso, deg, n = h.get("resolution"), h.get("sh_degree"), h.get("num_voxels")
    if not isinstance(reso, int) or not 2 <= reso <= MAX_RESOLUTION:
        fail(f"resolution {reso!r}")
    if not isinstance(deg, int) or not 0 <= deg <= 3:
        fail(f"SH degree {deg!r}")
    if not isinstance(n, int) or not 0 <= n <= reso ** 3:
        fail(f"voxel count {n!r}")
    arrays = h.get("arrays")
    if not isinstance(arrays, list):
        fail("no array table")
    names = []
    for a in arrays:
        if not isinstance(a, dict) or not all(isinstance(a.get(k), int) and a.get(k) >= 0 for k in ("offset", "length", "crc32")):
            fail("malformed array entry")
        if a["offset"] + a["length"] > payload_size:
            raise PlenopackError(f"truncated: array {a.get('name')!r} extends past the end of the file", where)
        names.append(a.get("name"))
    for required in ("positions", "density", "sh"):
        if required not in names:
            fail(f"missing array {required!r}")
    if "background" in names:
        bg = h.get("background")
        if not isinstance(bg, dict) or not isinstance(bg.get("shape"), list) or len(bg["shape"]) != 4:
            fail("background without a valid shape")
        layers, bh, bw, four = bg["shape"]
        if four != 4 or not all(isinstance(v, int) and 0 < v <= 8192 for v in (layers, bh, bw)):
            fail("background shape")
        if not isinstance(bg.get("radii"), list) or len(bg["radii"]) != layers:
            fail("background radii")
        tt = bg.get("turntable")
        if tt is not None and not (isinstance(tt, list) and len(tt) == 2
                                   and all(isinstance(r, list) and len(r) == 3 for r in tt)):
            fail("background turntable")


def read_plen_header(path: str | Path) -> dict:
    """The validated header of a scene file (no array decoding), plus ``nbytes``."""
    path = Path(path)
    data = _read_bytes(path)
    header, _ = _read_header(memoryview(data), path)
    header["nbytes"] = len(data)
    return header


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PlenopackError("no such scene file", path) from None
    except IsADirectoryError:
        raise PlenopackError("is a folder, not a scene file", path) from None
    except OSError as exc:
        raise PlenopackError(f"cannot read ({exc.strerror})", path) from None


def read_plen(path: str | Path) -> PlenFile:
    """Read and decode a scene file into a renderable Grid (rows in ascending voxel order)."""
    path = Path(path)
    data = _read_bytes(path)
    view = memoryview(data)
    header, start = _read_header(view, path)
    reso, deg, n = header["resolution"], header["sh_degree"], header["num_voxels"]
    payloads: dict[str, bytes] = {}
    descs: dict[str, dict] = {}
    for a in header["arrays"]:
        payload = bytes(view[start + a["offset"]:start + a["offset"] + a["length"]])
        if zlib.crc32(payload) != a["crc32"]:
            raise PlenopackError(f"checksum mismatch in array {a.get('name')!r}", path)
        payloads[a["name"]] = payload
        descs[a["name"]] = a
    try:
        flat = _decode_positions(payloads["positions"], reso, n)
        density = decode_array(payloads["density"], descs["density"], n, 1)[:, 0]
        sh = decode_array(payloads["sh"], descs["sh"], n, 3 * sh_basis_count(deg))
        background = None
        if "background" in payloads:
            meta = header["background"]
            layers, bh, bw, _ = meta["shape"]
            rows = decode_array(payloads["background"], descs["background"], bh * bw, layers * 4)
            background = SphereBackground(
                layers=np.ascontiguousarray(rows.reshape(bh, bw, layers, 4).transpose(2, 0, 1, 3)),
                radii=np.asarray(meta["radii"], np.float32), brightness=float(meta.get("brightness", 0.5)),
                turntable=None if meta.get("turntable") is None else np.asarray(meta["turntable"], np.float32))
    except (ValueError, KeyError, TypeError, IndexError, zstandard.ZstdError, PlenopackError) as exc:
        raise PlenopackError(f"corrupt array data ({exc})", path) from None
    links = np.full((reso,) * 3, -1, dtype=np.int32)
    links.reshape(-1)[flat] = np.arange(n, dtype=np.int32)
    grid = Grid(links=links, density=np.ascontiguousarray(density, np.float32), sh=np.ascontiguousarray(sh, np.float32),
                sh_degree=deg, background=background)
    return PlenFile(grid=grid, metadata=header.get("metadata", {}), codec=header.get("codec", {}), nbytes=len(data),
                    array_bytes={a["name"]: a["length"] for a in header["arrays"]}, version=VERSION)
