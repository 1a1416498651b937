"""Quality and time of a fit: lego with --preset fast, ethiopianHead with --preset llff (JSON on stdout).

Targets (issue 3): lego test PSNR >= 28 dB within 300 s; ethiopianHead masked test PSNR >= 26 dB within 600 s.
Run: .venv/bin/python bench/bench_fit.py [lego|ethiopianHead|all]
"""

import json
import sys
from pathlib import Path

from plenopack.evaluate import evaluate
from plenopack.fit import fit, load_preset
from plenopack.scene import load_scene

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"
CASES = {"lego": ("fast", "psnr", 28.0, 300.0), "ethiopianHead": ("llff", "psnr_masked", 26.0, 600.0)}


def main(names):
    out = {}
    for name in names:
        preset, metric, target, budget = CASES[name]
        scene = load_scene(DATA / name)
        result = fit(scene, load_preset(preset), progress=False)
        ev = evaluate(result.grid, scene)
        out[name] = {"preset": preset, "metric": metric, "value": ev[metric], "target": target,
                     "fit_seconds": round(result.seconds, 1), "budget_seconds": budget,
                     "meets_target": bool(ev[metric] >= target and result.seconds <= budget),
                     "psnr": ev["psnr"], "ssim": ev["ssim"], "voxels": result.grid.num_voxels,
                     "resolution": result.grid.resolution}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "all"
    main(list(CASES) if arg == "all" else [arg])
