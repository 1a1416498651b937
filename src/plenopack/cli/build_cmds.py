"""Dataset building and checking: `build`, `report`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import parse_key_values, scene_option_flag
from plenopack.cli.progress import RichProgress
from plenopack.errors import PlenopackError
from plenopack.scene.options import parse_scene_options


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
    report: bool = typer.Option(False, "--report", help="Then rank the scenes by test PSNR and write OUT/report.png "
                                "(as `plenopack report OUT`; on a finished dataset nothing is rebuilt)."),
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
    result = make_report(output, None, 16, "psnr", 160, quiet=as_json) if report else None
    if as_json:
        typer.echo(json.dumps(summary if result is None else {**summary, "report": result}))
        return
    typer.echo(f"{output}: {summary['scenes_ok']} scenes ok, {summary['scenes_failed']} failed, "
               f"{summary['bytes'] / 2 ** 20:.2f} MB, mean PSNR {summary['psnr'] or float('nan'):.2f}")
    if result is not None:
        print_report(result)


def make_report(dataset: Path, output: Path | None, worst: int, metric: str, size: int, quiet: bool) -> dict:
    """`dataset_report` with a progress bar on stderr unless ``quiet``."""
    from plenopack.build.report import dataset_report

    with RichProgress(enabled=not quiet) as progress:
        return dataset_report(dataset, output, worst, metric, size, progress)


def print_report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    metric = result["metric"]
    table = Table(title=f"worst {len(result['scenes'])} of {result['total']} scenes by {metric}")
    for col in ("#", "scene", "category", metric, "SSIM", "MB", "photo"):
        table.add_column(col)
    for i, s in enumerate(result["scenes"]):
        table.add_row(str(i + 1), s["id"], str(s["category"]), f"{s[metric]:.2f}",
                      "" if s["ssim"] is None else f"{s['ssim']:.4f}",
                      "" if s["bytes"] is None else f"{s['bytes'] / 2 ** 20:.2f}", "yes" if s["photo"] else "no")
    console = Console()
    console.print(table)
    if result["unscored"]:
        console.print(f"{len(result['unscored'])} scene(s) without {metric}: {', '.join(result['unscored'][:10])}")
    if result["failed"]:
        console.print(f"{len(result['failed'])} scene(s) failed to build: {', '.join(result['failed'][:10])}")
    console.print(f"thumbnail sheet (photo | render): {result['sheet']}")


@app.command("report")
def report_cmd(
    dataset: Path = typer.Argument(..., metavar="DATASET", help="A built dataset folder (with manifest.parquet)."),
    output: Path = typer.Option(None, "-o", "--output", help="Thumbnail sheet, .png or .jpg (default "
                                "DATASET/report.png)."),
    worst: int = typer.Option(16, "--worst", help="How many of the lowest-scoring scenes to show."),
    metric: str = typer.Option("psnr", "--metric", help="psnr (full frame) or psnr_masked (the object)."),
    size: int = typer.Option(160, "--size", help="Longest side of each thumbnail in pixels."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Rank a built dataset's scenes by test PSNR and draw the worst (photo beside render) to find floaters and
    blur before training. Reads the manifest; rebuilds nothing."""
    if worst < 1:
        raise PlenopackError("--worst must be at least 1")
    result = make_report(dataset, output, worst, metric, size, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_report(result)
