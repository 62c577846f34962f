"""LogQueue: the thread -> loop bridge, its overflow policies and its wake-ups."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from support import STALL, Gate, OnTheLoop, Recorder, bounded, in_thread, run

import aioqlog
from aioqlog._bridge import LogQueue

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _record(i: int) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, "r%d", (i,), None)


def _log_many(logger: logging.Logger, count: int) -> None:
    for i in range(count):
        logger.info("r%d", i)


def _origin(record: logging.LogRecord) -> tuple[int, int]:
    """Return (producer index, sequence number) from a stress-test record."""
    assert isinstance(record.args, tuple)
    index, seq = record.args
    assert isinstance(index, int)
    assert isinstance(seq, int)
    return index, seq


def test_records_wait_in_an_unserved_queue() -> None:
    """Before any listener exists, records wait in the queue (bounded)."""
    q = LogQueue(maxsize=3)
    for i in range(5):
        q.put_nowait(_record(i))
    assert q.qsize() == 3
    assert q.dropped == 2


def test_a_new_listener_delivers_what_waited_in_order() -> None:
    """Creating a listener hands the records that waited to its handlers, oldest first."""
    q = LogQueue(maxsize=3)
    for i in range(5):
        q.put_nowait(_record(i))
    rec = Recorder()
    aioqlog.QueueListener(q, rec)
    assert rec.messages() == [
        "r0",
        "r1",
        "r2",
        "aioqlog dropped 2 records: the queue was full (maxsize=3, overflow='drop_new')",
    ]
    assert q.qsize() == 0


def test_drop_old_evicts_the_oldest() -> None:
    """drop_old keeps the newest records and counts every eviction."""
    q = LogQueue(maxsize=3, overflow="drop_old")
    for i in range(5):
        q.put_nowait(_record(i))
    rec = Recorder()
    aioqlog.QueueListener(q, rec)
    assert rec.messages()[:3] == ["r2", "r3", "r4"]
    assert rec.messages()[3].startswith("aioqlog dropped 2 records")
    assert q.dropped == 2


@pytest.mark.anyio
async def test_block_on_the_loop_thread_drops_instead_of_waiting(logger: logging.Logger) -> None:
    """Under "block", a full queue never makes the loop thread wait: it drops."""
    q = LogQueue(maxsize=2, overflow="block", block_timeout=STALL)
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)
    listener.start()
    started = time.monotonic()
    # The consumer cannot run while this coroutine holds the loop: the queue fills.
    for i in range(10):
        logger.info("r%d", i)
    assert time.monotonic() - started < STALL / 2
    assert q.dropped == 8
    await listener.stop()
    assert rec.messages() == [
        "r0",
        "r1",
        "aioqlog dropped 8 records: the queue was full (maxsize=2, overflow='block')",
    ]


class _WatchedCondition(threading.Condition):
    """A Condition that announces each wait, so a test knows a producer blocked."""

    def __init__(self, lock: Any, waiting: threading.Event) -> None:
        super().__init__(lock)
        self._waiting = waiting

    def wait(self, timeout: float | None = None) -> bool:
        self._waiting.set()
        return super().wait(timeout)


@pytest.mark.anyio
async def test_block_makes_threads_wait_for_room(logger: logging.Logger) -> None:
    """Under "block", a producer thread waits for room instead of dropping."""
    q = LogQueue(maxsize=2, overflow="block", block_timeout=STALL)
    waiting = threading.Event()
    q._room = _WatchedCondition(q._lock, waiting)
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    async with aioqlog.QueueListener(q, gate), anyio.create_task_group() as producer:
        producer.start_soon(in_thread, lambda: _log_many(logger, 12))
        assert await anyio.to_thread.run_sync(waiting.wait, STALL), "the producer never blocked"
        gate.opened.set()
    assert q.dropped == 0
    assert gate.messages() == [f"r{i}" for i in range(12)]


@pytest.mark.anyio
async def test_block_gives_up_after_block_timeout(logger: logging.Logger) -> None:
    """A producer blocked longer than block_timeout (or the stuck lane) drops and counts."""
    q = LogQueue(maxsize=1, overflow="block", block_timeout=0.05)
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    listener = aioqlog.QueueListener(q, gate)
    listener.start()
    # Fill the lane (capacity 1 + the record in the handler) and the queue.
    await in_thread(lambda: _log_many(logger, 6))
    # Dropped by the queue (the producer gave up), or by the stuck lane once
    # the listener passed it over: either way, counted.
    assert q.dropped + listener.stats.handlers[0].dropped >= 1
    gate.opened.set()
    stats = await listener.stop()
    delivered = [r for r in gate.records if r.name == logger.name]
    # A stuck lane is passed over after block_timeout: it may drop some itself.
    lane_dropped = stats.handlers[0].dropped
    assert len(delivered) + q.dropped + lane_dropped == 6
    summaries = [r.getMessage() for r in gate.records if r.name == "aioqlog"]
    assert sum(int(m.split()[2]) for m in summaries) == q.dropped + lane_dropped


@pytest.mark.anyio
async def test_block_waits_once_while_the_loops_thread_is_busy_not_once_per_record(
    logger: logging.Logger,
) -> None:
    """Under "block", a loop whose thread is busy in a long call costs one wait, then drops.

    The loop's thread joins a thread that logs past the bound: no record can
    be taken meanwhile. One wait of *block_timeout* finds the handlers
    handling nothing; the records after it are dropped (counted) at once, not
    each after a wait of its own. Once the handlers move again, a thread
    that finds the queue full waits again.
    """
    q = LogQueue(maxsize=2, overflow="block", block_timeout=0.2)
    logger.addHandler(aioqlog.QueueHandler(q))
    waits: list[bool] = []
    wait_for_room = q._wait_for_room

    def counted() -> bool:
        room = wait_for_room()
        waits.append(room)
        return room

    q._wait_for_room = counted  # type: ignore[method-assign]
    one, two = Recorder(), Recorder()  # two handlers: the records go through the loop

    def logs_while_the_loop_waits_for_it(count: int) -> None:
        producer = threading.Thread(target=_log_many, args=(logger, count))
        producer.start()
        producer.join()  # on the loop's thread: nothing is taken meanwhile

    async with aioqlog.QueueListener(q, one, two):
        await anyio.lowlevel.checkpoint()
        logs_while_the_loop_waits_for_it(10)
        assert waits == [False], waits  # one wait, gave up; then drops without waiting
        assert q.dropped == 8

        def mine(handler: Recorder) -> int:
            return [r.name for r in handler.records].count(logger.name)

        def both_handled_two() -> bool:
            return one.wait_until(lambda: mine(one) == 2) and two.wait_until(lambda: mine(two) == 2)

        assert await in_thread(both_handled_two)
        logs_while_the_loop_waits_for_it(3)
        assert waits == [False, False], waits  # the handlers had moved: waited again
    assert q.dropped == 9
    assert [r.getMessage() for r in one.records if r.name == logger.name] == [
        "r0",
        "r1",
        "r0",
        "r1",
    ]


def _counting_loop_factory(
    base: Callable[[], asyncio.AbstractEventLoop],
) -> tuple[Callable[[], asyncio.AbstractEventLoop], list[int]]:
    """Wrap a loop class so calls to call_soon_threadsafe are counted."""
    calls = [0]
    cls = type(base())

    class Counting(cls):  # type: ignore[valid-type,misc]
        def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return super().call_soon_threadsafe(*args, **kwargs)

    return Counting, calls


def test_a_burst_costs_one_cross_thread_wake_up(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """1000 records logged from threads while the listener's task sleeps wake it once.

    It counts asyncio's ``call_soon_threadsafe``, so it runs on asyncio and uvloop only.
    """
    factory, calls = _counting_loop_factory(loop_factory)
    log = logging.getLogger("aioqlog.tests.burst")
    log.propagate = False
    log.setLevel(logging.INFO)
    q = LogQueue()
    handler = aioqlog.QueueHandler(q)
    log.addHandler(handler)
    rec = Recorder()

    async def main() -> int:
        async with OnTheLoop(q, rec):
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the consumer is parked now
            assert q._parked, "the consumer should be parked"
            before = calls[0]

            def burst() -> None:
                for i in range(250):
                    log.info("r%d", i)

            threads = [threading.Thread(target=burst) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()  # deliberately holds the loop: the consumer cannot wake yet
            wakes = calls[0] - before
            await rec.arrived(1000)
        return wakes

    try:
        assert run(main(), factory) == 1
    finally:
        log.removeHandler(handler)


def test_a_burst_reaches_a_lone_sync_handler_without_waking_the_loop(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """1000 records from four threads reach a lone sync handler with no call into the loop."""
    factory, calls = _counting_loop_factory(loop_factory)
    log = logging.getLogger("aioqlog.tests.one_hop_burst")
    log.propagate = False
    log.setLevel(logging.INFO)
    q = LogQueue()
    q._tick = None  # no safety net: the hand-off alone must deliver
    handler = aioqlog.QueueHandler(q)
    log.addHandler(handler)
    rec = Recorder()

    async def main() -> int:
        async with aioqlog.QueueListener(q, rec):
            await asyncio.sleep(0)  # the listener's task starts
            before = calls[0]

            def burst() -> None:
                for i in range(250):
                    log.info("r%d", i)

            threads = [threading.Thread(target=burst) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()  # holds the loop: only the handler's worker can deliver
            assert rec.wait_for(1000), f"{len(rec.records)} of 1000 delivered"
            wakes = calls[0] - before
        return wakes

    try:
        assert run(main(), factory) == 0
    finally:
        log.removeHandler(handler)


class _RacingQueue(LogQueue):
    """A queue that, right after one empty take, has another thread put a record.

    That is the dangerous instant for both hand-offs: the taker has just seen
    an empty queue and is about to park (consumer) or release the delivery
    right (a logging thread delivering in the caller).
    """

    def __init__(self) -> None:
        super().__init__()
        self._tick = None  # no safety net: the hand-off alone must deliver
        self.inject: logging.LogRecord | None = None
        self.injected = threading.Event()

    def _take(self, limit: int) -> list[tuple[logging.LogRecord, Any]]:
        batch = super()._take(limit)
        record = self.inject
        if not batch and record is not None:
            self.inject = None
            t = threading.Thread(target=self.put_nowait, args=(record,))
            t.start()
            t.join()
            self.injected.set()
        return batch


@pytest.mark.anyio
async def test_consumer_rechecks_after_announcing_its_park() -> None:
    """A record put between the consumer's empty take and its park is still delivered."""
    q = _RacingQueue()
    rec = Recorder()
    async with aioqlog.QueueListener(q, rec):
        await anyio.lowlevel.checkpoint()
        q.inject = _record(1)
        q.put_nowait(_record(0))  # wakes the consumer; its next empty take injects r1
        await rec.arrived(2)
    assert rec.messages() == ["r0", "r1"]


def test_idle_delivery_rechecks_after_releasing_the_right() -> None:
    """A record put just as the thread delivering in the caller finds the queue empty.

    The holder of the delivery right re-checks after releasing it, and delivers.
    """
    q = _RacingQueue()
    rec = Recorder()
    aioqlog.QueueListener(q, rec)  # not started: records are delivered in the caller
    q.inject = _record(1)
    q.put_nowait(_record(0))
    assert q.injected.is_set()
    assert rec.messages() == ["r0", "r1"]


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("served", [True, False], ids=["served", "idle"])
@pytest.mark.anyio
async def test_no_wake_up_is_lost_between_bursts(logger: logging.Logger, served: bool) -> None:
    """Lock-step rounds of tiny bursts; each round must arrive before the next begins.

    No later record can rescue a stranded one (each round waits for the last),
    the safety tick is off, and threads switch every microsecond. Served: a
    consumer (or lane worker) that parks without re-checking, or a producer
    that misses the parked token, stalls a round. Idle: a thread that releases
    the delivery right without re-checking strands a record.
    """
    threads, rounds = 8, 400
    q = LogQueue()
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    stalled = threading.Event()
    sent = [0]
    sent_lock = threading.Lock()

    def round_done() -> None:
        with sent_lock:
            expected = sent[0]
        if not rec.wait_for(expected, timeout=5.0):
            stalled.set()

    barrier = threading.Barrier(threads, action=round_done)

    def producer(index: int) -> None:
        rng = random.Random(index)
        for _ in range(rounds):
            n = rng.randint(1, 2)
            with sent_lock:
                sent[0] += n
            for _ in range(n):
                logger.info("%d", index)
            barrier.wait()
            if stalled.is_set():
                return

    listener = aioqlog.QueueListener(q, rec)
    if served:
        listener.start()
    await in_thread(lambda: _run_all(producer, threads))
    assert not stalled.is_set(), "a round's records were stranded: a wake-up was lost"
    await listener.stop()
    assert len(rec.records) == sent[0]
    assert q._rescues == 0


def _run_all(target: Callable[[int], None], count: int) -> None:
    workers = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


@pytest.mark.slow
@pytest.mark.parametrize("overflow", ["drop_new", "drop_old", "block"])
@pytest.mark.anyio
async def test_no_wake_up_is_lost_under_tiny_bursts(logger: logging.Logger, overflow: str) -> None:
    """Many threads in lock-step tiny bursts: every record arrives with no safety net.

    The safety tick is disabled: a lost wake-up would strand records, and the
    wait for them (before any stop() could sweep them up) would stall.
    """
    threads, rounds = 16, 300
    q = LogQueue(maxsize=64, overflow=overflow)  # type: ignore[arg-type]
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)
    listener.start()
    barrier = threading.Barrier(threads)
    produced = [0] * threads

    def producer(index: int) -> None:
        rng = random.Random(index)
        seq = 0
        for _ in range(rounds):
            barrier.wait()
            for _ in range(rng.randint(1, 3)):
                logger.info("%d %d", index, seq)
                seq += 1
        produced[index] = seq

    workers = [threading.Thread(target=producer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    # The loop thread produces too, in bursts of its own.
    loop_seq = 0
    while any(w.is_alive() for w in workers):
        for _ in range(3):
            logger.info("%d %d", threads, loop_seq)
            loop_seq += 1
        await anyio.sleep(0.001)
    total = sum(produced) + loop_seq

    def dropped() -> int:  # by the queue, or by the handler's lane when it fell behind
        return q.dropped + listener.stats.handlers[0].dropped

    def delivered() -> list[logging.LogRecord]:
        return [r for r in rec.records if r.name == logger.name]

    def all_accounted() -> bool:
        with rec._changed:
            return rec._changed.wait_for(lambda: len(delivered()) + dropped() == total, STALL)

    # Every record is delivered or counted as dropped, before any stop() sweeps up.
    if not await anyio.to_thread.run_sync(all_accounted):
        seen = [_origin(r) for r in delivered()]
        dupes = len(seen) - len(set(seen))
        raise AssertionError(
            f"{total - dropped() - len(delivered())} records stranded; {dupes} delivered twice; "
            f"queue dropped {q.dropped}, lane dropped {dropped() - q.dropped}, "
            f"stats {listener.stats}"
        )
    await bounded(listener.stop())
    assert len(delivered()) + dropped() == total
    assert q._rescues == 0
    if overflow == "block":
        # Under "block" only the loop thread may drop (threads wait for room).
        assert dropped() <= loop_seq
    last: dict[int, int] = {}
    for record in delivered():
        index, seq = _origin(record)
        assert seq > last.get(index, -1), "a thread's records arrived out of order"
        last[index] = seq


@pytest.mark.anyio
async def test_no_record_lost_while_no_listener_runs(logger: logging.Logger) -> None:
    """Idle queue: 8 threads log at once; each record is handled once, in thread order."""
    q = LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    aioqlog.QueueListener(q, rec)  # never started: records are handled in the caller
    barrier = threading.Barrier(8)

    def producer(index: int) -> None:
        barrier.wait()
        for seq in range(500):
            logger.info("%d %d", index, seq)

    workers = [threading.Thread(target=producer, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(STALL)
    # A thread delivers what was queued when it began; what the others queued
    # meanwhile, a helper thread delivers.
    assert rec.wait_for(4000)
    assert len(rec.records) == 4000
    last: dict[int, int] = {}
    for record in rec.records:
        index, seq = _origin(record)
        assert seq == last.get(index, -1) + 1
        last[index] = seq


# asyncio.run's ending, on asyncio and uvloop; trio's run ending is in tests/test_trio.py.
def test_records_after_the_loop_closed_are_handled_in_the_caller(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], logger: logging.Logger
) -> None:
    """asyncio.run ends without stop(): later records, from any thread, still arrive."""
    q = LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)

    async def main() -> None:
        listener.start()
        logger.info("inside")

    run(main(), loop_factory)
    assert not listener.running
    logger.info("after, main thread")
    t = threading.Thread(target=lambda: logger.info("after, other thread"))
    t.start()
    t.join()
    assert rec.messages() == ["inside", "after, main thread", "after, other thread"]


# loop.close() under a pending task is asyncio's: a trio run has no loop to close.
def test_a_loop_closed_under_a_parked_listener_is_noticed(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], logger: logging.Logger
) -> None:
    """The loop is closed with the listener's task still parked inside it.

    The next record from a thread finds the loop gone and takes the queue back.
    """
    q = LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)
    loop = loop_factory()

    async def main(listener: aioqlog.QueueListener) -> None:
        listener.start()
        logger.info("inside")
        await rec.arrived(1)

    loop.run_until_complete(main(listener))
    loop.close()  # the listener's task is still pending inside it
    t = threading.Thread(target=lambda: logger.info("after close"))
    t.start()
    t.join(STALL)
    # The handler's lane thread outlives the loop and delivers it.
    assert rec.wait_for(2)
    assert rec.messages() == ["inside", "after close"]
    assert not listener.running
    # asyncio reports the task the closed loop abandoned ("Task was destroyed but
    # it is pending!") when it is collected: let that happen here, where root's
    # handlers are the test run's own, not during a later test.
    task = listener._run_state.task
    assert task is not None
    abandoned = weakref.ref(task)
    logger.handlers.clear()
    del listener, q, task
    gc.collect()
    # Nothing of aioqlog's (the lane's worker, still winding down, included)
    # keeps the abandoned task alive past this point.
    assert abandoned() is None


# loop.close() under a pending task is asyncio's: a trio run has no loop to close.
def test_a_loop_closed_between_two_batches_hands_the_queue_back_once_it_fills(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], logger: logging.Logger
) -> None:
    """The loop closes while the listener's task is between batches, not parked.

    No producer can notice that at its put (there is no token to wake); once
    the queue is full, the next put finds the loop closed, takes the queue
    back and delivers in the caller: nothing waits in the queue, and every
    record is delivered in order or counted (the lanes, still draining, are
    bounded: a burst from the caller can outrun their workers).
    """
    q = LogQueue(maxsize=100)
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec, Recorder())  # two handlers: the loop's path
    loop = loop_factory()

    async def main(listener: aioqlog.QueueListener) -> None:
        listener.start()  # no await: the loop stops with the task between batches
        logger.info("inside")

    loop.run_until_complete(main(listener))
    loop.close()
    for i in range(250):
        logger.info("after %d", i)
    stats = listener.stats
    assert (q.qsize(), stats.dropped) == (0, 0)  # handed back, nothing left in the queue
    lane_dropped = stats.handlers[0].dropped

    def logged() -> list[str]:
        # (A lane that dropped records says so in a summary record of its own.)
        return [m for m in rec.messages() if not m.startswith("aioqlog dropped")]

    assert rec.wait_until(lambda: len(logged()) >= 251 - lane_dropped)
    expected = ["inside"] + [f"after {i}" for i in range(250)]
    got = logged()
    assert got == [m for m in expected if m in set(got)]  # in order, each once
    assert len(got) + lane_dropped == 251
    logger.handlers.clear()
    del listener, q
    gc.collect()  # the task the closed loop abandoned, here (see the test above)


def test_a_stop_mark_made_during_a_threads_take_leaves_nothing_phantom() -> None:
    """A mark that counted a taking thread's batch twice never outlasts an empty queue.

    A consumer thread counts its batch as taken before popping it; a stop
    marked in between counts those records twice. Nothing may then be "left
    before the stop" once the queue is empty: the listener would wait for
    records that do not exist (for ever, with no shutdown timeout).
    """
    q = aioqlog.LogQueue()
    q._right.clear()  # as while a consumer holds the delivery right
    for i in range(8):
        q.put_nowait(logging.LogRecord("t", logging.INFO, __file__, 1, "r %d", (i,), None))
    q._taken += 5  # a consumer thread counted a batch of 5, not popped yet ...
    q._mark_stop()  # ... when the loop marked the stop
    for _ in range(5):
        q._items.popleft()  # the thread pops its batch
    assert q._left_before_stop() == 3
    assert len(q._take(3)) == 3
    assert q._left_before_stop() == 0
