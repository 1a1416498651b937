"""Atomic file output: a reader sees the old file or the complete new one, never a half-written file.

Everything is written to a temporary name in the destination folder (``.<name>.tmp-<pid>-<random><suffix>``,
keeping the suffix for writers that pick a format by it), flushed to disk (fsync), renamed over the destination
(`os.replace`, atomic on POSIX and Windows), and the folder is fsynced so the rename itself survives a crash.
On any failure, an exception inside the caller's writer included, the temporary file is removed and the
destination is left as it was.

- `atomic_write(path, mode)`: a context manager yielding an open file.
- `atomic_write_bytes(path, data)`, `atomic_write_text(path, text)`: whole contents at once.
- `atomic_path(path)`: a context manager yielding the temporary path, for libraries that write by file name
  (pyarrow, matplotlib, imageio, plyfile, numpy).
- `remove_stale_temporaries(folder)`: delete the temporary files of writers that were killed (SIGKILL, power
  loss) before they could clean up, so that a resumed job leaves none behind.

A missing destination folder raises `PlenopackError` naming the path; other I/O failures raise
`PlenopackError` with the system's reason.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from plenopack.errors import PlenopackError


_TOKEN_BYTES = 4  # random bytes in a temporary name (8 hex digits)
_TEMPORARY = re.compile(rf"^\..+\.tmp-(\d+)-[0-9a-f]{{{2 * _TOKEN_BYTES}}}")  # what _temporary_path names


def _temporary_path(path: Path) -> Path:
    """``.<name>.tmp-<pid>-<random><suffix>`` beside ``path``: the writer's pid tells a killed writer's file."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(_TOKEN_BYTES)}{path.suffix}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files under ``folder`` (recursively) left by `atomic_path` writers whose process is
    gone; those of running processes are kept. Returns how many were removed."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder``; a no-op where folders cannot be opened (Windows) or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception, the file written
    there (it must exist) is synced and moved to ``path``. On an exception it is removed."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise PlenopackError(f"cannot write: folder {str(folder)!r} does not exist", path)
    tmp = _temporary_path(path)
    done = False
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        raise PlenopackError(f"cannot write ({exc.strerror or exc})", path) from None
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    _fsync_folder(folder)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Yield a file open for writing (``mode`` "wb" or "w"; ``open_kwargs`` go to `open`, e.g. encoding) whose
    contents replace ``path`` atomically when the block ends without an exception."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
