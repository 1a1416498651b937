"""Rendering a 224x224 view of a compressed 128^3 scene (target <= 0.1 s on 2 cores), via plenopack.open.

Prints JSON: median of 10 renders after a warm-up, decode time, and the ratio to the target.
Run: .venv/bin/python bench/bench_consume.py
"""

import json
import tempfile
import time
from pathlib import Path

import numpy as np

import plenopack
from bench_kernels import shell_grid
from plenopack.cameras import orbit_poses
from plenopack.codecs import CodecConfig
from plenopack.fileformat import write_plen
from plenopack.render import orbit_intrinsics


def main():
    grid = shell_grid(128)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.plen"
        write_plen(path, grid, {}, CodecConfig("kmeans", 4, "zstd", density="kmeans"))
        t = time.perf_counter()
        scene = plenopack.open(path)
        _ = scene.grid
        decode_s = time.perf_counter() - t
        k = orbit_intrinsics(224)
        poses = orbit_poses(11, 2.8, 25)
        scene.render(poses[0], k, 224, 224)
        times = []
        for pose in poses[1:]:
            t = time.perf_counter()
            scene.render(pose, k, 224, 224)
            times.append(time.perf_counter() - t)
    median = float(np.median(times))
    print(json.dumps({"resolution": 128, "voxels": grid.num_voxels,
                      "decode_s": decode_s, "render_224_s_median": median, "target_s": 0.1,
                      "ratio_to_target": median / 0.1}, indent=1))


if __name__ == "__main__":
    main()
