"""A process pool for CPU-heavy cryptography (blinding, encryption), so it uses every core.

Workers are started with `spawn`: forking a process that already runs gRPC is
unsupported (gRPC's doc/fork_support.md). One pool per process, shared by all
sessions; `workers = 0` runs the work in threads instead (tests, tiny sets).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pools: dict[int, ProcessPoolExecutor] = {}


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: Executor | None = None
        if workers > 0:
            if workers not in _pools:
                _pools[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
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


def shutdown_pools() -> None:
    for pool in _pools.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _pools.clear()
