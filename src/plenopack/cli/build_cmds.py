"""Dataset building: `build`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import parse_key_values, scene_option_flag
from plenopack.scene.options import parse_scene_options
from plenopack.cli.progress import RichProgress


@app.command("build")
def build_cmd(
    source: Path = typer.Argument(..., metavar="SOURCE", help="CO3D root, folder of scenes, or text file of scene paths."),
    output: Path = typer.Option(..., "-o", "--output", help="Dataset folder."),
    format: str = typer.Option(None, "--format", help="Force the capture loader."),
    preset: str = typer.Option("fast", "--preset", help="Fit preset."),
    overrides: list[str] = typer.Option([], "--set", help="Fit hyperparameter override key=value (repeatable)."),
    scene_options: list[str] = scene_option_flag(),
    method: str = typer.Option("sh", "--method", help="Codec method (as `compress`)."),
    bits: int = typer.Option(8, "--bits"),
    entropy: str = typer.Option(None, "--entropy", help="zstd to entropy-code every stream."),
    prune_below: float = typer.Option(0.0, "--prune-below", help="Drop voxels with max ray weight below this."),
    finetune: int = typer.Option(0, "--finetune", help="Quantisation-aware fine-tuning steps per scene."),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray."),
    workers: int = typer.Option(None, "--workers", help="Parallel scenes (default: number of cores)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster (default: start a local one)."),
    limit: int = typer.Option(None, "--limit", help="Build at most this many scenes."),
    categories: str = typer.Option(None, "--categories", help="Comma-separated categories to include."),
    max_side: int = typer.Option(800, "--max-side"),
    lpips_net: str = typer.Option("vgg", "--lpips-net"),
    verify: bool = typer.Option(False, "--verify", help="On resume, check finished files' SHA-256 (default: trust "
                                "the manifest's sizes)."),
    as_json: bool = typer.Option(False, "--json", help="Print dataset.json's summary as one JSON object."),
) -> None:
    """Build a radiance-field dataset from many captures: resumable, one failed scene never stops it."""
    from plenopack.build import BuildConfig, build_dataset
    from plenopack.codecs import CodecConfig

    config = BuildConfig(preset=preset, fit_overrides=parse_key_values(overrides, "--set"), max_side=max_side,
                         lpips_net=lpips_net, scene_options=parse_scene_options(scene_options),
                         codec=CodecConfig(method, bits, entropy, prune_below=prune_below, finetune=finetune))
    with RichProgress(enabled=not as_json) as progress:
        summary = build_dataset(source, output, config, format, executor, workers, ray_address, limit,
                                categories.split(",") if categories else None, progress, verify)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"{output}: {summary['scenes_ok']} scenes ok, {summary['scenes_failed']} failed, "
               f"{summary['bytes'] / 2 ** 20:.2f} MB, mean PSNR {summary['psnr'] or float('nan'):.2f}")
