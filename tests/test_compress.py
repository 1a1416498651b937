"""Compression of fitted grids: importance pruning and quantisation-aware fine-tuning."""

import json
import subprocess
import sys

import numpy as np
import pytest

from plenopack.codecs import CodecConfig
from plenopack.compress import prepare, ray_importance
from plenopack.evaluate import evaluate
from plenopack.fileformat import read_plen, read_plen_header, write_plen


def stored_psnr(tmp_path, grid, scene, codec, **prep):
    g, imp, state = prepare(grid, codec, scene, **prep)
    path = tmp_path / "q.plen"
    nbytes = write_plen(path, g, {}, codec, importance=imp.codec_weights, vq_state=state)
    return evaluate(read_plen(path).grid, scene)["psnr"], nbytes


def test_importance_pruning_drops_invisible_voxels_only(tmp_path, tiny_fit, lego_small):
    imp = ray_importance(tiny_fit.grid, lego_small)
    assert imp.max_weight.shape == imp.total_weight.shape == (tiny_fit.grid.num_voxels,)
    assert imp.max_weight.max() <= 1.0 and (imp.total_weight >= 0).all()
    base = evaluate(tiny_fit.grid, lego_small)["psnr"]
    g, _, _ = prepare(tiny_fit.grid, CodecConfig(prune_below=0.01), lego_small, imp)
    assert g.num_voxels == int((imp.max_weight >= 0.01).sum()) < tiny_fit.grid.num_voxels
    assert evaluate(g, lego_small)["psnr"] > base - 0.05


def test_finetuning_recovers_quantisation_loss(tmp_path, tiny_fit, lego_small):
    imp = ray_importance(tiny_fit.grid, lego_small)
    for codec in (CodecConfig("vq", codebook=32, entropy="zstd"), CodecConfig("sh", 2),
                  CodecConfig("vq", codebook=16, entropy="zstd", residual_rows=0.2, residual_codebook=16)):
        plain, _ = stored_psnr(tmp_path, tiny_fit.grid, lego_small, codec, importance=imp)
        codec.finetune = 150
        tuned, _ = stored_psnr(tmp_path, tiny_fit.grid, lego_small, codec, importance=imp)
        assert tuned > plain + 0.3, codec.label()


@pytest.mark.parametrize("residual_rows", [0.0, 0.2])
def test_vq_state_is_stored_exactly(tmp_path, tiny_fit, lego_small, residual_rows):
    codec = CodecConfig("vq", codebook=16, keep_exact=0.05, finetune=5, residual_rows=residual_rows,
                        residual_codebook=8)
    g, imp, state = prepare(tiny_fit.grid, codec, lego_small)
    assert len(state.residual_rows) == round(residual_rows * g.num_voxels)
    write_plen(tmp_path / "v.plen", g, {}, codec, importance=imp.codec_weights, vq_state=state)
    back = read_plen(tmp_path / "v.plen").grid
    rows = back.links[tuple(g.occupied_coords().T)]
    np.testing.assert_allclose(back.sh[rows], g.sh, atol=1e-5)  # the tuned grid holds the stored codebooks


def test_cli_compress_with_scene(tmp_path, data_dir, tiny_fit, lego_small):
    src = tmp_path / "in.plen"
    write_plen(src, tiny_fit.grid, {"scene": {"max_side": 40}})
    out = tmp_path / "out.plen"
    r = subprocess.run([sys.executable, "-m", "plenopack", "compress", str(src), "-o", str(out), "--method", "kmeans",
                        "--bits", "3", "--entropy", "zstd", "--prune-below", "0.01", "--finetune", "20",
                        "--scene", str(data_dir / "scenes" / "lego"), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["voxels"] < tiny_fit.grid.num_voxels and summary["ratio"] > 3
    r = subprocess.run([sys.executable, "-m", "plenopack", "compress", str(src), "-o", str(tmp_path / "x.plen"),
                        "--finetune", "5"], capture_output=True, text=True)
    assert r.returncode == 2 and "needs the training views" in r.stderr


def test_cli_compress_with_a_residual_vq_stage(tmp_path, tiny_fit):
    src = tmp_path / "in.plen"
    write_plen(src, tiny_fit.grid, {"scene": {"max_side": 40}})
    sizes = {}
    for rows in ("0", "0.3"):
        out = tmp_path / f"vq{rows}.plen"
        r = subprocess.run([sys.executable, "-m", "plenopack", "compress", str(src), "-o", str(out), "--method", "vq",
                            "--codebook", "64", "--residual-rows", rows, "--residual-codebook", "32", "--entropy",
                            "zstd", "--codebook-bits", "16", "--json"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        f = read_plen(out)
        sizes[rows] = json.loads(r.stdout)["memory_mb"]
        assert f.codec["residual_rows"] == float(rows) and f.version == (4 if rows == "0.3" else 2)
        sh = next(a for a in read_plen_header(out)["arrays"] if a["name"] == "sh")
        assert sh["params"].get("residual_rows", 0) == round(float(rows) * tiny_fit.grid.num_voxels)
    assert sizes["0.3"] > sizes["0"]
    r = subprocess.run([sys.executable, "-m", "plenopack", "compress", str(src), "-o", str(tmp_path / "x.plen"),
                        "--method", "vq", "--residual-rows", "1.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "residual_rows must be a fraction" in r.stderr and not (tmp_path / "x.plen").exists()


def test_view_metric_is_the_mean_squared_colour_error_over_the_training_directions(lego_small):
    from plenopack.compress import view_metric
    from plenopack.fit import TrainingRays
    from plenopack.kernels import sh_basis

    metric = view_metric(lego_small, 2)
    assert metric.shape == (27, 27) and np.allclose(metric, metric.T)
    assert np.all(np.linalg.eigvalsh(metric) > 0) and abs(metric[0, 0] - 1.0) < 1e-6  # DC: Y_0^2 * 4 pi = 1
    np.testing.assert_array_equal(metric[9:18, 9:18], metric[:9, :9])  # one block per colour channel
    assert not metric[:9, 9:].any()
    rays = TrainingRays(lego_small)
    basis = sh_basis(2, rays.rays(np.arange(rays.count))[1]).astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(5):
        error = rng.normal(size=27)
        colour_error = np.stack([basis @ error[c * 9:(c + 1) * 9] for c in range(3)], axis=1)
        assert abs(error @ metric @ error / (4 * np.pi * np.mean(np.sum(colour_error ** 2, axis=1))) - 1) < 0.02


def test_vq_in_a_metric_lowers_the_error_that_metric_measures():
    from plenopack.codecs import vq

    rng = np.random.default_rng(6)
    x = rng.normal(size=(4000, 6)).astype(np.float32)
    mix = rng.normal(size=(6, 6))
    metric = mix @ mix.T + np.diag([50.0, 1, 1, 1, 1, 0.1])
    errors = {}
    for name, m in (("euclidean", None), ("metric", metric)):
        state = vq.quantize(x, 32, metric=m, residual_rows=0.2, residual_codebook=16)
        e = x - state.quantised()
        errors[name] = (np.mean(np.sum(e ** 2, axis=1)), np.mean(np.einsum("ij,jk,ik->i", e, metric, e)))
    assert errors["metric"][1] < 0.9 * errors["euclidean"][1]  # better where the metric looks
    assert errors["euclidean"][0] < errors["metric"][0]  # and worse in plain squared error


def test_reencoded_files_keep_a_thinned_fit_log_and_say_where_they_came_from():
    from plenopack.pipeline import REENCODED_LOG_ENTRIES, reencoded_metadata

    log = [{"step": 50 * (i + 1), "psnr": 20.0 + i / 100} for i in range(660)]
    metadata = {"fit": {"seconds": 3.0, "log": log, "preset": "blender"}, "evaluation": {"psnr": 1.0}, "scene": {}}
    out = reencoded_metadata(metadata, "float.plen", 123)
    kept = out["fit"]["log"]
    assert len(kept) == REENCODED_LOG_ENTRIES and kept[0] == log[0] and kept[-1] == log[-1]
    assert [e["step"] for e in kept] == sorted(e["step"] for e in kept)
    assert out["compressed_from"] == {"file": "float.plen", "bytes": 123} and "evaluation" not in out
    assert metadata["fit"]["log"] is log and len(log) == 660  # the source's metadata is untouched
    short = reencoded_metadata({"fit": {"log": log[:5]}}, "a.plen", 1)
    assert short["fit"]["log"] == log[:5]
