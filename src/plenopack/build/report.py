"""The worst scenes of a built dataset, found before training on it: a ranking by test PSNR and a thumbnail sheet.

`dataset_report` reads ``manifest.parquet`` (no rebuilding), ranks the scenes that were built ("ok") by the
manifest's ``metric`` (lowest first) and draws one tile per scene: the render of its first test view beside
the photo when the capture it was fitted on is still reachable (its ``source``, loaded at the recorded
``max_side``), else the render of the orbit's first view (`plenopack render`'s). Floaters, holes and blur show
up side by side with the truth. The sheet is written atomically as PNG or JPEG (by the suffix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plenopack.atomic import atomic_path
from plenopack.build.manifest import QUALITY_METRICS, read_manifest
from plenopack.cameras import orbit_poses
from plenopack.errors import PlenopackError
from plenopack.progress import ProgressCallback, report
from plenopack.render import orbit_intrinsics, to_uint8

CAPTION_HEIGHT = 28  # pixels under each tile for its rank, id and score
TILE_GAP = 6
COLUMNS = 4


@dataclass
class Thumbnail:
    render: np.ndarray  # (h, w, 3) uint8
    photo: np.ndarray | None  # (h, w, 3) uint8 of the same view, or None when the capture is out of reach


def thumbnail(scene_file: Path, source: str | None, size: int) -> Thumbnail:
    """Render one view of a scene file with its longest side ``size`` pixels: the capture's first test view
    (and that photo) when ``source`` loads, else the orbit's first view."""
    from PIL import Image

    import plenopack
    from plenopack.scene import load_scene

    packed = plenopack.open(scene_file)
    meta = packed.metadata.get("scene", {})
    capture = None
    if source and Path(source).exists():
        try:
            capture = load_scene(source, format=meta.get("format"), max_side=meta.get("max_side", 800))
        except PlenopackError:
            capture = None
    if capture is None:
        pose, k = orbit_poses(1, 3.2, 25.0)[0], orbit_intrinsics(size)
        return Thumbnail(to_uint8(packed.render(pose, k, size, size).rgb), None)
    view = int(capture.test_ids[0]) if capture.test_ids.size else int(capture.train_ids[0])
    h, w = capture.image_size(view)
    scale = size / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    k = capture.intrinsics[view] * np.array([tw / w, th / h, tw / w, th / h])
    render = to_uint8(packed.render(capture.c2w[view], k, th, tw).rgb)
    photo = np.asarray(Image.fromarray(to_uint8(capture.images[view])).resize((tw, th), Image.Resampling.LANCZOS))
    return Thumbnail(render, photo)


def rank_scenes(rows: list[dict], metric: str = "psnr") -> tuple[list[dict], list[dict]]:
    """Built ("ok") rows with a finite ``metric``, lowest first, and the built rows without one."""
    if metric not in QUALITY_METRICS:
        raise PlenopackError(f"unknown quality metric {metric!r} (expected {', '.join(QUALITY_METRICS)})")
    ok = [r for r in rows if r.get("status") == "ok"]
    scored = [r for r in ok if r.get(metric) is not None and math.isfinite(r[metric])]
    unscored = [r for r in ok if r not in scored]
    return sorted(scored, key=lambda r: (r[metric], r["id"])), unscored


def dataset_report(dataset_dir: str | Path, output: str | Path | None = None, worst: int = 16, metric: str = "psnr",
                   size: int = 160, progress: ProgressCallback | None = None) -> dict:
    """Rank a built dataset's scenes by ``metric`` and draw the ``worst`` of them into a thumbnail sheet.

    ``output``: the sheet (default ``DATASET/report.png``). ``progress`` receives "report" events (tiles drawn).
    Returns {"sheet", "metric", "scenes" (the worst, each with id, category, metric value, ssim, bytes, path,
    photo: whether the photo is shown, box: its tile's (x, y, width, height) in the sheet), "unscored" (ids
    without a value), "failed" (ids that did not build), "total" (scenes built)}.
    """
    from PIL import Image, ImageDraw

    root = Path(dataset_dir)
    manifest = root / "manifest.parquet"
    if not manifest.exists():
        raise PlenopackError("no manifest.parquet: not a plenopack dataset", root)
    rows = read_manifest(manifest)
    scored, unscored = rank_scenes(rows, metric)
    chosen = scored[:worst]
    if not chosen:
        raise PlenopackError(f"no built scene has a {metric} to rank", manifest)
    output = Path(output) if output is not None else root / "report.png"
    tiles = []
    for i, row in enumerate(chosen):
        tiles.append(thumbnail(root / row["path"], row.get("source"), size))
        report(progress, "report", i + 1, len(chosen))
    tile_w = 2 * size + TILE_GAP
    cell_w, cell_h = tile_w + TILE_GAP, size + CAPTION_HEIGHT + TILE_GAP
    columns = min(COLUMNS, len(chosen))
    sheet = Image.new("RGB", (columns * cell_w + TILE_GAP, math.ceil(len(chosen) / columns) * cell_h + TILE_GAP),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    scenes = []
    for i, (row, tile) in enumerate(zip(chosen, tiles)):
        x, y = TILE_GAP + (i % columns) * cell_w, TILE_GAP + (i // columns) * cell_h
        h, w = tile.render.shape[:2]
        if tile.photo is not None:
            sheet.paste(Image.fromarray(tile.photo), (x, y))
        else:
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(230, 230, 230))
            draw.text((x + 6, y + 6), "photo out of reach", fill=(90, 90, 90))
        sheet.paste(Image.fromarray(tile.render), (x + w + TILE_GAP, y))
        draw.text((x, y + h + 3), f"#{i + 1} {row['id']}"[:48], fill=(0, 0, 0))
        draw.text((x, y + h + 15), f"{metric} {row[metric]:.2f} dB", fill=(160, 0, 0))
        scenes.append({"id": row["id"], "category": row.get("category"), metric: row[metric], "ssim": row.get("ssim"),
                       "bytes": row.get("bytes"), "path": row["path"], "photo": tile.photo is not None,
                       "box": [x, y, 2 * w + TILE_GAP, h]})
    fmt = "JPEG" if output.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        sheet.save(tmp, format=fmt)
    return {"sheet": str(output), "metric": metric, "scenes": scenes, "unscored": [r["id"] for r in unscored],
            "failed": [r["id"] for r in rows if r.get("status") != "ok"], "total": len(scored) + len(unscored)}
