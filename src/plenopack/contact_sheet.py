"""A contact sheet of evaluated views: each photo beside its render, captioned with the view and its scores.

`ContactSheet` is an `evaluate` ``on_view`` callback: it keeps one thumbnail pair per view (longest side
``size`` pixels), so memory stays small whatever the number of views, and `save` writes the sheet
atomically (PNG, or JPEG for .jpg/.jpeg names).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from plenopack.atomic import atomic_path

GAP = 4  # pixels between tiles
CAPTION = 16  # pixels of caption under each pair


def _thumb(image: np.ndarray, size: int) -> Image.Image:
    h, w = image.shape[:2]
    scale = min(1.0, size / max(h, w))
    pil = Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


class ContactSheet:
    """Collects (photo, render) pairs from `plenopack.evaluate.evaluate`'s ``on_view`` and lays them out in
    ``columns`` columns of pairs."""

    def __init__(self, size: int = 256, columns: int = 4):
        self.size, self.columns = size, columns
        self.tiles: list[tuple[Image.Image, Image.Image, str]] = []

    def __call__(self, view: int, render: np.ndarray, photo: np.ndarray, scores: dict) -> None:
        caption = f"view {view}: {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}"
        self.tiles.append((_thumb(photo, self.size), _thumb(render, self.size), caption))

    def image(self) -> Image.Image:
        if not self.tiles:
            raise ValueError("no views to draw")
        cell_w = max(p.width + r.width for p, r, _ in self.tiles) + 2 * GAP
        cell_h = max(p.height for p, _, _ in self.tiles) + CAPTION + GAP
        columns = min(self.columns, len(self.tiles))
        rows = math.ceil(len(self.tiles) / columns)
        sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for i, (photo, render, caption) in enumerate(self.tiles):
            x, y = GAP + (i % columns) * cell_w, GAP + (i // columns) * cell_h
            sheet.paste(photo, (x, y))
            sheet.paste(render, (x + photo.width + GAP, y))
            draw.text((x, y + photo.height + 2), caption, fill=(0, 0, 0))
        return sheet

    def save(self, path: str | Path) -> Path:
        """Write the sheet (photo left, render right in each pair); returns the path."""
        path = Path(path)
        fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            self.image().save(tmp, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
        return path
