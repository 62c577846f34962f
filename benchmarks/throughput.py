"""End-to-end throughput: from the first log call until every line is in the file.

A coroutine on the loop logs N records to a ``FileHandler`` with a typical
formatter, yielding to the loop every ``YIELD_EVERY`` records as a service
does between requests; the clock stops when the file holds every line (each
variant's own flush/stop/shutdown is inside the timed section). Every variant's
file is counted afterwards: a variant that lost lines is reported as such.

* ``direct``: the ``FileHandler`` attached to the logger.
* ``stdlib queue``: ``logging.handlers.QueueHandler`` + ``QueueListener`` thread.
* ``aioqlog``: ``aioqlog.QueueHandler`` + a running ``QueueListener``.
* ``aiologger``: its ``AsyncFileHandler``; every task ``logger.info`` returns is
  awaited before ``shutdown()`` (its best case: fire-and-forget loses records).
* ``loguru enqueue``: a file sink with ``enqueue=True``; ``await complete()``.
* ``aiologging``: ``await logger.info(...)`` to its ``AsyncFileHandler``, then
  ``await manager.shutdown()``.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioqlog
from benchmarks._harness import FORMAT, Table, lost_lines, paired
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger

#: A service yields to its loop between requests; the producer does so every
#: this many records.
YIELD_EVERY = 100


def file_handler(path: Path) -> logging.FileHandler:
    """Return a ``FileHandler`` on *path* with the benchmarks' formatter."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


async def produce(log: Callable[[str, int], Any], n: int) -> None:
    """Log *n* records from the loop, yielding every ``YIELD_EVERY``."""
    for i in range(n):
        log(ARG, i)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)


async def direct(path: Path, n: int) -> float:
    handler = file_handler(path)
    logger = fresh_logger("bench.e2e.direct", handler)
    t0 = time.perf_counter()
    await produce(lambda s, i: logger.info(MESSAGE, s, i), n)
    handler.close()
    return time.perf_counter() - t0


async def stdlib_queue(path: Path, n: int) -> float:
    handler = file_handler(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.e2e.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    t0 = time.perf_counter()
    await produce(lambda s, i: logger.info(MESSAGE, s, i), n)
    listener.stop()
    handler.close()
    return time.perf_counter() - t0


async def with_aioqlog(path: Path, n: int) -> float:
    handler = file_handler(path)
    q = aioqlog.LogQueue(maxsize=n + 1)
    logger = fresh_logger("bench.e2e.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    listener.start()
    t0 = time.perf_counter()
    await produce(lambda s, i: logger.info(MESSAGE, s, i), n)
    await listener.stop()
    handler.close()
    return time.perf_counter() - t0


async def with_aiologger(path: Path, n: int) -> float:
    from aiologger import Logger  # noqa: PLC0415 - a peer, imported when measured
    from aiologger.formatters.base import Formatter  # noqa: PLC0415
    from aiologger.handlers.files import AsyncFileHandler  # noqa: PLC0415
    from aiologger.levels import LogLevel  # noqa: PLC0415

    handler = AsyncFileHandler(str(path), encoding="utf-8")
    handler.formatter = Formatter(FORMAT)
    logger = Logger(name="bench.e2e.aiologger", level=LogLevel.INFO)
    logger.add_handler(handler)
    tasks: list[Awaitable[Any]] = []
    t0 = time.perf_counter()
    await produce(
        lambda s, i: tasks.append(
            logger.info("request %(path)s done in %(ms)d ms", {"path": s, "ms": i})
        ),
        n,
    )
    await asyncio.gather(*tasks)
    await logger.shutdown()
    return time.perf_counter() - t0


async def with_loguru(path: Path, n: int) -> float:
    from loguru import logger  # noqa: PLC0415 - a peer, imported when measured

    logger.remove()
    fmt = "{time:YYYY-MM-DD HH:mm:ss,SSS} {level} {name}: {message}"
    sink = logger.add(path, enqueue=True, format=fmt, level="INFO", encoding="utf-8")
    t0 = time.perf_counter()
    await produce(lambda s, i: logger.info("request {} done in {} ms", s, i), n)
    await logger.complete()
    logger.remove(sink)
    return time.perf_counter() - t0


async def with_aiologging(path: Path, n: int) -> float:
    import aiologging  # noqa: PLC0415 - a peer, imported when measured
    from aiologging.handlers.file import AsyncFileHandler  # noqa: PLC0415

    manager = aiologging.AsyncLoggerManager(queue_size=n + 1)
    logger = manager.getLogger("bench.e2e.aiologging")
    logger.setLevel(logging.INFO)
    logger.addHandler(AsyncFileHandler(path, formatter=logging.Formatter(FORMAT)))
    t0 = time.perf_counter()
    for i in range(n):
        await logger.info(MESSAGE, ARG, i)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    await manager.shutdown()
    return time.perf_counter() - t0


#: The variants, in table order; the ratio column divides by "stdlib queue".
VARIANTS: dict[str, Callable[[Path, int], Awaitable[float]]] = {
    "stdlib queue": stdlib_queue,
    "direct": direct,
    "aioqlog": with_aioqlog,
    "aiologger": with_aiologger,
    "loguru enqueue": with_loguru,
    "aiologging": with_aiologging,
}


def count_lines(path: Path) -> int:
    """Return the number of lines in *path* (0 if it does not exist)."""
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


async def measure(loop: str, rounds: int, n: int) -> Table:
    """Measure every variant *rounds* times on the running loop (records/s)."""
    written: dict[str, list[int]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="aioqlog-bench-") as tmp:
        runs = 0

        def variant(name: str, run: Callable[[Path, int], Awaitable[float]]) -> Any:
            async def once() -> float:
                nonlocal runs
                runs += 1
                path = Path(tmp) / f"run-{runs}.log"
                elapsed = await run(path, n)
                written[name].append(count_lines(path))
                path.unlink(missing_ok=True)
                return n / elapsed

            return once

        samples = await paired(
            {k: variant(k, v) for k, v in VARIANTS.items()}, rounds, f"throughput/{loop}/"
        )
    notes = [
        f"{n} records per run, logged from a coroutine that yields every {YIELD_EVERY}; "
        f"timed until the file holds every line",
        f'formatter "{FORMAT}" (loguru: its equivalent format string)',
    ]
    notes += lost_lines(written, n)
    return Table(
        scenario="throughput",
        loop=loop,
        title="End-to-end throughput to a FileHandler",
        unit="records/s",
        baseline="stdlib queue",
        samples=samples,
        better="higher",
        notes=notes,
        extra={"lines_written": written, "records": n},
    )
