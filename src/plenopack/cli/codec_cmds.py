"""Compression verbs: `compress` and `info`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plenopack.cli import app
from plenopack.cli.options import scene_option_flag
from plenopack.scene.options import parse_scene_options
from plenopack.cli.progress import RichProgress
from plenopack.errors import PlenopackError


def parse_pair(text: str | None, what: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise PlenopackError(f"{what} expects LO,HI, got {text!r}") from None
    if not lo < hi:
        raise PlenopackError(f"{what}: LO must be below HI")
    return lo, hi


@app.command("compress")
def compress_cmd(
    src: Path = typer.Argument(..., metavar="IN.plen"),
    output: Path = typer.Option(..., "-o", "--output", help="Compressed scene file to write."),
    method: str = typer.Option("sh", "--method", help="float32, sh, sh+d, clip, kmeans or vq."),
    bits: int = typer.Option(8, "--bits", help="Bits per value, 1..8 (16 = float16)."),
    entropy: str = typer.Option(None, "--entropy", help="zstd to entropy-code every stream."),
    zstd_level: int = typer.Option(19, "--zstd-level"),
    density: str = typer.Option(None, "--density", help="Override density storage: float32, float16, uniform, kmeans."),
    codebook: int = typer.Option(4096, "--codebook", help="vq: codebook entries."),
    codebook_bits: int = typer.Option(8, "--codebook-bits",
                                      help="vq: codebook stored as 6-, 7- or 8-bit codes per column, or float16 (16)."),
    keep_exact: float = typer.Option(0.0, "--keep-exact", help="vq: fraction of most important voxels kept exact."),
    residual_rows: float = typer.Option(0.0, "--residual-rows",
                                        help="vq: fraction of voxels (those with the largest weighted VQ error) "
                                             "given a second, residual VQ stage."),
    residual_codebook: int = typer.Option(4096, "--residual-codebook", help="vq: entries of the residual stage."),
    prefer_runs: float = typer.Option(0.0, "--prefer-runs",
                                      help="vq: lambda >= 0; a voxel takes its predecessor's entry when that "
                                           "costs less than lambda x the median weighted error (smaller indices "
                                           "after zstd)."),
    clip_sh: str = typer.Option(None, "--clip-sh", help="clip: SH interval LO,HI (default -0.1,0.1)."),
    clip_density: str = typer.Option(None, "--clip-density", help="clip: density interval LO,HI (default 0,100)."),
    prune_below: float = typer.Option(0.0, "--prune-below", help="Drop voxels whose max ray weight is below this (needs --scene)."),
    finetune: int = typer.Option(0, "--finetune", help="Steps of quantisation-aware fine-tuning (needs --scene)."),
    scene_path: Path = typer.Option(None, "--scene", help="The capture: importance from its rays, and fine-tuning."),
    scene_options: list[str] = scene_option_flag(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Re-encode a scene file with a codec (PeRFception's quantizers or ours)."""
    from plenopack.codecs import CodecConfig
    from plenopack.pipeline import compress_file, load_recorded_scene

    options = {"method": method, "bits": bits, "entropy": entropy, "zstd_level": zstd_level, "density": density,
               "codebook": codebook, "codebook_bits": codebook_bits, "keep_exact": keep_exact,
               "residual_rows": residual_rows, "residual_codebook": residual_codebook, "prefer_runs": prefer_runs,
               "prune_below": prune_below, "finetune": finetune}
    for key, text, name in (("clip_sh", clip_sh, "--clip-sh"), ("clip_density", clip_density, "--clip-density")):
        pair = parse_pair(text, name)
        if pair is not None:
            options[key] = pair
    codec = CodecConfig(**options)
    scene = None
    if scene_path is not None:
        from plenopack.fileformat import read_plen_header

        scene = load_recorded_scene(read_plen_header(src).get("metadata", {}), scene_path,
                                    options=parse_scene_options(scene_options))
    with RichProgress(enabled=not as_json) as progress:
        summary = compress_file(src, output, codec, scene, progress)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"wrote {output}: {summary['memory_mb']:.3f} MB ({summary['ratio']:.1f}x smaller than {src.name})")


@app.command("info")
def info_cmd(
    plen: Path = typer.Argument(..., metavar="FILE.plen"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Resolution, voxels, codec per array, bytes per array and total size of a scene file."""
    from plenopack.fileformat import read_plen_header

    h = read_plen_header(plen)
    meta = h.get("metadata", {})
    info = {"file": str(plen), "bytes": h["nbytes"], "memory_mb": h["nbytes"] / 2 ** 20, "resolution": h["resolution"],
            "voxels": h["num_voxels"], "sh_degree": h["sh_degree"],
            "arrays": {a["name"]: {"codec": a.get("codec"), "entropy": a.get("entropy"), "bytes": a["length"],
                                   "bits": a.get("params", {}).get("bits")} for a in h["arrays"]},
            "codec": h.get("codec"), "scene": meta.get("scene", {}).get("name"),
            "fit_config_hash": meta.get("fit", {}).get("config_hash")}
    if as_json:
        typer.echo(json.dumps(info))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plen.name}: {info['resolution']}^3, {info['voxels']:,} voxels, SH degree {info['sh_degree']}, "
                        f"{info['memory_mb']:.3f} MB")
    for col in ("array", "codec", "bits", "entropy", "bytes"):
        table.add_column(col)
    for name, a in info["arrays"].items():
        table.add_row(name, str(a["codec"]), str(a["bits"] or ""), str(a["entropy"] or ""), f"{a['bytes']:,}")
    Console().print(table)
