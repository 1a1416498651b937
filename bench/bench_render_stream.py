"""Memory of `plenopack render` over long renders: peak RSS growth from 10 to 1,000 frames (target < 100 MB).

For each output (MP4 with depth, GIF) a fresh Python process runs the `render` verb twice, in process: 10 frames,
then 1,000, both 256 x 256 orbits of lego fitted with the tiny preset (cached in the temp folder). The peak
resident set size (getrusage's ru_maxrss, which only grows) after each run is recorded; its growth from the
10-frame run to the 1,000-frame run is what the long render costs beyond a short one. The MP4 streams frames
to ffmpeg and depth to a memory-mapped .npy; a GIF keeps one palettised byte per pixel until Pillow writes it.
Prints JSON. Run: .venv/bin/python bench/bench_render_stream.py [FRAMES]
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "scenes"
TARGET_MB = 100.0
SIZE = 256


def scene_file() -> Path:
    from plenopack.fit import load_preset
    from plenopack.pipeline import encode_to_file, fit_scene
    from plenopack.scene import load_scene

    config = load_preset("tiny")
    path = Path(tempfile.gettempdir()) / f"plenopack-bench-stream-{config.config_hash()}.plen"
    if not path.exists():
        scene = load_scene(DATA / "lego", max_side=100)
        encode_to_file(path, *fit_scene(scene, config, "tiny", 100))
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(kind: str, plen: str, frames: int, folder: str) -> dict:
    """Run `render` for 10 frames, then ``frames``, in this process; peak RSS after each."""
    from plenopack.cli import app

    out = {"output": kind, "frames": frames, "size": SIZE}
    for n in (10, frames):
        args = ["render", plen, "-o", f"{folder}/turntable-{n}.{kind}", "--orbit", str(n), "--size", str(SIZE)]
        if kind == "mp4":
            args += ["--depth", f"{folder}/depth-{n}"]
        start = time.perf_counter()
        app(args, standalone_mode=False)
        out[f"seconds_{n}"] = round(time.perf_counter() - start, 2)
        out[f"peak_rss_mb_after_{n}"] = round(peak_rss_mb(), 1)
    out["growth_mb"] = round(out[f"peak_rss_mb_after_{frames}"] - out["peak_rss_mb_after_10"], 1)
    out["file_mb"] = round(Path(f"{folder}/turntable-{frames}.{kind}").stat().st_size / 2 ** 20, 2)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
        return
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    plen = scene_file()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("mp4", "gif"):
            r = subprocess.run([sys.executable, __file__, "--child", kind, str(plen), str(frames), folder],
                               capture_output=True, text=True, check=True)
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    for r in results:
        r["target_mb"] = TARGET_MB
        r["within_target"] = r["growth_mb"] < TARGET_MB
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
