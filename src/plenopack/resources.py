"""The CPUs this process may use, and thread settings that follow from them.

`available_cpus` takes the smallest of every limit the machine or scheduler sets: the affinity mask
(``taskset``, cpusets), a cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``;
containers, Kubernetes, systemd), Slurm's ``SLURM_CPUS_PER_TASK`` / ``SLURM_CPUS_ON_NODE`` and the CPUs Ray
assigned to the current task, and ``PLENOPACK_CPUS`` when the user caps plenopack's share by hand.
``os.cpu_count()`` counts the host's cores and knows none of these.

`thread_env` gives the environment that pins every thread pool of a process (numba, OpenMP, OpenBLAS, MKL,
torch) to a number of threads; it has to be in place before numpy is imported, so worker processes are
started with it (see `plenopack.build.pool`). `configure_threading` chooses numba's threading layer for a
kind of process (see `LAYERS`).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from pathlib import Path

THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# numba's threading layer per kind of process, in order of preference (the first one that loads is used).
# numba fixes the layer at a process's first parallel launch, so this has to be chosen before any kernel runs.
# Measured on the shared 2-core machine (an empty prange kernel, 20,000 launches; then a forked child runs it):
#   workqueue  51 us per launch at 1 thread, 54 us at 2; the forked child runs
#   omp         3 us at 1 thread, 38 us at 2 (GNU OpenMP); the forked child is terminated (unsafe after fork)
#   tbb         5 us at 1 thread,  6 us at 2; the forked child runs
# and a short lego fit (fast, 100 + 300 steps; bench/bench_fit.py --scaling --layer L; other fits running):
#   workqueue 46.5 s at 1 thread, 43.1 s at 2; tbb 41.3 s and 42.0 s; omp 48.5 s and 95.9 s (its threads spin
#   at barriers, which is ruinous when the cores are shared); the fitted grids are bit-identical.
# A training step launches about 14 parallel regions: workqueue's launches alone are ~0.7 ms of serial time per
# step. Hence:
# - fitting processes and build workers (spawned, one launching thread, no forks) take tbb, else workqueue
#   (never omp: several workers or other programs share the cores);
# - processes that fork (torch DataLoader workers, multiprocessing "fork") take tbb or workqueue, never GNU
#   OpenMP;
# - processes whose threads launch kernels concurrently (the viewer's server) take tbb or omp: workqueue aborts
#   on concurrent launches.
# tbb comes from the optional ``tbb`` extra (pip install 'plenopack[tbb]').
LAYERS = {
    "fit": ("tbb", "workqueue"),
    "worker": ("tbb", "workqueue"),
    "loader": ("tbb", "workqueue"),
    "server": ("tbb", "omp"),
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_paths(proc_self_cgroup: Path) -> dict[str, str]:
    """Controller -> cgroup path of this process ("" for the v2 unified hierarchy)."""
    paths = {}
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _ancestors(root: Path, rel: str):
    """root/rel and every folder above it up to root (a quota on any of them applies)."""
    path = root / rel.lstrip("/")
    while True:
        yield path
        if path == root or root not in path.parents:
            return
        path = path.parent


def cgroup_cpu_limit(cgroup_root: str | Path = "/sys/fs/cgroup",
                     proc_self_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """CPUs the cgroup quota allows (quota / period, the tightest along this process's cgroup and its
    parents), or None without a quota. Reads cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``."""
    root, paths = Path(cgroup_root), _cgroup_paths(Path(proc_self_cgroup))
    limits = []
    v1_root = next((root / name for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu") if (root / name).is_dir()), None)
    if v1_root is not None:
        rel = paths.get("cpu", "/")
        for folder in _ancestors(v1_root, rel):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0 and int(period) > 0:
                limits.append(int(quota) / int(period))
    else:
        for folder in _ancestors(root, paths.get("", "/")):
            fields = (_read(folder / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max" and int(fields[1]) > 0:
                limits.append(int(fields[0]) / int(fields[1]))
    return min(limits) if limits else None


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(str(value).split("(")[0])  # SLURM_CPUS_ON_NODE may read "8(x2)" style on some versions
    except ValueError:
        return None
    return n if n > 0 else None


def _ray_cpus() -> float | None:
    """CPUs Ray assigned to the current task or actor (None outside one)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return None
        cpus = context.get_assigned_resources().get("CPU")
    except Exception:  # an API change in Ray must not stop a fit: fall back to the other limits
        return None
    return float(cpus) if cpus else None


def cpu_limits(cgroup_root: str | Path = "/sys/fs/cgroup", proc_self_cgroup: str | Path = "/proc/self/cgroup",
               environ: dict | None = None) -> dict[str, float | None]:
    """Every limit `available_cpus` considers (None: that limit is not set)."""
    env = os.environ if environ is None else environ
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    slurm = None
    if env.get("SLURM_JOB_ID") or env.get("SLURM_CPUS_PER_TASK"):
        slurm = _positive_int(env.get("SLURM_CPUS_PER_TASK")) or _positive_int(env.get("SLURM_CPUS_ON_NODE"))
    return {"cpu_count": os.cpu_count(), "affinity": affinity,
            "cgroup": cgroup_cpu_limit(cgroup_root, proc_self_cgroup), "slurm": slurm, "ray": _ray_cpus(),
            "plenopack_cpus": _positive_int(env.get("PLENOPACK_CPUS"))}


def available_cpus(cgroup_root: str | Path = "/sys/fs/cgroup", proc_self_cgroup: str | Path = "/proc/self/cgroup",
                   environ: dict | None = None) -> int:
    """The number of CPUs this process may use: the smallest of the limits in `cpu_limits` (fractional
    quotas round up, as a 1.5-CPU quota still runs two threads, throttled), at least 1."""
    limits = [v for v in cpu_limits(cgroup_root, proc_self_cgroup, environ).values() if v]
    return max(1, math.ceil(min(limits))) if limits else 1


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Threads each of ``workers`` processes gets so that together they use the CPUs without
    oversubscription: max(1, cpus // workers)."""
    return max(1, (available_cpus() if cpus is None else cpus) // max(1, workers))


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that size every thread pool of a new process to ``threads`` (numba, OpenMP and
    torch's intra-op pool, OpenBLAS, MKL, Accelerate, numexpr); OMP_WAIT_POLICY=passive keeps idle OpenMP
    threads (torch's, OpenBLAS's) from spinning on CPUs that other workers use."""
    env = {name: str(threads) for name in THREAD_ENV_VARS}
    env["OMP_WAIT_POLICY"] = "passive"
    return env


def _tbb_loadable() -> bool:
    """Whether numba's TBB layer can load: the ``tbb`` wheel puts libtbb in <prefix>/lib, which the loader
    does not search, so it is loaded by path first (numba's tbbpool then finds it by its soname)."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        lib = Path(prefix) / "lib" / "libtbb.so.12"
        if lib.exists():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            break
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401
    except ImportError:
        return False
    return True


def _omp_loadable() -> bool:
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except ImportError:
        return False
    return True


_LOADABLE = {"tbb": _tbb_loadable, "omp": _omp_loadable, "workqueue": lambda: True}


def numba_layer_in_use() -> str | None:
    """The threading layer numba has fixed for this process, or None before its first parallel launch."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def configure_threading(kind: str, threads: int | None = None) -> str:
    """Choose numba's threading layer for this kind of process ("fit", "worker", "loader", "server"; see
    `LAYERS`) and use ``threads`` numba threads (default: `available_cpus`). Returns the layer.

    ``NUMBA_THREADING_LAYER`` in the environment wins. Once a kernel has run the layer is fixed; it is then
    only reported."""
    import numba

    if kind not in LAYERS:
        raise ValueError(f"unknown kind of process {kind!r} (expected {', '.join(LAYERS)})")
    layer = numba_layer_in_use() or _choose_layer(LAYERS[kind])
    numba.set_num_threads(max(1, min(threads or available_cpus(), numba.config.NUMBA_NUM_THREADS)))  # starts it
    return layer


def _choose_layer(preference: tuple[str, ...]) -> str:
    import numba

    requested = os.environ.get("NUMBA_THREADING_LAYER")
    if requested:
        if requested == "tbb":
            _tbb_loadable()
        return requested
    layer = next(name for name in preference + ("workqueue",) if _LOADABLE[name]())
    numba.config.THREADING_LAYER = layer
    return layer


_process_kind: str | None = None  # set by the entry point (`set_process_kind`), applied at the kernels' import


def set_process_kind(kind: str) -> None:
    """Declare what kind of process this is (see `LAYERS`) without importing numba (the CLI keeps ``--help``
    fast); the layer is chosen when the kernels are imported."""
    global _process_kind
    if kind not in LAYERS:
        raise ValueError(f"unknown kind of process {kind!r} (expected {', '.join(LAYERS)})")
    _process_kind = kind
    if "numba" in sys.modules and numba_layer_in_use() is None:
        _choose_layer(LAYERS[kind])


def default_threading() -> None:
    """At the kernels' import: numba's thread pool sized to `available_cpus` (when numba is not loaded yet and
    NUMBA_NUM_THREADS is not set: numba itself counts the affinity mask only, not quotas), and the layer of
    the declared kind of process (`set_process_kind`), else a fork-safe one (LAYERS["loader"]), unless
    `configure_threading` or NUMBA_THREADING_LAYER chose one already. Starts no thread."""
    if "numba" not in sys.modules and "NUMBA_NUM_THREADS" not in os.environ:
        os.environ["NUMBA_NUM_THREADS"] = str(available_cpus())
    import numba

    if numba_layer_in_use() is not None:
        return
    if numba.config.THREADING_LAYER == "default":
        _choose_layer(LAYERS[_process_kind or "loader"])
    elif numba.config.THREADING_LAYER in ("tbb", "safe", "threadsafe", "forksafe"):  # chosen by the environment
        _tbb_loadable()
