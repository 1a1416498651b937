"""Codec table on a fitted scene: PeRFception's methods at 8/4/2 bits and ours, against float32 (JSON).

Targets (issue 4): 8-bit sh loses <= 0.05 dB; ours at <= 0.3 dB loss is >= 8x smaller than 8-bit sh; 4 bits per SH
value loses <= 0.5 dB; decoding a 128^3 scene takes <= 0.2 s.
Run: .venv/bin/python bench/bench_codecs.py [lego|ethiopianHead] (fits with --preset fast first, cached in /tmp)
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from plenopack.codecs import CodecConfig
from plenopack.compress import prepare, ray_importance
from plenopack.evaluate import evaluate
from plenopack.fileformat import read_plen, write_plen
from plenopack.fit import fit, load_preset
from plenopack.scene import load_scene
from plenopack.sweep import our_codecs

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"


def main(name: str):
    scene = load_scene(DATA / name)
    preset = "fast"
    cache = Path(tempfile.gettempdir()) / f"plenopack-bench-{name}-{load_preset(preset).config_hash()}.plen"
    if not cache.exists():
        write_plen(cache, fit(scene, load_preset(preset)).grid, {})
    grid = read_plen(cache).grid
    importance = ray_importance(grid, scene)
    metric = "psnr_masked" if scene.masks is not None and scene.composited_on is None else "psnr"
    rows = []
    codecs = [("float32", CodecConfig())]
    for method in ("sh", "sh+d", "clip"):
        codecs += [(f"{method} {b}-bit", CodecConfig(method, b)) for b in (8, 4, 2)]
    codecs += our_codecs()
    with tempfile.TemporaryDirectory() as tmp:
        for label, codec in codecs:
            t = time.perf_counter()
            g, imp, state = prepare(grid, codec, scene, importance)
            path = Path(tmp) / "x.plen"
            nbytes = write_plen(path, g, {}, codec, importance=imp.codec_weights, vq_state=state)
            encode_s = time.perf_counter() - t
            decode = []
            for _ in range(3):
                t = time.perf_counter()
                f = read_plen(path)
                decode.append(time.perf_counter() - t)
            rows.append({"method": label, "bytes": nbytes, "memory_mb": nbytes / 2 ** 20,
                         metric: evaluate(f.grid, scene)[metric], "encode_s": round(encode_s, 2),
                         "decode_s": round(min(decode), 4)})
    base = rows[0][metric]
    sh8 = next(r for r in rows if r["method"] == "sh 8-bit")
    for r in rows:
        r["delta_db"] = round(r[metric] - base, 3)
        r["smaller_than_sh8"] = round(sh8["bytes"] / r["bytes"], 2)
    ours_ok = [r for r in rows if r["method"].startswith("ours") and r["delta_db"] >= -0.3]
    print(json.dumps({"scene": name, "resolution": grid.resolution, "voxels": grid.num_voxels, "metric": metric,
                      "rows": rows, "sh8_delta_db": sh8["delta_db"],
                      "best_ours_smaller_than_sh8_at_0.3db": max((r["smaller_than_sh8"] for r in ours_ok), default=None),
                      "max_decode_s": max(r["decode_s"] for r in rows)}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lego")
