"""End-to-end throughput: from the first log call until every line is in the file.

A coroutine on the loop logs N records to a ``FileHandler`` with a typical
formatter (``%(asctime)s`` and all) on a real file, the way a service does: in
bursts of ``BURST`` records with an ``await asyncio.sleep(0)`` between bursts,
the garbage collector on. The clock stops when the file holds every line (each
variant's own flush/stop/shutdown is inside the timed section). Beside the
wall clock, the process's CPU time (every thread, user and system) is divided
by the records: what logging costs the machine, not only the loop. Every
variant's file is counted afterwards: a variant that lost lines is reported.

Three tables come out of this module:

* ``throughput``: the service-like producer, every peer.
* ``throughput_tight``: a tight burst that never yields (N records logged in
  one go on the loop), direct, the stdlib pair and aioqlog.
* ``throughput_busy``: the service-like producer again, with a CPU-bound
  process spinning on another core for the whole measurement.

The variants:

* ``direct``: the ``FileHandler`` attached to the logger.
* ``stdlib queue``: ``logging.handlers.QueueHandler`` + ``QueueListener`` thread.
* ``aioqlog``: ``aioqlog.QueueHandler`` + a running ``QueueListener``.
* ``aiologger``: its ``AsyncFileHandler``; every task ``logger.info`` returns is
  awaited before ``shutdown()`` (its best case: fire-and-forget loses records).
* ``loguru enqueue``: a file sink with ``enqueue=True``; ``await complete()``.
* ``aiologging``: ``await logger.info(...)`` to its ``AsyncFileHandler``, then
  ``await manager.shutdown()``.
* ``bare queue``: not a logging library but a deque in front of a thread that
  formats with the handler's own ``format`` (``benchmarks.bare``): what a queue
  costs on this machine without aioqlog's promises, measured in the same run.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aioqlog
from benchmarks._harness import FORMAT, Clock, Table, clocked, lost_lines, paired
from benchmarks.bare import BareQueue, write_all
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger

#: A service yields to its loop between requests; the producer logs this many
#: records between two yields.
BURST = 50

#: The scenarios this module measures: producer (a burst size, or None: never
#: yields), whether a CPU-bound process spins meanwhile, and the variants.
MODES = {
    "throughput": (BURST, False),
    "throughput_tight": (None, False),
    "throughput_busy": (BURST, True),
}


def file_handler(path: Path) -> logging.FileHandler:
    """Return a ``FileHandler`` on *path* with the benchmarks' formatter."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


async def produce(log: Callable[[str, int], Any], n: int, burst: int | None) -> None:
    """Log *n* records from the loop, yielding after every *burst* (None: never)."""
    step = burst or n
    for start in range(0, n, step):
        for i in range(start, min(n, start + step)):
            log(ARG, i)
        if burst is not None:
            await asyncio.sleep(0)


async def direct(path: Path, n: int, burst: int | None) -> Clock:
    handler = file_handler(path)
    logger = fresh_logger("bench.e2e.direct", handler)
    with clocked() as clock:
        await produce(lambda s, i: logger.info(MESSAGE, s, i), n, burst)
        handler.close()
    return clock


async def stdlib_queue(path: Path, n: int, burst: int | None) -> Clock:
    handler = file_handler(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.e2e.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    with clocked() as clock:
        await produce(lambda s, i: logger.info(MESSAGE, s, i), n, burst)
        listener.stop()
        handler.close()
    return clock


async def with_aioqlog(path: Path, n: int, burst: int | None) -> Clock:
    handler = file_handler(path)
    q = aioqlog.LogQueue(maxsize=n + 1)
    logger = fresh_logger("bench.e2e.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    listener.start()
    await asyncio.sleep(0)  # the listener parks, as in a running service
    with clocked() as clock:
        await produce(lambda s, i: logger.info(MESSAGE, s, i), n, burst)
        await listener.stop()
        handler.close()
    return clock


async def with_aiologger(path: Path, n: int, burst: int | None) -> Clock:
    from aiologger import Logger  # noqa: PLC0415 - a peer, imported when measured
    from aiologger.formatters.base import Formatter  # noqa: PLC0415
    from aiologger.handlers.files import AsyncFileHandler  # noqa: PLC0415
    from aiologger.levels import LogLevel  # noqa: PLC0415

    handler = AsyncFileHandler(str(path), encoding="utf-8")
    handler.formatter = Formatter(FORMAT)
    logger = Logger(name="bench.e2e.aiologger", level=LogLevel.INFO)
    logger.add_handler(handler)
    tasks: list[Awaitable[Any]] = []
    with clocked() as clock:
        await produce(
            lambda s, i: tasks.append(
                logger.info("request %(path)s done in %(ms)d ms", {"path": s, "ms": i})
            ),
            n,
            burst,
        )
        await asyncio.gather(*tasks)
        await logger.shutdown()
    return clock


async def with_loguru(path: Path, n: int, burst: int | None) -> Clock:
    from loguru import logger  # noqa: PLC0415 - a peer, imported when measured

    logger.remove()
    fmt = "{time:YYYY-MM-DD HH:mm:ss,SSS} {level} {name}: {message}"
    sink = logger.add(path, enqueue=True, format=fmt, level="INFO", encoding="utf-8")
    with clocked() as clock:
        await produce(lambda s, i: logger.info("request {} done in {} ms", s, i), n, burst)
        await logger.complete()
        logger.remove(sink)
    return clock


async def with_aiologging(path: Path, n: int, burst: int | None) -> Clock:
    import aiologging  # noqa: PLC0415 - a peer, imported when measured
    from aiologging.handlers.file import AsyncFileHandler  # noqa: PLC0415

    manager = aiologging.AsyncLoggerManager(queue_size=n + 1)
    logger = manager.getLogger("bench.e2e.aiologging")
    logger.setLevel(logging.INFO)
    logger.addHandler(AsyncFileHandler(path, formatter=logging.Formatter(FORMAT)))
    step = burst or n
    with clocked() as clock:
        for start in range(0, n, step):
            for i in range(start, min(n, start + step)):
                await logger.info(MESSAGE, ARG, i)
            await asyncio.sleep(0)
        await manager.shutdown()
    return clock


async def bare_queue(path: Path, n: int, burst: int | None) -> Clock:
    handler = file_handler(path)
    queued = BareQueue(write_all(handler))
    logger = fresh_logger("bench.e2e.bare", queued)
    with clocked() as clock:
        await produce(lambda s, i: logger.info(MESSAGE, s, i), n, burst)
        queued.close()
        handler.close()
    return clock


Variant = Callable[[Path, int, int | None], Awaitable[Clock]]

#: The variants, in table order; the ratio column divides by "direct".
VARIANTS: dict[str, Variant] = {
    "direct": direct,
    "stdlib queue": stdlib_queue,
    "aioqlog": with_aioqlog,
    "aiologger": with_aiologger,
    "loguru enqueue": with_loguru,
    "aiologging": with_aiologging,
    "bare queue": bare_queue,
}

#: The variants of the tight-burst and busy-machine tables.
CORE = ("direct", "stdlib queue", "aioqlog", "bare queue")


@contextmanager
def cpu_hog() -> Iterator[None]:
    """Keep a CPU-bound process spinning (another core, as the OS sees fit) for the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def count_lines(path: Path) -> int:
    """Return the number of lines in *path* (0 if it does not exist)."""
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


async def measure(loop: str, rounds: int, n: int, scenario: str = "throughput") -> Table:
    """Measure *scenario*'s variants *rounds* times on the running loop (records/s, CPU)."""
    burst, busy = MODES[scenario]
    names = list(VARIANTS) if scenario == "throughput" else list(CORE)
    written: dict[str, list[int]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    gc_per_10k: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="aioqlog-bench-") as tmp:
        runs = 0

        def variant(name: str, run: Variant) -> Any:
            async def once() -> float:
                nonlocal runs
                runs += 1
                path = Path(tmp) / f"run-{runs}.log"
                try:
                    clock = await run(path, n, burst)
                except BaseException:
                    cpu_us[name].append(float("nan"))
                    gc_per_10k[name].append(float("nan"))
                    raise
                finally:
                    written[name].append(count_lines(path))
                    path.unlink(missing_ok=True)
                cpu_us[name].append(clock.cpu / n * 1e6)
                gc_per_10k[name].append(clock.collections / n * 10_000)
                return n / clock.wall

            return once

        variants = {k: variant(k, VARIANTS[k]) for k in names}
        if busy:
            with cpu_hog():
                samples = await paired(variants, rounds, f"{scenario}/{loop}/")
        else:
            samples = await paired(variants, rounds, f"{scenario}/{loop}/")
    if burst is None:
        producer = f"{n:,} records logged from a coroutine in one go, never yielding"
    else:
        producer = (
            f"{n:,} records logged from a coroutine in bursts of {burst}, "
            f"with an await asyncio.sleep(0) after each"
        )
    notes = [
        f"{producer}; garbage collector on; timed until the file holds every line",
        f'formatter "{FORMAT}" on a real file'
        + (" (loguru: its equivalent format string)" if "loguru enqueue" in names else ""),
        "CPU: the process's CPU time (every thread, user + system) per record; "
        "ratios to direct handling, within each round",
        "GC: garbage collections (every generation, every thread) per 10,000 records",
    ]
    if busy:
        notes.append("a CPU-bound process (a Python busy loop) spins throughout")
    notes += lost_lines(written, n)
    titles = {
        "throughput": "End-to-end throughput to a FileHandler (service-like producer)",
        "throughput_tight": "A tight burst that never yields, to a FileHandler",
        "throughput_busy": "End-to-end throughput with a CPU-bound process beside it",
    }
    return Table(
        scenario=scenario,
        loop=loop,
        title=titles[scenario],
        unit="records/s",
        baseline="direct",
        samples=samples,
        better="higher",
        notes=notes,
        extra={
            "lines_written": written,
            "records": n,
            "cpu_us": cpu_us,
            "cpu_baseline": "direct",
            "gc_per_10k": gc_per_10k,
            "also_against": "stdlib queue",
        },
    )
