"""Sweeps: end to end on a tiny real scene, table layout, Pareto front, resume."""

import json

import pytest

from plenopack.fit import load_preset
from plenopack.sweep import markdown_table, pareto_front, row_specs, run_sweep, summarise


def test_pareto_front_on_hand_made_points():
    pts = [(10.0, 30.0), (5.0, 29.0), (20.0, 30.5), (6.0, 25.0), (1.0, 15.0), (5.0, 28.0), (50.0, 30.5)]
    assert pareto_front(pts) == [4, 1, 0, 2]


def test_row_specs_match_the_seed_study():
    q = [r.label for r in row_specs("quantization", [64, 128], 1.0)]
    assert q[:4] == ["float32", "ours(SH) 8-bit", "ours(SH) 4-bit", "ours(SH) 2-bit"]
    assert "clipping 2-bit" in q and any(label.startswith("ours: vq") for label in q)
    p = [r.label for r in row_specs("pruning", [64, 128], 1.0)]
    assert p == ["sigma 5", "sigma 10", "sigma 20", "sigma 100", "weight 1.28", "weight 2.56", "none"]
    res = row_specs("resolution", [64, 128], 0.25)
    assert [r.fit_overrides["reso"][-1] for r in res] == [16, 32, 64, 96]


def test_quantization_and_pruning_run_at_the_scaled_study_resolution():
    """PeRFception's quantization and pruning rows are at 256^3: ours at 256 x scale, the fit of the resolution
    row that stands for 256 (so they share it), never finer than the preset's own final grid."""
    rows = {(r.experiment, r.label): r for e in ("resolution", "quantization", "pruning")
            for r in row_specs(e, [64, 192], 0.5)}
    stands_for_256 = rows[("resolution", "256 (x0.5 = 128)")].fit_overrides
    assert stands_for_256 == {"reso": [40, 128]}
    assert all(r.fit_overrides["reso"] == [40, 128] for (e, _), r in rows.items() if e != "resolution")
    assert rows[("quantization", "float32")].fit_overrides == stands_for_256
    assert rows[("pruning", "none")].fit_overrides == {"reso": [40, 128], "prune": "none"}
    # a preset coarser than 256 x scale keeps its own schedule
    assert all(not r.fit_overrides for r in row_specs("quantization", [64, 128], 1.0))
    assert row_specs("pruning", [64, 128], 1.0)[0].fit_overrides == {"prune": "sigma", "prune_threshold": 5.0}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("sweep")
    rows, paths, _ = run_sweep([data_dir / "scenes" / "lego"], out, ["quantization", "pruning"], preset="tiny",
                               lpips_net="squeeze", max_side=40)
    return out, rows, paths


def test_sweep_writes_tables_plot_and_rows(tiny_sweep):
    out, rows, paths = tiny_sweep
    tiny = load_preset("tiny").reso
    assert len(rows) == len(row_specs("quantization", tiny, 1)) + len(row_specs("pruning", tiny, 1))
    pruning = {r["method"]: r for r in rows if r["experiment"] == "pruning"}
    # after a 60-step tiny fit, sigma 100 leaves a handful of voxels or none (then the row records the error)
    kept = [pruning[f"sigma {t}"].get("voxels", 0) for t in (5, 10, 20, 100)]
    assert kept == sorted(kept, reverse=True) and kept[-1] < kept[0] // 10
    assert all(r["voxels"] < pruning["none"]["voxels"] for m, r in pruning.items() if m != "none" and "error" not in r)
    assert [r["method"] for r in rows if "error" in r] in ([], ["sigma 100"])
    report = paths["report"].read_text()
    assert "| Method | Memory (MB/scene) | PSNR | SSIM | LPIPS (squeeze) | fit (s) | PeRFception (CO3D): MB |" in report
    sh8 = next(line for line in report.splitlines() if line.startswith("| ours(SH) 8-bit |"))
    assert sh8.endswith("| 63.2 | 30.81 | - | - |")  # PeRFception's published row beside ours
    assert "## Quantization" in report and "## Pruning" in report
    assert paths["plot"].stat().st_size > 10_000
    import pyarrow.parquet as pq

    assert pq.read_table(paths["parquet"]).num_rows == len(rows)
    q = {r["method"]: r for r in summarise(rows, "quantization")}
    assert q["ours(SH) 8-bit"]["memory_mb"] < q["float32"]["memory_mb"]
    assert abs(q["ours(SH) 8-bit"]["psnr"] - q["float32"]["psnr"]) < 0.1
    assert q["ours(SH) 2-bit"]["psnr"] < q["ours(SH) 8-bit"]["psnr"]
    assert q["clipping 8-bit"]["psnr"] < q["ours(SH) 8-bit"]["psnr"] - 1.0
    # the quantization rows share one fit; the pruning rows each have their own
    assert len({r["fit_seconds"] for r in rows if r["experiment"] == "quantization"}) == 1


def test_failed_rows_are_reported_not_averaged():
    rows = [{"scene": "a", "experiment": "pruning", "method": "sigma 100", "codec": "float32",
             "error": "pruning removed every voxel at resolution 32"},
            {"scene": "a", "experiment": "pruning", "method": "none", "codec": "float32", "memory_mb": 2.0,
             "psnr": 20.0, "ssim": 0.8, "lpips": None, "fit_seconds": 3.0}]
    table = summarise(rows, "pruning")
    assert table[0]["scenes"] == 0 and table[0]["psnr"] is None and table[1]["psnr"] == 20.0
    text = markdown_table(table, None)
    assert "| sigma 100 | failed: pruning removed every voxel at resolution 32 |" in text
    assert "| none | 2.000 | 20.00 | 0.8000 | n/a | 3 |" in text


def test_published_rows_match_scaled_labels():
    from plenopack.sweep import published_row

    assert published_row("resolution", "128 (x0.5 = 64)") == (47.2, 29.39, 0.8081, 0.4017)
    assert published_row("pruning", "weight 2.56")[1] == 30.71
    assert published_row("pruning", "none") is None
    text = markdown_table([{"method": "384 (x0.5 = 192)", "memory_mb": 1.0, "psnr": 20.0, "ssim": 0.5,
                            "lpips": None, "fit_seconds": 1.0}], None, "resolution")
    assert text.splitlines()[-1].endswith("| 161.2 | 31.03 | 0.8619 | 0.3202 |")


def test_resume_skips_finished_rows(tiny_sweep, data_dir):
    out, rows, _ = tiny_sweep
    before = json.loads((out / "results.json").read_text())
    partial = before[:-3]
    (out / "results.json").write_text(json.dumps(partial))
    cache_files = {p.name: p.stat().st_mtime for p in (out / "cache").iterdir()}
    rows2, _, _ = run_sweep([data_dir / "scenes" / "lego"], out, ["quantization", "pruning"], preset="tiny",
                            lpips_net="squeeze", max_side=40)
    assert [r["method"] for r in rows2] == [r["method"] for r in before]
    assert rows2[:len(partial)] == partial
    for name, mtime in cache_files.items():  # nothing refitted or re-encoded
        assert (out / "cache" / name).stat().st_mtime == mtime


def test_rows_are_keyed_by_the_full_configuration(tmp_path, data_dir):
    """A changed preset, override, image size, loader option, fine-tune or LPIPS backbone makes a new key, so
    the row is run again instead of silently reusing an old one."""
    from plenopack.sweep import Sweep

    lego = data_dir / "scenes" / "lego"

    def key(experiment="quantization", index=-1, finetune=300, lpips=None, **kw):
        sweep = Sweep([lego], tmp_path, **{"preset": "tiny", "lpips_net": "squeeze", "max_side": 40, **kw})
        if lpips:
            sweep.lpips_net = lpips  # the backbone actually used (vgg where its weights exist)
        spec = row_specs(experiment, sweep.base.reso, 1.0, finetune)[index]
        return sweep.row_key(lego, spec)

    base = key()
    changed = [key(preset="fast"), key(fit_overrides={"seed": 1}), key(max_side=48),
               key(scene_options={"test_every": 4}), key(finetune=100), key(lpips="vgg"), key(index=-2)]
    assert len({base, *changed}) == len(changed) + 1
    assert key() == base


def test_trade_off_labels_overlap_neither_each_other_nor_markers():
    """A cluster of rows at nearly the same memory and PSNR (as 8-bit SH, SH+D and the pruning rows are) gets
    labels that do not overlap one another or any marker, all inside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from plenopack.sweep import place_labels

    rng = np.random.default_rng(0)
    points = [(30 * (1 + 0.05 * rng.random()), 24.95 + 0.05 * rng.random()) for _ in range(8)]
    points += [(1.3, 24.6), (1.4, 24.7), (7.2, 15.2), (7.21, 15.23)]
    labels = [f"row {i} with a long name" for i in range(len(points))]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(*zip(*points), s=40)
    ax.set_xscale("log")
    fig.tight_layout()
    notes = place_labels(ax, points, labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    texts = [matplotlib.text.Text.get_window_extent(n, renderer) for n in notes]  # the text, not its leader line
    markers = ax.transData.transform(np.asarray(points))
    assert sorted(n.get_text() for n in notes) == sorted(labels)
    for i, box in enumerate(texts):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not any(box.overlaps(other) for other in texts[i + 1:])
        assert not any(box.contains(px, py) for px, py in markers)
    plt.close(fig)
