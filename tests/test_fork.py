"""os.fork() while records flow: the child neither deadlocks nor duplicates, and logs on."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from support import STALL, Gate, Recorder, in_thread

import aioqlog

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

#: Exit codes of the child, one per thing it checks (0: all held).
CHILD_OK = 0
CHILD_CRASHED = 90


def fork_and_run(child: Callable[[], int]) -> int:
    """Fork; run *child* in the child and exit with its code; return that code here.

    The child never returns into the test runner. A child that hangs is
    killed after ``STALL`` seconds and reported as such.
    """
    with warnings.catch_warnings():
        # 3.12+ warns that forking a multi-threaded process may deadlock the
        # child: that risk is exactly what these tests check.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        code = CHILD_CRASHED
        try:
            code = child()
        finally:
            os._exit(code)
    deadline = time.monotonic() + STALL
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {STALL} s (a deadlock?)")
        time.sleep(0.01)


@pytest.mark.anyio
async def test_a_child_forked_mid_flow_delivers_only_its_own_records(
    logger: logging.Logger,
) -> None:
    """The parent's queued records stay the parent's; the child logs and serves its own."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()  # holds the first record in emit: the rest pile up in lane and queue
    async with aioqlog.QueueListener(q, gate) as listener:
        for i in range(50):
            logger.info("parent %d", i)
        assert await in_thread(lambda: gate.entered.wait(STALL))
        await anyio.lowlevel.checkpoint()  # let the listener move records into the lane
        assert q.qsize() + listener.stats.handlers[0].pending > 1

        def child() -> int:
            gate.opened.set()
            seen = len(gate.records)
            logger.info("child before start")  # no listener runs here: handled in the caller

            async def serve() -> None:
                async with aioqlog.QueueListener(q, gate):
                    for i in range(3):
                        logger.info("child %d", i)

            # asyncio's: trio.run in a child forked inside a trio run trips over the
            # signal wake-up fd it inherited (trio's own limit, not aioqlog's).
            asyncio.run(serve())
            mine = [r.getMessage() for r in gate.records[seen:]]
            if mine != ["child before start", "child 0", "child 1", "child 2"]:
                return 1
            return CHILD_OK

        try:
            code = await in_thread(lambda: fork_and_run(child))
        finally:
            gate.opened.set()
    assert code == CHILD_OK
    assert gate.messages() == [f"parent {i}" for i in range(50)]


@pytest.mark.anyio
async def test_a_lock_held_by_another_thread_at_fork_does_not_deadlock_the_child(
    logger: logging.Logger,
) -> None:
    """A drop in progress in another thread at fork time: the child can still drop and count."""
    q = aioqlog.LogQueue(maxsize=2)
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with q._lock:  # what a producer counting a drop holds
            holding.set()
            release.wait(STALL)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert await in_thread(lambda: holding.wait(STALL))

    def child() -> int:
        rec.records.clear()
        q._consumer = None  # no delivery in the caller: let the queue fill and drop
        for i in range(5):
            logger.info("child %d", i)
        return CHILD_OK if (q.qsize(), q.dropped) == (2, 3) else 1

    try:
        code = await in_thread(lambda: fork_and_run(child))
    finally:
        release.set()
        holder.join(STALL)
    assert code == CHILD_OK
    del listener
