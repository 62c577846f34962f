"""The one-hop path: a lone sync handler's worker takes records off the queue itself.

Each test keeps the event loop busy (the test blocks it on purpose, waiting on a
``threading.Event``) while it checks what the worker did meanwhile. On the
loop's path nothing moves until the loop yields, so each of them fails there.
The safety tick is off: only the hand-off itself may wake the worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import STALL, Gate, OnTheLoop, Recorder, bounded, in_thread, run

import aioqlog
from aioqlog._bridge import SPILL
from aioqlog._records import handler_takes, lowest_taken

REQUEST = contextvars.ContextVar("REQUEST", default="-")


class BatchFile(logging.FileHandler):
    """A FileHandler that writes a batch at once and says when *expect* lines are in."""

    def __init__(self, path: Path, expect: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.expect = expect
        self.written = 0
        self.done = threading.Event()

    def emit_batch(self, records: list[logging.LogRecord]) -> None:
        assert self.stream is not None  # opened at construction (delay=False)
        self.stream.write("".join(self.format(r) + self.terminator for r in records))
        self.flush()
        self.written += len(records)
        if self.written >= self.expect:
            self.done.set()


@pytest.mark.asyncio
async def test_a_tight_burst_on_the_loop_reaches_the_file_while_the_loop_is_busy(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """50,000 records logged on the loop without yielding are written before it yields.

    All but the last few: records logged since the worker last caught up are
    handed over at the loop's next turn, or once SPILL of them are queued.
    """
    n = 50_000
    path = tmp_path / "app.log"
    handler = BatchFile(path, n - SPILL)
    logger.addHandler(aioqlog.QueueHandler(q := aioqlog.LogQueue()))
    q._tick = None
    try:
        async with aioqlog.QueueListener(q, handler) as listener:
            await asyncio.sleep(0)  # the listener's task starts, as in a running service
            for i in range(n):
                logger.info("r %d", i)
            # Still on the loop, which has not yielded since the burst began.
            assert handler.done.wait(STALL), f"{handler.written} of {n} written"
            # (The worker may be writing more right now: look at what it had.)
            lines = path.read_text().splitlines()[: n - SPILL]
            assert lines == [f"r {i}" for i in range(n - SPILL)]
        assert path.read_text().splitlines() == [f"r {i}" for i in range(n)]
        assert (listener.stats.dropped, listener.stats.handlers[0].dropped) == (0, 0)
    finally:
        handler.close()


@pytest.mark.asyncio
async def test_a_burst_right_after_start_is_drained_before_the_loop_first_yields(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """start() itself lends the queue to the worker: the listener's task has not run yet.

    ``async with install():`` followed by a burst that never yields is the
    first thing many services do; the records must not pile up in the queue
    until the loop's first turn.
    """
    n = 20_000
    path = tmp_path / "app.log"
    handler = BatchFile(path, n - SPILL)
    logger.addHandler(aioqlog.QueueHandler(q := aioqlog.LogQueue()))
    q._tick = None
    try:
        listener = aioqlog.QueueListener(q, handler)
        listener.start()  # no await from here until the burst is written
        for i in range(n):
            logger.info("r %d", i)
        assert handler.done.wait(STALL), f"{handler.written} of {n} written"
        await listener.stop()
        # Drained as it came: the queue never held more than a few SPILLs.
        assert listener.stats.high_water < n // 2
        assert path.read_text().splitlines() == [f"r {i}" for i in range(n)]
        assert (listener.stats.dropped, listener.stats.handlers[0].dropped) == (0, 0)
    finally:
        handler.close()


@pytest.mark.asyncio
async def test_a_small_queue_rings_the_worker_at_half_its_bound(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """With maxsize below SPILL, the worker is rung once half the queue is used, before it fills."""
    maxsize = 100
    path = tmp_path / "app.log"
    handler = BatchFile(path, 1 + maxsize // 2)
    logger.addHandler(aioqlog.QueueHandler(q := aioqlog.LogQueue(maxsize=maxsize)))
    q._tick = None
    try:
        async with aioqlog.QueueListener(q, handler) as listener:
            await asyncio.sleep(0)  # the listener's task starts, as in a running service
            producer = threading.Thread(target=logger.info, args=("first",))
            producer.start()
            producer.join()
            # The worker writes it, then parks on the queue (the loop is held meanwhile).
            deadline = time.monotonic() + STALL
            while not (handler.written and q._parked) and time.monotonic() < deadline:
                time.sleep(0.001)  # noqa: ASYNC251 - the loop stays held while the worker parks
            assert q._parked, "the worker should be parked on the queue"
            for i in range(maxsize // 2 + 1):
                logger.info("r %d", i)
            # Still on the loop, which has not yielded since the burst began.
            assert handler.done.wait(STALL), f"{handler.written} written"
        assert listener.stats.dropped == 0
    finally:
        handler.close()


class Echo(Recorder):
    """A handler that logs a line of its own for every record it handles."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self.log = log
        self.requests: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.requests.append(REQUEST.get())
        super().emit(record)
        self.log.warning("echo of %s", record.getMessage())


@pytest.mark.asyncio
async def test_the_recursion_guard_and_contexts_hold_while_the_loop_is_busy(
    logger: logging.Logger,
) -> None:
    """Off the loop, each record is handled in its own context; a handler's echoes stop once."""
    q = aioqlog.LogQueue()
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    echo = Echo(logger)

    def request() -> None:
        REQUEST.set("req-1")
        logger.info("hello")

    async with aioqlog.QueueListener(q, echo) as listener:
        await asyncio.sleep(0)  # the listener's task starts
        producer = threading.Thread(target=request)
        producer.start()
        producer.join()
        # The loop does not yield: the record, its echo, and the report of the
        # echo's echo (dropped) are handled by the worker meanwhile.
        assert echo.wait_for(3), echo.messages()
        assert echo.messages() == [
            "hello",
            "echo of hello",
            "aioqlog dropped 1 records that handlers logged while handling records "
            "logged by handlers (a handler logging from its own emit())",
        ]
        assert echo.requests[:2] == ["req-1", "req-1"]
        assert listener.stats.recursion_dropped >= 1


@pytest.mark.asyncio
async def test_stop_delivers_what_the_worker_had_not_taken_yet(logger: logging.Logger) -> None:
    """stop() while the worker is stuck mid-burst delivers every record logged before it."""
    q = aioqlog.LogQueue()
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()

    def burst() -> None:
        for i in range(1000):
            logger.info("r %d", i)

    async with aioqlog.QueueListener(q, gate) as listener:
        await asyncio.sleep(0)  # the listener's task starts
        producer = threading.Thread(target=burst)
        producer.start()
        producer.join()
        assert gate.entered.wait(STALL)  # the worker holds the first batch, the rest is queued
        stopping = asyncio.ensure_future(listener.stop())
        await asyncio.sleep(0)  # stop() begins: everything queued now is "before stop()"
        gate.opened.set()
        stats = await bounded(stopping)
    assert gate.messages() == [f"r {i}" for i in range(1000)]
    assert (stats.enqueued, stats.handlers[0].handled, stats.undelivered) == (1000, 1000, 0)
    logger.info("after")  # handled in the caller, as by a handler attached to the logger
    assert gate.messages()[-1] == "after"
    assert gate.records[-1].threadName == threading.current_thread().name


@pytest.mark.asyncio
async def test_a_short_burst_on_the_loop_is_handed_over_when_the_loop_turns(
    logger: logging.Logger,
) -> None:
    """Fewer than SPILL records logged on the loop reach the worker at its next turn."""
    q = aioqlog.LogQueue()
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    async with aioqlog.QueueListener(q, rec):
        await asyncio.sleep(0)  # the listener's task starts
        producer = threading.Thread(target=logger.info, args=("first",))
        producer.start()
        producer.join()
        assert rec.wait_for(1)
        assert q._parked, "the worker should be parked on the queue"
        for i in range(10):
            logger.info("r %d", i)
        await asyncio.sleep(0)  # one turn of the loop rings the worker
        assert rec.wait_for(11), rec.messages()  # the loop is held again meanwhile
    assert rec.messages() == ["first", *(f"r {i}" for i in range(10))]


def test_overridden_dequeue_keeps_the_loops_path(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], logger: logging.Logger
) -> None:
    """A listener with an overridden hook keeps every record on the loop's path."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()

    async def main() -> list[str]:
        async with OnTheLoop(q, rec):
            await asyncio.sleep(0)
            logger.info("held")
            # The loop does not yield: on the loop's path, nothing is delivered.
            assert not rec.wait_for(1, timeout=0.2)
            await in_thread(lambda: rec.wait_for(1))
        return rec.messages()

    assert run(main(), loop_factory) == ["held"]


@pytest.mark.parametrize("respect", [True, False])
def test_the_one_hop_floor_agrees_with_handler_takes(respect: bool) -> None:
    """The worker's level floor (``lowest_taken``) passes what ``handler_takes`` passes."""
    for handler_level in (logging.NOTSET, logging.DEBUG, logging.WARNING, 35, logging.CRITICAL):
        handler = logging.NullHandler()
        handler.setLevel(handler_level)
        floor = lowest_taken(handler, respect_level=respect)
        for level in (1, logging.DEBUG, logging.INFO, logging.WARNING, 35, logging.CRITICAL):
            record = logging.makeLogRecord({"levelno": level})
            passed = floor is None or record.levelno >= floor
            assert passed == handler_takes(handler, record, respect_level=respect)
