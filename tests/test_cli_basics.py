import subprocess
import sys

from plenopack import __version__


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plenopack", *args], capture_output=True, text=True)


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"plenopack {__version__}"


def test_unknown_option_fails_cleanly():
    r = run_cli("info-scene", "--no-such-option", "x")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
