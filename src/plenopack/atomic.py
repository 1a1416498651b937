"""Atomic outputs: a file is either absent, its old version, or complete, never half-written.

`atomic_output(path)` yields a temporary path in the same folder; when the block finishes, the file is
fsynced, renamed over ``path`` and the folder fsynced (so the rename survives a crash); when the block
raises, the temporary file is removed and ``path`` is untouched.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from plenopack.errors import PlenopackError


def _fsync_dir(folder: Path) -> None:
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
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (see the module docstring). The temporary name
    keeps the suffix, so writers that pick a format from it (imageio, matplotlib, pyarrow) still work."""
    path = Path(path)
    if not path.parent.is_dir():
        raise PlenopackError("output folder does not exist", path.parent)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, then move the finished file into place atomically."""
    with atomic_output(path) as tmp:
        write(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> int:
    """Write ``data`` atomically; returns its length."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
