"""The `.plen` scene file: a versioned, checksummed, pickle-free container of a sparse grid.

Layout (all integers little-endian; full spec in docs/format.md):

    0   8 bytes  magic b"PLENPACK"
    8   u16      format version (1 to 5: version 2 adds the ``bytes`` layout of integer codes, see
                 `plenopack.codecs.bitpack`, version 3 8-bit VQ codebooks, version 4 VQ residual stages and
                 version 5 VQ codebooks of 6 or 7 bits or stored column by column, see
                 `plenopack.codecs.vq`; the writer uses the lowest version that holds the file)
    10  u16      reserved (0)
    12  u32      header length H (bytes, at most 16 MiB)
    16  u32      CRC-32 of the header bytes
    20  H bytes  header: UTF-8 JSON (sorted keys) — resolution, SH degree, voxel count, positions and array
                 descriptors (codec, parameters, offset, length, CRC-32), user metadata
    20+H         payloads, at the offsets the header gives (relative to 20+H)

Voxels are stored in ascending linear order of (i, j, k) (flat index i*R*R + j*R + k), so their positions
are implied by an occupancy bitfield of R^3 bits (zstd-compressed); no per-voxel indices are stored.

Reading validates every header field (types, ranges, codec parameters, stream sizes) before allocating
anything the header sizes, computes the memory decoding needs (`memory_required`, a documented function of
R, N and the stream sizes) and refuses a file over the memory budget (`memory_budget`), then checks every
CRC; a truncated, corrupt, hostile or foreign file raises PlenopackError and never crashes, hangs or
allocates more than that.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plenopack.atomic import atomic_write_bytes
from plenopack.codecs import CodecConfig, check_descriptor, decode_array, encode_array, entropy, vq
from plenopack.codecs.base import is_float32_number
from plenopack.errors import PlenopackError
from plenopack.grid import Grid, SphereBackground, sh_basis_count

MAGIC = b"PLENPACK"
VERSION = 5  # the newest version this plenopack writes and reads
READABLE_VERSIONS = (1, 2, 3, 4, 5)
PREFIX = struct.Struct("<8sHHII")
MAX_HEADER = 16 << 20
MAX_RESOLUTION = 4096
MAX_BACKGROUND_SIDE = 8192
STREAMS = ("positions", "density", "sh", "background")
POSITIONS_CODEC = "bitfield+zstd"
POSITIONS_CHUNK = 1 << 15  # bytes of the occupancy bitfield decoded at a time

DEFAULT_MEMORY_BUDGET = 4 << 30
MEMORY_BUDGET_ENV = "PLENOPACK_MEMORY_BUDGET"
HEADER_PARSE_FACTOR = 48  # parsed JSON holds at most this many bytes per header byte
POSITIONS_WORK = 16 << 20  # working set of `_decode_positions` at POSITIONS_CHUNK, with room to spare
FIXED_MEMORY = entropy.DECODER_MEMORY + POSITIONS_WORK


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


def _encode_positions(flat_sorted: np.ndarray, reso: int) -> bytes:
    bits = np.zeros(reso ** 3, dtype=np.uint8)
    bits[flat_sorted] = 1
    return entropy.compress(np.packbits(bits).tobytes(), 19)


def _decode_positions(payload: bytes | memoryview, reso: int, count: int) -> np.ndarray:
    """The ``count`` set bits of the R^3-bit occupancy stream, ascending (int64), found piece by piece: memory
    is 8 bytes per voxel plus a bounded working set, never R^3 bits (see docs/format.md, "Memory")."""
    total_bits = reso ** 3
    flat = np.empty(count, np.int64)
    found = offset = 0
    for piece in entropy.iter_decompressed(payload, (total_bits + 7) // 8, POSITIONS_CHUNK):
        data = np.frombuffer(piece, np.uint8)
        nonzero = np.flatnonzero(data)
        if nonzero.size:
            byte, bit = np.nonzero(np.unpackbits(data[nonzero]).reshape(-1, 8))
            idx = (nonzero[byte] + offset) * 8 + bit
            idx = idx[idx < total_bits]  # padding bits of the last byte carry nothing
            if found + idx.size > count:
                raise ValueError(f"occupancy bitfield holds more than the {count} voxels the header gives")
            flat[found:found + idx.size] = idx
            found += idx.size
        offset += len(piece)
    if found != count:
        raise ValueError(f"occupancy bitfield holds {found} voxels, header says {count}")
    return flat


def _background_rows(bg: SphereBackground) -> np.ndarray:
    """(H*W, L*4): one row per texel position, one channel per (layer, component) — PeRFception's grouping."""
    layers, h, w, _ = bg.layers.shape
    return np.ascontiguousarray(bg.layers.transpose(1, 2, 0, 3).reshape(h * w, layers * 4))


def encode_grid(grid: Grid, metadata: dict, codec: CodecConfig | None = None,
                importance: np.ndarray | None = None, vq_state: vq.VQState | None = None) -> bytes:
    """The bytes of a .plen file (deterministic for the same input).

    ``vq_state``: a `plenopack.codecs.vq.VQState` of the SH in the grid's row order, stored as is (see compress.py).
    """
    codec = codec or CodecConfig()
    order, flat = grid.raster_order()
    reso = grid.resolution
    weights = None if importance is None else np.asarray(importance, np.float64)[order]
    if vq_state is not None:
        vq_state = vq_state.reordered(order)
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
    if len(head) > MAX_HEADER:
        raise PlenopackError(f"header of {len(head):,} bytes is over the format's limit of {MAX_HEADER:,} "
                             "(metadata too large?)")
    try:  # never write a file the reader would refuse (e.g. metadata.scene.world_to_unit not 4 x 4)
        _check_header(header, offset)
    except _Invalid as exc:
        raise PlenopackError(f"cannot write an invalid scene file: {exc}") from None
    prefix = PREFIX.pack(MAGIC, _version_for(header), 0, len(head), zlib.crc32(head))
    return b"".join([prefix, head] + [p for _, p, _ in streams])


def _any_array_params(header: dict, test) -> bool:
    """Whether ``test(params)`` holds for any array's params (arrays whose params are not an object: no)."""
    return any(isinstance(a.get("params"), dict) and test(a["params"]) for a in header.get("arrays", []))


def _uses_byte_layout(header: dict) -> bool:
    return _any_array_params(header, lambda params: "layout" in params)


def _uses_8bit_codebook(header: dict) -> bool:
    return _any_array_params(header, lambda params: vq.codebook_bits_of(params) != 16)


def _uses_codebook_columns(header: dict) -> bool:
    return _any_array_params(header, lambda params: vq.codebook_order_of(params) != "rows"
                             or vq.codebook_bits_of(params) not in (8, 16))


def _uses_residual_vq(header: dict) -> bool:
    return _any_array_params(header, lambda params: "residual_rows" in params)


def _version_for(header: dict) -> int:
    """The lowest format version that holds a file with this header: 5 when a VQ codebook is stored column by
    column or in 6 or 7 bits, else 4 when a VQ stream has a residual stage, else 3 when a VQ codebook is stored in
    8 bits, else 2 when a stream uses the ``layout`` parameter, else 1 (so that older plenopacks read what they
    can)."""
    if _uses_codebook_columns(header):
        return 5
    if _uses_residual_vq(header):
        return 4
    return 3 if _uses_8bit_codebook(header) else (2 if _uses_byte_layout(header) else 1)


def write_plen(path: str | Path, grid: Grid, metadata: dict, codec: CodecConfig | None = None,
               importance: np.ndarray | None = None, vq_state: vq.VQState | None = None) -> int:
    """Write a scene file atomically (`plenopack.atomic`). Returns its size in bytes.

    ``importance``: optional per-voxel weights (rows of ``grid``) that k-means and VQ codecs honour.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise PlenopackError(f"cannot write: folder {str(path.parent)!r} does not exist", path)
    data = encode_grid(grid, metadata, codec, importance, vq_state)
    atomic_write_bytes(path, data)
    return len(data)


# ---------------------------------------------------------------- memory budget

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def resolve_memory_budget(budget: int | str | None = None) -> int:
    """The memory budget in bytes for decoding a file: ``budget`` when given, else the environment variable
    PLENOPACK_MEMORY_BUDGET, else 4 GiB. Sizes are bytes or a number with a binary suffix ("512M", "8G",
    "1.5GiB")."""
    source = "memory_budget"
    if budget is None:
        budget = os.environ.get(MEMORY_BUDGET_ENV, "").strip() or DEFAULT_MEMORY_BUDGET
        source = MEMORY_BUDGET_ENV
    if isinstance(budget, str):
        match = _SIZE.fullmatch(budget.strip())
        value = (int(float(match[1]) * 1024 ** " kmgt".index((match[2] or " ").lower())) if match else None)
    else:
        value = budget if isinstance(budget, int) and not isinstance(budget, bool) else None
    if value is None or value <= 0:
        raise PlenopackError(f"{source} must be a positive size in bytes or with a suffix (512M, 8G), got {budget!r}")
    return value


def memory_required(header: dict) -> int:
    """Upper bound in bytes on what `read_plen` allocates for a file with this (validated) header, as
    docs/format.md ("Memory") defines it:

        S + 48 H + 4 R^3 + 12 N + sum over value arrays of [decode_memory + (raw_length if zstd)]
          + 4 x (background values) + 145 MiB

    with S the file size, H the header size, R the resolution, N the voxel count, decode_memory the array codec's
    bound (`ArrayCodec.decode_memory`, about 4 to 6 bytes per value), and 145 MiB for the zstd decoder
    (window <= 128 MiB) and the piecewise occupancy decoding."""
    reso, n = header["resolution"], header["num_voxels"]
    total = (header["nbytes"] + HEADER_PARSE_FACTOR * header["header_bytes"] + 4 * reso ** 3 + 12 * n
             + FIXED_MEMORY)
    for a in header["arrays"]:
        if a["name"] != "positions":
            rows, cols = _array_shape(header, a["name"])
            codec, raw_length = check_descriptor(a, rows, cols)
            total += codec.decode_memory(a["params"], rows, cols) + (raw_length if a.get("entropy") else 0)
            if a["name"] == "background":
                total += 4 * rows * cols  # the layers, rearranged from the decoded rows
    return total


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2 ** 30:.2f} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.1f} MiB"


def check_memory(header: dict, budget: int, where: str | Path) -> None:
    """PlenopackError unless decoding the file of ``header`` fits in ``budget`` bytes (see `memory_required`)."""
    need = memory_required(header)
    if need > budget:
        reso = header["resolution"]
        raise PlenopackError(
            f"decoding needs {_gib(need)} ({reso}^3 grid: {_gib(4 * reso ** 3)} of voxel links; "
            f"{header['num_voxels']:,} voxels), over the memory budget of {_gib(budget)} "
            f"(raise it with memory_budget= or {MEMORY_BUDGET_ENV})", where)


# ---------------------------------------------------------------- header validation

class _Invalid(ValueError):
    """A header field is wrong (message without the file name)."""


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _Invalid(f"{what} must be an integer in {lo}..{hi}, got {_short(value)}")
    return value


def _numbers(value: Any, what: str, length: int) -> list:
    if not isinstance(value, list) or len(value) != length or not all(is_float32_number(v) for v in value):
        raise _Invalid(f"{what} must be a list of {length} finite numbers, got {_short(value)}")
    return value


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} must be an object, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array_shape(header: dict, name: str) -> tuple[int, int]:
    """(rows, cols) of a value array of a validated header."""
    if name == "density":
        return header["num_voxels"], 1
    if name == "sh":
        return header["num_voxels"], 3 * sh_basis_count(header["sh_degree"])
    layers, height, width, _ = header["background"]["shape"]
    return height * width, layers * 4


def _check_background(bg: Any) -> None:
    bg = _object(bg, "background")
    shape = bg.get("shape")
    if not isinstance(shape, list) or len(shape) != 4 or shape[3] != 4:
        raise _Invalid(f"background shape must be [layers, height, width, 4], got {_short(shape)}")
    for v, what in zip(shape[:3], ("layers", "height", "width")):
        _int(v, f"background {what}", 1, MAX_BACKGROUND_SIDE)
    _numbers(bg.get("radii"), "background radii", shape[0])
    if "brightness" in bg:
        _numbers([bg["brightness"]], "background brightness", 1)
    turntable = bg.get("turntable")
    if turntable is not None:
        if not isinstance(turntable, list) or len(turntable) != 2:
            raise _Invalid(f"background turntable must be [axis, point], got {_short(turntable)}")
        axis = _numbers(turntable[0], "background turntable axis", 3)
        _numbers(turntable[1], "background turntable point", 3)
        if abs(float(np.linalg.norm(np.asarray(axis, np.float64))) - 1.0) > 1e-3:
            raise _Invalid("background turntable axis must be a unit vector")


def _check_metadata(meta: Any) -> None:
    """Free JSON, except the keys plenopack itself reads back."""
    meta = _object(meta, "metadata")
    if "scene" in meta:
        scene = _object(meta["scene"], "metadata.scene")
        if "world_to_unit" in scene:
            m = scene["world_to_unit"]
            if not isinstance(m, list) or len(m) != 4:
                raise _Invalid(f"metadata.scene.world_to_unit must be a 4 x 4 matrix, got {_short(m)}")
            for row in m:
                _numbers(row, "metadata.scene.world_to_unit row", 4)
        if scene.get("name") is not None and not isinstance(scene["name"], str):
            raise _Invalid(f"metadata.scene.name must be a string, got {_short(scene['name'])}")
        if scene.get("max_side") is not None:
            _int(scene["max_side"], "metadata.scene.max_side", 1, 1 << 20)
    if meta.get("eval_background") is not None:
        _numbers(meta["eval_background"], "metadata.eval_background", 3)
    if "fit" in meta:
        fit = _object(meta["fit"], "metadata.fit")
        if "seconds" in fit:
            _numbers([fit["seconds"]], "metadata.fit.seconds", 1)


def _check_header(h: Any, payload_size: int, version: int = VERSION) -> None:
    """Validate a parsed header of a file of format ``version`` against a payload region of ``payload_size``
    bytes; fill defaults in place."""
    h = _object(h, "header")
    if h.get("format") != "plenopack-grid":
        raise _Invalid(f"format must be \"plenopack-grid\", got {_short(h.get('format'))}")
    reso = _int(h.get("resolution"), "resolution", 2, MAX_RESOLUTION)
    _int(h.get("sh_degree"), "SH degree", 0, 3)
    _int(h.get("num_voxels"), "voxel count", 0, reso ** 3)
    _object(h.setdefault("codec", {}), "codec")
    _check_metadata(h.setdefault("metadata", {}))
    arrays = h.get("arrays")
    if not isinstance(arrays, list):
        raise _Invalid(f"arrays must be a list, got {_short(arrays)}")
    names = []
    for a in arrays:
        a = _object(a, "array entry")
        name = a.get("name")
        if name not in STREAMS or name in names:
            raise _Invalid(f"array name {_short(name)} is unknown or repeated")
        names.append(name)
        offset = _int(a.get("offset"), f"offset of {name}", 0, payload_size)
        _int(a.get("length"), f"length of {name}", 0, payload_size)
        _int(a.get("crc32"), f"crc32 of {name}", 0, 2 ** 32 - 1)
        if offset + a["length"] > payload_size:
            raise PlenopackError(f"truncated: array {name!r} extends past the end of the file")
    for required in ("positions", "density", "sh"):
        if required not in names:
            raise _Invalid(f"missing array {required!r}")
    if ("background" in names) != ("background" in h):
        raise _Invalid("background description and background array must come together")
    if "background" in h:
        _check_background(h["background"])
    for a in arrays:
        if a["name"] == "positions":
            if a.get("codec") != POSITIONS_CODEC:
                raise _Invalid(f"positions codec must be {POSITIONS_CODEC!r}, got {_short(a.get('codec'))}")
            continue
        rows, cols = _array_shape(h, a["name"])
        a.setdefault("params", {})
        try:
            _, raw_length = check_descriptor(a, rows, cols)
        except ValueError as exc:
            raise _Invalid(f"array {a['name']!r}: {exc}") from None
        if a.get("entropy") is None and a["length"] != raw_length:
            raise _Invalid(f"array {a['name']!r} has {a['length']} bytes, its {a['codec']} stream needs {raw_length}")
    if version < 2 and _uses_byte_layout(h):
        raise _Invalid("a code layout parameter needs format version 2")
    if version < 3 and _uses_8bit_codebook(h):
        raise _Invalid("an 8-bit vq codebook needs format version 3")
    if version < 4 and _uses_residual_vq(h):
        raise _Invalid("a vq residual stage needs format version 4")
    if version < 5 and _uses_codebook_columns(h):
        raise _Invalid("a vq codebook of 6 or 7 bits or stored column by column needs format version 5")


# ---------------------------------------------------------------- reading

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("repeated key in a JSON object")
    return out


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _read_header(fh, size: int, where: Path, budget: int) -> tuple[dict, int]:
    """Read, check and parse the prefix and header of an open file of ``size`` bytes; returns the validated
    header (plus ``nbytes`` = size, ``header_bytes`` = H and ``version``) and the offset of the payloads."""
    prefix = fh.read(PREFIX.size)
    if len(prefix) < PREFIX.size:
        raise PlenopackError(f"truncated: {len(prefix)} bytes is too short for a plenopack file", where)
    magic, version, _, head_len, head_crc = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise PlenopackError("not a plenopack scene file (bad magic)", where)
    if version not in READABLE_VERSIONS:
        raise PlenopackError(f"unsupported format version {version} (this plenopack reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))})", where)
    if head_len > MAX_HEADER:
        raise PlenopackError(f"invalid header: {head_len:,} bytes is over the limit of {MAX_HEADER:,}", where)
    if PREFIX.size + head_len > size:
        raise PlenopackError("truncated: header extends past the end of the file", where)
    if HEADER_PARSE_FACTOR * head_len > budget:
        raise PlenopackError(f"a header of {head_len:,} bytes is over the memory budget of {_gib(budget)}", where)
    head = fh.read(head_len)
    if len(head) != head_len:
        raise PlenopackError("truncated: header extends past the end of the file", where)
    if zlib.crc32(head) != head_crc:
        raise PlenopackError("checksum mismatch in the header", where)
    try:
        header = json.loads(head.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise PlenopackError(f"header is not valid JSON ({reason})", where) from None
    try:
        _check_header(header, size - PREFIX.size - head_len, version)
    except _Invalid as exc:
        raise PlenopackError(f"invalid header: {exc}", where) from None
    except PlenopackError as exc:
        raise PlenopackError(str(exc), where) from None
    header["nbytes"] = size
    header["header_bytes"] = head_len
    header["version"] = version
    return header, PREFIX.size + head_len


class _SceneFile:
    """An open scene file and its size, with read errors as PlenopackError."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.fh = open(self.path, "rb")
        except FileNotFoundError:
            raise PlenopackError("no such scene file", self.path) from None
        except IsADirectoryError:
            raise PlenopackError("is a folder, not a scene file", self.path) from None
        except OSError as exc:
            raise PlenopackError(f"cannot read ({exc.strerror})", self.path) from None
        self.size = os.fstat(self.fh.fileno()).st_size
        return self

    def __exit__(self, exc_type, exc, tb):
        self.fh.close()
        if isinstance(exc, OSError):
            raise PlenopackError(f"cannot read ({exc.strerror})", self.path) from None


def read_plen_header(path: str | Path, memory_budget: int | str | None = None) -> dict:
    """The validated header of a scene file (no array decoding), plus ``nbytes`` (the file size) and
    ``header_bytes`` and the format ``version``. Reads only the prefix and the header. ``memory_budget``: see
    `resolve_memory_budget`."""
    path = Path(path)
    budget = resolve_memory_budget(memory_budget)
    with _SceneFile(path) as f:
        header, _ = _read_header(f.fh, f.size, path, budget)
    return header


def read_plen(path: str | Path, memory_budget: int | str | None = None) -> PlenFile:
    """Read and decode a scene file into a renderable Grid (rows in ascending voxel order).

    ``memory_budget``: bytes (or "8G" etc.) decoding may use; default PLENOPACK_MEMORY_BUDGET or 4 GiB. A file
    that needs more (`memory_required`) is refused with PlenopackError before its arrays are read.
    """
    path = Path(path)
    budget = resolve_memory_budget(memory_budget)
    with _SceneFile(path) as f:
        header, start = _read_header(f.fh, f.size, path, budget)
        check_memory(header, budget, path)
        payloads = f.fh.read(f.size - start)
    if len(payloads) != f.size - start:
        raise PlenopackError("truncated: the file shrank while it was read", path)
    view = memoryview(payloads)
    streams: dict[str, memoryview] = {}
    for a in header["arrays"]:
        streams[a["name"]] = view[a["offset"]:a["offset"] + a["length"]]
        if zlib.crc32(streams[a["name"]]) != a["crc32"]:
            raise PlenopackError(f"checksum mismatch in array {a['name']!r}", path)
    descs = {a["name"]: a for a in header["arrays"]}
    reso, deg, n = header["resolution"], header["sh_degree"], header["num_voxels"]
    try:
        links = np.full(reso ** 3, -1, dtype=np.int32)
        links[_decode_positions(streams["positions"], reso, n)] = np.arange(n, dtype=np.int32)
        density = decode_array(streams["density"], descs["density"], *_array_shape(header, "density"))[:, 0]
        sh = decode_array(streams["sh"], descs["sh"], *_array_shape(header, "sh"))
        background = None
        if "background" in streams:
            meta = header["background"]
            layers, bh, bw, _ = meta["shape"]
            rows = decode_array(streams["background"], descs["background"], *_array_shape(header, "background"))
            background = SphereBackground(
                layers=np.ascontiguousarray(rows.reshape(bh, bw, layers, 4).transpose(2, 0, 1, 3)),
                radii=np.asarray(meta["radii"], np.float32), brightness=float(meta.get("brightness", 0.5)),
                turntable=None if meta.get("turntable") is None else np.asarray(meta["turntable"], np.float32))
        grid = Grid(links=links.reshape((reso,) * 3), density=np.ascontiguousarray(density), sh=sh, sh_degree=deg,
                    background=background)
    except (ValueError, PlenopackError) as exc:
        raise PlenopackError(f"corrupt array data ({exc})", path) from None
    return PlenFile(grid=grid, metadata=header["metadata"], codec=header["codec"], nbytes=f.size,
                    array_bytes={a["name"]: a["length"] for a in header["arrays"]}, version=header["version"])
