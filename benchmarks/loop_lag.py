"""Loop lag while 400 records/s go to a handler that blocks 10 ms per record.

A ticker coroutine sleeps 1 ms at a time and records how late it wakes: that
lateness is what every request handled by the loop waits on top of its own
work. Meanwhile a producer coroutine logs 400 records per second to a
``logging.Handler`` whose ``emit`` blocks for 10 ms (as a network handler does
on a slow server), for the measured window. The handler is 4x too slow for
the rate: behind a queue, records back up (and the queue's bound decides
what is kept); attached directly, the loop itself is blocked. When the window
closes the handler stops blocking, so shutting down is quick and not timed.

* ``no logging``: the same producer, which logs nothing (the loop's own floor).
* ``aioqlog``: ``aioqlog.QueueHandler`` + ``QueueListener`` (the handler runs
  in the listener's worker thread).
* ``stdlib queue``: ``logging.handlers.QueueHandler`` + ``QueueListener``.
* ``direct``: the handler attached to the logger.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import aioqlog
from benchmarks._harness import Table, median, paired, percentile
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger

RATE = 400  # records per second
BLOCK = 0.010  # seconds each record blocks the handler
TICK = 0.001  # the ticker's sleep


class Blocking(logging.Handler):
    """A handler whose ``emit`` blocks ``BLOCK`` seconds while ``live`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.live = True
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record* and block for ``BLOCK`` seconds (while live)."""
        self.format(record)
        self.count += 1
        if self.live:
            time.sleep(BLOCK)


Setup = Callable[[Blocking], AbstractAsyncContextManager[Callable[[str, int], Any]]]


@asynccontextmanager
async def no_logging(handler: Blocking) -> Any:
    yield lambda s, i: None


@asynccontextmanager
async def direct(handler: Blocking) -> Any:
    logger = fresh_logger("bench.lag.direct", handler)
    yield lambda s, i: logger.info(MESSAGE, s, i)


@asynccontextmanager
async def with_aioqlog(handler: Blocking) -> Any:
    q = aioqlog.LogQueue()
    logger = fresh_logger("bench.lag.aioqlog", aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler):
        yield lambda s, i: logger.info(MESSAGE, s, i)
        handler.live = False


@asynccontextmanager
async def stdlib_queue(handler: Blocking) -> Any:
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.lag.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    try:
        yield lambda s, i: logger.info(MESSAGE, s, i)
    finally:
        handler.live = False
        listener.stop()


VARIANTS: dict[str, Setup] = {
    "no logging": no_logging,
    "aioqlog": with_aioqlog,
    "stdlib queue": stdlib_queue,
    "direct": direct,
}


async def lag_run(setup: Setup, seconds: float, lags: list[float]) -> float:
    """Run one window of *seconds*; append each tick's lag (ms) to *lags*; return p99."""
    loop = asyncio.get_running_loop()
    handler = Blocking()
    mine: list[float] = []
    async with setup(handler) as log:
        end = loop.time() + seconds

        async def ticker() -> None:
            while loop.time() < end:
                t0 = time.perf_counter()
                await asyncio.sleep(TICK)
                mine.append(max(0.0, (time.perf_counter() - t0 - TICK) * 1000))

        async def producer() -> None:
            next_at = loop.time()
            i = 0
            while next_at < end:
                log(ARG, i)
                i += 1
                next_at += 1 / RATE
                await asyncio.sleep(max(0.0, next_at - loop.time()))

        await asyncio.gather(ticker(), producer())
        handler.live = False
    lags.extend(mine)
    return percentile(mine, 99)


async def measure(loop: str, rounds: int, seconds: float) -> Table:
    """Measure every variant for *rounds* windows of *seconds*; p99 lag per window."""
    pooled: dict[str, list[float]] = {name: [] for name in VARIANTS}
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}

    async def once(name: str) -> float:
        before = len(pooled[name])
        p99 = await lag_run(VARIANTS[name], seconds, pooled[name])
        window = pooled[name][before:]
        per_round[name].append((percentile(window, 50), max(window, default=float("nan"))))
        return p99

    runs: dict[str, Callable[[], Awaitable[float]]] = {
        name: partial(once, name) for name in VARIANTS
    }
    samples = await paired(runs, rounds, f"loop_lag/{loop}/")
    return Table(
        scenario="loop_lag",
        loop=loop,
        title="Loop lag (p99) while a handler blocks 10 ms per record at 400 records/s",
        unit="ms p99",
        baseline="no logging",
        samples=samples,
        better="lower",
        notes=[
            f"{seconds:g} s windows; a ticker sleeps {TICK * 1000:g} ms at a time and "
            f"records how late it wakes",
        ],
        extra={
            "p50": {name: median([r[0] for r in rows]) for name, rows in per_round.items()},
            "max": {name: median([r[1] for r in rows]) for name, rows in per_round.items()},
            # The pooled distribution, as 201 quantiles (0, 0.5, ..., 100): for the plot.
            "quantiles": {
                name: [round(percentile(values, q / 2), 4) for q in range(201)]
                for name, values in pooled.items()
            },
        },
    )
