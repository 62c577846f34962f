"""listener.stats and the drop summary: every drop counted, reported once, quietly."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time

import anyio
import anyio.lowlevel
import pytest
from support import STALL, Gate, Gates, Recorder, in_thread

import aioqlog


class Failing(Recorder):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "fail":
            raise ValueError("nope")
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@pytest.mark.anyio
async def test_stats_count_what_happened(logger: logging.Logger) -> None:
    """Enqueued, depth, high-water mark and per-handler counts add up."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    good, bad = Recorder(name="good"), Failing()
    listener = aioqlog.QueueListener(q, good, bad)
    listener.start()
    for message in ("a", "fail", "b"):
        logger.info(message)
    before = listener.stats
    assert before.running
    assert before.enqueued == 3
    assert before.queue_depth == 3  # the listener has not run yet
    stats = await listener.stop()
    assert not stats.running
    assert (stats.enqueued, stats.dropped, stats.queue_depth) == (3, 0, 0)
    assert stats.high_water == 3
    assert [h.name for h in stats.handlers] == ["good", repr(bad)]
    assert [(h.handled, h.errors, h.pending) for h in stats.handlers] == [(3, 0, 0), (2, 1, 0)]
    assert stats.undelivered == 0
    assert stats.recursion_dropped == 0


@pytest.mark.anyio
async def test_what_stop_returns_counts_as_undelivered_only_what_was_logged_before_it(
    logger: logging.Logger,
) -> None:
    """Records threads log while stop() ends are not the stop's: a complete stop reads 0.

    Here one is logged while the stop delivers what was logged during it, so
    it is still on its way when the stop returns (counted in
    logged_after_stop), and is delivered afterwards, in order.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Gates("first", "late")
    listener = aioqlog.QueueListener(q, handler)

    def log_late_from_another_thread(record: logging.LogRecord) -> bool:
        if record.getMessage() == "during":
            thread = threading.Thread(target=lambda: logger.info("late"))
            thread.start()
            thread.join(STALL)
        return True

    handler.addFilter(log_late_from_another_thread)
    listener.start()
    logger.info("first")
    await in_thread(lambda: handler.entered["first"].wait(STALL))
    returned: list[aioqlog.ListenerStats] = []

    async def stop() -> None:
        returned.append(await listener.stop())

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop)
        while not listener._run_state.stopping:  # the stop has begun
            await anyio.lowlevel.checkpoint()
        logger.info("during")
        handler.opened["first"].set()
    (stats,) = returned
    assert handler.messages() == ["first", "during"]
    assert (stats.logged_after_stop, stats.undelivered) == (1, 0)
    handler.opened["late"].set()
    await handler.arrived(3)
    assert handler.messages() == ["first", "during", "late"]
    assert listener.stats.undelivered == 0


@pytest.mark.anyio
async def test_a_full_queue_reports_one_summary_and_no_tracebacks(logger: logging.Logger) -> None:
    """A thousand drops: counted exactly, one summary record, nothing on stderr.

    A handler whose level is above the summary's (WARNING) hears of it too.
    """
    q = aioqlog.LogQueue(maxsize=10)
    logger.addHandler(aioqlog.QueueHandler(q))
    gate, rec, errors_only = Gate(), Recorder(), Recorder(level=logging.ERROR)
    logging.raiseExceptions = True
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        async with aioqlog.QueueListener(q, gate, rec, errors_only) as listener:
            logger.info("first")
            await in_thread(lambda: gate.entered.wait(STALL))
            for i in range(1010):  # the loop holds: the queue takes 10, drops 1000
                logger.info("r%d", i)
            assert q.dropped == 1000
            gate.opened.set()
    assert stderr.getvalue() == ""
    summaries = [m for m in rec.messages() if m.startswith("aioqlog")]
    assert summaries == [
        "aioqlog dropped 1000 records: the queue was full (maxsize=10, overflow='drop_new')"
    ]
    (summary,) = [r for r in rec.records if r.name == "aioqlog"]
    assert summary.levelno == logging.WARNING
    assert errors_only.messages() == summaries
    assert listener.stats.dropped == 1000


@pytest.mark.parametrize("handlers", [1, 2])
@pytest.mark.anyio
async def test_a_sync_handler_behind_reports_its_oldest_record_while_holding_a_batch(
    handlers: int, logger: logging.Logger
) -> None:
    """Records a worker took as one batch still count for how far behind its handler is.

    The records were logged before the listener existed, so the worker takes
    them all at once and holds them while its handler is stuck on the first.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    for i in range(3):
        logger.info("waiting %d", i)
    first_logged = time.time()  # no later than the first record's created
    stuck = [Gate(name=f"stuck-{k}") for k in range(handlers)]
    async with aioqlog.QueueListener(q, *stuck) as listener:
        await in_thread(lambda: all(gate.entered.wait(STALL) for gate in stuck))
        seen = time.time()
        stats = listener.stats
        for handler in stats.handlers:
            assert handler.pending == 3
            assert handler.oldest_pending_age is not None
            assert handler.oldest_pending_age >= stats_floor(seen, first_logged)
        for gate in stuck:
            gate.opened.set()
    for handler in listener.stats.handlers:
        assert handler.oldest_pending_age is None


def stats_floor(seen: float, first_logged: float) -> float:
    """The least age the oldest record can have at *seen*, with clock rounding allowed."""
    return max(0.0, seen - first_logged - 0.001)


class _AsyncGate(aioqlog.AsyncHandler):
    """An async handler whose aemit waits until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = anyio.Event()
        self.opened = anyio.Event()

    async def aemit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        await self.opened.wait()


@pytest.mark.anyio
async def test_an_async_handler_behind_reports_the_record_it_is_awaited_with(
    logger: logging.Logger,
) -> None:
    """The record inside a running aemit is pending, and ages, until the call returns."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = _AsyncGate()
    async with aioqlog.QueueListener(q, gate) as listener:
        logger.info("awaited")
        logged = time.time()
        with anyio.fail_after(STALL):
            await gate.entered.wait()
        (stats,) = listener.stats.handlers
        assert stats.pending == 1
        assert stats.oldest_pending_age is not None
        assert stats.oldest_pending_age >= stats_floor(time.time(), logged)
        gate.opened.set()
    (stats,) = listener.stats.handlers
    assert (stats.pending, stats.oldest_pending_age) == (0, None)
