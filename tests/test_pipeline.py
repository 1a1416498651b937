"""One pipeline path: the same metadata from every entry point, a quiet library, config validation,
fine-tuning through the fit's trainer."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from plenopack.codecs import CodecConfig
from plenopack.errors import PlenopackError
from plenopack.fileformat import read_plen
from plenopack.fit import FitConfig, fit, load_preset
from plenopack.pipeline import PipelineConfig, encode_to_file, fit_scene, load_recorded_scene, run

TINY = {"reso": [8, 16], "steps": [15, 15], "batch_rays": 256, "log_every": 5}
SCENE_KEYS = {"name", "id", "category", "source_path", "format", "max_side", "loader_options", "world_to_unit",
              "normalisation", "capture_kind", "background_frame", "train_views", "test_views"}


def test_every_numeric_field_is_range_checked():
    fields = [f for f in dataclasses.fields(FitConfig) if f.type in ("int", "float", "float | list[float]")]
    assert len(fields) > 30 and all("range" in f.metadata for f in fields)
    for f in fields:
        lo, hi, lo_open, hi_open = f.metadata["range"]
        bad = (lo - 1 if lo is not None else None) if not lo_open else lo
        if bad is None:
            bad = hi + 1 if not hi_open else hi
        with pytest.raises(PlenopackError, match=f.name):
            FitConfig(**{f.name: bad})
        with pytest.raises(PlenopackError, match=f.name):
            FitConfig(**{f.name: "abc"})
        with pytest.raises(PlenopackError, match=f.name):
            FitConfig(**{f.name: float("nan")})


def test_step_size_zero_is_one_error_line(tmp_path, data_dir):
    out = tmp_path / "x.plen"
    r = subprocess.run([sys.executable, "-m", "plenopack", "fit", str(data_dir / "scenes" / "lego"), "-o", str(out),
                        "--preset", "tiny", "--set", "step_size=0"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: step_size must lie in [0.01, 4], got 0"]
    assert not out.exists()


def test_library_is_quiet_and_reports_through_the_callback(lego_small, tmp_path, capsys):
    events = []
    result = fit(lego_small, load_preset("tiny", **TINY), progress=events.append)
    out = tmp_path / "l.plen"
    _, metadata = fit_scene(lego_small, load_preset("tiny", **TINY), "tiny", 40)
    encode_to_file(out, result.grid, metadata, CodecConfig("vq", codebook=8, finetune=10), lego_small,
                   progress=events.append)
    from plenopack.pipeline import evaluate_file

    evaluate_file(out, lego_small, progress=events.append)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    tasks = {e.task for e in events}
    assert tasks == {"fit", "finetune", "evaluate"}
    fit_events = [e for e in events if e.task == "fit"]
    assert fit_events[-1].completed == fit_events[-1].total == 30 and fit_events[-1].fields["voxels"] > 0
    assert [e.completed for e in events if e.task == "evaluate"][-1] == lego_small.test_ids.size


def test_cli_fit_build_and_sweep_write_the_same_metadata(tmp_path, data_dir, co3d_scene):
    from plenopack.build import BuildConfig, build_dataset
    from plenopack.sweep import RowSpec, Sweep

    lego = data_dir / "scenes" / "lego"
    cli_file = tmp_path / "cli.plen"
    r = subprocess.run([sys.executable, "-m", "plenopack", "fit", str(lego), "-o", str(cli_file), "--preset", "tiny",
                        "--max-side", "40", "--json"] + sum((["--set", f"{k}={json.dumps(v)}"] for k, v in TINY.items()), []),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sweep = Sweep([lego], tmp_path / "sweep", preset="tiny", lpips_net="squeeze", max_side=40, fit_overrides=TINY)
    spec = RowSpec("quantization", "ours(SH) 8-bit", codec=CodecConfig("sh", 8))
    sweep.run_row(lego, spec, sweep.row_key(lego, spec))
    build_dataset(co3d_scene.parent.parent, tmp_path / "ds", BuildConfig(preset="tiny", fit_overrides=TINY,
                                                                         lpips_net=None), workers=1)
    files = [cli_file] + sorted((tmp_path / "sweep" / "cache").glob("*.plen")) + sorted((tmp_path / "ds").rglob("*.plen"))
    assert len(files) == 4
    for path in files:
        meta = read_plen(path).metadata
        assert {"plenopack_version", "schema", "scene", "eval_background", "fit"} <= set(meta), path
        assert set(meta["scene"]) == SCENE_KEYS, path
        w2u = np.asarray(meta["scene"]["world_to_unit"])
        assert w2u.shape == (4, 4) and not np.allclose(w2u, np.eye(4)), path
        assert FitConfig.from_dict(meta["fit"]["config"]).config_hash() == meta["fit"]["config_hash"]
    cli_meta = read_plen(cli_file).metadata
    sweep_meta = read_plen(files[1]).metadata
    assert cli_meta["scene"] == {**sweep_meta["scene"]}
    assert cli_meta["fit"]["config_hash"] == sweep_meta["fit"]["config_hash"]


def test_recorded_options_reload_the_same_split(tmp_path, data_dir):
    lego = data_dir / "scenes" / "lego"
    from plenopack.scene import load_scene

    scene = load_scene(lego, max_side=40)
    _, metadata = fit_scene(scene, load_preset("tiny", **TINY), "tiny", 40)
    again = load_recorded_scene(metadata)
    assert again.image_size(0) == (40, 40)
    np.testing.assert_array_equal(again.test_ids, scene.test_ids)
    np.testing.assert_allclose(again.world_to_unit, scene.world_to_unit)


def test_finetuning_trains_the_background_model_too(tmp_path, ethiopian_small):
    """A grid with an MSI is fine-tuned on full frames against its MSI (not random colours or white)."""
    from plenopack.compress import finetune

    config = load_preset("tiny", **TINY, background_model="msi", msi_layers=2, msi_height=8, lambda_mask=0.1)
    grid, metadata = fit_scene(ethiopian_small, config, "tiny", 40)
    # msi_frame "auto" follows the detected capture: ethiopianHead turns on a turntable
    assert metadata["fit"]["config"]["msi_frame"] == "turntable" and grid.background.turntable is not None
    before = grid.background.layers.copy()
    tuned, _ = finetune(grid, ethiopian_small, CodecConfig("sh", 4), 20,
                        fit_config=FitConfig.from_dict(metadata["fit"]["config"]))
    assert tuned.background is not None and not np.allclose(tuned.background.layers, before)
    np.testing.assert_array_equal(grid.background.layers, before)  # the input grid is not modified
    from plenopack.evaluate import evaluate

    full = evaluate(tuned, ethiopian_small)["psnr"]
    stripped = evaluate(type(tuned)(tuned.links, tuned.density, tuned.sh, tuned.sh_degree), ethiopian_small)["psnr"]
    assert full > stripped + 1.0  # the fine-tuned background still explains the room


def test_run_evaluates_what_it_wrote(tmp_path, lego_small):
    out = tmp_path / "r.plen"
    row = run(lego_small, PipelineConfig(preset="tiny", fit_overrides=TINY, codec=CodecConfig("sh", 8, "zstd"),
                                         max_side=40, lpips_net=None), out)
    assert row["bytes"] == out.stat().st_size and row["psnr"] > 12 and row["lpips"] is None
    assert read_plen(out).codec["method"] == "sh"


@pytest.fixture(scope="module")
def ethiopian_small(data_dir):
    from plenopack.scene import load_scene

    return load_scene(data_dir / "scenes" / "ethiopianHead", max_side=40)


@pytest.fixture(scope="module")
def co3d_scene(tmp_path_factory):
    from tests.scene_fixtures import make_cameras, write_co3d

    c2w, k = make_cameras(11, 20, 24, seed=3)
    return write_co3d(tmp_path_factory.mktemp("co3d") / "root", c2w, k, 20, 24, category="apple", sequence="1_1")


def test_eval_renders_at_the_recorded_render_step_not_the_training_step(lego_small, tiny_fit):
    """A fit trained with coarse samples is scored with the finer ``render_step_size`` its file records."""
    from plenopack.evaluate import evaluate
    from plenopack.pipeline import evaluate_grid, file_metadata

    coarse = tiny_fit.config.replace(step_size=2.0)
    scores = {}
    for render_step in (0.5, 2.0):
        result = dataclasses.replace(tiny_fit, config=coarse.replace(render_step_size=render_step))
        metadata = file_metadata(lego_small, 40, result, "tiny")
        assert metadata["fit"]["config"]["render_step_size"] == render_step
        scores[render_step] = evaluate_grid(tiny_fit.grid, metadata, lego_small)["psnr"]
        direct = evaluate(tiny_fit.grid, lego_small, background=tuple(metadata["eval_background"]),
                          step_size=render_step)["psnr"]
        assert scores[render_step] == pytest.approx(direct, abs=1e-9)
    assert abs(scores[0.5] - scores[2.0]) > 1e-3
