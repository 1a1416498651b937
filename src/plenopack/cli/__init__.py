"""The `plenopack` command line: a thin layer over the library (one module per pipeline stage).

Every command turns a PlenopackError into one line on stderr (``error: ...``) and exit status 2.
Heavy imports (numba, torch) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from plenopack import __version__
from plenopack.errors import PlenopackError

app = typer.Typer(
    name="plenopack",
    help="Turn multi-view captures into compact Plenoxels radiance-field datasets and measure memory vs. quality.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"plenopack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """plenopack: compact radiance-field datasets."""


# Command modules register their verbs on `app` when imported (one module per stage).
from plenopack.cli import (  # noqa: E402,F401
    build_cmds, codec_cmds, consume_cmds, fit_cmds, scene_cmds, sweep_cmds, view_cmds,
)


def main() -> None:
    """Console-script entry point: usage errors come from typer; PlenopackError becomes one line."""
    from plenopack.resources import set_process_kind

    set_process_kind("server" if "view" in sys.argv[1:2] else "fit")  # numba's threading layer, see LAYERS
    try:
        app()
    except PlenopackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
