"""Scene ingestion command: `info-scene`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import scene_option_flag


@app.command("info-scene")
def info_scene(
    path: Path = typer.Argument(..., help="Capture folder (NeRF-synthetic, nerfstudio/instant-ngp, LLFF, CO3D "
                                          "sequence, COLMAP, ScanNet)."),
    format: str = typer.Option(None, "--format", help="Force a loader: blender, nerfstudio, llff, co3d, colmap, "
                                                      "scannet."),
    max_side: int = typer.Option(800, "--max-side", help="Resize so the longest image side is at most this (pixels)."),
    scene_option: list[str] = scene_option_flag(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Load a capture and print views, resolution, split sizes, capture kind, bounds and loader options."""
    from plenopack.scene import load_scene, parse_scene_options

    scene = load_scene(path, format=format, max_side=max_side, **parse_scene_options(scene_option))
    summary = scene.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"scene {summary['name']}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    Console().print(table)
