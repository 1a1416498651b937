"""Finding the foreground mask of an image under the names people give them (one lookup for every loader).

For an image ``<images>/<sub>/X.JPG`` (``<sub>`` = its folder relative to the image root, often empty) and
each mask folder ``M`` the loader names (``masks/``, ``masks_4/``, ...), these are tried in order:

- ``M/<sub>/X.png``, ``M/<sub>/X.jpg``, ... (same stem, any image suffix; LLFF, CO3D, nerfstudio),
- ``M/<sub>/X.JPG.png``, ``M/<sub>/X.JPG.jpg``, ... (the full name with a suffix appended; COLMAP's mask_path),
- ``M/<sub>/X_mask.png``, ... (NeRD's naming),
- ``<images>/<sub>/X_mask.png``, ... beside the image (NeRD).

Files whose stem ends in ``_mask`` are masks, never images (`is_mask_file`). A capture has masks for all of
its frames or for none: `require_all_or_none` turns a partial set into one error naming the first frame
without a mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from plenopack.errors import PlenopackError

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".PNG", ".JPG", ".JPEG")
MASK_STEM_SUFFIX = "_mask"


def is_mask_file(path: str | Path) -> bool:
    """True for files named like a mask (``*_mask.*``), which must never be read as images."""
    return Path(path).stem.lower().endswith(MASK_STEM_SUFFIX)


def mask_candidates(image: Path, mask_dirs: Sequence[Path], relative: str | Path | None = None) -> Iterator[Path]:
    """Paths a mask of ``image`` may have, in order of preference (see the module docstring).

    ``relative`` is the image's path relative to its image root (as COLMAP names images); by default its name.
    """
    rel = Path(relative) if relative is not None else Path(image.name)
    stem, name = rel.stem, rel.name
    for folder in mask_dirs:
        base = folder / rel.parent
        for suffix in MASK_SUFFIXES:
            yield base / (stem + suffix)
        for suffix in MASK_SUFFIXES:
            yield base / (name + suffix)
        for suffix in MASK_SUFFIXES:
            yield base / (stem + MASK_STEM_SUFFIX + suffix)
    for suffix in MASK_SUFFIXES:
        yield image.parent / (image.stem + MASK_STEM_SUFFIX + suffix)


def find_mask(image: Path, mask_dirs: Sequence[Path] = (), relative: str | Path | None = None) -> Path | None:
    """The first existing mask file of ``image`` (see `mask_candidates`), or None."""
    return next((p for p in mask_candidates(image, mask_dirs, relative) if p.is_file()), None)


def require_all_or_none(images: Sequence[Path], masks: Sequence[Path | None], where: str | Path) -> list[Path] | None:
    """The mask paths when every image has one, None when none has; one error naming the first image without."""
    missing = [img for img, m in zip(images, masks) if m is None]
    if len(missing) == len(images):
        return None
    if missing:
        raise PlenopackError(f"{len(images) - len(missing)} of {len(images)} frames have a mask but "
                             f"{Path(missing[0]).name} has none (give every frame a mask, or none)", where)
    return list(masks)
