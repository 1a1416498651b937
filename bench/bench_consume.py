"""Rendering a 224x224 view of a compressed 128^3 scene (target <= 0.1 s on 2 cores), via plenopack.open.

The scene is lego fitted with the demo preset (64^3 -> 128^3, cached in the temp folder) and stored with
4-bit k-means + zstd. Prints JSON: decode time, median of 10 renders after a warm-up, ratio to the target.
Run: .venv/bin/python bench/bench_consume.py
"""

import json
import tempfile
import time
from pathlib import Path

import numpy as np

import plenopack
from plenopack.cameras import orbit_poses
from plenopack.codecs import CodecConfig
from plenopack.fileformat import write_plen
from plenopack.fit import fit, load_preset
from plenopack.render import orbit_intrinsics
from plenopack.scene import load_scene

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"


def main():
    config = load_preset("demo")
    cache = Path(tempfile.gettempdir()) / f"plenopack-bench-consume-{config.config_hash()}.plen"
    if not cache.exists():
        write_plen(cache, fit(load_scene(DATA / "lego"), config).grid, {},
                   CodecConfig("kmeans", 4, "zstd", density="kmeans"))
    t = time.perf_counter()
    scene = plenopack.open(cache)
    _ = scene.grid
    decode_s = time.perf_counter() - t
    k = orbit_intrinsics(224)
    poses = orbit_poses(11, 3.2, 25)
    scene.render(poses[0], k, 224, 224)
    times = []
    for pose in poses[1:]:
        t = time.perf_counter()
        scene.render(pose, k, 224, 224)
        times.append(time.perf_counter() - t)
    median = float(np.median(times))
    print(json.dumps({"resolution": scene.resolution, "voxels": scene.num_voxels, "file_bytes": scene.nbytes,
                      "decode_s": decode_s, "render_224_s_median": median, "target_s": 0.1,
                      "ratio_to_target": median / 0.1}, indent=1))


if __name__ == "__main__":
    main()
