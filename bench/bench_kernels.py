"""Kernel throughput: fused numba forward+backward vs the vectorised NumPy reference of the same maths.

Prints one JSON object. Grid: 128^3 with a realistic sparse shell (about 10% of voxels occupied), rays from
cameras around it, 5000 rays per batch (as a training step). Also times one 400x400 view, and counts the
gradient records the scatter adds per ray against the (sample, corner) pairs they sum (at most 8 per sample).
Run: .venv/bin/python bench/bench_kernels.py
"""

import json
import time

import numpy as np

from plenopack import kernels
from plenopack.cameras import orbit_poses
from plenopack.grid import Grid
from plenopack.kernels import reference
from plenopack.render import orbit_intrinsics, render_view


def shell_grid(reso=128, seed=0) -> Grid:
    rng = np.random.default_rng(seed)
    c = (np.argwhere(np.ones((reso,) * 3, bool)) + 0.5) / reso * 2 - 1
    r = np.linalg.norm(c * [1.0, 1.3, 0.8], axis=1)
    keep = (np.abs(r - 0.6) < 0.12) | (rng.random(len(c)) < 0.01)
    coords = np.argwhere(keep.reshape((reso,) * 3))
    n = len(coords)
    density = rng.gamma(2.0, 40.0, n).astype(np.float32)
    sh = (rng.normal(size=(n, 27)) * 0.3).astype(np.float32)
    return Grid.from_coords(reso, coords, density, sh, 2)


def rays(n, seed=1):
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, 3))
    o = 2.5 * o / np.linalg.norm(o, axis=1, keepdims=True)
    d = rng.uniform(-0.7, 0.7, (n, 3)) - o
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return o.astype(np.float32), d.astype(np.float32)


def count_samples(g, o, d):
    """Samples the marcher evaluates (inside the cube, before early termination) — the work unit."""
    f = reference._forward_samples(g.links, g.density.astype(np.float64), g.sh.astype(np.float64), 2, o, d, 0.5,
                                   1e-4, 0.0)
    return int(f["keep"].sum())


def main():
    g = shell_grid()
    batch = 5000
    o, d = rays(batch)
    target = np.random.default_rng(2).random((batch, 3)).astype(np.float32)
    bg = np.ones(3, np.float32)
    gd = np.zeros_like(g.density)
    gs = np.zeros_like(g.sh)
    ws = kernels.GradWorkspace(g.num_voxels, 27)
    occ = kernels.build_occupancy(g.links, g.density)
    kernels.render_rays_grad(g.links, g.density, g.sh, 2, o, d, target, bg, gd, gs, workspace=ws, occupancy=occ)
    samples = count_samples(g, o, d)
    fused = []
    for _ in range(7):
        t = time.perf_counter()
        kernels.render_rays_grad(g.links, g.density, g.sh, 2, o, d, target, bg, gd, gs, workspace=ws, occupancy=occ)
        fused.append(time.perf_counter() - t)
    ref_times = []
    small = 1000  # the NumPy reference materialises every sample; time it on a sub-batch
    for _ in range(2):
        t = time.perf_counter()
        reference.render_rays_grad(g.links, g.density, g.sh, 2, o[:small], d[:small], target[:small], bg)
        ref_times.append(time.perf_counter() - t)
    ref_samples = count_samples(g, o[:small], d[:small])
    fused_rate = samples / float(np.median(fused))
    numpy_rate = ref_samples / float(np.median(ref_times))

    k = orbit_intrinsics(400)
    pose = orbit_poses(1, 2.8, 25)[0]
    render_view(g, pose, k, 400, 400)
    view_times = []
    for _ in range(5):
        t = time.perf_counter()
        render_view(g, pose, k, 400, 400)
        view_times.append(time.perf_counter() - t)
    print(json.dumps({
        "grid_resolution": 128, "voxels": g.num_voxels, "batch_rays": batch, "samples_per_batch": samples,
        "fused_step_ms_median": 1e3 * float(np.median(fused)),
        "gradient_records_per_ray": ws.records / batch, "sample_corners_per_ray": 8 * samples / batch,
        "fused_samples_per_s": fused_rate, "numpy_samples_per_s": numpy_rate, "speedup": fused_rate / numpy_rate,
        "speedup_target": 20.0, "render_400x400_s_median": float(np.median(view_times)), "render_target_s": 0.5,
    }, indent=1))


if __name__ == "__main__":
    main()
