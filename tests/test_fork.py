"""os.fork() while records flow: the child neither deadlocks nor duplicates, and logs on."""

from __future__ import annotations

import asyncio
import io
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


class _BufferedStream(io.StringIO):
    """A stream whose write holds a lock of its own, as a file's buffer does.

    A plain ``threading.Lock``: a forked child gets it as the parent left it,
    as it gets a buffer's. A write of a line starting "slow" waits, inside
    that lock, until a fork is about to happen (*forking*).
    """

    def __init__(self, forking: threading.Event) -> None:
        super().__init__()
        self.inner = threading.Lock()
        self.writing = threading.Event()
        self.forking = forking

    def write(self, text: str) -> int:
        with self.inner:
            if text.startswith("slow"):
                self.writing.set()
                self.forking.wait(STALL)
            return super().write(text)


class _SeesTheFork:
    """A handler's lock that tells when a thread waits for it with a timeout (the fork's hook).

    It notes how each such wait was asked for: (blocking, timeout).
    """

    def __init__(self, forking: threading.Event) -> None:
        self.lock = threading.RLock()
        self.forking = forking
        self.waits: list[tuple[bool, float]] = []
        # Whether the waiting thread held logging's module lock, at each wait.
        self.logging_lock_held: list[bool] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout >= 0 or not blocking:
            self.waits.append((blocking, timeout))
            self.logging_lock_held.append(logging._lock._is_owned())  # type: ignore[attr-defined]
            self.forking.set()
        return self.lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self.lock._at_fork_reinit()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_fork_waits_for_a_workers_write_to_end(logger: logging.Logger) -> None:
    """A fork while the worker writes waits for the write: the child's stream is not held.

    Without the wait the child would find the stream's own lock held by the
    worker, a thread it does not have, and hang on its first write.
    """
    forking = threading.Event()
    stream = _BufferedStream(forking)
    handler = logging.StreamHandler(stream)
    handler.lock = _SeesTheFork(forking)  # type: ignore[assignment]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    def child() -> int:
        logger.warning("child")  # delivered in the caller: no listener runs in the child
        return CHILD_OK if stream.getvalue().endswith("slow\nchild\n") else 1

    async with aioqlog.QueueListener(q, handler):
        logger.warning("slow")
        assert await in_thread(lambda: stream.writing.wait(STALL))
        code = await in_thread(lambda: fork_and_run(child))
    assert code == CHILD_OK
    assert stream.getvalue() == "slow\n"


@pytest.mark.anyio
async def test_a_handler_stuck_in_a_write_delays_one_fork_not_every_fork(
    logger: logging.Logger,
) -> None:
    """The first fork waits for a stuck handler's lock for a while; the next ones do not wait."""
    stuck = Gate()
    lock = _SeesTheFork(threading.Event())
    stuck.lock = lock  # type: ignore[assignment]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, stuck, shutdown_timeout=0.5):
        logger.warning("stuck")
        assert await in_thread(lambda: stuck.entered.wait(STALL))
        for _ in range(3):
            assert await in_thread(lambda: fork_and_run(lambda: CHILD_OK)) == CHILD_OK
        stuck.opened.set()
    (blocking, timeout), *later = lock.waits
    assert blocking  # the first fork waited for it
    assert timeout > 0.5
    assert later == [(False, -1)] * 2  # the next two only looked


@pytest.mark.anyio
async def test_a_fork_takes_loggings_lock_before_the_handlers_locks(
    logger: logging.Logger,
) -> None:
    """The order logging takes them in (dictConfig closes handlers under its lock).

    The other way round, a fork holding a handler's lock would wait for
    logging's, while a thread holding logging's waits for the handler's.
    """
    lock = _SeesTheFork(threading.Event())
    handler = logging.StreamHandler(io.StringIO())
    handler.lock = lock  # type: ignore[assignment]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler):
        assert await in_thread(lambda: fork_and_run(lambda: CHILD_OK)) == CHILD_OK
    assert lock.logging_lock_held == [True]


def test_a_child_forked_inside_install_can_install_on_its_own_loop(
    logger: logging.Logger,
) -> None:
    """The parent's install() is its own: the child has its handlers back, and installs anew."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)

    def child() -> int:
        if logger.handlers != [handler]:
            return 1  # still behind the parent's stopped queue
        logger.info("before")  # straight to the handler, as before install()

        async def main() -> None:
            async with aioqlog.install(logger):
                logger.info("behind the child's own listener")

        asyncio.run(main())
        if logger.handlers != [handler]:
            return 2
        written = stream.getvalue().splitlines()
        return CHILD_OK if written[-2:] == ["before", "behind the child's own listener"] else 3

    async def parent() -> int:
        async with aioqlog.install(logger):
            logger.info("in the parent")
            return fork_and_run(child)

    assert asyncio.run(parent()) == CHILD_OK
    assert logger.handlers == [handler]
    assert stream.getvalue().splitlines() == ["in the parent"]
