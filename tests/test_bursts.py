"""Bursts with the defaults: the loop and two threads outrun a file handler; nothing is lost."""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from support import STALL, Gate, Recorder, in_thread

import aioqlog
from aioqlog._bridge import BATCH_LIMIT, PACE_STEP, Pace


@pytest.fixture
def basic_config(tmp_path: Path) -> Iterator[Path]:
    """logging.basicConfig(filename=...) on the root logger, as a user's script has it."""
    path = tmp_path / "app.log"
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield path
    handler.close()


def _burst(tag: str, count: int) -> None:
    log = logging.getLogger("burst")
    for i in range(count):
        log.info("%s %d", tag, i)


def _lines_by_tag(path: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        words = line.rsplit(": ", 1)[-1].split()
        assert len(words) == 2, "not burst lines: " + repr(
            [x for x in path.read_text().splitlines() if "burst:" not in x][:10]
        )
        tag, number = words
        seen.setdefault(tag, []).append(int(number))
    return seen


@pytest.mark.parametrize("n", [5_000, 20_000])
@pytest.mark.anyio
async def test_a_burst_from_the_loop_and_two_threads_loses_nothing_with_install(
    basic_config: Path, n: int
) -> None:
    """The loop logs N without yielding, then two threads log N each: all 3N lines written."""
    async with aioqlog.install() as listener:
        _burst("loop", n)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t1", n)
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t2", n)
    stats = listener.stats
    assert (stats.dropped, stats.handlers[0].dropped) == (0, 0)
    assert _lines_by_tag(basic_config) == {tag: list(range(n)) for tag in ("loop", "t1", "t2")}


@pytest.mark.anyio
async def test_a_burst_loses_nothing_through_a_plain_pair(basic_config: Path) -> None:
    """The same burst through a QueueHandler + QueueListener made by hand, with defaults."""
    n = 20_000
    root = logging.getLogger()
    (handler,) = root.handlers
    q = aioqlog.LogQueue()
    root.handlers[:] = [aioqlog.QueueHandler(q)]
    async with aioqlog.QueueListener(q, handler) as listener:
        _burst("loop", n)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t1", n)
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t2", n)
    assert listener.stats.dropped == 0
    assert _lines_by_tag(basic_config) == {tag: list(range(n)) for tag in ("loop", "t1", "t2")}


async def _serve_busily(count: int, burst: int = 50) -> None:
    """Log *count* records from the loop as a busy service does: a *burst*, then a turn.

    Each turn polls for I/O, dropping the GIL for a moment and taking it
    straight back: on its own, that keeps a thread waiting for the GIL waiting.
    """
    log = logging.getLogger("burst")
    for start in range(0, count, burst):
        for i in range(start, min(count, start + burst)):
            log.info("loop %d", i)
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("handlers", "rotating", "burst"),
    [(1, False, 50), (2, False, 50), (2, False, 500), (1, True, 50), (2, True, 50)],
    ids=["one hop", "lanes", "lanes, bursts of 500", "one hop, rotating", "lanes, rotating"],
)
@pytest.mark.anyio
async def test_a_loop_that_stays_busy_does_not_starve_the_handler_threads(
    basic_config: Path, handlers: int, rotating: bool, burst: int
) -> None:
    """A loop busy logging five times the queue's bound writes every line.

    The handlers' threads need the GIL to format; the log calls leave it to
    them when they fall behind (see ``Pace``), instead of filling the queue
    (one hop) or the lanes (two handlers), and dropping, until the loop idles.
    A rotating file's handler decides its rollovers from a size kept through
    each batch, not from a system call per record, each of which would leave
    the GIL to the loop. Bursts longer than the listener's batch: its task
    takes more in a turn.
    """
    n = 40_000
    root = logging.getLogger()
    (handler,) = root.handlers
    if rotating:
        handler.close()
        handler = logging.handlers.RotatingFileHandler(basic_config, maxBytes=1 << 30)
        handler.setFormatter(root.handlers[0].formatter)
    extra = logging.FileHandler(basic_config.with_name("extra.log"))
    extra.setFormatter(handler.formatter)
    q = aioqlog.LogQueue(maxsize=n // 5)
    root.handlers[:] = [aioqlog.QueueHandler(q)]
    try:
        async with aioqlog.QueueListener(q, *[handler, extra][:handlers]) as listener:
            await _serve_busily(n, burst)
    finally:
        extra.close()
        handler.close()
    stats = listener.stats
    assert (stats.dropped, [h.dropped for h in stats.handlers]) == (0, [0] * handlers)
    assert _lines_by_tag(basic_config) == {"loop": list(range(n))}


@pytest.mark.anyio
async def test_threads_logging_flat_out_through_the_loop_lose_nothing(basic_config: Path) -> None:
    """Threads flat out, two handlers (the listener's task takes each record): all kept.

    The loop's thread needs the GIL to take records from the queue, and
    threads that never block keep it from the GIL for a switch interval each,
    in turn; without pausing for it, one at a time (see ``Pace``), they fill
    the queue to its bound and most of their records are dropped.
    """
    n, threads = 80_000, 2
    root = logging.getLogger()
    (handler,) = root.handlers
    extra = logging.FileHandler(basic_config.with_name("extra.log"))
    extra.setFormatter(handler.formatter)
    q = aioqlog.LogQueue()
    root.handlers[:] = [aioqlog.QueueHandler(q)]
    try:
        async with aioqlog.QueueListener(q, handler, extra) as listener:
            workers = [threading.Thread(target=_burst, args=(f"t{k}", n)) for k in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                await in_thread(worker.join)
    finally:
        extra.close()
        handler.close()
    stats = listener.stats
    assert (stats.dropped, [h.dropped for h in stats.handlers]) == (0, [0, 0])
    assert _lines_by_tag(basic_config) == {f"t{k}": list(range(n)) for k in range(threads)}


class _Sizing(aioqlog.QueueListener):
    """Remember the size of each batch the listener's task takes."""

    def __init__(self, queue: aioqlog.LogQueue, *handlers: logging.Handler) -> None:
        super().__init__(queue, *handlers)
        self.sizes: list[int] = []

    async def dequeue(self) -> list[tuple[logging.LogRecord, Any]]:
        batch = await super().dequeue()
        self.sizes.append(len(batch))
        return batch


@pytest.mark.anyio
async def test_threads_logging_while_the_loop_idles_get_a_batch_a_turn(
    logger: logging.Logger,
) -> None:
    """Past a batch, a turn takes what the task hands on in the loop's own working time.

    A backlog that threads logged while the loop did nothing is taken a batch
    a turn, so each turn stays short; one the loop logged itself between two
    turns is taken in larger turns, as it must be for the task to keep up.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    first, second = Recorder(), Recorder()
    listener = _Sizing(q, first, second)
    async with listener:
        logger.info("warm up")  # one batch handed on: the task knows what a record costs
        await first.arrived(1)

        def log_from_a_thread() -> None:
            for i in range(20_000):
                logger.info("t %d", i)

        thread = threading.Thread(target=log_from_a_thread)
        thread.start()
        thread.join()  # the loop's thread waits here, working on nothing
        await first.arrived(20_001)
        from_threads = list(listener.sizes)
        for i in range(20_000):
            logger.info("loop %d", i)
        await first.arrived(40_001)
    assert listener.stats.dropped == 0
    # The loop's own bookkeeping between turns (a few hundred microseconds at
    # most) leaves room for a little more than a batch; 20,000 queued records
    # would otherwise go 4,096 a turn.
    assert max(from_threads[1:]) < 4 * BATCH_LIMIT
    assert len(from_threads) > 20_000 // (4 * BATCH_LIMIT)
    assert max(listener.sizes[len(from_threads) :]) > 4 * BATCH_LIMIT


@pytest.mark.anyio
async def test_a_stuck_handler_does_not_hold_back_the_others_under_backpressure(
    logger: logging.Logger,
) -> None:
    """Under "block", one handler stuck for good does not hold back the others.

    A thread waits for room when the handlers fall behind; a handler that makes
    no progress for block_timeout while full is passed over (its records are
    dropped and counted), so the others are served and the thread goes on.
    """
    # block_timeout: the default. With 0.2 s, the run under coverage once left
    # the fine handler short of 501 records: a thread gives up on a wait (and
    # drops) after block_timeout without progress, which a stalled machine
    # can reach while nothing is stuck but the one handler.
    q = aioqlog.LogQueue(maxsize=50, overflow="block", block_timeout=1.0)
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, fine = Gate(name="stuck"), Recorder(name="fine")
    listener = aioqlog.QueueListener(q, stuck, fine)
    listener.start()
    logger.info("first")
    await in_thread(lambda: stuck.entered.wait(STALL))
    done = threading.Event()

    def produce() -> None:
        for i in range(500):
            logger.info("r%d", i)
        done.set()

    await in_thread(produce)
    assert done.is_set()
    await fine.arrived(501)
    stats = listener.stats
    assert stats.handlers[1].handled == 501
    assert stats.handlers[0].dropped > 0
    stuck.opened.set()
    await listener.stop()


def _log(logger: logging.Logger, count: int) -> None:
    for i in range(count):
        logger.info("r%d", i)


class _Slow(Recorder):
    """A recorder that takes a fixed while per record: slow, but always working."""

    def __init__(self, seconds: float, name: str | None = None) -> None:
        super().__init__(name=name)
        self.seconds = seconds

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(self.seconds)  # the handler's own work, not the test's synchronisation
        super().emit(record)


class _SlowBatches(_Slow):
    """A slow handler that takes its records in batches (``emit_batch``)."""

    def emit_batch(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            self.emit(record)


class _UnevenBatches(_SlowBatches):
    """A slow batch handler whose first record costs nothing: its first call says little."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "r0":
            Recorder.emit(self, record)
        else:
            super().emit(record)


@pytest.mark.parametrize(
    "batches", [None, _SlowBatches, _UnevenBatches], ids=["records", "batches", "uneven batches"]
)
@pytest.mark.parametrize("handlers", [1, 2])
@pytest.mark.anyio
async def test_block_drops_nothing_behind_a_slow_handler_that_keeps_working(
    handlers: int, batches: type[_Slow] | None, logger: logging.Logger
) -> None:
    """Under "block" a thread is paced by the slowest handler, however long room takes.

    The lane takes up to maxsize records at once, so the queue has room again
    only every maxsize records (0.5 s here), longer than block_timeout: the
    thread goes on waiting while the handler makes progress. A batch call
    counts as progress once it returns, so under "block" calls are kept short
    enough for a waiting thread to see progress, and grow from one record by
    doubling: a cheap first call does not make the next one long.
    """
    # block_timeout 0.4 s: the lane looks stuck after 0.2 s without a call
    # returning, well past a pause of the whole process (a full collection).
    q = aioqlog.LogQueue(maxsize=50, overflow="block", block_timeout=0.4)
    logger.addHandler(aioqlog.QueueHandler(q))
    slow = (batches or _Slow)(0.01, name="slow")
    others = [Recorder(name="fast")] if handlers == 2 else []
    async with aioqlog.QueueListener(q, slow, *others, shutdown_timeout=None) as listener:
        await in_thread(lambda: _log(logger, 200))
    assert q.dropped == 0
    assert slow.messages() == [f"r{i}" for i in range(200)]
    for other in others:
        assert other.messages() == [f"r{i}" for i in range(200)]
    assert listener.stats.dropped == 0


@pytest.mark.anyio
async def test_block_passes_a_stuck_handler_over_before_the_waiting_thread_gives_up(
    logger: logging.Logger,
) -> None:
    """The listener gives up on a stuck lane sooner than a thread gives up on room.

    Both waited block_timeout, so a record could be dropped from the queue,
    for every handler, just as the stuck one was passed over.
    """
    for _ in range(3):
        q = aioqlog.LogQueue(maxsize=50, overflow="block", block_timeout=0.3)
        logger.handlers.clear()
        logger.addHandler(aioqlog.QueueHandler(q))
        stuck, fine = Gate(name="stuck"), Recorder(name="fine")
        listener = aioqlog.QueueListener(q, stuck, fine)
        listener.start()
        await in_thread(lambda: _log(logger, 300))
        await fine.arrived(300)
        assert q.dropped == 0
        assert fine.messages() == [f"r{i}" for i in range(300)]
        stuck.opened.set()
        await listener.stop()


@pytest.mark.anyio
async def test_block_passes_a_lone_stuck_handler_over(logger: logging.Logger) -> None:
    """A lone handler stuck for good does not make every call from a thread wait block_timeout.

    Its records are dropped for it and counted; the thread goes on at once.
    """
    q = aioqlog.LogQueue(maxsize=20, overflow="block", block_timeout=0.2)
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck = Gate(name="stuck")
    listener = aioqlog.QueueListener(q, stuck)
    listener.start()
    logger.info("first")
    await in_thread(lambda: stuck.entered.wait(STALL))
    started = time.monotonic()
    await in_thread(lambda: _log(logger, 200))
    took = time.monotonic() - started
    # Passed over once (after half of block_timeout), not waited on per call:
    # 200 calls waiting 0.2 s each would take 40 s.
    assert took < 20 * 0.2, took
    assert q.dropped == 0
    assert listener.stats.handlers[0].dropped > 0
    stuck.opened.set()
    await listener.stop()


@pytest.mark.parametrize("served", [True, False], ids=["serving", "before its task ran"])
@pytest.mark.anyio
async def test_threads_dropping_at_a_full_queue_still_leave_the_gil_to_its_consumers(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch, served: bool
) -> None:
    """A thread that drops at a full queue checks on its consumers every ``PACE_STEP`` drops.

    While the loop's thread is busy (a process pool's forks, its threads'
    starts), it takes nothing off the queue, and threads logging flat out
    fill it, then drop. A log call that drops is several times faster than one
    that queues: without the pauses (see ``Pace``) those threads would keep
    the loop's thread from the GIL each time it lets it go, and the queue
    would stay full, dropping, for as long as they log. From ``start()`` on:
    the loop may stay busy before the listener's task first runs.
    """
    maxsize, drops = 100, 4 * PACE_STEP
    q = aioqlog.LogQueue(maxsize=maxsize)
    logger.addHandler(aioqlog.QueueHandler(q))
    checks: list[int] = []
    check = Pace.check

    def counted(pace: Pace, taken: Callable[[], int], waiting: Callable[[], int]) -> int:
        if waiting() >= maxsize:
            checks.append(q.dropped)
        return check(pace, taken, waiting)

    def flat_out() -> None:
        for _ in range(maxsize + drops):
            logger.info("flat out")

    # Two handlers: the listener's task, on the loop's thread, takes each record.
    first = Recorder()
    async with aioqlog.QueueListener(q, first, Recorder()):
        if served:
            logger.info("serving")
            await first.arrived(1)
        monkeypatch.setattr(Pace, "check", counted)
        thread = threading.Thread(target=flat_out)
        thread.start()
        thread.join(STALL)  # on the loop's thread: the queue fills, then drops
        assert not thread.is_alive()
        monkeypatch.undo()
    assert q.dropped == drops
    assert checks == list(range(PACE_STEP, drops + 1, PACE_STEP))
