"""Scene ingestion commands: `info-scene` and the README's `demo`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app


@app.command("info-scene")
def info_scene(
    path: Path = typer.Argument(..., help="Capture folder (NeRF-synthetic, LLFF, CO3D sequence, COLMAP, ScanNet)."),
    format: str = typer.Option(None, "--format", help="Force a loader: blender, llff, co3d, colmap, scannet."),
    max_side: int = typer.Option(800, "--max-side", help="Resize so the longest image side is at most this (pixels)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Load a capture and print views, resolution, split sizes and bounds."""
    from plenopack.scene import load_scene

    scene = load_scene(path, format=format, max_side=max_side)
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


@app.command("demo")
def demo(
    data: Path = typer.Option(Path("data/scenes"), "--data", help="Folder holding the bundled scenes."),
) -> None:
    """The main job on the bundled real scenes (grows with the pipeline)."""
    from rich.console import Console

    from plenopack.scene import load_scene

    console = Console()
    for name in ("lego", "ethiopianHead"):
        scene = load_scene(data / name)
        s = scene.summary()
        console.print(f"[bold]{name}[/]: {s['format']}, {s['views']} views "
                      f"({s['train_views']} train / {s['test_views']} test), sizes {s['image_sizes_hw']}, "
                      f"masks={s['masks']}, cameras at distance {s['camera_distance_median']:.2f}")
