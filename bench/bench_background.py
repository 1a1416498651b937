"""Full-frame quality with and without the background model on ethiopianHead (issue 8), JSON on stdout.

Two fits of the same recipe on whole frames (`--preset turntable`): one with its multi-sphere background
(turntable frame, opacity floor on the masks), one with a constant black background instead
(`background_model none`, the fit then spends voxels on whatever of the room it can). Both are stored with
8-bit SH + zstd and scored on the test views: full-frame PSNR/SSIM/LPIPS and masked-object PSNR.
Target: full-frame PSNR with the background model >= 3 dB above the constant background, with the background
<= 25% of the compressed file.
Run: .venv/bin/python bench/bench_background.py
"""

import json
import tempfile
from pathlib import Path

from plenopack.codecs import CodecConfig
from plenopack.pipeline import compress_file
from plenopack.evaluate import evaluate
from plenopack.fileformat import read_plen, write_plen
from plenopack.fit import eval_background, fit, load_preset
from plenopack.lpips import resolve_lpips
from plenopack.scene import load_scene

SCENE = Path(__file__).resolve().parents[1] / "data" / "scenes" / "ethiopianHead"


def run(scene, config, workdir: Path, name: str, lpips) -> dict:
    result = fit(scene, config)
    raw = workdir / f"{name}.plen"
    colour = list(eval_background(config, scene))
    write_plen(raw, result.grid, {"eval_background": colour})
    packed = compress_file(raw, workdir / f"{name}-sh8.plen", CodecConfig(method="sh", bits=8, entropy="zstd"))
    grid = read_plen(workdir / f"{name}-sh8.plen").grid
    ev = evaluate(grid, scene, background=tuple(colour), lpips=lpips)
    return {"psnr": ev["psnr"], "ssim": ev["ssim"], "lpips": ev["lpips"], "psnr_masked": ev["psnr_masked"],
            "fit_seconds": round(result.seconds, 1), "voxels": grid.num_voxels, "float32_mb": raw.stat().st_size / 2 ** 20,
            "sh8_zstd_mb": packed["memory_mb"],
            "background_fraction": packed["arrays"].get("background", 0) / packed["bytes"]}


def main():
    scene = load_scene(SCENE)
    lpips, backbone, _ = resolve_lpips("vgg")
    with tempfile.TemporaryDirectory() as tmp:
        msi = run(scene, load_preset("turntable"), Path(tmp), "msi", lpips)
        constant = run(scene, load_preset("turntable", background_model="none"), Path(tmp), "constant", lpips)
    gain = msi["psnr"] - constant["psnr"]
    print(json.dumps({"scene": "ethiopianHead", "lpips_net": backbone, "msi": msi, "constant_black": constant,
                      "full_frame_gain_db": gain, "target_gain_db": 3.0, "target_background_fraction": 0.25,
                      "meets_target": bool(gain >= 3.0 and msi["background_fraction"] <= 0.25)}, indent=1))


if __name__ == "__main__":
    main()
