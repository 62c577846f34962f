"""QueueListener's documented hooks, overridden as on the stdlib's listener, across stop().

``dequeue`` (async), ``prepare`` and ``handle`` keep the stdlib's names and
meaning: each test overrides one hook and checks that it applies to every
record, before ``start()`` (in the caller), while running, in what ``stop()``
takes off the queue, after ``stop()`` and after a restart.
"""

from __future__ import annotations

import contextvars
import logging

import pytest
from support import AsyncRecorder, Recorder, bounded

import aioqlog

Batch = list[tuple[logging.LogRecord, contextvars.Context]]

SECRET = "hunter2"


class Reversing(aioqlog.QueueListener):
    """Reverse each batch the base ``dequeue`` returns, and remember each batch's size."""

    def __init__(self, queue: aioqlog.LogQueue, *handlers: logging.Handler) -> None:
        super().__init__(queue, *handlers)
        self.sizes: list[int] = []

    async def dequeue(self) -> Batch:
        batch = await super().dequeue()
        self.sizes.append(len(batch))
        return batch[::-1]


@pytest.mark.anyio
async def test_a_dequeue_override_reorders_every_batch_through_stop(
    logger: logging.Logger,
) -> None:
    """Each batch reaches the handlers in the override's order, including what stop() takes."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = Reversing(q, rec)
    listener.start()
    for message in ("a", "b", "c"):
        logger.info(message)  # queued: the listener's task has not run yet
    await rec.arrived(3)
    for message in ("d", "e", "f"):
        logger.info(message)
    await bounded(listener.stop())  # takes d, e, f through the override
    assert rec.messages() == ["c", "b", "a", "f", "e", "d"]
    # The empty batch that ends the run went through the override too.
    assert [size for size in listener.sizes if size] == [3, 3]
    assert listener.sizes[-1] == 0
    logger.info("g")  # stopped: handled in the caller, no dequeue involved
    assert rec.messages()[-1] == "g"
    async with listener:
        logger.info("h")
        logger.info("i")
    assert rec.messages() == ["c", "b", "a", "f", "e", "d", "g", "i", "h"]
    assert listener.stats.handlers[0].handled == 9


class Redacting(aioqlog.QueueListener):
    """Hand every handler a copy of each record with the password masked."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        args = record.args
        if isinstance(args, tuple) and SECRET in args:
            # A copy: the logger's record may still be in other handlers' hands.
            record = logging.makeLogRecord(record.__dict__)
            record.args = tuple("***" if arg == SECRET else arg for arg in args)
        return record


@pytest.mark.anyio
async def test_a_prepare_override_redacts_for_every_handler_through_stop(
    logger: logging.Logger,
) -> None:
    """No handler, sync or async, ever sees the secret: before start, running, after stop."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sync_handler, async_handler = Recorder(), AsyncRecorder()
    listener = Redacting(q, sync_handler, async_handler)
    phases = ("before start", "running", "after stop", "restarted")
    logger.info("%s: login %s with %s", phases[0], "ann", SECRET)
    async with listener:
        logger.info("%s: login %s with %s", phases[1], "bob", SECRET)
    logger.info("%s: login %s with %s", phases[2], "cat", SECRET)
    async with listener:
        logger.info("%s: login %s with %s", phases[3], "dan", SECRET)
    expected = [
        f"{phase}: login {user} with ***"
        for phase, user in zip(phases, ("ann", "bob", "cat", "dan"), strict=True)
    ]
    assert sync_handler.messages() == expected
    # The async handler kept what came while no listener ran, for the next start.
    assert async_handler.messages() == expected
    assert all(SECRET not in line for line in sync_handler.lines + async_handler.lines)


class Quiet(aioqlog.QueueListener):
    """Keep health checks away from every handler, and count them."""

    def __init__(self, queue: aioqlog.LogQueue, *handlers: logging.Handler) -> None:
        super().__init__(queue, *handlers)
        self.skipped = 0

    def handle(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("GET /health"):
            self.skipped += 1
            return
        super().handle(record)


@pytest.mark.anyio
async def test_a_handle_override_filters_for_every_handler_through_stop(
    logger: logging.Logger,
) -> None:
    """What handle() keeps back reaches no handler and no count, whenever it was logged."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sync_handler, async_handler = Recorder(), AsyncRecorder()
    listener = Quiet(q, sync_handler, async_handler)
    logger.info("GET /health")
    logger.info("GET /a")
    listener.start()
    logger.info("GET /health")
    logger.info("GET /b")
    stats = await bounded(listener.stop())  # both taken off the queue by stop()
    logger.info("GET /health")
    logger.info("GET /c")
    async with listener:
        logger.info("GET /health")
        logger.info("GET /d")
    expected = ["GET /a", "GET /b", "GET /c", "GET /d"]
    assert sync_handler.messages() == async_handler.messages() == expected
    assert listener.skipped == 4
    assert [h.handled for h in stats.handlers] == [2, 2]
    assert [h.handled for h in listener.stats.handlers] == [4, 4]
