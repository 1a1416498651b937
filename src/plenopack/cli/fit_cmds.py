"""Fitting and evaluation verbs: `fit`, `eval`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.errors import PlenopackError


def parse_int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PlenopackError(f"{what} must be comma-separated integers, got {text!r}") from None


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values parsed as JSON when possible (numbers, lists, booleans)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise PlenopackError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def scene_metadata(scene, max_side: int) -> dict:
    return {"name": scene.name, "source_path": scene.source_path, "format": scene.source_format,
            "category": scene.category, "world_to_unit": scene.world_to_unit.tolist(), "max_side": max_side,
            "normalisation": scene.normalisation, "train_views": int(scene.train_ids.size),
            "test_views": int(scene.test_ids.size)}


@app.command("fit")
def fit_cmd(
    scene_path: Path = typer.Argument(..., metavar="SCENE", help="Capture folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Scene file to write (.plen)."),
    preset: str = typer.Option("fast", "--preset", help="Hyperparameter preset: fast, blender, llff, co3d, tiny."),
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
    format: str = typer.Option(None, "--format", help="Force the capture loader."),
    max_side: int = typer.Option(800, "--max-side", help="Resize so the longest side is at most this."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Fit a Plenoxels grid to a capture and write an (uncompressed) scene file."""
    from plenopack import __version__
    from plenopack.fileformat import write_plen
    from plenopack.fit import eval_background, fit, load_preset
    from plenopack.scene import load_scene

    extra = parse_overrides(overrides)
    if background == "msi":
        extra["background_model"] = "msi"
    elif background is not None:
        extra["background"] = background
    for key, value in (("msi_layers", background_layers), ("msi_height", background_reso),
                       ("msi_frame", background_frame)):
        if value is not None:
            extra[key] = value
    base = load_preset(preset, **extra)
    reso_list = parse_int_list(reso, "--reso") or base.reso
    steps_list = parse_int_list(steps, "--steps")
    if steps_list is not None and len(steps_list) == 1 and len(reso_list) > 1:
        share = [s / max(sum(base.steps), 1) for s in base.steps] if len(base.steps) == len(reso_list) else [1 / len(reso_list)] * len(reso_list)
        steps_list = [int(round(steps_list[0] * f)) for f in share]
    if steps_list is None:
        steps_list = base.steps if len(base.steps) == len(reso_list) else [sum(base.steps) // len(reso_list)] * len(reso_list)
    config = load_preset(preset, **extra, reso=reso_list, steps=steps_list, sh_degree=sh_degree, seed=seed,
                         prune=prune, prune_threshold=prune_threshold)
    scene = load_scene(scene_path, format=format, max_side=max_side)
    result = fit(scene, config, progress=not as_json)
    metadata = {"plenopack_version": __version__, "scene": scene_metadata(scene, max_side),
                "eval_background": list(eval_background(config, scene)), "fit": {
                    "preset": preset, "config": config.to_dict(), "config_hash": config.config_hash(),
                    "seconds": round(result.seconds, 2), "log": result.log}}
    nbytes = write_plen(output, result.grid, metadata)
    summary = {"path": str(output), "bytes": nbytes, "memory_mb": nbytes / 2 ** 20, "resolution": result.grid.resolution,
               "voxels": result.grid.num_voxels, "seconds": round(result.seconds, 2),
               "train_psnr": result.log[-1]["psnr"] if result.log else None, "config_hash": config.config_hash()}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"wrote {output}: {summary['voxels']:,} voxels at {summary['resolution']}^3, "
                   f"{summary['memory_mb']:.2f} MB, fit in {summary['seconds']:.0f} s")


def load_scene_for(plen_metadata: dict, scene_path: Path, format: str | None, max_side: int | None):
    from plenopack.scene import load_scene

    recorded = plen_metadata.get("scene", {}).get("max_side", 800)
    return load_scene(scene_path, format=format, max_side=max_side or recorded)


@app.command("eval")
def eval_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen", help="Scene file."),
    scene_path: Path = typer.Argument(..., metavar="SCENE", help="The capture it was fitted on."),
    split: str = typer.Option("test", "--split", help="test, train or all."),
    lpips_net: str = typer.Option("vgg", "--lpips-net", help="LPIPS backbone: vgg, alex or squeeze (falls back to squeeze)."),
    no_lpips: bool = typer.Option(False, "--no-lpips", help="Skip LPIPS."),
    format: str = typer.Option(None, "--format", help="Force the capture loader."),
    max_side: int = typer.Option(None, "--max-side", help="Default: as recorded at fit time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Render held-out views and report PSNR, SSIM, LPIPS and memory (MB = file bytes / 2^20)."""
    from plenopack.evaluate import evaluate
    from plenopack.fileformat import read_plen
    from plenopack.lpips import resolve_lpips

    f = read_plen(plen)
    scene = load_scene_for(f.metadata, scene_path, format, max_side)
    model, backbone, note = (None, None, "") if no_lpips else resolve_lpips(lpips_net)
    if note and not as_json:
        typer.echo(note, err=True)
    bg = f.metadata.get("eval_background")
    result = evaluate(f.grid, scene, split=split, background=tuple(bg) if bg else None, lpips=model,
                      progress=not as_json)
    result.update({"memory_mb": f.memory_mb, "bytes": f.nbytes, "lpips_net": backbone, "file": str(plen)})
    if as_json:
        result.pop("per_view")
        typer.echo(json.dumps(result))
        return
    lp = "n/a" if result["lpips"] is None else f"{result['lpips']:.4f} ({backbone})"
    line = (f"{plen.name} on {scene.name} [{split}, {result['views']} views]: PSNR {result['psnr']:.2f} dB, "
            f"SSIM {result['ssim']:.4f}, LPIPS {lp}, memory {result['memory_mb']:.2f} MB")
    if "psnr_masked" in result:
        line += f", masked PSNR {result['psnr_masked']:.2f} dB"
    typer.echo(line)

