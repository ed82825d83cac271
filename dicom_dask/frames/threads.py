"""Threads: the one decoding pool, work shared among threads, work batched per loop pass.

Every worker count comes from [`dicom_dask.config`][dicom_dask.config]:

* [`pool`][dicom_dask.frames.threads.pool]: the process's pool of
  ``max(2, threads())`` threads (rebuilt after a fork or when the ``threads`` setting
  changes), used by the readers and the transforms;
* [`share`][dicom_dask.frames.threads.share]: a function over items in a given number of
  threads (the calling one and helpers of the pool);
* [`LoopPass`][dicom_dask.frames.threads.LoopPass]: the one batching rule: what is
  submitted in one pass of an event loop is handed over together at the end of the
  pass. The store batches its remote reads with it (neighbouring tiles become one
  request), the zarr codec its decoding (a few thread hops for a pass's chunks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

from dicom_dask.config import threads

__all__ = [
    "LoopPass",
    "map_in_threads",
    "pool",
    "pool_size",
    "run_in_threads",
    "settle",
    "share",
]

T = TypeVar("T")

_POOL: tuple[int, int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def pool_size() -> int:
    """Threads of [`pool`][dicom_dask.frames.threads.pool]: ``max(2, threads())``."""
    return max(2, threads())


def pool() -> ThreadPoolExecutor:
    """The process's decoding pool of [`pool_size`][dicom_dask.frames.threads.pool_size]
    threads (rebuilt after a fork, and when the ``threads`` setting changes: the old
    pool finishes what it was given)."""
    global _POOL
    size = pool_size()
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != size:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            executor = ThreadPoolExecutor(size, thread_name_prefix="dicom-dask")
            _POOL = (os.getpid(), size, executor)
        return _POOL[2]


_DONE = object()


def share(func: Callable[[Any], None], items: list[Any], threads: int) -> None:
    """``func`` over ``items`` in ``threads`` threads: the calling thread and
    ``threads - 1`` of the [`pool`][dicom_dask.frames.threads.pool], each taking the next
    item when it is done with one.

    No more threads work than asked for (on 2 cores, a third decoder only slows the
    other two), and a small job waits for one thread wake-up fewer. The first error
    stops the others after their current item and is raised once they have stopped;
    a helper the busy pool has not started yet is cancelled, not waited for.
    """
    pending = iter(items)
    lock = threading.Lock()
    errors: list[BaseException] = []  # the first one is raised

    def run() -> None:
        while not errors:
            with lock:
                item = next(pending, _DONE)
            if item is _DONE:
                return
            try:
                func(item)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return

    helpers = [pool().submit(run) for _ in range(min(threads, len(items)) - 1)]
    try:
        run()
    finally:
        for helper in helpers:
            if not helper.cancel():
                helper.result()
    if errors:
        raise errors[0]


async def map_in_threads(func: Callable[[int], Any], n: int, workers: int) -> list[Any]:
    """``[func(0), ..., func(n - 1)]``, computed by ``workers`` threads that each take
    the next index when done with one ([`share`][dicom_dask.frames.threads.share], run
    from the loop's default executor).

    The first exception stops the others after their current item and is raised once
    they have stopped; so does cancelling the awaiting task (nothing runs after the
    await has ended).
    """
    results: list[Any] = [None] * n
    cancelled = threading.Event()

    def one(k: int) -> None:
        if cancelled.is_set():
            raise _Stopped
        results[k] = func(k)

    job = asyncio.get_running_loop().run_in_executor(None, share, one, list(range(n)), workers)
    try:
        await asyncio.shield(job)  # cancelled, the task still waits for the threads
    except asyncio.CancelledError:
        cancelled.set()
        with contextlib.suppress(_Stopped):
            await job
        raise
    return results


class _Stopped(Exception):
    """Raised in the worker threads of a cancelled `map_in_threads`."""


#: What a `LoopPass` hands over: the items of one pass, each with its future.
Batch = list[tuple[T, "asyncio.Future[Any]"]]


class LoopPass(Generic[T]):
    """Items submitted during one pass of an event loop, handed to ``flush`` together.

    ``submit(item)`` returns a future; at the end of the pass (``loop.call_soon``),
    ``flush(loop, batch)`` receives every ``(item, future)`` of the pass and must
    resolve each future. zarr starts up to ``async.concurrency`` chunk reads at once,
    one task each: handled together they become merged requests, or a few thread
    hops instead of one per chunk.

    Parameters
    ----------
    flush : callable
        ``flush(loop, batch)``, called in the loop.
    """

    def __init__(self, flush: Callable[[asyncio.AbstractEventLoop, Batch[T]], None]) -> None:
        self._flush_batch = flush
        self._pending: dict[asyncio.AbstractEventLoop, Batch[T]] = {}

    def submit(self, item: T) -> asyncio.Future[Any]:
        """Add ``item`` to this pass's batch; the future resolves when it is handled."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((item, future))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_batch(loop, self._pending.pop(loop, []))


def run_in_threads(loop: asyncio.AbstractEventLoop, batch: Batch[Callable[[], Any]]) -> None:
    """A `LoopPass` flush: the pass's callables split into ``threads()`` jobs of the
    loop's default executor; each result or exception goes to its own future."""
    size = max(1, -(-len(batch) // threads()))  # a job per thread
    for k in range(0, len(batch), size):
        group = batch[k : k + size]
        done = loop.run_in_executor(None, _run_each, [func for func, _ in group])
        done.add_done_callback(partial(_deliver, [future for _, future in group]))


def _run_each(funcs: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    out: list[tuple[bool, Any]] = []
    for func in funcs:
        try:
            out.append((True, func()))
        except Exception as exc:  # delivered to the item's own future
            out.append((False, exc))
    return out


def _deliver(
    futures: list[asyncio.Future[Any]], done: asyncio.Future[list[tuple[bool, Any]]]
) -> None:
    if done.cancelled() or done.exception() is not None:
        exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
        for future in futures:
            if not future.done():
                future.set_exception(exc)  # type: ignore[arg-type]
        return
    for future, (ok, value) in zip(futures, done.result(), strict=True):
        if future.done():  # cancelled meanwhile
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def settle(batch: Batch[Any], results: list[Any] | BaseException) -> None:
    """Resolve the futures of ``batch`` with ``results`` (one per item), or all of them
    with one exception."""
    for i, (_, future) in enumerate(batch):
        if future.done():
            continue
        if isinstance(results, BaseException):
            future.set_exception(results)
        else:
            future.set_result(results[i])
