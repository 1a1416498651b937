#!/usr/bin/env bash
# Every scaling measurement of issue 18, as JSON files in the folder given as the first argument:
#   fit_2cpu.json          one lego fast fit per thread count 1, 2 on CPUs $CPUS2 (taskset: the 2-core machine)
#   build_2cpu.json        builds of 8 lego copies (100 px, a few seconds each) as 1x2, 2x1 and 8x1
#                          (workers x threads) on $CPUS2
#   fit_all.json           one fit per thread count 2, N on every CPU (N = nproc)
#   build_all.json         builds of 8 lego copies as 1x2 and 8x(N/8) on every CPU
#   layers_<layer>.json    a shorter fit at N threads per threading layer (tbb, workqueue, omp)
#   summary.json           the ratios against their targets
# About 9 minutes on a 16-core machine (the 2-CPU fits alone take 3). SCALING_TINY=1 shrinks everything to
# seconds (to test this script).
# Environment: PY (python; default .venv/bin/python), CPUS2 (default 0,1).
set -euo pipefail
out=${1:?usage: bench/run_scaling.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CPUS2=${CPUS2:-0,1}
N=$(nproc)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if [ "${SCALING_TINY:-0}" = 1 ]; then
  FIT=(--preset tiny --max-side 40)
  SHORT=(--preset tiny --max-side 40)
  BUILD=(--preset tiny --max-side 40 --no-manifest --lpips-net "" --scenes 3)
  LAYERS=${LAYERS:-workqueue}
else
  FIT=(--preset fast)
  SHORT=(--preset fast --set 'steps=[100,400]')
  # a scene of a few seconds (lego at 100 px, fewer steps than fast), not a one-second toy
  BUILD=(--preset fast --max-side 100 --set 'steps=[40,160]' --no-manifest --scenes 8)
  LAYERS=${LAYERS:-tbb workqueue omp}
fi
per_worker=$(( N / 8 > 0 ? N / 8 : 1 ))

run() {  # run NAME COMMAND...: the command's JSON into $out/NAME.json, its log into $out/NAME.log
  local name=$1; shift
  echo "== $name: $*" >&2
  local start=$SECONDS
  "$@" > "$out/$name.json" 2> "$out/$name.log"
  echo "   $(( SECONDS - start )) s" >&2
}

run fit_2cpu taskset -c "$CPUS2" "$PY" bench/bench_fit.py --scaling --threads 1,2 "${FIT[@]}"
run build_2cpu taskset -c "$CPUS2" "$PY" bench/bench_build.py --configs 1x2,2x1,8x1 "${BUILD[@]}"
run fit_all "$PY" bench/bench_fit.py --scaling --threads "2,$N" "${FIT[@]}"
run build_all "$PY" bench/bench_build.py --configs "1x2,8x$per_worker" "${BUILD[@]}"
for layer in $LAYERS; do
  run "layers_$layer" "$PY" bench/bench_fit.py --scaling --threads "$N" --layer "$layer" "${SHORT[@]}" || true
done

"$PY" - "$out" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else None


def seconds(name, index, key="fit_seconds"):
    data = load(name)
    return data["runs"][index][key] if data else None


def ratio(name, a, b):
    """Speed of run b over run a (fits: seconds a / seconds b; builds: scenes/hour b / scenes/hour a)."""
    data = load(name)
    if data is None:
        return None
    runs = data["runs"]
    if "fit" in name:
        return round(runs[a]["fit_seconds"] / runs[b]["fit_seconds"], 3)
    return round(runs[b]["scenes_per_hour"] / runs[a]["scenes_per_hour"], 3)


summary = {
    "fit_2cpu_2_vs_1_threads": {"ratio": ratio("fit_2cpu", 0, 1), "target": 1.85},
    "fit_2cpu_serial_share_1_thread": seconds("fit_2cpu", 0, "serial_share"),
    "fit_2cpu_psnr_spread_db": (load("fit_2cpu") or {}).get("psnr_spread_db"),
    "build_2cpu_2x1_vs_1x2": {"ratio": ratio("build_2cpu", 0, 1), "target": 0.95},
    "build_2cpu_8x1_vs_2x1": {"ratio": ratio("build_2cpu", 1, 2), "target": 0.9},
    "fit_all_N_vs_2_threads": {"ratio": ratio("fit_all", 0, 1), "target": 6.0},
    "fit_all_serial_share": [r.get("serial_share") for r in (load("fit_all") or {"runs": []})["runs"]],
    "build_all_8_workers_vs_1x2": {"ratio": ratio("build_all", 0, 1), "target": 6.0},
    "layers_fit_seconds": {},
}
for path in sorted(out.glob("layers_*.json")):
    data = load(path.stem)
    if data:
        summary["layers_fit_seconds"][data["layer"]] = {r["threads"]: r["fit_seconds"] for r in data["runs"]}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
