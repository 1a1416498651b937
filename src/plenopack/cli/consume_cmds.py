"""Using packed scenes: `export`."""

from __future__ import annotations

from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.errors import PlenopackError


@app.command("export")
def export_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen"),
    ply: Path = typer.Option(None, "--ply", help="Write a coloured point cloud (binary PLY)."),
    npz: Path = typer.Option(None, "--npz", help="Write voxel coordinates and features (NPZ)."),
    threshold: float = typer.Option(20.0, "--threshold", help="PLY: keep voxels with density above this."),
    world: bool = typer.Option(False, "--world", help="PLY: points in the capture's world frame (default: unit cube)."),
    resolution: int = typer.Option(None, "--resolution", help="NPZ: coarser grid (keep coordinates divisible by the ratio)."),
) -> None:
    """Export a scene's voxels as a PLY point cloud and/or an NPZ of coordinates and features."""
    import plenopack
    from plenopack.export import write_npz, write_ply

    if ply is None and npz is None:
        raise PlenopackError("nothing to export: give --ply and/or --npz")
    scene = plenopack.open(plen)
    if ply is not None:
        n = write_ply(scene, ply, threshold, "world" if world else "unit")
        typer.echo(f"wrote {ply}: {n:,} points")
    if npz is not None:
        n = write_npz(scene, npz, resolution)
        typer.echo(f"wrote {npz}: {n:,} voxels")
