"""Quality and time of a fit: lego with --preset fast, ethiopianHead with --preset llff (JSON on stdout).

Targets (issue 3): lego test PSNR >= 28 dB within 300 s; ethiopianHead masked test PSNR >= 26 dB within 600 s;
one 400x400 view of the fitted scene (the first test camera, intrinsics scaled to 400 px) in <= 0.5 s
(median of 5 renders after a warm-up).
Run: .venv/bin/python bench/bench_fit.py [lego|ethiopianHead|all]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from plenopack.evaluate import evaluate
from plenopack.fit import fit, load_preset
from plenopack.render import occupancy_for, render_view
from plenopack.scene import load_scene

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"
CASES = {"lego": ("fast", "psnr", 28.0, 300.0), "ethiopianHead": ("llff", "psnr_masked", 26.0, 600.0)}


def render_400_seconds(grid, scene) -> float:
    """Median seconds to render the first test camera at 400x400 (occupancy built once, as a viewer would)."""
    view = int(scene.test_ids[0])
    h, w = scene.image_size(view)
    scale = 400.0 / max(h, w)
    k = np.asarray(scene.intrinsics[view], np.float64) * scale
    occ = occupancy_for(grid)
    render_view(grid, scene.c2w[view], k, 400, 400, occupancy=occ)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        render_view(grid, scene.c2w[view], k, 400, 400, occupancy=occ)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(names):
    out = {}
    for name in names:
        preset, metric, target, budget = CASES[name]
        scene = load_scene(DATA / name)
        result = fit(scene, load_preset(preset))
        ev = evaluate(result.grid, scene)
        out[name] = {"preset": preset, "metric": metric, "value": ev[metric], "target": target,
                     "fit_seconds": round(result.seconds, 1), "budget_seconds": budget,
                     "meets_target": bool(ev[metric] >= target and result.seconds <= budget),
                     "psnr": ev["psnr"], "ssim": ev["ssim"], "voxels": result.grid.num_voxels,
                     "resolution": result.grid.resolution,
                     "render_400x400_s_median": render_400_seconds(result.grid, scene), "render_target_s": 0.5}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "all"
    main(list(CASES) if arg == "all" else [arg])
