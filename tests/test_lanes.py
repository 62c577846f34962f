"""Lanes: each handler in order, at its own pace, in threads the listener owns."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio
from support import STALL, AsyncRecorder, Gate, OnTheLoop, Recorder, bounded, in_thread, join_all

import aioqlog
from aioqlog._bridge import Overflow
from aioqlog._context import DEPTH
from aioqlog._lanes import RUNNING, ThreadLane, make_lane


@pytest.mark.anyio
async def test_a_stuck_handler_does_not_delay_the_others(logger: logging.Logger) -> None:
    """While one handler hangs in emit, another receives every record."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, fast = Gate(), Recorder()
    async with aioqlog.QueueListener(q, stuck, fast):
        for i in range(100):
            logger.info("r%d", i)
        await fast.arrived(100)
        assert await in_thread(lambda: stuck.entered.wait(STALL))
        assert stuck.records == []  # still hanging on the first record
        stuck.opened.set()
    assert stuck.messages() == fast.messages() == [f"r{i}" for i in range(100)]


@pytest.mark.anyio
async def test_a_slow_async_handler_does_not_delay_a_sync_one(logger: logging.Logger) -> None:
    """An async handler awaiting forever does not hold up the sync handler, nor the loop."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    release = anyio.Event()

    class Waiting(AsyncRecorder):
        async def aemit(self, record: logging.LogRecord) -> None:
            await release.wait()
            await super().aemit(record)

    slow, fast = Waiting(), Recorder()
    async with aioqlog.QueueListener(q, slow, fast):
        for i in range(50):
            logger.info("r%d", i)
        await fast.arrived(50)
        assert slow.records == []
        release.set()
    assert slow.messages() == [f"r{i}" for i in range(50)]


@pytest.mark.anyio
async def test_each_handler_sees_each_threads_records_in_order(logger: logging.Logger) -> None:
    """Records from several threads and the loop reach every handler in per-thread order."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handlers: list[Recorder | AsyncRecorder] = [Recorder(), Recorder(), AsyncRecorder()]
    barrier = threading.Barrier(4)

    def producer(index: int) -> None:
        barrier.wait()
        for seq in range(300):
            logger.info("%d %d", index, seq)

    async with aioqlog.QueueListener(q, *handlers):
        threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for seq in range(300):
            logger.info("%d %d", 4, seq)
            if seq % 50 == 0:
                await anyio.lowlevel.checkpoint()
        await in_thread(lambda: join_all(threads))
    for handler in handlers:
        assert len(handler.records) == 1500
        last: dict[object, int] = {}
        for record in handler.records:
            assert isinstance(record.args, tuple)
            index, number = record.args
            assert isinstance(number, int)
            assert number == last.get(index, -1) + 1
            last[index] = number


@pytest.mark.anyio
async def test_sync_handlers_run_in_threads_the_listener_owns(logger: logging.Logger) -> None:
    """Handlers run in the listener's named threads, even with the default executor busy."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder(name="audit")
    blocked = threading.Event()
    limiter = anyio.to_thread.current_default_thread_limiter()

    async def jam_executor() -> None:  # asyncio's default executor
        await asyncio.get_running_loop().run_in_executor(None, blocked.wait, STALL)

    async with anyio.create_task_group() as jam:
        # Saturate the shared worker threads, as busy application code can:
        # anyio's (trio's on trio) and, on asyncio, the loop's default executor.
        for _ in range(int(limiter.total_tokens)):
            jam.start_soon(functools.partial(anyio.to_thread.run_sync, blocked.wait, STALL))
        if sniffio.current_async_library() == "asyncio":
            for _ in range(64):
                jam.start_soon(jam_executor)
        try:
            async with aioqlog.QueueListener(q, rec):
                logger.info("delivered regardless")
                await rec.arrived(1)
        finally:
            blocked.set()
    assert rec.threads == {"aioqlog-audit"}


@pytest.mark.anyio
async def test_async_handlers_are_awaited_on_the_loop(logger: logging.Logger) -> None:
    """An AsyncHandler runs in the loop's thread: no thread hop at all."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    seen: list[int] = []

    class Where(AsyncRecorder):
        async def aemit(self, record: logging.LogRecord) -> None:
            seen.append(threading.get_ident())

    async with aioqlog.QueueListener(q, Where()):
        await in_thread(lambda: logger.info("from a thread"))
    assert seen == [threading.get_ident()]


class _CountingListener(aioqlog.QueueListener):
    """Sets an event once a given number of records have gone into the lanes."""

    def __init__(self, *args: Any, expect: int) -> None:
        super().__init__(*args)
        self.handled_count = 0
        self.expect = expect
        self.moved = anyio.Event()

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        self.handled_count += 1
        if self.handled_count == self.expect:
            self.moved.set()


@pytest.mark.anyio
async def test_a_backlog_is_handed_over_in_batches(logger: logging.Logger) -> None:
    """Records that pile up while a handler is busy reach its thread a batch per hop."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    listener = _CountingListener(q, gate, expect=201)
    (lane,) = listener._lanes
    assert isinstance(lane, ThreadLane)
    takes = [0]
    original = lane._take

    def counting_take(limit: int) -> list[tuple[logging.LogRecord, contextvars.Context]]:
        batch = original(limit)
        if batch:
            takes[0] += 1
        return batch

    lane._take = counting_take  # type: ignore[method-assign]
    async with listener:
        logger.info("first")
        await in_thread(lambda: gate.entered.wait(STALL))
        for i in range(200):
            logger.info("r%d", i)
        await bounded(listener.moved.wait())  # all 200 wait in the lane now
        gate.opened.set()
    assert len(gate.records) == 201
    assert takes[0] == 2  # the first record, then all 200 at once


@pytest.mark.parametrize("respect", [True, False])
@pytest.mark.anyio
async def test_respect_handler_level_as_in_the_stdlib(
    logger: logging.Logger, respect: bool
) -> None:
    """With respect_handler_level, levels filter; without, every record reaches the handler."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sync_handler = Recorder(level=logging.WARNING)
    async_handler = AsyncRecorder(level=logging.WARNING)
    async with aioqlog.QueueListener(q, sync_handler, async_handler, respect_handler_level=respect):
        logger.info("info")
        logger.warning("warning")
    expected = ["warning"] if respect else ["info", "warning"]
    assert sync_handler.messages() == expected
    assert async_handler.messages() == expected


@pytest.mark.anyio
async def test_a_full_lane_drops_for_its_handler_only(logger: logging.Logger) -> None:
    """Under drop_new, a handler that falls behind misses records: counted and reported.

    The other handler misses nothing.
    """
    q = aioqlog.LogQueue(maxsize=10)
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, fast = Gate(name="stuck"), Recorder(name="fast")
    async with aioqlog.QueueListener(q, stuck, fast) as listener:
        for batch in range(10):
            for i in range(10):
                logger.info("r%d", batch * 10 + i)
            await fast.arrived((batch + 1) * 10)
        dropped = listener.stats.handlers[0].dropped
        # A lane holds at most maxsize records, waiting or in its handler's hands.
        assert dropped == 100 - 10
        stuck.opened.set()
    assert fast.messages() == [f"r{i}" for i in range(100)]
    kept = stuck.messages()[:-1]
    assert kept == [f"r{i}" for i in range(len(kept))]
    assert len(kept) + dropped == 100
    assert stuck.messages()[-1] == (
        f"aioqlog dropped {dropped} records for this handler: it fell behind "
        "(maxsize=10, overflow='drop_new')"
    )


class Turnstile(Recorder):
    """A handler that lets records through one at a time, as the test allows."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: list[str] = []
        self.passes = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.entered.append(record.getMessage())
            self._changed.notify_all()
        self.passes.acquire(timeout=STALL)
        super().emit(record)

    async def holds(self, message: str) -> None:
        """Wait until the handler holds the record *message*."""
        assert await in_thread(lambda: self.wait_until(lambda: self.entered[-1:] == [message]))


async def _dispatched(q: aioqlog.LogQueue) -> None:
    """Yield to the loop until the listener has taken (and dispatched) what is queued."""
    for _ in range(10_000):
        if not q.qsize():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("the listener did not take the queued records")


@pytest.mark.anyio
async def test_drop_old_in_a_lane_never_evicts_a_drop_summary(logger: logging.Logger) -> None:
    """A full lane under drop_old evicts the user's oldest record, not aioqlog's report.

    Evicting the report would lose it and count it as one of the user's drops.
    """
    q = aioqlog.LogQueue(maxsize=10, overflow="drop_old")
    logger.addHandler(aioqlog.QueueHandler(q))
    slow = Turnstile()

    async def log(*numbers: int) -> None:  # one at a time: the queue itself never fills
        for i in numbers:
            logger.info("r%d", i)
            await _dispatched(q)

    async with OnTheLoop(q, slow) as listener:
        try:
            await log(0)
            await slow.holds("r0")
            await log(*range(1, 15))  # r1..r9 fill the lane; r10..r14 evict r1..r5
            assert listener.stats.handlers[0].dropped == 5
            # r0, r6..r10 go through; the worker takes r11..r14 in hand (beyond eviction).
            slow.passes.release(6)
            await slow.holds("r11")
            await log(15)  # the lane is half empty: the drop report goes in after r15
            # r16..r19 fill the lane; r20..r24 evict r15..r19, passing over the report.
            await log(*range(16, 25))
            assert listener.stats.handlers[0].dropped == 10
        finally:
            slow.passes.release(1000)
    assert q.dropped == 0
    report = (
        "aioqlog dropped 5 records for this handler: it fell behind "
        "(maxsize=10, overflow='drop_old')"
    )
    kept = [*(f"r{i}" for i in range(6, 15)), report, *(f"r{i}" for i in range(20, 25))]
    expected = ["r0", *kept, report]
    assert slow.messages() == expected
    assert listener.stats.handlers[0].dropped == 10


@pytest.mark.parametrize("overflow", ["drop_new", "drop_old"])
@pytest.mark.parametrize("handler", [Recorder, AsyncRecorder])
def test_a_batch_put_at_once_keeps_what_one_by_one_would(
    overflow: Overflow, handler: type[logging.Handler]
) -> None:
    """put_many over a lane's bound keeps, evicts and counts exactly as put() one by one."""

    def fill(at_once: bool) -> tuple[list[object], int, int]:
        lane = make_lane(handler(), 4, overflow, copy_records=False)
        lane.state = RUNNING  # no worker: nothing leaves the buffer
        entries = [
            (logging.makeLogRecord({"msg": f"r{i}"}), contextvars.Context()) for i in range(7)
        ]
        lane.put_many(entries[:2])  # room for both: taken in one step
        if at_once:
            lane.put_many(entries[2:])
        else:
            for record, ctx in entries[2:]:
                lane.put(record, ctx)
        return [record.msg for record, _ in lane.buffer], lane.dropped, lane.put_count

    kept, dropped, _ = fill(at_once=True)
    assert fill(at_once=True) == fill(at_once=False)
    assert dropped == 3
    assert kept == (
        ["r0", "r1", "r2", "r3"] if overflow == "drop_new" else ["r3", "r4", "r5", "r6"]
    )


class Batching(aioqlog.AsyncHandler):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.busy = anyio.Event()
        self.resume = anyio.Event()

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        self.busy.set()
        await self.resume.wait()
        self.batches.append([r.getMessage() for r in records])


@pytest.mark.anyio
async def test_async_batches_gather_what_piled_up(logger: logging.Logger) -> None:
    """While aemit_batch is busy, records pile up and come in the next call together."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Batching()
    # No shutdown_timeout: no call budget, so the first call, held for as long
    # as the test takes, does not size the next one (see Lane.call_size).
    async with aioqlog.QueueListener(q, handler, shutdown_timeout=None):
        logger.info("first")
        await bounded(handler.busy.wait())
        for i in range(50):
            logger.info("r%d", i)
        await anyio.lowlevel.checkpoint()
        handler.resume.set()
    assert handler.batches == [["first"], [f"r{i}" for i in range(50)]]


# -------------------------------- the batch path: filters and cancellations


class Runs(aioqlog.AsyncHandler):
    """An async handler with aemit_batch: keeps each call's messages, holds calls on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name("runs")
        self.calls: list[list[str]] = []  # every call, as it began
        self.delivered: list[list[str]] = []  # the calls that returned
        self.cancelled = 0
        self.entered = anyio.Event()
        self.hold = False  # while true, calls wait for proceed
        self.proceed = anyio.Event()
        self.cancel_itself = False
        self.reported: list[str] = []
        self.depths: list[int] = []  # the depth each call ran at (what it logs would carry)

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        messages = [r.getMessage() for r in records]
        self.calls.append(messages)
        self.depths.append(DEPTH.get())
        self.entered.set()
        try:
            if self.hold:
                await self.proceed.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        if self.cancel_itself:
            raise asyncio.CancelledError  # nobody asked: the handler's own error
        self.delivered.append(messages)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(record.getMessage())


class Screening(logging.Filter):
    """Keep back "noise" records; raise on "boom"."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == "boom":
            raise ValueError("cannot screen this record")
        return not message.startswith("noise")


def _lane_task(handler: logging.Handler) -> asyncio.Task[Any]:
    """Return the task of *handler*'s lane, as a blanket cancel of every task would see it."""
    name = f"aioqlog-{handler.get_name()}"
    return next(t for t in asyncio.all_tasks() if t.get_name() == name)


@pytest.mark.anyio
async def test_a_batch_leaves_out_what_its_filters_reject_or_fail_on(
    logger: logging.Logger,
) -> None:
    """Rejected records are handled without a call (a run of them makes none); a bad filter errs."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Runs()
    handler.addFilter(Screening())
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)  # whole runs per call
    listener.start()
    for message in ("a", "noise 1", "boom", "b"):
        logger.info(message)  # one run: logged in one context before the task runs
    await bounded(handler.entered.wait())
    assert handler.calls == [["a", "b"]]
    for message in ("noise 2", "noise 3"):
        logger.info(message)
    stats = await bounded(listener.stop())
    assert handler.calls == [["a", "b"]]
    assert handler.reported == ["boom"]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (5, 1)
    assert stats.handlers[0].pending == 0


@pytest.mark.asyncio  # a blanket cancel of every task is asyncio's; trio has none
async def test_a_batch_cancelled_from_outside_is_redelivered_once(
    logger: logging.Logger,
) -> None:
    """A cancelled aemit_batch gets the same run again, at the same depth; a second cancel errs."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Runs()
    handler.hold = True
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)  # whole runs per call
    listener.start()
    for message in ("a", "b", "c"):
        logger.info(message)
    await bounded(handler.entered.wait())
    handler.entered = anyio.Event()
    _lane_task(handler).cancel()  # a blanket cancel (asyncio.run ending, a supervisor)
    await bounded(handler.entered.wait())
    assert handler.calls == [["a", "b", "c"], ["a", "b", "c"]]
    assert handler.depths == [1, 1]  # given again, not marked one level deeper again
    handler.entered = anyio.Event()
    _lane_task(handler).cancel()  # cancelled again: "now", the run is given up
    handler.hold = False
    logger.info("d")
    await bounded(handler.entered.wait())
    stats = await bounded(listener.stop())
    assert handler.cancelled == 2
    assert handler.calls == [["a", "b", "c"], ["a", "b", "c"], ["d"]]
    assert handler.delivered == [["d"]]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (1, 3)
    assert stats.handlers[0].pending == 0


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10 cannot tell who cancelled a task"
)
@pytest.mark.asyncio  # a task raising CancelledError unasked, told apart by asyncio's cancelling()
async def test_a_batch_that_cancels_itself_is_the_handlers_error(logger: logging.Logger) -> None:
    """A CancelledError nobody asked for fails that run only: reported once, the lane goes on."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Runs()
    handler.cancel_itself = True
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)  # whole runs per call
    listener.start()
    for message in ("a", "b"):
        logger.info(message)
    await bounded(handler.entered.wait())
    handler.cancel_itself = False
    logger.info("c")
    stats = await bounded(listener.stop())
    assert handler.calls == [["a", "b"], ["c"]]
    assert handler.delivered == [["c"]]
    assert handler.reported == ["a"]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (1, 2)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_batch_cut_off_by_stop_waits_whole_for_the_next_start(
    logger: logging.Logger,
) -> None:
    """stop(timeout) cancels an aemit_batch in flight: its run goes back in front, in order."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Runs()
    handler.hold = True
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)  # whole runs per call
    listener.start()
    for message in ("a", "b", "c"):
        logger.info(message)
    await bounded(handler.entered.wait())
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        stats = await bounded(listener.stop(timeout=0))
    assert "kept for the next start: 3 for runs" in stderr.getvalue()
    assert (stats.handlers[0].pending, stats.handlers[0].errors) == (3, 0)
    handler.hold = False
    async with listener:
        logger.info("d")
    assert handler.cancelled == 1
    assert handler.delivered == [["a", "b", "c", "d"]]  # one context: one run
    stats = listener.stats
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (4, 0)


def test_a_cheap_call_lowers_the_sizing_estimate_by_a_quarter_at_most() -> None:
    """A handler seen to cost 10 ms a record is not handed 200 records after one cheap call.

    Its records may cost unevenly (a few costly ones among cheap ones): sized
    from the cheap call alone, the next could last seconds, longer than a
    waiting thread or the exit watch for progress.
    """
    lane = ThreadLane(Recorder(), 1000, "block", copy_records=False)
    lane.call_budget = 0.1
    lane.timed(1.0, 100, completed=True)  # 10 ms a record
    assert lane.call_size(1024) == 10
    lane.timed(0.001, 100, completed=True)  # then a cheap call
    assert lane.call_size(1024) == 13  # 0.1 s / 7.5 ms, not 200
    for _ in range(40):
        lane.timed(0.001, 100, completed=True)
    assert lane.call_size(1024) == 200  # cheap for good: back to twice the largest call


@pytest.mark.anyio
async def test_a_stop_returns_once_the_workers_last_call_is_counted(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records a call is done with are reported as such, but stop() waits for the count.

    The worker counts a call once it returns (handled, errors, done): until
    then the lane is not settled, and stop() does not end the run with its
    counts short, nor leave callers counting in the caller beside it.
    """
    counting = threading.Event()
    real_timed = ThreadLane.timed

    def slow_count(self: ThreadLane, seconds: float, count: int, *, completed: bool) -> None:
        if not counting.is_set():
            counting.set()
            threading.Event().wait(0.2)  # the worker, slow to count its first call
        real_timed(self, seconds, count, completed=completed)

    monkeypatch.setattr(ThreadLane, "timed", slow_count)
    stream = io.StringIO()
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    # Two handlers: the listener's task hands records on, and waits on each lane alone.
    handlers = logging.StreamHandler(stream), logging.NullHandler()
    listener = aioqlog.QueueListener(q, *handlers)
    listener.start()
    logger.warning("r0")
    assert await in_thread(lambda: counting.wait(STALL))  # written, being counted
    stats = await listener.stop()
    assert stream.getvalue() == "r0\n"
    assert ([h.handled for h in stats.handlers], stats.undelivered) == ([1, 1], 0)
