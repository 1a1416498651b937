"""PeRFception's memory-quality trade-off study, on any set of scenes.

Experiments (rows; every row is evaluated on each scene's held-out views, then averaged over scenes):
- ``resolution``: final grid 64, 128, 256, 384 (times ``scale``), each a fit with the preset's stages rescaled
  to end there (`scaled_schedule`), stored as PeRFception stores its chosen scenes (8-bit ``sh``).
- ``quantization``: one fitted grid, stored as float32, then ``sh``, ``sh+d``, ``clip`` at 8/4/2 bits, plus our
  codecs at their best settings (k-means and VQ with zstd).
- ``pruning``: progressive scaling ``sigma`` at 5/10/20/100, ``weight`` at 1.28/2.56, and none; stored as
  8-bit ``sh``.
PeRFception ran its quantization and pruning studies at its chosen resolution, 256^3; ours run at 256 times
``scale`` (the resolution row that stands for it, so they share its fit), or at the preset's own final
resolution when that is coarser (`study_schedule`).
Memory is the stored file's exact size (MB = bytes / 2^20). Fits are cached in ``OUT/cache`` keyed by scene and
config hash, so rows that share a fit reuse it; every finished row is appended to ``results.json`` at once
(atomically), so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from plenopack.atomic import atomic_path, atomic_write_text
from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError
from plenopack.progress import ProgressCallback, report

if TYPE_CHECKING:
    from plenopack.compress import VoxelImportance

EXPERIMENTS = ("resolution", "quantization", "pruning")
PERFCEPTION_CODEC = CodecConfig("sh", 8)  # how PeRFception stores its chosen scenes
STUDY_RESOLUTION = 256  # PeRFception's chosen resolution, at which it ran its quantization and pruning studies

# PeRFception's published study (NeurIPS 2022 D&B; 5 CO3D scenes, 256^3 unless the row says otherwise, LPIPS
# with VGG): (memory MB/scene, PSNR, SSIM, LPIPS) per row of our tables, None where the paper gives no value.
PERFCEPTION_STUDY = {
    ("resolution", "64"): (38.0, 26.56, 0.7464, 0.4827),
    ("resolution", "128"): (47.2, 29.39, 0.8081, 0.4017),
    ("resolution", "256"): (63.2, 30.81, 0.8551, 0.3353),
    ("resolution", "384"): (161.2, 31.03, 0.8619, 0.3202),
    ("quantization", "ours(SH) 8-bit"): (63.2, 30.81, None, None),
    ("quantization", "ours(SH) 4-bit"): (37.4, 27.48, None, None),
    ("quantization", "ours(SH) 2-bit"): (24.8, 14.69, None, None),
    ("quantization", "ours(SH+D) 8-bit"): (60.8, 30.53, None, None),
    ("quantization", "ours(SH+D) 4-bit"): (34.8, 23.07, None, None),
    ("quantization", "ours(SH+D) 2-bit"): (21.8, 14.65, None, None),
    ("quantization", "clipping 8-bit"): (62.6, 17.78, None, None),
    ("quantization", "clipping 4-bit"): (37.4, 17.72, None, None),
    ("quantization", "clipping 2-bit"): (24.4, 16.66, None, None),
    ("pruning", "sigma 5"): (69.0, 30.66, None, None),
    ("pruning", "sigma 10"): (66.4, 30.79, None, None),
    ("pruning", "sigma 20"): (63.2, 30.81, None, None),
    ("pruning", "sigma 100"): (49.8, 30.47, None, None),
    ("pruning", "weight 1.28"): (75.8, 30.81, None, None),
    ("pruning", "weight 2.56"): (73.0, 30.71, None, None),
}


def published_row(experiment: str, method: str) -> tuple | None:
    """PeRFception's published values for one of our rows (a scaled resolution row, "64 (x0.5 = 32)", is
    matched to the paper's row it stands for), or None."""
    return PERFCEPTION_STUDY.get((experiment, method.split(" (x")[0]))


@dataclass
class RowSpec:
    experiment: str
    label: str
    fit_overrides: dict = field(default_factory=dict)
    codec: CodecConfig = field(default_factory=lambda: PERFCEPTION_CODEC)


def our_codecs(finetune: int = 300) -> list[tuple[str, CodecConfig]]:
    """Our best settings (chosen on lego): importance pruning at max ray weight 0.01, zstd, and
    quantisation-aware fine-tuning."""
    return [
        ("ours: kmeans 4-bit", CodecConfig("kmeans", 4, "zstd", density="kmeans", prune_below=0.01, finetune=finetune)),
        ("ours: vq 4096", CodecConfig("vq", 8, "zstd", density="kmeans", codebook=4096, keep_exact=0.01,
                                      prune_below=0.01, finetune=finetune)),
    ]


def scaled_schedule(base_reso: list[int], final: int) -> list[int]:
    """The preset's stages rescaled so the last is ``final`` (multiples of 8, strictly increasing)."""
    ratio = final / base_reso[-1]
    reso = [max(8, int(round(r * ratio / 8)) * 8) for r in base_reso[:-1]] + [final]
    for i in range(len(reso) - 2, -1, -1):  # keep them increasing after rounding
        reso[i] = min(reso[i], reso[i + 1] - 8)
    if reso[0] < 4:
        raise PlenopackError(f"cannot scale the schedule {base_reso} down to {final}")
    return reso


def scaled_resolution(reso: int, scale: float) -> int:
    """A study resolution times ``scale``, rounded to a multiple of 8 (at least 16)."""
    return max(16, int(round(reso * scale / 8)) * 8)


def study_schedule(base_reso: list[int], scale: float) -> dict:
    """Fit overrides of the quantization and pruning rows: the preset's stages rescaled to end at 256 x
    ``scale`` (PeRFception's chosen resolution), unless the preset's own final grid is coarser ({} then)."""
    final = scaled_resolution(STUDY_RESOLUTION, scale)
    return {"reso": scaled_schedule(base_reso, final)} if final < base_reso[-1] else {}


def row_specs(experiment: str, base_reso: list[int], scale: float, finetune: int = 300) -> list[RowSpec]:
    if experiment == "resolution":
        rows = []
        for r in (64, 128, 256, 384):
            final = scaled_resolution(r, scale)
            rows.append(RowSpec("resolution", f"{r}" if scale == 1 else f"{r} (x{scale:g} = {final})",
                                {"reso": scaled_schedule(base_reso, final)}))
        return rows
    study = study_schedule(base_reso, scale)
    if experiment == "quantization":
        rows = [RowSpec("quantization", "float32", study, codec=CodecConfig())]
        for method, name in (("sh", "ours(SH)"), ("sh+d", "ours(SH+D)"), ("clip", "clipping")):
            rows += [RowSpec("quantization", f"{name} {b}-bit", study, CodecConfig(method, b)) for b in (8, 4, 2)]
        rows += [RowSpec("quantization", label, study, codec) for label, codec in our_codecs(finetune)]
        return rows
    if experiment == "pruning":
        rows = [RowSpec("pruning", f"sigma {t:g}", {**study, "prune": "sigma", "prune_threshold": float(t)})
                for t in (5, 10, 20, 100)]
        rows += [RowSpec("pruning", f"weight {t:g}", {**study, "prune": "weight", "prune_threshold": t})
                 for t in (1.28, 2.56)]
        rows.append(RowSpec("pruning", "none", {**study, "prune": "none"}))
        return rows
    raise PlenopackError(f"unknown experiment {experiment!r} (expected {', '.join(EXPERIMENTS)} or all)")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower memory (x) and higher quality (y); sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# Label positions tried around a point, in points (x, y) from it; the first that overlaps no placed label wins.
_LABEL_OFFSETS = [(5, 4), (5, -11), (-5, 4), (-5, -11)] + [(dx, dy) for step in range(1, 9)
                                                         for dy in (8 * step + 3, -8 * step - 9) for dx in (10, -10)]


def place_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 6) -> list:
    """Annotate each point (data coordinates) with its label where it overlaps no marker and no label placed
    before it and stays inside the axes; labels moved away from their point get a thin leader line. Call once
    the axes' limits and the figure layout are final. Returns the annotations."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = 3.5 * fig.dpi / 72  # a marker of size 40 points^2 is about 6.3 points across
    placed = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
              for px, py in ax.transData.transform(np.asarray(points, float).reshape(-1, 2))]
    annotations = []
    for (x, y), text in sorted(zip(points, labels), key=lambda item: -item[0][1]):
        def annotate(dx: float, dy: float, leader: bool):
            return ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right", va="bottom",
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if leader else None)

        for dx, dy in _LABEL_OFFSETS:
            note = annotate(dx, dy, leader=False)
            box = note.get_window_extent(renderer)  # the text alone (a leader line would cover the point)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                if (dx, dy) not in _LABEL_OFFSETS[:4]:
                    note.remove()
                    note = annotate(dx, dy, leader=True)
                break
            note.remove()
        else:  # nowhere free: the first position, overlapping
            note = annotate(*_LABEL_OFFSETS[0], leader=False)
            box = note.get_window_extent(renderer)
        placed.append(box)
        annotations.append(note)
    return annotations


def _short_hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Sweep:
    """Runs rows over scenes with a fit cache and a resumable results file.

    Every row is keyed by its full configuration: the capture (path, image size, loader options), the fit
    configuration's hash (preset, overrides, the row's own changes), the codec, and the LPIPS backbone
    actually used; a row whose key changed is run again, never reused.
    """

    def __init__(self, scene_paths: list[Path], out_dir: Path, preset: str = "fast", scale: float = 1.0,
                 lpips_net: str = "vgg", max_side: int = 800, fit_overrides: dict | None = None,
                 progress: ProgressCallback | None = None, finetune: int = 300, scene_options: dict | None = None):
        from plenopack.fit import load_preset
        from plenopack.lpips import resolve_lpips

        self.scene_paths = [Path(p) for p in scene_paths]
        self.out = Path(out_dir)
        self.cache = self.out / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.preset, self.scale, self.max_side = preset, scale, max_side
        self.fit_overrides = fit_overrides or {}
        self.scene_options = scene_options or {}
        self.base = load_preset(preset, **self.fit_overrides)
        self.progress = progress
        self.finetune = finetune
        self.lpips, self.lpips_net, self.lpips_note = resolve_lpips(lpips_net)
        self.results_path = self.out / "results.json"
        self.results: list[dict] = json.loads(self.results_path.read_text()) if self.results_path.exists() else []
        self._scenes: dict[Path, object] = {}

    def scene(self, path: Path):
        from plenopack.scene import load_scene

        if path not in self._scenes:
            self._scenes[path] = load_scene(path, max_side=self.max_side, **self.scene_options)
        return self._scenes[path]

    def fit_config(self, spec: RowSpec):
        from plenopack.fit import load_preset

        return load_preset(self.preset, **{**self.fit_overrides, **spec.fit_overrides})

    def scene_key(self, path: Path) -> str:
        return _short_hash({"path": str(Path(path).resolve()), "max_side": self.max_side,
                            "options": self.scene_options})

    def row_key(self, path: Path, spec: RowSpec) -> str:
        return _short_hash({"row": [spec.experiment, spec.label], "scene": self.scene_key(path),
                            "fit": self.fit_config(spec).config_hash(),
                            "codec": spec.codec.to_dict(), "lpips": self.lpips_net, "split": "test"})

    def done(self, key: str) -> bool:
        return any(r.get("key") == key for r in self.results)

    def fitted(self, path: Path, spec: RowSpec) -> tuple[Path, VoxelImportance]:
        """(float32 scene file, importance) from the cache, fitting when missing."""
        from plenopack.compress import VoxelImportance, ray_importance
        from plenopack.fileformat import read_plen
        from plenopack.pipeline import encode_to_file, fit_scene, recorded_fit_config

        scene = self.scene(path)
        config = self.fit_config(spec)
        stem = f"{scene.name}-{self.scene_key(path)}-{config.config_hash()}"
        fit_path = self.cache / f"{stem}.plen"
        if not fit_path.exists():
            grid, metadata = fit_scene(scene, config, self.preset, self.max_side, self.progress)
            encode_to_file(fit_path, grid, metadata)
        imp_path = self.cache / f"{stem}.importance.npz"
        if not imp_path.exists():
            f = read_plen(fit_path)
            importance = ray_importance(f.grid, scene, recorded_fit_config(f.metadata))
            with atomic_path(imp_path) as tmp:
                with open(tmp, "wb") as out:
                    np.savez(out, max_weight=importance.max_weight, total_weight=importance.total_weight)
        with np.load(imp_path) as saved:
            return fit_path, VoxelImportance(saved["max_weight"], saved["total_weight"])

    def run_row(self, path: Path, spec: RowSpec, key: str) -> dict:
        from plenopack.fileformat import read_plen, read_plen_header
        from plenopack.pipeline import encode_to_file, evaluate_file, reencoded_metadata

        scene = self.scene(path)
        fit_path, importance = self.fitted(path, spec)
        stored = self.cache / f"{fit_path.stem}-{spec.codec.label().replace('/', '_')}-{_short_hash(spec.codec.to_dict())}.plen"
        if not stored.exists():
            f = read_plen(fit_path)
            encode_to_file(stored, f.grid, reencoded_metadata(f.metadata, fit_path.name, f.nbytes), spec.codec, scene,
                           importance, self.progress)
        ev = evaluate_file(stored, scene, lpips=self.lpips, lpips_net=self.lpips_net, progress=self.progress)
        header = read_plen_header(stored)
        return {"scene": scene.name, "experiment": spec.experiment, "method": spec.label, "codec": spec.codec.label(),
                "key": key, "memory_mb": ev["memory_mb"], "bytes": ev["bytes"], "psnr": ev["psnr"],
                "ssim": ev["ssim"], "lpips": ev["lpips"], "psnr_masked": ev.get("psnr_masked"),
                "fit_seconds": header["metadata"]["fit"]["seconds"], "resolution": header["resolution"],
                "voxels": header["num_voxels"], "lpips_net": self.lpips_net}

    def run(self, experiments: list[str]) -> list[dict]:
        specs = [s for e in experiments for s in row_specs(e, self.base.reso, self.scale, self.finetune)]
        todo = [(p, s) for s in specs for p in self.scene_paths]
        for n, (path, spec) in enumerate(todo, 1):
            key = self.row_key(path, spec)
            if self.done(key):
                continue
            name = self.scene(path).name
            t = time.perf_counter()
            try:
                row = self.run_row(path, spec, key)
            except PlenopackError as exc:  # e.g. a pruning threshold that removes every voxel: report it, go on
                row = {"scene": name, "experiment": spec.experiment, "method": spec.label, "codec": spec.codec.label(),
                       "key": key, "error": str(exc)}
            self.results = [r for r in self.results if not (r["scene"] == name and r["experiment"] == spec.experiment
                                                             and r["method"] == spec.label)] + [row]
            atomic_write_text(self.results_path, json.dumps(self.results, indent=1))
            what = f"failed: {row['error']}" if "error" in row else f"{row['memory_mb']:.3f} MB, PSNR {row['psnr']:.2f}"
            report(self.progress, "sweep", n, len(todo), message=f"[{n}/{len(todo)}] {spec.experiment}: {spec.label} on "
                   f"{name}: {what} ({time.perf_counter() - t:.0f} s)")
        keys = {self.row_key(p, s) for p, s in todo}
        return [r for r in self.results if r.get("key") in keys]


def summarise(results: list[dict], experiment: str) -> list[dict]:
    """Mean over scenes of each method's row, in first-seen order."""
    out: dict[str, list[dict]] = {}
    for r in results:
        if r["experiment"] == experiment:
            out.setdefault(r["method"], []).append(r)
    table = []
    for method, all_rows in out.items():
        rows = [r for r in all_rows if "error" not in r]
        if not rows:
            table.append({"method": method, "memory_mb": None, "psnr": None, "ssim": None, "lpips": None,
                          "fit_seconds": None, "scenes": 0, "error": all_rows[0]["error"]})
            continue

        def mean(k):
            vals = [r[k] for r in rows if r.get(k) is not None]
            return float(np.mean(vals)) if vals else None
        table.append({"method": method, "memory_mb": mean("memory_mb"), "psnr": mean("psnr"), "ssim": mean("ssim"),
                      "lpips": mean("lpips"), "fit_seconds": mean("fit_seconds"), "scenes": len(rows)})
    return table


def markdown_table(rows: list[dict], lpips_net: str | None, experiment: str | None = None) -> str:
    """Our rows as a Markdown table; with ``experiment``, PeRFception's published values beside each row."""
    lp = f"LPIPS ({lpips_net})" if lpips_net else "LPIPS"
    head = f"| Method | Memory (MB/scene) | PSNR | SSIM | {lp} | fit (s) |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if experiment:
        head += " PeRFception (CO3D): MB | PSNR | SSIM | LPIPS (VGG) |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    for r in rows:
        if r.get("error"):
            line = f"| {r['method']} | failed: {r['error']} | | | | |"
        else:
            lpips = "n/a" if r["lpips"] is None else f"{r['lpips']:.4f}"
            line = (f"| {r['method']} | {r['memory_mb']:.3f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lpips} | "
                    f"{r['fit_seconds']:.0f} |")
        if experiment:
            published = published_row(experiment, r["method"]) or (None,) * 4
            line += "".join(" - |" if v is None else f" {v:g} |" for v in published)
        lines.append(line)
    return "\n".join(lines)


def write_report(results: list[dict], out_dir: Path, title: str = "Memory-quality trade-off") -> dict[str, Path]:
    """report.md, results.parquet and tradeoff.png from result rows. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    nets = sorted({r["lpips_net"] for r in results if r.get("lpips_net")})
    net = nets[0] if len(nets) == 1 else None
    scenes = sorted({r["scene"] for r in results})
    parts = [f"# {title}", "", f"Scenes: {', '.join(scenes)}. Means over scenes of per-view means on held-out views; "
             f"memory = stored file size / 2^20. LPIPS backbone: {net or 'n/a'}. Beside each row: PeRFception's published "
             "value (5 CO3D scenes; its own memory = checkpoint size; - where it gives none).", ""]
    summaries = {}
    for exp in EXPERIMENTS:
        rows = summarise(results, exp)
        if rows:
            summaries[exp] = rows
            parts += [f"## {exp.capitalize()}", "", markdown_table(rows, net, exp), ""]
    report_path = out_dir / "report.md"
    atomic_write_text(report_path, "\n".join(parts))
    table = pa.Table.from_pylist([{k: r.get(k) for k in ("scene", "experiment", "method", "codec", "memory_mb", "bytes",
                                                         "psnr", "ssim", "lpips", "psnr_masked", "fit_seconds",
                                                         "resolution", "voxels", "lpips_net", "error")} for r in results],
                                 schema=pa.schema([("scene", pa.string()), ("experiment", pa.string()),
                                                   ("method", pa.string()), ("codec", pa.string()),
                                                   ("memory_mb", pa.float64()), ("bytes", pa.int64()),
                                                   ("psnr", pa.float64()), ("ssim", pa.float64()),
                                                   ("lpips", pa.float64()), ("psnr_masked", pa.float64()),
                                                   ("fit_seconds", pa.float64()), ("resolution", pa.int64()),
                                                   ("voxels", pa.int64()), ("lpips_net", pa.string()),
                                                   ("error", pa.string())]))
    parquet = out_dir / "results.parquet"
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)

    fig, ax = plt.subplots(figsize=(8, 5.5))
    points, labels = [], []
    markers = {"resolution": "s", "quantization": "o", "pruning": "^"}
    for exp, all_rows in summaries.items():
        rows = [r for r in all_rows if not r.get("error")]
        for r in rows:
            points.append((r["memory_mb"], r["psnr"]))
            labels.append(r["method"])
            ax.scatter(r["memory_mb"], r["psnr"], marker=markers[exp], s=40,
                       label=exp if r is rows[0] else None, alpha=0.85)
    if points:
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("memory (MB per scene, log scale)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{title}: {', '.join(scenes)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.06 * (high - low))  # room for the labels of the best rows above them
    fig.tight_layout()
    place_labels(ax, points, labels)
    png = out_dir / "tradeoff.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=130)
    plt.close(fig)
    return {"report": report_path, "parquet": parquet, "plot": png, "json": out_dir / "results.json"}


def run_sweep(scene_paths: list[Path], out_dir: Path, experiments: list[str], preset: str = "fast", scale: float = 1.0,
              lpips_net: str = "vgg", max_side: int = 800, fit_overrides: dict | None = None,
              progress: ProgressCallback | None = None, finetune: int = 300,
              scene_options: dict | None = None) -> tuple[list[dict], dict[str, Path], str]:
    """Run (or resume) a sweep and write its report. Returns (rows, output paths, LPIPS note)."""
    if "all" in experiments:
        experiments = list(EXPERIMENTS)
    for e in experiments:
        if e not in EXPERIMENTS:
            raise PlenopackError(f"unknown experiment {e!r} (expected {', '.join(EXPERIMENTS)} or all)")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sweep = Sweep(scene_paths, out_dir, preset, scale, lpips_net, max_side, fit_overrides, progress, finetune,
                  scene_options)
    rows = sweep.run(experiments)
    return rows, write_report(rows, out_dir), sweep.lpips_note
