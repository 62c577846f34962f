"""Drain time: how long ``stop()`` takes to write a backlog of queued records.

N records are logged from the loop before any listener exists, so all of them
wait in the queue; the clock then runs until the listener, started and stopped
at once, has had every line written to a ``FileHandler``. Both listeners are
started after the backlog is queued: started before, their workers would drain
it while the records are logged. The clock starts before aioqlog's listener is
made, since making it delivers the records that waited for it, in the thread
that makes it; the stdlib's listener is made beforehand, since it takes
nothing until it starts.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import aioqlog
from benchmarks._harness import Table, lost_lines, paired
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger
from benchmarks.throughput import count_lines, file_handler


async def with_aioqlog(path: Path, n: int) -> float:
    handler = file_handler(path)
    q = aioqlog.LogQueue(maxsize=n)
    logger = fresh_logger("bench.drain.aioqlog", aioqlog.QueueHandler(q))
    for i in range(n):
        logger.info(MESSAGE, ARG, i)  # no listener yet: kept for the first one
    assert q.qsize() == n, q
    # Making the listener delivers what waited, in this thread: timed too.
    t0 = time.perf_counter()
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    listener.start()
    await listener.stop()
    elapsed = time.perf_counter() - t0
    handler.close()
    return elapsed


async def with_stdlib(path: Path, n: int) -> float:
    handler = file_handler(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.drain.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    for i in range(n):
        logger.info(MESSAGE, ARG, i)
    t0 = time.perf_counter()
    listener.start()
    listener.stop()
    elapsed = time.perf_counter() - t0
    handler.close()
    return elapsed


VARIANTS: dict[str, Callable[[Path, int], Awaitable[float]]] = {
    "stdlib queue": with_stdlib,
    "aioqlog": with_aioqlog,
}


async def measure(loop: str, rounds: int, n: int) -> Table:
    """Return the seconds ``stop()`` takes to drain *n* queued records, per variant."""
    written: dict[str, list[int]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="aioqlog-bench-") as tmp:
        runs = 0

        async def once(name: str) -> float:
            nonlocal runs
            runs += 1
            path = Path(tmp) / f"run-{runs}.log"
            elapsed = await VARIANTS[name](path, n)
            written[name].append(count_lines(path))
            path.unlink(missing_ok=True)
            return elapsed

        samples = await paired(
            {name: partial(once, name) for name in VARIANTS}, rounds, f"drain/{loop}/"
        )
    notes = [
        f"{n:,} records queued, then a listener made, started and stopped; FileHandler with "
        "the benchmarks' formatter; aioqlog's clock includes making its listener, which "
        "delivers the records that waited, in the thread that makes it"
    ]
    notes += lost_lines(written, n)
    return Table(
        scenario="drain",
        loop=loop,
        title=f"Time to deliver {n:,} queued records, from making the listener to stop()",
        unit="s",
        baseline="stdlib queue",
        samples=samples,
        better="lower",
        notes=notes,
        extra={"records": n, "lines_written": written},
    )
