"""Build workers: thread pools sized before numpy loads, kernels compiled once by the coordinator."""

import os

import numpy as np

from plenopack.build.builder import _init_worker
from plenopack.build.pool import WorkerPool
from plenopack.resources import thread_env


def _thread_settings():
    import numba
    import numpy  # noqa: F401  (its BLAS read the environment when the worker imported it)

    import torch

    return {"numba": numba.get_num_threads(), "numba_pool": numba.config.NUMBA_NUM_THREADS,
            "omp": os.environ.get("OMP_NUM_THREADS"), "openblas": os.environ.get("OPENBLAS_NUM_THREADS"),
            "torch": torch.get_num_threads(), "layer": numba.threading_layer() if _ran_a_kernel() else None}


def _ran_a_kernel():
    from plenopack import kernels

    kernels.rmsprop_step(np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32), 0.1)
    return True


def test_workers_start_with_their_thread_counts():
    before = dict(os.environ)
    with WorkerPool(2, _init_worker, (1,), thread_env(1)) as pool:
        results = [row for _, row in pool.run([(i, _thread_settings, ()) for i in range(2)])]
    assert dict(os.environ) == before  # the coordinator's environment is left as it was
    for row in results:
        assert row["numba"] == row["numba_pool"] == row["torch"] == 1
        assert row["omp"] == row["openblas"] == "1"
        assert row["layer"] in ("workqueue", "omp", "tbb")


def _process_facts():
    import sys

    import numba

    return {"preloaded": "plenopack.contact_sheet" in sys.modules, "numba_pool": numba.config.NUMBA_NUM_THREADS,
            "omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid(), "parent": os.getppid()}


def test_workers_fork_from_a_server_that_preloaded_their_modules():
    """Workers start from a fork server holding the preloaded modules; a pool with other thread counts gets a
    server started under its own environment, not the first one's."""
    facts = {}
    for threads in (1, 2):
        with WorkerPool(2, _init_worker, (threads,), thread_env(threads), ["plenopack.contact_sheet"]) as pool:
            facts[threads] = [row for _, row in pool.run([(i, _process_facts, ()) for i in range(2)])]
    for threads, rows in facts.items():
        assert all(r["preloaded"] for r in rows)
        assert all(r["numba_pool"] == threads and r["omp"] == str(threads) for r in rows)
        assert rows[0]["parent"] == rows[1]["parent"] != os.getpid()  # siblings forked by one server
    assert facts[1][0]["parent"] != facts[2][0]["parent"]  # restarted for the other environment


def _kernel_signatures():
    import importlib
    import pkgutil

    import numba.core.registry

    import plenopack.kernels as kpkg

    out = {}
    for info in pkgutil.iter_modules(kpkg.__path__):
        module = importlib.import_module(f"plenopack.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, numba.core.registry.CPUDispatcher):
                out[f"{info.name}.{name}"] = len(value.signatures)
    return out


def test_warm_up_compiles_every_kernel_a_scene_build_uses(lego_small):
    """After the coordinator's warm-up, fitting, compressing and evaluating a real scene compiles nothing new
    (so the workers only load the kernels from the cache)."""
    from plenopack.build.warmup import compile_kernels
    from plenopack.codecs import CodecConfig
    from plenopack.compress import prepare
    from plenopack.evaluate import evaluate
    from plenopack.fit import fit, load_preset

    config = load_preset("tiny")
    compile_kernels(config)
    before = _kernel_signatures()
    result = fit(lego_small, config.replace(steps=[10, 10]))
    grid, _, _ = prepare(result.grid, CodecConfig("sh", 8, finetune=3), lego_small, fit_config=result.config)
    evaluate(grid, lego_small, max_views=1)
    assert _kernel_signatures() == before
