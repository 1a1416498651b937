"""Structure-aware fuzzing of the .plen reader: thousands of hostile files with valid checksums (hostile header
fields, swapped codecs, tiny zstd frames claiming gigabytes, random streams) may be read or refused with
PlenopackError, nothing else; in a child process whose address space is capped, so an allocation sized by a
hostile header fails the test instead of the machine. See tests/plen_fuzz_child.py."""

import os
import subprocess
import sys
from pathlib import Path

import plenopack

CHILD = Path(__file__).resolve().parent / "plen_fuzz_child.py"
EXAMPLES = 2500


def test_hostile_files_only_raise_plenopack_error(tmp_path):
    failing = tmp_path / "failing.plen"
    env = {**os.environ, "PYTHONPATH": str(Path(plenopack.__file__).resolve().parents[1]), "NUMBA_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(CHILD), str(EXAMPLES), str(failing)], capture_output=True, text=True,
                         env=env, timeout=600)
    lines = [line if len(line) <= 300 else line[:300] + " ..." for line in run.stderr.splitlines()]
    assert run.returncode == 0, (f"a hostile file got past the reader (kept as {failing}):\n"
                                 + "\n".join(lines[-40:]))
