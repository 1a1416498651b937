"""Trade-off studies: `sweep`, and the README's main job `demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import parse_key_values, scene_option_flag
from plenopack.scene.options import parse_scene_options
from plenopack.cli.progress import RichProgress


def print_report(rows: list[dict], paths: dict, note: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from plenopack.sweep import EXPERIMENTS, published_row, summarise

    console = Console()
    for exp in EXPERIMENTS:
        table_rows = summarise(rows, exp)
        if not table_rows:
            continue
        net = next((r["lpips_net"] for r in rows if r.get("lpips_net")), None)
        table = Table(title=f"{exp.capitalize()} (mean over {len({r['scene'] for r in rows})} scene(s))")
        for col in ("Method", "Memory (MB/scene)", "PSNR", "SSIM", f"LPIPS ({net or 'n/a'})", "fit (s)",
                    "PeRFception MB", "PeRFception PSNR"):
            table.add_column(col, justify="left" if col == "Method" else "right")
        for r in table_rows:
            published = published_row(exp, r["method"])
            theirs = ("-", "-") if published is None else (f"{published[0]:g}", f"{published[1]:g}")
            if r.get("error"):
                table.add_row(r["method"], f"failed: {r['error']}", "", "", "", "", *theirs)
                continue
            table.add_row(r["method"], f"{r['memory_mb']:.3f}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
                          "n/a" if r["lpips"] is None else f"{r['lpips']:.4f}", f"{r['fit_seconds']:.0f}", *theirs)
        console.print(table)
    if note:
        console.print(f"[yellow]{note}[/]")
    for name, path in paths.items():
        console.print(f"{name}: {path}")


@app.command("sweep")
def sweep_cmd(
    scenes: list[Path] = typer.Argument(..., metavar="SCENE...", help="Capture folders."),
    output: Path = typer.Option(..., "-o", "--output", help="Report folder (report.md, results.json/.parquet, tradeoff.png)."),
    experiment: list[str] = typer.Option(["all"], "--experiment", help="resolution, quantization, pruning or all (repeatable)."),
    scale: float = typer.Option(1.0, "--scale", help="Scale the study's grids for small machines: resolution rows 64..384, quantization and pruning at 256 (never above the preset's own)."),
    preset: str = typer.Option("fast", "--preset", help="Fit preset for every row."),
    overrides: list[str] = typer.Option([], "--set", help="Fit hyperparameter override key=value (repeatable)."),
    lpips_net: str = typer.Option("vgg", "--lpips-net", help="vgg (PeRFception), alex or squeeze."),
    max_side: int = typer.Option(800, "--max-side"),
    finetune: int = typer.Option(300, "--finetune", help="Fine-tuning steps of our codecs' rows."),
    scene_options: list[str] = scene_option_flag(),
) -> None:
    """PeRFception's memory-quality study (resolution, quantization, pruning) on your scenes; resumable."""
    from plenopack.sweep import run_sweep

    with RichProgress() as progress:
        rows, paths, note = run_sweep(scenes, output, experiment, preset, scale, lpips_net, max_side,
                                      parse_key_values(overrides, "--set"), progress, finetune,
                                      parse_scene_options(scene_options))
    print_report(rows, paths, note)


@app.command("demo")
def demo(
    data: Path = typer.Option(Path("data/scenes"), "--data", help="Folder holding the bundled scenes."),
    output: Path = typer.Option(Path("demo-out"), "-o", "--output", help="Where the report, plot and turntable go."),
    preset: str = typer.Option("demo", "--preset", help="Fit preset (demo: about a minute per fit)."),
) -> None:
    """The main job: load the bundled scenes, run the quantization and pruning studies on lego, write the
    report, the trade-off plot and a turntable GIF."""
    from rich.console import Console

    from plenopack.fileformat import read_plen
    from plenopack.fit import load_preset
    from plenopack.render import render_orbit, write_animation
    from plenopack.scene import load_scene
    from plenopack.sweep import run_sweep

    console = Console()
    for name in ("lego", "ethiopianHead"):
        s = load_scene(data / name).summary()
        console.print(f"[bold]{name}[/]: {s['format']}, {s['views']} views ({s['train_views']} train / "
                      f"{s['test_views']} test), {s['image_sizes_hw']} px, masks={s['masks']}, normalised: {s['normalisation']}")
    output.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]Sweeping quantization and pruning on lego with preset {preset!r}[/] (resumable: re-run to continue)")
    with RichProgress() as progress:
        rows, paths, note = run_sweep([data / "lego"], output, ["quantization", "pruning"], preset=preset,
                                      finetune=150, progress=progress)
    print_report(rows, paths, note)
    base = next((output / "cache").glob(f"lego-*-{load_preset(preset).config_hash()}.plen"))
    frames = render_orbit(read_plen(base).grid, 36, radius=3.2, elevation=25.0, size=200)
    gif = output / "lego_turntable.gif"
    write_animation(frames, gif)
    console.print(f"turntable: {gif}")
