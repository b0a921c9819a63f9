"""A process pool for CPU-heavy cryptography (blinding, encryption), so it uses every core.

Workers are started with `spawn`: forking a process that already runs gRPC is
unsupported (gRPC's doc/fork_support.md). One pool per process, shared by all
sessions; `workers = 0` runs the work in threads instead (tests, tiny sets).

A worker exits by itself once the process that started it is gone: a server
killed with SIGKILL (or crashing) leaves no orphaned worker behind, nor the
multiprocessing resource tracker, which ends when its last worker does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pools: dict[int, ProcessPoolExecutor] = {}
# How often a worker checks that its parent is still there.
PARENT_POLL_S = 0.5


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave as soon as `parent` is gone (the worker is then re-parented)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="fedgate-parent-watch", daemon=True).start()


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: Executor | None = None
        if workers > 0:
            if workers not in _pools:
                _pools[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                      initializer=_exit_with_parent, initargs=(os.getpid(),))
            self._executor = _pools[workers]

    @property
    def parallelism(self) -> int:
        return max(self.workers, 1)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` now; await the future for its result (cancel it to drop queued work)."""
        if self._executor is None:
            return asyncio.ensure_future(asyncio.to_thread(fn, *args))
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return await asyncio.to_thread(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def shutdown_pools(wait: bool = True) -> None:
    """Stop every pool of this process: queued work is dropped; with `wait`, the workers have exited."""
    for pool in _pools.values():
        pool.shutdown(wait=wait, cancel_futures=True)
    _pools.clear()
