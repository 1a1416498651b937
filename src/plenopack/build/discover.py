"""Finding the scenes of a capture root: a CO3D root, a folder of scene folders, or a text file of paths."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from plenopack.errors import PlenopackError
from plenopack.scene import detect_format


@dataclass(frozen=True)
class SceneRef:
    id: str  # unique within the dataset
    category: str
    path: str
    format: str | None = None


def _co3d_sequences(category_dir: Path) -> list[str]:
    seq_file = category_dir / "sequence_annotations.jgz"
    if seq_file.exists():
        try:
            with gzip.open(seq_file, "rt") as fh:
                return sorted({s["sequence_name"] for s in json.load(fh)})
        except (OSError, EOFError, json.JSONDecodeError, KeyError, TypeError):
            pass  # fall back to the folders; the loader reports the broken annotation per scene
    return sorted(p.name for p in category_dir.iterdir() if (p / "images").is_dir())


def _unique_ids(refs: list[SceneRef]) -> list[SceneRef]:
    """Make ids unique: scenes that share a name (same category and folder name, different paths) get a short
    hash of their path appended, so their files never overwrite each other."""
    import hashlib
    from collections import Counter

    counts = Counter(r.id for r in refs)
    return [r if counts[r.id] == 1 else
            SceneRef(f"{r.id}-{hashlib.sha256(r.path.encode()).hexdigest()[:8]}", r.category, r.path, r.format)
            for r in refs]


def discover_scenes(source: str | Path, format: str | None = None, categories: list[str] | None = None,
                    limit: int | None = None) -> list[SceneRef]:
    """Scenes under ``source`` (sorted, stable ids), filtered by category and cut to ``limit``."""
    src = Path(source)
    refs: list[SceneRef] = []
    if src.is_file():
        for line in src.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line) if Path(line).is_absolute() else (src.parent / line)
                category = p.parent.name or "default"
                refs.append(SceneRef(f"{category}/{p.name}", category, str(p), format))
    elif not src.is_dir():
        raise PlenopackError("no such capture root", src)
    elif format in (None, "co3d") and any((d / "frame_annotations.jgz").exists() for d in src.iterdir() if d.is_dir()):
        for cat_dir in sorted(d for d in src.iterdir() if (d / "frame_annotations.jgz").exists()):
            for seq in _co3d_sequences(cat_dir):
                refs.append(SceneRef(f"{cat_dir.name}/{seq}", cat_dir.name, str(cat_dir / seq), "co3d"))
    else:
        for d in sorted(p for p in src.iterdir() if p.is_dir()):
            try:
                fmt = format or detect_format(d)
            except PlenopackError:
                continue
            refs.append(SceneRef(d.name, "default", str(d), fmt))
    refs = _unique_ids(refs)
    if categories:
        refs = [r for r in refs if r.category in set(categories)]
    if not refs:
        raise PlenopackError("no scenes found", src)
    return refs[:limit] if limit else refs
