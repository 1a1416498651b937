"""A local pool of long-lived worker processes that survives its workers dying.

`concurrent.futures.ProcessPoolExecutor` breaks as a whole (BrokenProcessPool) when one worker is killed
(out-of-memory killer, a segfault in native code). Here each worker runs one task at a time over its own
pipe; the coordinator waits on the pipes and on the processes' sentinels, so a worker that dies is seen at
once: its task comes back as a `WorkerDied` result naming the cause, and a fresh worker takes its place.
Workers are forked from a fork server (``multiprocessing``'s "forkserver": a clean single-threaded process, so
no inherited threads or locks) that has imported the ``preload`` modules once, so that each worker starts in
milliseconds instead of importing numpy, numba, plenopack (and torch for LPIPS) itself: about 4 CPU-seconds
per worker, which on a small machine running many workers is time taken from the fits. The server is started
with ``env`` added to its environment (thread-pool sizes must be set before numpy, numba and torch are
imported) and restarted when a pool asks for another environment or other modules; where there is no fork
server (Windows, macOS without it), workers are spawned with ``env``. Each worker runs
``initializer(*initargs)`` once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver, get_context
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator, Sequence


@dataclass
class WorkerDied:
    """The result of a task whose worker process ended before answering."""

    exitcode: int | None

    def describe(self) -> str:
        code = self.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = {"SIGKILL": " (killed: out of memory?)", "SIGSEGV": " (crashed)", "SIGBUS": " (crashed)",
                    "SIGABRT": " (aborted)"}.get(name, "")
            return f"worker process died from {name}{hint}"
        return f"worker process exited with status {code}"


def _worker_main(conn, initializer, initargs) -> None:
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        key, fn, args = message
        conn.send((key, fn(*args)))


@contextmanager
def _environment(env: dict[str, str]):
    """os.environ with ``env`` added, restored afterwards (a spawned process inherits it at start)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_server_setup: tuple | None = None  # (environment, preload) the running fork server was started with


def _worker_context(env: dict[str, str], preload: Sequence[str]):
    """The multiprocessing context workers start from: a fork server holding ``preload`` imported under
    ``env`` (restarted when either differs from the running server's), or "spawn" where there is none."""
    global _server_setup
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    setup = (tuple(sorted(env.items())), tuple(preload))
    if _server_setup is not None and _server_setup != setup:
        stop = getattr(forkserver._forkserver, "_stop", None)  # private: CPython's own tests use it
        if stop is None:
            return get_context("spawn")
        stop()
    _server_setup = setup
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


class _Worker:
    def __init__(self, ctx, initializer, initargs, env):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, initargs), daemon=True)
        with _environment(env):
            self.process.start()
        child.close()
        self.task: Any = None  # key of the task in flight


class WorkerPool:
    """``workers`` processes running tasks (key, fn, args); see the module docstring."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: tuple = (),
                 env: dict[str, str] | None = None, preload: Sequence[str] = ()):
        self.initializer, self.initargs, self.env = initializer, initargs, dict(env or {})
        self.ctx = _worker_context(self.env, preload)
        self.workers = [_Worker(self.ctx, initializer, initargs, self.env) for _ in range(max(1, workers))]

    def run(self, tasks: Iterable[tuple[Any, Callable, tuple]]) -> Iterator[tuple[Any, Any]]:
        """Yield (key, result) as tasks finish, in completion order; a dead worker's task yields WorkerDied."""
        queue = list(tasks)[::-1]
        busy: dict[Any, _Worker] = {}
        while queue or busy:
            for worker in list(self.workers):
                if worker.task is None and queue:
                    key, fn, args = queue.pop()
                    running = self._hand_over(worker, (key, fn, args))
                    if isinstance(running, WorkerDied):
                        yield key, running
                    else:
                        busy[key] = running
            if not busy:
                continue
            ready = set(wait([w.conn for w in busy.values()] + [w.process.sentinel for w in busy.values()]))
            for key, worker in list(busy.items()):
                answered = worker.conn in ready or (worker.process.sentinel in ready and worker.conn.poll())
                if not answered and worker.process.sentinel not in ready:
                    continue
                del busy[key]
                outcome = self._receive(worker) if answered else None
                if outcome is None:
                    worker.process.join()
                    outcome = WorkerDied(worker.process.exitcode)
                    self._replace(worker)
                else:
                    worker.task = None
                    outcome = outcome[1]
                yield key, outcome

    def _hand_over(self, worker: _Worker, task: tuple[Any, Callable, tuple]) -> _Worker | WorkerDied:
        """Send ``task`` to an idle worker; one that died while idle (killed between tasks) is replaced and the
        task goes to the replacement. Returns the worker now running it, or WorkerDied when the replacement died
        before taking it too (workers cannot start: the task fails, the pool goes on with a fresh worker)."""
        died = None
        for _attempt in range(2):
            try:
                worker.conn.send(task)
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                worker.process.join()
                died = WorkerDied(worker.process.exitcode)
                worker = self._replace(worker)
                continue
            worker.task = task[0]
            return worker
        return died

    @staticmethod
    def _receive(worker: _Worker) -> tuple[Any, Any] | None:
        """(key, result) from a worker's pipe, or None when the pipe broke (the worker died)."""
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            return None

    def _replace(self, dead: _Worker) -> _Worker:
        dead.conn.close()
        fresh = _Worker(self.ctx, self.initializer, self.initargs, self.env)
        self.workers[self.workers.index(dead)] = fresh
        return fresh

    def close(self) -> None:
        """Ask idle workers to stop and wait for them; kill any that do not."""
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
