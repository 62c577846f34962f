"""Load: 16 threads and the loop log in random bursts; every record is accounted for.

Under each overflow policy, for each handler: the records it received plus the
records the queue dropped plus the records its lane dropped equal the records
produced, exactly; each thread's records arrive in the order they were logged;
the drop summaries the handlers receive add up to the counted drops; and
``stop()`` returns. ``AIOQLOG_LOAD_RECORDS`` sets the records per thread
(50,000 by default).
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time

import anyio.lowlevel
import pytest
from conftest import ANYIO_BACKENDS
from support import STALL, bounded, in_thread, run_on

import aioqlog

THREADS = 16
PER_THREAD = int(os.environ.get("AIOQLOG_LOAD_RECORDS", "50000"))
LOOP_ID = THREADS  # the producer id of the records logged on the loop
#: "Did not stall": the whole run takes seconds; this bound is minutes.
LOAD_STALL = 10 * STALL

_QUEUE_SUMMARY = re.compile(r"aioqlog dropped (\d+) records: the queue was full")
_LANE_SUMMARY = re.compile(r"aioqlog dropped (\d+) records for this handler")


class Tally(logging.Handler):
    """Keeps (producer, sequence) of each record, and the drop summaries it is told.

    With *stall_every*, it stalls a little every that many records, so its lane
    backs up and overflows while the other handler keeps up.
    """

    def __init__(self, stall_every: int = 0) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self.queue_drops = 0
        self.lane_drops = 0
        self.stall_every = stall_every

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "aioqlog":
            message = record.getMessage()
            if match := _QUEUE_SUMMARY.match(message):
                self.queue_drops += int(match[1])
            elif match := _LANE_SUMMARY.match(message):
                self.lane_drops += int(match[1])
            return
        self.seen.append(record.args)  # type: ignore[arg-type]
        if self.stall_every and len(self.seen) % self.stall_every == 0:
            time.sleep(0.002)


def _produce(logger: logging.Logger, producer: int, count: int, start: threading.Barrier) -> None:
    rng = random.Random(producer)
    start.wait(STALL)
    sent = 0
    while sent < count:
        burst = min(rng.choice((1, 10, 100, 1000, 5000)), count - sent)
        for seq in range(sent, sent + burst):
            logger.info("record %d %d", producer, seq)
        sent += burst
        time.sleep(rng.choice((0, 0, 0.0002, 0.001)))


def _check(handler: Tally, stats: aioqlog.HandlerStats, queue_dropped: int, produced: int) -> None:
    """Exact accounting and per-producer order for one handler."""
    assert len(handler.seen) + queue_dropped + stats.dropped == produced, (
        f"{len(handler.seen)} delivered + {queue_dropped} dropped by the queue + "
        f"{stats.dropped} dropped by the lane != {produced} produced"
    )
    assert stats.pending == 0
    last = [-1] * (THREADS + 1)
    for producer, seq in handler.seen:
        assert seq > last[producer], f"producer {producer}: {seq} after {last[producer]}"
        last[producer] = seq
    # Every drop was reported to the handler, in summary records.
    assert handler.queue_drops == queue_dropped
    assert handler.lane_drops == stats.dropped


def _backend_id(backend: object) -> str:
    return "uvloop" if isinstance(backend, tuple) else str(backend)


# Full size on asyncio; uvloop and trio run the same scenario at a fifth of the
# size, which keeps the suite's run time in bounds.
RUNS = [
    pytest.param(
        overflow,
        backend,
        PER_THREAD if backend == "asyncio" else PER_THREAD // 5,
        id=f"{_backend_id(backend)}-{overflow}",
    )
    for backend in ANYIO_BACKENDS
    for overflow in ("drop_new", "drop_old", "block")
]


@pytest.mark.parametrize(("overflow", "backend", "per_thread"), RUNS)
def test_sixteen_threads_and_the_loop_in_random_bursts(
    overflow: str, backend: object, per_thread: int, logger: logging.Logger
) -> None:
    """16 x per_thread records from threads plus bursts on the loop: nothing unaccounted."""
    loop_records = per_thread // 4
    # block_timeout: threads wait as long as it takes, so a drop under "block"
    # can only be the loop's.
    q = aioqlog.LogQueue(maxsize=2_000, overflow=overflow, block_timeout=STALL)  # type: ignore[arg-type]
    logger.addHandler(aioqlog.QueueHandler(q))
    fast, slow = Tally(), Tally(stall_every=2_000)
    listener = aioqlog.QueueListener(q, fast, slow)
    start = threading.Barrier(THREADS + 1)

    async def loop_producer() -> None:
        rng = random.Random(LOOP_ID)
        start.wait(STALL)
        sent = 0
        while sent < loop_records:
            burst = min(rng.choice((1, 50, 500)), loop_records - sent)
            for seq in range(sent, sent + burst):
                logger.info("record %d %d", LOOP_ID, seq)
            sent += burst
            await anyio.lowlevel.checkpoint()

    async def main() -> aioqlog.ListenerStats:
        listener.start()
        threads = [
            threading.Thread(target=_produce, args=(logger, i, per_thread, start))
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        await loop_producer()

        def join() -> None:
            for thread in threads:
                thread.join()

        await in_thread(join, timeout=LOAD_STALL)
        return await bounded(listener.stop())

    started = time.monotonic()
    stats = run_on(backend, main)
    assert time.monotonic() - started < LOAD_STALL
    produced = THREADS * per_thread + loop_records
    # drop_old accepts every record and evicts; the others refuse at the door.
    refused = 0 if overflow == "drop_old" else q.dropped
    assert stats.enqueued + refused == produced
    assert stats.queue_depth == 0
    _check(fast, stats.handlers[0], q.dropped, produced)
    _check(slow, stats.handlers[1], q.dropped, produced)
    if overflow != "block":
        assert q.dropped > 0  # the accounting above was put to the test
    if overflow == "block":
        # Threads waited for room (the loop never waits, it drops), and the
        # listener waited for room in every lane.
        assert q.dropped <= loop_records
        assert stats.handlers[0].dropped == stats.handlers[1].dropped == 0
