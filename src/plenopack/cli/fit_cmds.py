"""Fitting and evaluation verbs: `fit`, `eval` (thin layers over `plenopack.pipeline`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import fit_overrides, scene_option_flag, schedule_overrides
from plenopack.scene.options import parse_scene_options
from plenopack.cli.progress import RichProgress


@app.command("fit")
def fit_cmd(
    scene_path: Path = typer.Argument(..., metavar="SCENE", help="Capture folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Scene file to write (.plen)."),
    preset: str = typer.Option("fast", "--preset", help="Hyperparameter preset (see the README's table)."),
    reso: str = typer.Option(None, "--reso", help="Resolution schedule, e.g. 64,128,256."),
    steps: str = typer.Option(None, "--steps", help="Steps per stage (comma list), or one total split like the preset."),
    sh_degree: int = typer.Option(None, "--sh-degree", help="SH degree 0..3."),
    seed: int = typer.Option(None, "--seed", help="Random seed (same seed, same result)."),
    prune: str = typer.Option(None, "--prune", help="Progressive scaling: sigma, weight or none."),
    prune_threshold: float = typer.Option(None, "--prune-threshold", help="sigma: density; weight: T (kept if max weight >= T/R)."),
    background: str = typer.Option(None, "--background", help="auto, white, black or random: constant colour behind "
                                   "the grid; msi: learn a multi-sphere background on the full frames."),
    background_layers: int = typer.Option(None, "--background-layers", help="msi: number of spheres."),
    background_reso: int = typer.Option(None, "--background-reso", help="msi: rows of each equirectangular map "
                                        "(columns = 2 x rows)."),
    background_frame: str = typer.Option(None, "--background-frame", help="msi: world (cameras move around the "
                                         "object) or turntable (the object turns in front of a fixed camera)."),
    overrides: list[str] = typer.Option([], "--set", help="Any other hyperparameter, key=value (repeatable)."),
    scene_options: list[str] = scene_option_flag(),
    format: str = typer.Option(None, "--format", help="Force the capture loader."),
    max_side: int = typer.Option(800, "--max-side", help="Resize so the longest side is at most this."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Fit a Plenoxels grid to a capture and write an (uncompressed) scene file."""
    from plenopack.fit import load_preset
    from plenopack.pipeline import encode_to_file, fit_scene
    from plenopack.scene import load_scene

    extra = fit_overrides(overrides, background, msi_layers=background_layers, msi_height=background_reso,
                          msi_frame=background_frame, sh_degree=sh_degree, seed=seed, prune=prune,
                          prune_threshold=prune_threshold)
    extra.update(schedule_overrides(preset, extra, reso, steps))
    config = load_preset(preset, **extra)
    scene = load_scene(scene_path, format=format, max_side=max_side, **parse_scene_options(scene_options))
    if not as_json:
        typer.echo(f"{scene.name}: {scene.capture_kind} capture, {scene.num_views} views "
                   f"({scene.train_ids.size} train / {scene.test_ids.size} test), normalised {scene.normalisation}; "
                   f"override with --scene-option capture_kind=...", err=True)
    with RichProgress(enabled=not as_json) as progress:
        grid, metadata = fit_scene(scene, config, preset, max_side, progress)
    nbytes = encode_to_file(output, grid, metadata)
    summary = {"path": str(output), "bytes": nbytes, "memory_mb": nbytes / 2 ** 20, "resolution": grid.resolution,
               "voxels": grid.num_voxels, "seconds": metadata["fit"]["seconds"],
               "train_psnr": metadata["fit"]["log"][-1]["psnr"] if metadata["fit"]["log"] else None,
               "config_hash": config.config_hash()}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"wrote {output}: {summary['voxels']:,} voxels at {summary['resolution']}^3, "
                   f"{summary['memory_mb']:.2f} MB, fit in {summary['seconds']:.0f} s")


@app.command("eval")
def eval_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen", help="Scene file."),
    scene_path: Path = typer.Argument(None, metavar="[SCENE]", help="The capture it was fitted on "
                                      "(default: the path recorded in the file)."),
    split: str = typer.Option("test", "--split", help="test, train or all."),
    lpips_net: str = typer.Option("vgg", "--lpips-net", help="LPIPS backbone: vgg, alex or squeeze (falls back to squeeze)."),
    no_lpips: bool = typer.Option(False, "--no-lpips", help="Skip LPIPS."),
    scene_options: list[str] = scene_option_flag(),
    format: str = typer.Option(None, "--format", help="Force the capture loader (default: as recorded)."),
    max_side: int = typer.Option(None, "--max-side", help="Default: as recorded at fit time."),
    sheet: Path = typer.Option(None, "--sheet", help="Also write a contact sheet of the views (photo beside "
                               "render, with scores): .png or .jpg."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Render held-out views and report PSNR, SSIM, LPIPS and memory (MB = file bytes / 2^20).

    The capture is loaded with the format, image size and loader options recorded in the file, so the split and
    normalisation are those of the fit."""
    from plenopack.contact_sheet import ContactSheet
    from plenopack.fileformat import read_plen_header
    from plenopack.lpips import resolve_lpips
    from plenopack.pipeline import evaluate_file, load_recorded_scene

    metadata = read_plen_header(plen).get("metadata", {})
    scene = load_recorded_scene(metadata, scene_path, format, max_side,
                                parse_scene_options(scene_options))
    model, backbone, note = (None, None, "") if no_lpips else resolve_lpips(lpips_net)
    if note and not as_json:
        typer.echo(note, err=True)
    contact = ContactSheet() if sheet is not None else None
    with RichProgress(enabled=not as_json) as progress:
        result = evaluate_file(plen, scene, split, model, backbone, progress, contact)
    if contact is not None:
        result["sheet"] = str(contact.save(sheet))
    if as_json:
        result.pop("per_view")
        typer.echo(json.dumps(result))
        return
    lp = "n/a" if result["lpips"] is None else f"{result['lpips']:.4f} ({backbone})"
    line = (f"{plen.name} on {scene.name} [{split}, {result['views']} views]: PSNR {result['psnr']:.2f} dB, "
            f"SSIM {result['ssim']:.4f}, LPIPS {lp}, memory {result['memory_mb']:.2f} MB; worst view "
            f"{result['worst_view']} at {result['psnr_worst']:.2f} dB")
    if "psnr_masked" in result:
        line += f", masked PSNR {result['psnr_masked']:.2f} dB"
    typer.echo(line)
    if contact is not None:
        typer.echo(f"contact sheet: {result['sheet']}")

