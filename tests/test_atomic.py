"""plenopack.atomic: complete files or none, no temporary left behind, a missing folder named."""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from plenopack.atomic import atomic_path, atomic_write, atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from plenopack.errors import PlenopackError


def test_success_leaves_the_complete_file_and_nothing_else(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"x" * 100_000)
    atomic_write_text(tmp_path / "b.txt", "héllo\n")
    with atomic_write(tmp_path / "c.npy") as fh:
        np.save(fh, np.arange(5))
    with atomic_path(tmp_path / "d.npz") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".d.npz.tmp-")
        np.savez(tmp, a=np.ones(3))  # a writer that picks its format by the name's suffix
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 100_000
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.arange(5))
    assert np.array_equal(np.load(tmp_path / "d.npz")["a"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.npy", "d.npz"]


def test_failure_in_the_middle_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(target, "w") as fh:
            fh.write("new contents, half")
            fh.flush()
            raise RuntimeError("disk on fire")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_on_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "new.bin") as fh:
            fh.write(b"123")
            raise ValueError("writer failed")
    with pytest.raises(PlenopackError, match="cannot write"):
        with atomic_path(tmp_path / "never.bin"):
            pass  # the writer wrote nothing
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_is_a_clear_error_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(PlenopackError, match=r"x\.bin: cannot write \(No space left on device\)"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_missing_folder_is_named(tmp_path):
    target = tmp_path / "no" / "such" / "out.gif"
    with pytest.raises(PlenopackError, match=r"out\.gif: cannot write: folder .*such' does not exist"):
        atomic_write_bytes(target, b"gif")
    assert not (tmp_path / "no").exists()


def test_file_and_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", None)) or real_replace(a, b))
    atomic_write_bytes(tmp_path / "s.bin", b"data")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "scene").mkdir()
    stale = tmp_path / "scene" / f".a.plen.tmp-{dead_pid}-0badf00d.plen"  # a killed writer's
    live = tmp_path / f".manifest.parquet.tmp-{os.getpid()}-12345678.parquet"  # a running writer's
    kept = [tmp_path / "scene" / "a.plen", tmp_path / ".notes.tmp", live]
    for path in [stale, *kept]:
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and all(p.exists() for p in kept)
