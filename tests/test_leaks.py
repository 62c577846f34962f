"""Leaks: start/stop cycles leave no threads, descriptors or memory behind; all can be collected.

``AIOQLOG_SOAK_RECORDS`` raises the record count (``make soak`` runs one million).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import tracemalloc
import weakref

import anyio
import anyio.lowlevel
import pytest
import sniffio
from support import STALL, Recorder, in_thread, run_on

import aioqlog

RECORDS = int(os.environ.get("AIOQLOG_SOAK_RECORDS", "20000"))
CYCLES = 40


class Counting(logging.Handler):
    """Counts records without keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1


def join_workers(earlier: set[threading.Thread]) -> None:
    """Wait for the lanes' worker threads (not *earlier* ones) that are on their way out."""
    for thread in threading.enumerate():
        if thread.name.startswith("aioqlog-") and thread not in earlier:
            thread.join(STALL)
            assert not thread.is_alive(), f"{thread.name} is still running"


def open_fds() -> int:
    """Return how many file descriptors this process holds (Linux; else 0)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


@pytest.mark.anyio
async def test_start_stop_cycles_leave_no_threads_descriptors_or_memory(
    logger: logging.Logger,
) -> None:
    """Many cycles of start, log, stop: no worker thread or fd is left, memory stays flat."""
    earlier = set(threading.enumerate())  # other tests' stuck workers are not ours
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sink, other = Counting(), Counting()
    per_cycle = RECORDS // CYCLES

    async def cycle() -> None:
        async with aioqlog.QueueListener(q, sink, other):
            for i in range(per_cycle):
                logger.info("record %d of %s", i, "a cycle")
                if i % 200 == 199:
                    await anyio.lowlevel.checkpoint()

    await cycle()  # warm up: first-use caches and imports
    await in_thread(lambda: join_workers(earlier))
    gc.collect()
    fds = open_fds()
    tracemalloc.start()
    try:
        for _ in range(4):
            await cycle()
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(CYCLES - 5):
            await cycle()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert sink.count == other.count == per_cycle * CYCLES
    # Every lane's worker thread ends (one may still be on its way out just
    # after stop() returns): none is left running.
    await in_thread(lambda: join_workers(earlier))
    assert open_fds() == fds
    assert grown < 256 * 1024, f"{grown} bytes more after {CYCLES - 5} more cycles"


def test_a_stopped_listener_its_threads_and_its_loop_can_be_collected(
    logger: logging.Logger, anyio_backend: object
) -> None:
    """After stop() and detaching, nothing keeps the listener, its lanes or the loop alive."""
    refs: dict[str, weakref.ref[object]] = {}
    workers: list[threading.Thread] = []

    async def main() -> None:
        q = aioqlog.LogQueue()
        handler = aioqlog.QueueHandler(q)
        logger.addHandler(handler)
        rec = Recorder()
        listener = aioqlog.QueueListener(q, rec, _Quiet())
        async with listener:
            logger.info("one record")
            await rec.arrived(1)
            thread = listener._lanes[0].thread  # type: ignore[attr-defined]
            assert thread is not None
        logger.removeHandler(handler)
        refs["listener"] = weakref.ref(listener)
        refs["queue"] = weakref.ref(q)
        refs["lane"] = weakref.ref(listener._lanes[0])
        refs["thread"] = weakref.ref(thread)
        workers.append(thread)
        if sniffio.current_async_library() == "asyncio":  # trio's run has no loop object
            refs["loop"] = weakref.ref(asyncio.get_running_loop())

    run_on(anyio_backend, main)
    # The helper thread behind rec.arrived() holds the loop's token until it
    # returns, which can be just after the test's await resumed, and the
    # lane's worker may still be on its way out just after stop() returned (a
    # running thread is referenced by threading itself): wait for both. (In a
    # function: a loop variable here would keep the last thread alive.)
    _join([*workers, *(t for t in threading.enumerate() if t.name == "producer")])
    workers.clear()
    gc.collect()
    alive = [name for name, ref in refs.items() if ref() is not None]
    assert alive == []


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(STALL)


class _Quiet(aioqlog.AsyncHandler):
    """An async handler that drops what it is given."""

    async def aemit(self, record: logging.LogRecord) -> None:
        """Do nothing."""
