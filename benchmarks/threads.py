"""Producer threads: 1, 4 and 16 threads logging at once into one FileHandler.

The threads wait on one event, log their share of N records as fast as they
can, and the clock stops when the file holds every line: aioqlog's listener
runs on the event loop of the main thread, the stdlib's ``QueueListener`` in
its own thread; ``direct`` attaches the handler to the logger, so each thread
writes under the handler's lock. Both queues hold every record (no drops), so
the figure is the speed of the whole path, producers and consumer together.
Beside it, the process's CPU time (every thread) per record.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import tempfile
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import aioqlog
from benchmarks._harness import Clock, Table, clocked, lost_lines, paired
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


async def direct(path: Path, threads: int, n: int) -> Clock:
    handler = file_handler(path)
    logger = fresh_logger("bench.threads.direct", handler)
    with clocked() as clock:
        await _race(logger, threads, n // threads)
        handler.close()
    return clock


async def with_aioqlog(path: Path, threads: int, n: int) -> Clock:
    handler = file_handler(path)
    q = aioqlog.LogQueue(maxsize=n + 1)
    logger = fresh_logger("bench.threads.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    listener.start()
    await asyncio.sleep(0)  # the listener parks, as in a running service
    with clocked() as clock:
        await _race(logger, threads, n // threads)
        await listener.stop()
        handler.close()
    return clock


async def with_stdlib(path: Path, threads: int, n: int) -> Clock:
    handler = file_handler(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.threads.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    with clocked() as clock:
        await _race(logger, threads, n // threads)
        listener.stop()
        handler.close()
    return clock


VARIANTS: dict[str, Callable[[Path, int, int], Awaitable[Clock]]] = {
    "stdlib queue": with_stdlib,
    "direct": direct,
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
            cpu_us: dict[str, list[float]] = {name: [] for name in VARIANTS}

            async def once(
                name: str,
                run: Callable[[Path, int, int], Awaitable[Clock]],
                threads: int,
                total: int,
                *,
                written: dict[str, list[int]],
                cpu_us: dict[str, list[float]],
            ) -> float:
                nonlocal runs
                runs += 1
                path = Path(tmp) / f"run-{runs}.log"
                try:
                    clock = await run(path, threads, n)
                except BaseException:
                    cpu_us[name].append(float("nan"))
                    raise
                finally:
                    written[name].append(count_lines(path))
                    path.unlink(missing_ok=True)
                cpu_us[name].append(clock.cpu / total * 1e6)
                return total / clock.wall

            samples = await paired(
                {
                    name: partial(once, name, run, threads, total, written=written, cpu_us=cpu_us)
                    for name, run in VARIANTS.items()
                },
                rounds,
                f"threads_{threads}/{loop}/",
            )
            notes = [
                f"{threads} thread(s) x {total // threads:,} records, FileHandler; "
                "garbage collector on",
                "CPU: the process's CPU time (every thread, user + system) per record; "
                "ratios to direct handling, within each round",
            ]
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
                    extra={
                        "threads": threads,
                        "records": total,
                        "lines_written": written,
                        "cpu_us": cpu_us,
                        "cpu_baseline": "direct",
                        "also_against": "direct",
                    },
                )
            )
    return tables
