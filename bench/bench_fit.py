"""Quality, time and thread scaling of a fit (JSON on stdout).

Quality mode (default): lego with --preset fast, ethiopianHead with --preset llff.
Targets (issue 3): lego test PSNR >= 28 dB within 300 s; ethiopianHead masked test PSNR >= 26 dB within 600 s;
one 400x400 view of the fitted scene (the first test camera, intrinsics scaled to 400 px) in <= 0.5 s
(median of 5 renders after a warm-up).
    .venv/bin/python bench/bench_fit.py [lego|ethiopianHead|all]

Scaling mode (issue 18): one fit per numba thread count, in one process after a warm-up compile, scene loading
excluded; reports the fit's seconds, test PSNR, speedup against the first thread count, whether the fitted
grids are bit-identical, and where the time goes: the share of the fit spent outside parallel kernels (the
serial share; every numba ``parallel=True`` kernel is timed from the outside, so a kernel's own launch cost
counts as parallel), split into the training steps and the rest (resampling, occupancy rebuilds).
Targets: on 2 cores 2 threads >= 1.85x 1 thread; on 16 cores 16 threads >= 6x 2 threads.
    .venv/bin/python bench/bench_fit.py --scaling --threads 1,2 [--scene lego] [--preset fast] [--max-side N]
        [--set key=value ...] [--layer workqueue|omp|tbb]
The threading layer is numba's for the "fit" kind (plenopack.resources.LAYERS) unless --layer names one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"
CASES = {"lego": ("fast", "psnr", 28.0, 300.0), "ethiopianHead": ("llff", "psnr_masked", 26.0, 600.0)}


def render_400_seconds(grid, scene) -> float:
    """Median seconds to render the first test camera at 400x400 (occupancy built once, as a viewer would)."""
    import numpy as np

    from plenopack.render import occupancy_for, render_view

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


def quality(names):
    from plenopack.evaluate import evaluate
    from plenopack.fit import fit, load_preset
    from plenopack.scene import load_scene

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
    return out


class KernelClock:
    """Times every numba parallel kernel called from Python (module attributes of plenopack.kernels.*), and
    the fit's steps and resampling. Install after a warm-up: every kernel must already be compiled (a kernel
    compiled later would see the timing wrapper of a kernel it calls)."""

    def __init__(self):
        self.kernel_s = 0.0
        self.by_kernel: dict[str, float] = {}
        self.section = "other"
        self.sections: dict[str, list[float]] = {}  # section -> [seconds, kernel seconds]
        self._undo = []

    def install(self):
        import importlib
        import pkgutil

        import numba.core.registry

        import plenopack.fit as fit_pkg
        import plenopack.kernels as kpkg
        from plenopack.fit.trainer import Trainer

        for info in pkgutil.iter_modules(kpkg.__path__):
            module = importlib.import_module(f"plenopack.kernels.{info.name}")
            for name, value in list(vars(module).items()):
                if isinstance(value, numba.core.registry.CPUDispatcher) and value.targetoptions.get("parallel"):
                    self._wrap(module, name, self._kernel(name, value))
        self._wrap(Trainer, "step", self._section("steps", Trainer.step))
        self._wrap(Trainer, "refresh_occupancy", self._section("occupancy", Trainer.refresh_occupancy))
        self._wrap(fit_pkg, "resample", self._section("resample", fit_pkg.resample))

    def _wrap(self, owner, name, wrapper):
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    def uninstall(self):
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()

    def _kernel(self, name, fn):
        def timed(*args):
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                dt = time.perf_counter() - t
                self.kernel_s += dt
                self.by_kernel[name] = self.by_kernel.get(name, 0.0) + dt
        return timed

    def _section(self, label, fn):
        def timed(*args, **kwargs):
            outer, self.section = self.section, label
            t, k = time.perf_counter(), self.kernel_s
            try:
                return fn(*args, **kwargs)
            finally:
                entry = self.sections.setdefault(label, [0.0, 0.0])
                entry[0] += time.perf_counter() - t
                entry[1] += self.kernel_s - k
                self.section = outer
        return timed

    def report(self, total_s: float) -> dict:
        sections = {name: {"seconds": round(s, 3), "outside_kernels_s": round(s - k, 3)}
                    for name, (s, k) in self.sections.items()}
        inside = sum(k for _, k in self.sections.values())
        other = total_s - sum(s for s, _ in self.sections.values())
        sections["other"] = {"seconds": round(other, 3),
                             "outside_kernels_s": round(other - (self.kernel_s - inside), 3)}
        steps = self.sections.get("steps", [0.0, 0.0])
        return {"serial_share": round((total_s - self.kernel_s) / total_s, 4),
                "serial_share_of_steps": round((steps[0] - steps[1]) / steps[0], 4) if steps[0] else None,
                "sections": sections,
                "kernels_s": {k: round(v, 3) for k, v in sorted(self.by_kernel.items(), key=lambda kv: -kv[1])}}


def scaling(args):
    import numba
    import numpy as np

    from plenopack.evaluate import evaluate
    from plenopack.fit import fit, load_preset
    from plenopack.resources import available_cpus, configure_threading, cpu_limits, numba_layer_in_use
    from plenopack.scene import load_scene

    threads = [int(t) for t in args.threads.split(",")]
    layer = configure_threading("fit", max(threads))
    options = {"max_side": args.max_side} if args.max_side else {}
    scene = load_scene(args.scene if Path(args.scene).exists() else DATA / args.scene, **options)
    from plenopack.cli.options import parse_key_values

    config = load_preset(args.preset, **parse_key_values(args.set, "--set"))
    stages = min(len(config.reso), 2)  # the warm-up compiles every kernel on a small fit of the same scene
    warm = config.replace(reso=[16, 32][:stages], steps=[3] * stages, log_every=1, occupancy_every=1, prune="none")
    t = time.perf_counter()
    evaluate(fit(scene, warm).grid, scene)
    warm_s = time.perf_counter() - t
    runs, reference = [], None
    for n in threads:
        numba.set_num_threads(n)
        clock = KernelClock()
        clock.install()
        try:
            result = fit(scene, config)
        finally:
            clock.uninstall()
        grid = result.grid
        digest = hashlib.sha256(grid.density.tobytes() + grid.sh.tobytes()).hexdigest()[:16]
        psnr = evaluate(grid, scene)["psnr"]
        reference = reference or result.seconds
        runs.append({"threads": n, "fit_seconds": round(result.seconds, 2),
                     "speedup": round(reference / result.seconds, 3), "test_psnr": round(psnr, 3),
                     "voxels": grid.num_voxels, "grid_sha256": digest, **clock.report(result.seconds)})
    return {"scene": str(args.scene), "preset": args.preset, "overrides": args.set, "max_side": args.max_side,
            "layer": numba_layer_in_use(),
            "layer_requested": layer, "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
            "available_cpus": available_cpus(), "cpu_limits": cpu_limits(), "warmup_seconds": round(warm_s, 1),
            "runs": runs, "bit_identical_across_threads": len({r["grid_sha256"] for r in runs}) == 1,
            "psnr_spread_db": round(max(r["test_psnr"] for r in runs) - min(r["test_psnr"] for r in runs), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", default="all", help="quality mode: lego, ethiopianHead or all")
    parser.add_argument("--scaling", action="store_true", help="one fit per thread count (see above)")
    parser.add_argument("--threads", default="1,2", help="comma-separated numba thread counts (scaling mode)")
    parser.add_argument("--scene", default="lego", help="scene folder, or a name under data/scenes")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--max-side", type=int, default=None, help="downscale the scene's images (scaling mode)")
    parser.add_argument("--set", action="append", default=[], help="fit override key=value (repeatable; scaling mode)")
    parser.add_argument("--layer", default=None, help="numba threading layer: workqueue, omp or tbb")
    args = parser.parse_args()
    if args.layer:
        os.environ["NUMBA_THREADING_LAYER"] = args.layer
    if args.scaling:
        # numba's pool is sized at its first launch; make room for the largest thread count asked for
        os.environ["NUMBA_NUM_THREADS"] = str(max(int(t) for t in args.threads.split(",")))
        out = scaling(args)
    else:
        out = quality(list(CASES) if args.case == "all" else [args.case])
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
