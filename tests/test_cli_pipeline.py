"""The verbs end to end on a real (downscaled) scene: fit -> eval -> compress -> info -> render."""

import json
import subprocess
import sys

import pytest


def run(*args):
    r = subprocess.run([sys.executable, "-m", "plenopack", *map(str, args)], capture_output=True, text=True)
    return r


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("cli") / "lego.plen"
    r = run("fit", data_dir / "scenes" / "lego", "-o", out, "--preset", "tiny", "--max-side", 40, "--json")
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_fit_json(fitted):
    out, summary = fitted
    assert out.exists() and summary["bytes"] == out.stat().st_size
    assert summary["resolution"] == 32 and summary["voxels"] > 0


def test_eval_json_has_required_keys(fitted, data_dir, tmp_path, lego_small):
    out, _ = fitted
    r = run("eval", out, data_dir / "scenes" / "lego", "--json", "--sheet", tmp_path / "sheet.png")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    # the contact sheet: 13 (photo, render) pairs of 40 px in 4 columns, the first photo pasted as it is
    import numpy as np
    from PIL import Image

    from plenopack.contact_sheet import CAPTION, GAP

    sheet = np.asarray(Image.open(res["sheet"]))
    assert sheet.shape[:2] == (4 * (40 + CAPTION + GAP) + GAP, 4 * (80 + 2 * GAP) + GAP)
    photo = np.round(lego_small.images[lego_small.test_ids[0]] * 255).astype(int)
    assert np.abs(sheet[GAP:GAP + 40, GAP:GAP + 40].astype(int) - photo).max() <= 1
    for key in ("psnr", "ssim", "lpips", "memory_mb", "views", "psnr_masked"):
        assert key in res
    assert res["views"] == 13 and res["psnr"] > 15 and 0 < res["ssim"] <= 1
    assert res["psnr_worst"] < res["psnr"] and res["worst_view"] in lego_small.test_ids
    assert res["lpips"] is not None and res["lpips_net"] in ("vgg", "squeeze")
    assert res["memory_mb"] == pytest.approx(out.stat().st_size / 2 ** 20)


def test_compress_info_and_render(fitted, tmp_path, data_dir):
    out, _ = fitted
    small = tmp_path / "q.plen"
    r = run("compress", out, "-o", small, "--method", "sh", "--bits", "4", "--entropy", "zstd", "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["bytes"] == small.stat().st_size and c["ratio"] > 3
    info = json.loads(run("info", small, "--json").stdout)
    assert info["arrays"]["sh"]["codec"] == "uniform" and info["arrays"]["sh"]["bits"] == 4
    r = run("render", small, "--orbit", 4, "-o", tmp_path / "t.gif", "--size", 32)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with Image.open(tmp_path / "t.gif") as im:
        assert im.n_frames == 4 and im.size == (32, 32)


def test_bad_options_fail_cleanly(fitted, tmp_path, data_dir):
    out, _ = fitted
    for args, expect in [(("compress", out, "-o", tmp_path / "x", "--method", "zip"), "unknown codec method"),
                         (("fit", data_dir / "scenes" / "lego", "-o", tmp_path / "y", "--preset", "nope"), "unknown preset"),
                         (("fit", data_dir / "scenes" / "lego", "-o", tmp_path / "y", "--reso", "a,b"), "--reso"),
                         (("eval", tmp_path / "none.plen", data_dir / "scenes" / "lego"), "no such scene file")]:
        r = run(*args)
        assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_fit_with_background_model_options(tmp_path, data_dir):
    from plenopack.fileformat import read_plen

    out = tmp_path / "head.plen"
    r = run("fit", data_dir / "scenes" / "ethiopianHead", "-o", out, "--preset", "tiny", "--max-side", 40,
            "--steps", "20,20", "--background", "msi", "--background-layers", 3, "--background-reso", 8,
            "--background-frame", "turntable", "--json")
    assert r.returncode == 0, r.stderr
    bg = read_plen(out).grid.background
    assert bg.layers.shape == (3, 8, 16, 4) and bg.turntable is not None
    assert abs(float(bg.turntable[0] @ [0, 0, 1])) > 0.9  # the turntable axis is close to the scene's up
    bad = run("fit", data_dir / "scenes" / "ethiopianHead", "-o", tmp_path / "x.plen", "--preset", "tiny",
              "--background", "sky")
    assert bad.returncode == 2 and "unknown background 'sky'" in bad.stderr and not (tmp_path / "x.plen").exists()
    bad = run("fit", data_dir / "scenes" / "ethiopianHead", "-o", tmp_path / "x.plen", "--preset", "tiny",
              "--background", "msi", "--background-frame", "sideways")
    assert bad.returncode == 2 and "msi_frame" in bad.stderr


def test_fit_takes_named_settings_through_set_too(tmp_path, data_dir):
    """``--set seed=1`` (or sh_degree, prune, prune_threshold) is accepted like any other setting, and the named
    option, when given as well, wins (as --background beats --set background)."""
    from plenopack.fileformat import read_plen_header
    from plenopack.pipeline import recorded_fit_config

    for extra, seed, degree in ((["--set", "seed=7", "--set", "sh_degree=2"], 7, 2),  # tiny: degree 1
                                (["--set", "seed=7", "--seed", 3], 3, 1)):
        out = tmp_path / f"lego-{seed}.plen"
        r = run("fit", data_dir / "scenes" / "lego", "-o", out, "--preset", "tiny", "--max-side", 40, "--steps",
                "5,5", *extra, "--json")
        assert r.returncode == 0, r.stderr
        config = recorded_fit_config(read_plen_header(out)["metadata"])
        assert (config.seed, config.sh_degree) == (seed, degree)
