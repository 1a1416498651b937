"""CPUs as the machine grants them (affinity, cgroup v1/v2 quotas, Slurm, Ray), thread settings of worker
processes, and numba's threading layer per kind of process."""

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from plenopack import resources
from plenopack.resources import available_cpus, cgroup_cpu_limit, cpu_limits, thread_env, threads_per_worker

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_along_the_path(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    write(proc, "0::/user.slice/job\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "user.slice" / "cpu.max", "150000 100000\n")  # 1.5 CPUs on the parent
    write(root / "user.slice" / "job" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    write(root / "user.slice" / "job" / "cpu.max", "100000 100000\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(1.0)


def test_cgroup_v2_without_quota_and_without_files(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    write(proc, "0::/\n")
    write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_cgroup_v1_cfs_quota(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    v1 = root / "cpu,cpuacct"
    write(v1 / "cpu.cfs_quota_us", "-1\n")
    write(v1 / "cpu.cfs_period_us", "100000\n")
    write(v1 / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    write(v1 / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(3.0)
    write(v1 / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(root, proc) is None


def test_available_cpus_takes_the_smallest_limit(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"
    write(proc, "0::/\n")
    write(root / "cpu.max", "max 100000\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(root, proc, environ={}) == affinity
    write(root / "cpu.max", "50000 100000\n")  # half a CPU still gets one
    assert available_cpus(root, proc, environ={}) == 1
    write(root / "cpu.max", "max 100000\n")
    assert available_cpus(root, proc, environ={"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "1"}) == 1
    assert available_cpus(root, proc, environ={"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "1"}) == 1
    assert available_cpus(root, proc, environ={"SLURM_CPUS_ON_NODE": "1"}) == affinity  # not inside a job
    assert available_cpus(root, proc, environ={"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "x"}) == affinity
    assert available_cpus(root, proc, environ={"PLENOPACK_CPUS": "1"}) == 1
    assert available_cpus(root, proc, environ={"PLENOPACK_CPUS": str(affinity + 4)}) == affinity
    assert cpu_limits(root, proc, environ={})["cpu_count"] == os.cpu_count()


def test_available_cpus_follows_the_affinity_mask():
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert available_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)


def test_available_cpus_inside_a_ray_task(tmp_path, monkeypatch):
    """Ray's allocation of the current task counts; outside a task (the driver) it does not."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(proc, "0::/\n")
    context = types.SimpleNamespace(worker=types.SimpleNamespace(mode=1),
                                    get_assigned_resources=lambda: {"CPU": 1.0})
    fake = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context, WORKER_MODE=1)
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert available_cpus(root, proc, environ={}) == 1
    context.worker.mode = 0  # the driver
    assert available_cpus(root, proc, environ={}) == len(os.sched_getaffinity(0))


def test_threads_per_worker_never_oversubscribes():
    assert threads_per_worker(1, 2) == 2
    assert threads_per_worker(2, 2) == 1
    assert threads_per_worker(8, 2) == 1  # more workers than cores: one thread each
    assert threads_per_worker(3, 16) == 5
    env = thread_env(3)
    assert all(env[name] == "3" for name in resources.THREAD_ENV_VARS)


def run_child(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    child_env.update(PYTHONPATH=SRC, **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=child_env,
                          timeout=240)


def test_loader_processes_can_fork_after_running_kernels():
    """A process that fits and then forks (DataLoader workers) gets a fork-safe layer: the forked child runs
    kernels too (GNU OpenMP would abort it)."""
    result = run_child("""
        import os
        import numpy as np
        from plenopack.resources import LAYERS, configure_threading
        layer = configure_threading("loader", 2)
        from plenopack import kernels
        from plenopack.grid import Grid
        g = Grid.dense(8, 0, density=5.0)
        o = np.array([[0.0, 0.0, -3.0]], np.float32); d = np.array([[0.0, 0.0, 1.0]], np.float32)
        kernels.render_rays(g.links, g.density, g.sh, 0, o, d, np.ones(3, np.float32))
        import numba
        assert numba.threading_layer() == layer and layer in LAYERS["loader"], layer
        pid = os.fork()
        if pid == 0:
            kernels.render_rays(g.links, g.density, g.sh, 0, o, d, np.ones(3, np.float32))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(layer, os.waitstatus_to_exitcode(status))
    """)
    assert result.returncode == 0, result.stderr
    layer, child_status = result.stdout.split()
    assert child_status == "0"


def test_configure_threading_respects_the_environment_and_a_fixed_layer():
    result = run_child("""
        from plenopack.resources import configure_threading
        print(configure_threading("fit", 1))
        from plenopack import kernels
        import numpy as np
        kernels.rmsprop_step(np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32), 0.1)
        print(configure_threading("server", 1))  # fixed now: only reported
        import numba
        print(numba.threading_layer(), numba.get_num_threads())
    """, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["workqueue", "workqueue", "workqueue", "1"]
    with pytest.raises(ValueError, match="unknown kind"):
        resources.configure_threading("nonsense")
