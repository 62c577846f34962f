"""Producer threads: 1, 4 and 16 threads logging at once into one FileHandler.

The threads wait on one event, log their share of N records as fast as they
can, and the clock stops when the file holds every line: aioqlog's listener
runs on the event loop of the main thread, the stdlib's ``QueueListener`` in
its own thread. Both queues hold every record (no drops), so the figure is the
speed of the whole path, producers and consumer together.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import aioqlog
from benchmarks._harness import Table, lost_lines, paired
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger
from benchmarks.throughput import count_lines, file_handler

#: The thread counts measured.
THREADS = (1, 4, 16)


async def _race(logger: logging.Logger, threads: int, each: int) -> None:
    """Run *threads* producer threads of *each* records; return when all are done."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    go = threading.Event()
    left = [threads]
    lock = threading.Lock()

    def producer() -> None:
        go.wait()
        for i in range(each):
            logger.info(MESSAGE, ARG, i)
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            loop.call_soon_threadsafe(finished.set_result, None)

    workers = [threading.Thread(target=producer, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    go.set()
    await finished
    for w in workers:
        w.join()


async def with_aioqlog(path: Path, threads: int, n: int) -> float:
    handler = file_handler(path)
    q = aioqlog.LogQueue(maxsize=n + 1)
    logger = fresh_logger("bench.threads.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    listener.start()
    await asyncio.sleep(0)  # the listener parks, as in a running service
    t0 = time.perf_counter()
    await _race(logger, threads, n // threads)
    await listener.stop()
    handler.close()
    return time.perf_counter() - t0


async def with_stdlib(path: Path, threads: int, n: int) -> float:
    handler = file_handler(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.threads.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    t0 = time.perf_counter()
    await _race(logger, threads, n // threads)
    listener.stop()
    handler.close()
    return time.perf_counter() - t0


VARIANTS: dict[str, Callable[[Path, int, int], Awaitable[float]]] = {
    "stdlib queue": with_stdlib,
    "aioqlog": with_aioqlog,
}


async def measure(loop: str, rounds: int, n: int) -> list[Table]:
    """Return one table per thread count (records/s), each of *rounds* paired rounds."""
    tables = []
    with tempfile.TemporaryDirectory(prefix="aioqlog-bench-") as tmp:
        runs = 0
        for threads in THREADS:
            total = n // threads * threads
            written: dict[str, list[int]] = {name: [] for name in VARIANTS}

            async def once(
                name: str,
                run: Callable[[Path, int, int], Awaitable[float]],
                threads: int,
                total: int,
                written: dict[str, list[int]],
            ) -> float:
                nonlocal runs
                runs += 1
                path = Path(tmp) / f"run-{runs}.log"
                elapsed = await run(path, threads, n)
                written[name].append(count_lines(path))
                path.unlink(missing_ok=True)
                return total / elapsed

            samples = await paired(
                {
                    name: partial(once, name, run, threads, total, written)
                    for name, run in VARIANTS.items()
                },
                rounds,
                f"threads_{threads}/{loop}/",
            )
            notes = [f"{threads} thread(s) x {total // threads} records, FileHandler"]
            notes += lost_lines(written, total)
            tables.append(
                Table(
                    scenario=f"threads_{threads}",
                    loop=loop,
                    title=f"{threads} producer thread(s) to a FileHandler",
                    unit="records/s",
                    baseline="stdlib queue",
                    samples=samples,
                    better="higher",
                    notes=notes,
                    extra={"threads": threads, "records": total, "lines_written": written},
                )
            )
    return tables
