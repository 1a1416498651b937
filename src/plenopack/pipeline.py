"""One path from a capture to an evaluated scene file: scene -> fit -> prune / fine-tune -> encode -> evaluate.

Every entry point uses these functions (the CLI's fit / compress / eval, `build`, `sweep` and the demo), so
every `.plen` file carries the same metadata (schema in docs/format.md, version `METADATA_SCHEMA`):

    plenopack_version  the writing version
    schema             METADATA_SCHEMA
    scene              name, id, category, source_path, format, max_side, loader_options (everything needed to
                       reload the same views, split and normalisation), world_to_unit (4x4 similarity: capture
                       world -> unit cube), normalisation, train_views, test_views
    eval_background    [r, g, b] constant colour renders are composited on (when the file has no MSI)
    fit                preset, config (every FitConfig field), config_hash, seconds, log
    codec              CodecConfig of the stored arrays (also in the file header), importance ("rays"/"opacity")
    compressed_from    {file, bytes} when the file was re-encoded from another file (whose fit log it keeps
                       thinned to `REENCODED_LOG_ENTRIES` entries)
Scores live beside the files (a build's manifest.parquet, a sweep's results), not in them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError
from plenopack.fileformat import read_plen, read_plen_header, write_plen
from plenopack.fit import FitConfig, FitResult, eval_background, fit, load_preset
from plenopack.grid import Grid
from plenopack.progress import ProgressCallback
from plenopack.scene import load_scene
from plenopack.scene.base import Scene

if TYPE_CHECKING:
    from plenopack.compress import VoxelImportance

METADATA_SCHEMA = 1
REENCODED_LOG_ENTRIES = 32  # fit-log entries a re-encoded file keeps (lego800's hour-long fit logs 660: 56 KB of
# header JSON, 3.6% of a 1.5 MB compressed file)


def scene_record(scene: Scene, max_side: int | None, scene_id: str | None = None) -> dict:
    """The ``scene`` block of the metadata: what reloads the same views, split and normalisation."""
    return {"name": scene.name, "id": scene_id or scene.name, "category": scene.category,
            "source_path": scene.source_path, "format": scene.source_format, "max_side": max_side,
            "loader_options": dict(scene.loader_options), "world_to_unit": scene.world_to_unit.tolist(),
            "normalisation": scene.normalisation, "capture_kind": scene.capture_kind,
            "background_frame": scene.background_frame, "train_views": int(scene.train_ids.size),
            "test_views": int(scene.test_ids.size)}


def file_metadata(scene: Scene, max_side: int | None, fit_result: FitResult, preset: str | None,
                  scene_id: str | None = None) -> dict:
    """Metadata of a freshly fitted grid (see the module docstring)."""
    from plenopack import __version__

    config = fit_result.config
    return {"plenopack_version": __version__, "schema": METADATA_SCHEMA,
            "scene": scene_record(scene, max_side, scene_id),
            "eval_background": list(eval_background(config, scene)),
            "fit": {"preset": preset, "config": config.to_dict(), "config_hash": config.config_hash(),
                    "seconds": round(fit_result.seconds, 2), "log": fit_result.log}}


def recorded_fit_config(metadata: dict) -> FitConfig | None:
    """The FitConfig a file was fitted with, or None for files without one."""
    values = metadata.get("fit", {}).get("config")
    if not isinstance(values, dict):
        return None
    try:
        return FitConfig.from_dict(values)
    except (PlenopackError, TypeError):
        return None


def load_recorded_scene(metadata: dict, scene_path: str | Path | None = None, format: str | None = None,
                        max_side: int | None = None, options: dict | None = None) -> Scene:
    """Reload the capture a file was fitted on, with the recorded format, size and loader options (so the
    split and normalisation are the same); arguments given here override the recorded ones."""
    rec = metadata.get("scene", {}) if isinstance(metadata.get("scene"), dict) else {}
    path = scene_path or rec.get("source_path")
    if not path:
        raise PlenopackError("the file does not record its capture: give the capture folder")
    recorded = rec.get("loader_options") if isinstance(rec.get("loader_options"), dict) else {}
    fmt = format or (rec.get("format") if recorded or scene_path is None else None)
    return load_scene(path, format=fmt, max_side=max_side or rec.get("max_side") or 800,
                      **{**recorded, **(options or {})})


def resolve_for_scene(config: FitConfig, scene: Scene) -> FitConfig:
    """Settings left to the capture ("auto") made explicit: the background model's frame follows the detected
    capture kind (turntable captures: the room turns with the cameras)."""
    if config.msi_frame == "auto":
        config = config.replace(msi_frame=scene.background_frame)
    return config


def fit_scene(scene: Scene, config: FitConfig, preset: str | None, max_side: int | None,
              progress: ProgressCallback | None = None, scene_id: str | None = None) -> tuple[Grid, dict]:
    """Fit (with `resolve_for_scene`'s settings) and return (grid, metadata)."""
    result = fit(scene, resolve_for_scene(config, scene), progress)
    return result.grid, file_metadata(scene, max_side, result, preset, scene_id)


def encode_to_file(path: str | Path, grid: Grid, metadata: dict, codec: CodecConfig | None = None,
                   scene: Scene | None = None, importance: VoxelImportance | None = None,
                   progress: ProgressCallback | None = None) -> int:
    """Apply the codec's grid-level steps (importance pruning, fine-tuning with the fit's trainer) and write
    the file atomically. Returns its size in bytes."""
    from plenopack.compress import prepare

    codec = codec or CodecConfig()
    fit_config = recorded_fit_config(metadata)
    importance_source = "given" if importance is not None else ("rays" if scene is not None else "opacity")
    grid, importance, vq_state = prepare(grid, codec, scene, importance, fit_config, progress)
    metadata = {**metadata, "codec": {**codec.to_dict(), "importance": importance_source}}
    return write_plen(path, grid, metadata, codec, importance=importance.codec_weights, vq_state=vq_state)


def evaluate_grid(grid: Grid, metadata: dict, scene: Scene, split: str = "test", lpips=None,
                  lpips_net: str | None = None, progress: ProgressCallback | None = None, on_view=None) -> dict:
    """Score a decoded grid on the scene's views, rendered with the fit's settings (background, near clip,
    ``render_step_size``); ``on_view`` as `plenopack.evaluate.evaluate`'s."""
    from plenopack.evaluate import evaluate

    bg = metadata.get("eval_background")
    config = recorded_fit_config(metadata) or FitConfig()
    result = evaluate(grid, scene, split=split, background=tuple(bg) if bg else None, lpips=lpips,
                      step_size=config.render_step_size, near=config.near_clip, progress=progress, on_view=on_view)
    result["lpips_net"] = lpips_net if lpips is not None else None
    return result


def evaluate_file(path: str | Path, scene: Scene, split: str = "test", lpips=None, lpips_net: str | None = None,
                  progress: ProgressCallback | None = None, on_view=None) -> dict:
    """Decode a file and score it; adds memory_mb, bytes and file."""
    f = read_plen(path)
    result = evaluate_grid(f.grid, f.metadata, scene, split, lpips, lpips_net, progress, on_view)
    result.update({"memory_mb": f.memory_mb, "bytes": f.nbytes, "file": str(path)})
    return result


def reencoded_metadata(metadata: dict, source_name: str, source_bytes: int) -> dict:
    """The metadata of a file re-encoded from another: the source's, with ``compressed_from``, without a stored
    evaluation, and its fit log thinned to at most `REENCODED_LOG_ENTRIES` evenly spaced entries (the last
    always kept; the source file keeps the whole log)."""
    out = {k: v for k, v in metadata.items() if k != "evaluation"}
    out["compressed_from"] = {"file": source_name, "bytes": source_bytes}
    log = out.get("fit", {}).get("log")
    if isinstance(log, list) and len(log) > REENCODED_LOG_ENTRIES:
        keep = sorted({round(i * (len(log) - 1) / (REENCODED_LOG_ENTRIES - 1)) for i in range(REENCODED_LOG_ENTRIES)})
        out["fit"] = {**out["fit"], "log": [log[i] for i in keep]}
    return out


def compress_file(src: str | Path, dst: str | Path, codec: CodecConfig, scene: Scene | None = None,
                  progress: ProgressCallback | None = None) -> dict:
    """Decode ``src``, apply ``codec`` (with the scene for importance and fine-tuning) into ``dst``."""
    f = read_plen(src)
    nbytes = encode_to_file(dst, f.grid, reencoded_metadata(f.metadata, Path(src).name, f.nbytes), codec, scene,
                            progress=progress)
    out = read_plen_header(dst)
    return {"file": str(dst), "method": codec.method, "bits": codec.bits, "label": codec.label(), "bytes": nbytes,
            "memory_mb": nbytes / 2 ** 20, "input_bytes": f.nbytes, "ratio": f.nbytes / nbytes,
            "voxels": out["num_voxels"], "arrays": {a["name"]: a["length"] for a in out["arrays"]}}


@dataclass
class PipelineConfig:
    """Everything that decides a scene file and its scores (hashed into `key`)."""

    preset: str = "fast"
    fit_overrides: dict = field(default_factory=dict)
    codec: CodecConfig = field(default_factory=CodecConfig)
    max_side: int = 800
    scene_options: dict = field(default_factory=dict)
    evaluate: bool = True
    lpips_net: str | None = "vgg"  # None: no LPIPS

    def fit_config(self) -> FitConfig:
        return load_preset(self.preset, **self.fit_overrides)

    def to_dict(self) -> dict:
        return {"preset": self.preset, "fit_overrides": self.fit_overrides, "codec": self.codec.to_dict(),
                "max_side": self.max_side, "scene_options": self.scene_options, "evaluate": self.evaluate,
                "lpips_net": self.lpips_net}

    def key(self, lpips_backbone: str | None = None) -> str:
        """16 hex digits over the fit config (hash), codec, image size, loader options and the LPIPS backbone
        actually used (``lpips_backbone``; the requested one when not given)."""
        blob = {"fit": self.fit_config().config_hash(), "codec": self.codec.to_dict(), "max_side": self.max_side,
                "scene_options": self.scene_options, "evaluate": self.evaluate,
                "lpips": lpips_backbone if lpips_backbone is not None else self.lpips_net}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def run(scene: Scene, config: PipelineConfig, output: str | Path, lpips=None, lpips_backbone: str | None = None,
        progress: ProgressCallback | None = None, scene_id: str | None = None) -> dict:
    """The whole path for one scene: fit, apply the codec, write ``output``, evaluate (when configured).

    Returns a row: views, resolution, voxels, bytes, fit_seconds, and psnr/ssim/lpips/psnr_masked/lpips_net.
    """
    fit_config = config.fit_config()
    grid, metadata = fit_scene(scene, fit_config, config.preset, config.max_side, progress, scene_id)
    nbytes = encode_to_file(output, grid, metadata, config.codec, scene, progress=progress)
    f = read_plen(output)
    row = {"views": scene.num_views, "bytes": nbytes, "fit_seconds": metadata["fit"]["seconds"],
           "resolution": f.grid.resolution, "voxels": f.grid.num_voxels}
    if config.evaluate and scene.test_ids.size:
        ev = evaluate_grid(f.grid, f.metadata, scene, lpips=lpips, lpips_net=lpips_backbone, progress=progress)
        row.update({k: ev.get(k) for k in ("psnr", "ssim", "lpips", "psnr_masked", "lpips_net")})
    return row
