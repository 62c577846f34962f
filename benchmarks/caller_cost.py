"""Caller cost: what one ``logger.info("... %s %d", s, i)`` costs the loop thread.

Every variant logs the same record from a coroutine on the event loop, with
the garbage collector on and its consumer running. Calls are timed in
batches; between batches (untimed) each variant's consumer is let to catch up,
so no queue overflows.

* ``no-op handler``: a ``logging.Handler`` whose ``emit`` does nothing,
  attached directly. The floor: the LogRecord and the logger's own work.
* ``aioqlog``: ``aioqlog.QueueHandler`` with a running ``QueueListener``,
  the calls made where no context variable is set.
* ``aioqlog, a context variable set``: the same, each call made where a
  context variable is set (a request id, a tracer's span): the queue keeps
  that context beside the record.
* ``stdlib QueueHandler``: ``logging.handlers.QueueHandler(SimpleQueue())``,
  which formats and copies the record at the call (``prepare``), with its
  ``QueueListener`` thread running.
* ``aiologger``: ``logger.info`` creates a task; only that call is timed, the
  task's work runs later on the same loop and is not counted here.
* ``loguru enqueue``: ``logger.add(sink, enqueue=True)``; the call pickles the
  record into a multiprocessing queue.
* ``structlog ainfo``: ``await log.ainfo(...)``, which runs the processors and
  the stdlib logger in the loop's default executor and awaits it.
* ``bare queue``: not a logging library but the least a queue in front of a
  thread costs (``benchmarks.bare``), its thread counting what it is handed:
  what handing a record to a queue costs the caller without aioqlog's
  guarantees, measured in the same rounds.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import logging.handlers
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aioqlog
from benchmarks._harness import Table, paired
from benchmarks.bare import BareQueue

MESSAGE = "request %s done in %d ms"
ARG = "GET /items/42"


class NoOp(logging.Handler):
    """A handler that does nothing with the records it is given."""

    def emit(self, record: logging.LogRecord) -> None:
        """Do nothing."""


class Counting(logging.Handler):
    """A handler that counts the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count *record*."""
        self.count += 1


async def until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll *done* (without blocking the loop) until it holds; fail after *timeout* s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark stalled: {what} did not happen in {timeout} s")
        await asyncio.sleep(0.0005)


@dataclass
class Subject:
    """A logging set-up under test: a sync or an async log call, and its consumer."""

    log: Callable[[str, int], Any]
    settle: Callable[[int], Awaitable[None]]  # wait until n records were consumed
    close: Callable[[], Awaitable[None]]
    is_async: bool = False


def fresh_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """Return logger *name* with *handler* as its only handler, at INFO, not propagating."""
    logger = logging.getLogger(name)
    for old in logger.handlers[:]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


async def _nothing(n: int = 0) -> None:
    return None


async def noop_subject(batch: int) -> Subject:
    logger = fresh_logger("bench.caller.floor", NoOp())
    return Subject(lambda s, i: logger.info(MESSAGE, s, i), _nothing, _nothing)


async def aioqlog_subject(batch: int) -> Subject:
    sink = Counting()
    q = aioqlog.LogQueue(maxsize=2 * batch)
    logger = fresh_logger("bench.caller.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, sink)
    listener.start()

    async def settle(n: int) -> None:
        await until(lambda: sink.count >= n, "aioqlog delivery")

    async def close() -> None:
        stats = await listener.stop()
        assert stats.dropped == 0, stats

    return Subject(lambda s, i: logger.info(MESSAGE, s, i), settle, close)


#: A variable such as a web framework or a tracer sets for each request.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


async def aioqlog_with_a_variable_subject(batch: int) -> Subject:
    """``aioqlog``, each call made where a context variable is set (as tracing does)."""
    token = REQUEST_ID.set("req-42")  # in the task that times the calls, until close()
    subject = await aioqlog_subject(batch)
    close = subject.close

    async def close_and_unset() -> None:
        try:
            await close()
        finally:
            REQUEST_ID.reset(token)

    subject.close = close_and_unset
    return subject


async def bare_subject(batch: int) -> Subject:
    handed = 0

    def count(records: list[logging.LogRecord]) -> None:
        nonlocal handed
        handed += len(records)

    queued = BareQueue(count)
    logger = fresh_logger("bench.caller.bare", queued)

    async def settle(n: int) -> None:
        await until(lambda: handed >= n, "bare queue delivery")

    async def close() -> None:
        queued.close()

    return Subject(lambda s, i: logger.info(MESSAGE, s, i), settle, close)


async def stdlib_subject(batch: int) -> Subject:
    sink = Counting()
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.caller.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, sink)
    listener.start()

    async def settle(n: int) -> None:
        await until(lambda: sink.count >= n, "stdlib QueueListener delivery")

    async def close() -> None:
        listener.stop()

    return Subject(lambda s, i: logger.info(MESSAGE, s, i), settle, close)


async def aiologger_subject(batch: int) -> Subject:
    from aiologger import Logger  # noqa: PLC0415 - a peer, imported when measured
    from aiologger.handlers.base import Handler  # noqa: PLC0415
    from aiologger.levels import LogLevel  # noqa: PLC0415

    class CountingAio(Handler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        @property
        def initialized(self) -> bool:
            return True

        async def emit(self, record: Any) -> None:
            self.count += 1

        async def close(self) -> None:
            pass

    sink = CountingAio()
    logger = Logger(name="bench.caller.aiologger", level=LogLevel.INFO)
    logger.add_handler(sink)

    async def settle(n: int) -> None:
        await until(lambda: sink.count >= n, "aiologger delivery")

    async def close() -> None:
        await logger.shutdown()

    # aiologger takes a single mapping as its arguments, not positional ones.
    def log(s: str, i: int) -> Any:
        return logger.info("request %(path)s done in %(ms)d ms", {"path": s, "ms": i})

    return Subject(log, settle, close)


async def loguru_subject(batch: int) -> Subject:
    from loguru import logger  # noqa: PLC0415 - a peer, imported when measured

    count = 0

    def sink(message: object) -> None:
        nonlocal count
        count += 1

    logger.remove()
    sink_id = logger.add(sink, enqueue=True, format="{message}", level="INFO")

    async def settle(n: int) -> None:
        await until(lambda: count >= n, "loguru delivery")

    async def close() -> None:
        logger.remove(sink_id)

    return Subject(lambda s, i: logger.info("request {} done in {} ms", s, i), settle, close)


async def structlog_subject(batch: int) -> Subject:
    import structlog  # noqa: PLC0415 - a peer, imported when measured

    stdlib_logger = fresh_logger("bench.caller.structlog", NoOp())
    log: Any = structlog.wrap_logger(
        stdlib_logger,
        processors=[
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )

    async def alog(s: str, i: int) -> None:
        await log.ainfo(MESSAGE, s, i)

    return Subject(alog, _nothing, _nothing, is_async=True)


#: The variants, in table order; the first is the baseline.
SUBJECTS: dict[str, Callable[[int], Awaitable[Subject]]] = {
    "no-op handler": noop_subject,
    "aioqlog": aioqlog_subject,
    "aioqlog, a context variable set": aioqlog_with_a_variable_subject,
    "stdlib QueueHandler": stdlib_subject,
    "aiologger": aiologger_subject,
    "loguru enqueue": loguru_subject,
    "structlog ainfo": structlog_subject,
    "bare queue": bare_subject,
}


async def cost_per_call(make: Callable[[int], Awaitable[Subject]], calls: int, batch: int) -> float:
    """Return the median over batches of ns per call for a fresh subject."""
    subject = await make(batch)
    per_batch: list[float] = []
    try:
        log = subject.log
        # Warm up (first-call imports and caches), untimed.
        for i in range(min(batch, 100)):
            r = log(ARG, i)
            if subject.is_async:
                await r
        done = min(batch, 100)
        await subject.settle(done)
        for _ in range(0, calls, batch):
            if subject.is_async:
                t0 = time.perf_counter_ns()
                for i in range(batch):
                    await log(ARG, i)
                elapsed = time.perf_counter_ns() - t0
            else:
                t0 = time.perf_counter_ns()
                for i in range(batch):
                    log(ARG, i)
                elapsed = time.perf_counter_ns() - t0
            per_batch.append(elapsed / batch)
            done += batch
            await subject.settle(done)
    finally:
        await subject.close()
    per_batch.sort()
    return per_batch[len(per_batch) // 2]


async def measure(loop: str, rounds: int, calls: int, batch: int) -> Table:
    """Measure every variant *rounds* times on the running loop."""
    variants = {name: partial(cost_per_call, make, calls, batch) for name, make in SUBJECTS.items()}
    samples = await paired(variants, rounds, f"caller_cost/{loop}/")
    return Table(
        scenario="caller_cost",
        loop=loop,
        title="Caller cost of one logger.info on the loop thread",
        unit="ns/call",
        baseline="no-op handler",
        samples=samples,
        better="lower",
        notes=[
            f'logger.info("{MESSAGE}", str, int); {calls} calls per variant per round '
            f"in batches of {batch}; the garbage collector on, as in any application; every "
            "consumer running (aioqlog's listener, the stdlib's QueueListener thread, loguru's "
            "thread) and let to catch up between batches",
            "aiologger: only the call that creates its task is timed; "
            "the task runs later on the same loop; it takes its arguments as one mapping",
            "structlog: each call awaits its trip through the default executor",
        ],
    )
