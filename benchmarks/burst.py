"""A burst with the defaults: lines written against lines logged, and peak RSS.

What a user checks on the first day: the loop logs N records without
yielding, then two threads (``asyncio.to_thread``) log N records each, and the
logging set-up is stopped; the file should hold all 3N lines. Each run is a
fresh Python process, so its peak resident set size (``VmHWM``) is its own.
Every variant writes through the ``FileHandler`` that ``logging.basicConfig``
makes (loguru: its own file sink), with the benchmarks' formatter and every
setting left at its default.

* ``aioqlog install()``: ``async with aioqlog.install():`` around the burst.
* ``aioqlog pair``: the basicConfig handler moved behind ``aioqlog.QueueHandler``
  + ``aioqlog.QueueListener`` (default ``LogQueue()``).
* ``stdlib dictConfig queue``: Python 3.12+'s ``dictConfig`` queue handler
  (``"class": "logging.handlers.QueueHandler", "handlers": [...]``), its
  listener started and stopped around the burst. Skipped before 3.12.
* ``stdlib pair``: the basicConfig handler behind the stdlib's ``QueueHandler``
  + ``QueueListener``.
* ``loguru enqueue``: a loguru file sink with ``enqueue=True``; ``await complete()``.

A second table, ``burst_busy``, keeps the loop busy instead, as a loaded
service does: it logs N records in bursts of ``BURST`` with an
``await asyncio.sleep(0)`` after each, and no thread logs. Every turn polls for
I/O, dropping the GIL for a moment and taking it straight back, which keeps a
thread waiting for the GIL waiting (see ``aioqlog._bridge.Pace``).

    python -m benchmarks.burst "aioqlog pair" 5000 asyncio /tmp/out.log  # one run
    python -m benchmarks.burst "aioqlog pair" 100000 asyncio /tmp/out.log busy
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import logging.handlers
import queue
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aioqlog
from benchmarks._harness import FORMAT, Table, median, rotations, run_on
from benchmarks.caller_cost import ARG, MESSAGE
from benchmarks.memory import peak_kb
from benchmarks.throughput import BURST, produce

#: The logger every variant's producers log to (it propagates to the root).
LOGGER = "bench.burst"

#: Whether this Python has dictConfig's queue handler (``"handlers"`` of a QueueHandler).
HAS_DICTCONFIG_QUEUE = sys.version_info >= (3, 12)

Log = Callable[[str, int], Any]
#: What each variant's set-up fills in when it stops: records it counted as dropped.
Counted = dict[str, int]


def _basic_config(path: Path) -> logging.Handler:
    """Configure the root logger as ``logging.basicConfig`` does; return its handler."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    logging.basicConfig(filename=path, level=logging.INFO, format=FORMAT, encoding="utf-8")
    return root.handlers[0]


def _stdlib_log() -> Log:
    logger = logging.getLogger(LOGGER)
    return lambda s, i: logger.info(MESSAGE, s, i)


def _lost_by(stats: aioqlog.ListenerStats) -> int:
    return stats.dropped + sum(h.dropped for h in stats.handlers)


@asynccontextmanager
async def with_install(path: Path, counted: Counted) -> AsyncIterator[Log]:
    handler = _basic_config(path)
    listener = aioqlog.install()
    async with listener:
        yield _stdlib_log()
    counted["dropped"] = _lost_by(listener.stats)
    handler.close()


@asynccontextmanager
async def with_aioqlog_pair(path: Path, counted: Counted) -> AsyncIterator[Log]:
    handler = _basic_config(path)
    root = logging.getLogger()
    q = aioqlog.LogQueue()
    root.handlers = [aioqlog.QueueHandler(q)]
    listener = aioqlog.QueueListener(q, handler)
    async with listener:
        yield _stdlib_log()
    counted["dropped"] = _lost_by(listener.stats)
    handler.close()


@asynccontextmanager
async def with_dictconfig_queue(path: Path, counted: Counted) -> AsyncIterator[Log]:
    logging.config.dictConfig(
        {
            "version": 1,
            "formatters": {"plain": {"format": FORMAT}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(path),
                    "encoding": "utf-8",
                    "formatter": "plain",
                },
                "queue": {"class": "logging.handlers.QueueHandler", "handlers": ["file"]},
            },
            "root": {"level": "INFO", "handlers": ["queue"]},
        }
    )
    queue_handler: Any = logging.getHandlerByName("queue")  # type: ignore[attr-defined,unused-ignore]
    listener: logging.handlers.QueueListener = queue_handler.listener
    listener.start()
    try:
        yield _stdlib_log()
    finally:
        listener.stop()
    for handler in listener.handlers:
        handler.close()
    counted["dropped"] = 0


@asynccontextmanager
async def with_stdlib_pair(path: Path, counted: Counted) -> AsyncIterator[Log]:
    handler = _basic_config(path)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logging.getLogger().handlers = [logging.handlers.QueueHandler(q)]
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    try:
        yield _stdlib_log()
    finally:
        listener.stop()
    handler.close()
    counted["dropped"] = 0


@asynccontextmanager
async def with_loguru(path: Path, counted: Counted) -> AsyncIterator[Log]:
    from loguru import logger  # noqa: PLC0415 - a peer, imported when measured

    logger.remove()
    fmt = "{time:YYYY-MM-DD HH:mm:ss,SSS} {level} {name}: {message}"
    sink = logger.add(path, enqueue=True, format=fmt, level="INFO", encoding="utf-8")
    try:
        yield lambda s, i: logger.info("request {} done in {} ms", s, i)
    finally:
        await logger.complete()
        logger.remove(sink)
    counted["dropped"] = 0


Setup = Callable[[Path, Counted], AbstractAsyncContextManager[Log]]

#: The variants, in table order.
VARIANTS: dict[str, Setup] = {
    "aioqlog install()": with_install,
    "aioqlog pair": with_aioqlog_pair,
    "stdlib dictConfig queue": with_dictconfig_queue,
    "stdlib pair": with_stdlib_pair,
    "loguru enqueue": with_loguru,
}

#: The variants that are aioqlog with its defaults: the ones the targets hold to account.
AIOQLOG = ("aioqlog install()", "aioqlog pair")


def available() -> list[str]:
    """Return the variants this Python can run (dictConfig's queue handler needs 3.12)."""
    return [v for v in VARIANTS if HAS_DICTCONFIG_QUEUE or v != "stdlib dictConfig queue"]


def reference() -> str:
    """Return the stdlib variant the peak RSS is compared with."""
    return "stdlib dictConfig queue" if HAS_DICTCONFIG_QUEUE else "stdlib pair"


async def child(variant: str, n: int, path: Path, *, busy: bool = False) -> dict[str, Any]:
    """Run one burst in this process; return what was written and the peak RSS.

    *busy*: the loop logs *n* records in bursts of ``BURST``, yielding after
    each, and no thread logs.
    """
    counted: Counted = {}

    def burst(log: Log) -> None:
        for i in range(n):
            log(ARG, i)

    t0 = time.perf_counter()
    async with VARIANTS[variant](path, counted) as log:
        if busy:
            await produce(log, n, BURST)
        else:
            burst(log)  # on the loop, never yielding
            await asyncio.gather(asyncio.to_thread(burst, log), asyncio.to_thread(burst, log))
    elapsed = time.perf_counter() - t0
    with path.open("rb") as f:
        # The burst's lines only: aioqlog reports what it drops in a line of its own.
        written = sum(1 for line in f if b" done in " in line)
    return {
        "logged": n if busy else 3 * n,
        "written": written,
        "dropped": counted.get("dropped", 0),
        "peak_mb": peak_kb() / 1024,
        "wall_s": elapsed,
    }


def one_run(variant: str, n: int, loop: str, path: Path, *, busy: bool) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it printed."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.burst", variant, str(n), loop, str(path)]
        + (["busy"] if busy else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(loop: str, rounds: int, sizes: tuple[int, ...], busy: int) -> list[Table]:
    """Return a table per burst size N, then the busy loop's (*busy* records).

    Each: peak RSS (MiB) and lines written, per variant.
    """
    tables = [_table(loop, rounds, n, busy=False) for n in sizes]
    tables.append(_table(loop, rounds, busy, busy=True))
    return tables


def _table(loop: str, rounds: int, n: int, *, busy: bool) -> Table:
    names = available()
    logged = n if busy else 3 * n
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="aioqlog-bench-") as tmp:
        for k, order in enumerate(rotations(names, rounds)):
            for name in order:
                path = Path(tmp) / f"burst-{n}-{k}-{names.index(name)}.log"
                runs[name].append(one_run(name, n, loop, path, busy=busy))
                path.unlink(missing_ok=True)
    if busy:
        notes = [
            f"N = {n:,}: the loop logs N records in bursts of {BURST}, with an "
            "await asyncio.sleep(0) after each, as a busy service does; no thread logs; "
            "every setting at its default; a fresh process per run",
        ]
        title = f"A loop that stays busy: {n:,} records in bursts of {BURST}, with the defaults"
    else:
        notes = [
            f"N = {n:,}: the loop logs N records without yielding, then two threads "
            f"(asyncio.to_thread) log N each; {logged:,} lines expected; every setting at "
            "its default; a fresh process per run",
        ]
        title = f"A burst of {logged:,} records with the defaults (N = {n:,})"
    notes.append(
        "peak RSS: the process's VmHWM at the end of the run (imports included); "
        f"ratio to {reference()} within each round"
    )
    if not HAS_DICTCONFIG_QUEUE:
        notes.append(
            "stdlib dictConfig queue: not measured, dictConfig's queue handler needs "
            f"Python 3.12 (this is {sys.version.split()[0]})"
        )
    for name in names:
        worst = min(r["written"] for r in runs[name])
        if worst < logged:
            notes.append(f"{name} wrote only {worst:,} of {logged:,} lines in its worst run")
    return Table(
        scenario="burst_busy" if busy else "burst",
        loop=loop,
        title=title,
        unit="MiB peak RSS",
        baseline=reference(),
        samples={name: [r["peak_mb"] for r in runs[name]] for name in names},
        better="lower",
        notes=notes,
        extra={
            "n": n,
            "logged": logged,
            "written": {name: [r["written"] for r in runs[name]] for name in names},
            "dropped": {name: [r["dropped"] for r in runs[name]] for name in names},
            "wall_s": {name: median([r["wall_s"] for r in runs[name]]) for name in names},
        },
    )


if __name__ == "__main__":
    kind, size, loop_kind, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    busy_loop = sys.argv[5:] == ["busy"]
    print(json.dumps(run_on(loop_kind, lambda: child(kind, size, out, busy=busy_loop))))
