"""Handler failures go to handleError, are counted, and stop nothing."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import io
import logging
import sys
import threading

import anyio
import anyio.lowlevel
import pytest
from support import AsyncRecorder, Recorder, in_thread

import aioqlog


class Raising(Recorder):
    """Raises out of emit (instead of calling handleError itself) for chosen records."""

    def __init__(self, fail_on: str) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.reported: list[tuple[str, type[BaseException] | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.fail_on in record.getMessage():
            raise OSError("disk full")
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append((str(record.msg), sys.exc_info()[0]))


class AsyncRaising(AsyncRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.reported: list[tuple[str, type[BaseException] | None]] = []

    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.lowlevel.checkpoint()
        if "bad" in record.getMessage():
            raise ConnectionResetError("peer went away")
        await super().aemit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append((record.getMessage(), sys.exc_info()[0]))


@pytest.mark.anyio
async def test_an_exception_out_of_emit_goes_to_handle_error(logger: logging.Logger) -> None:
    """A sync handler raising from emit: handleError gets it, it is counted, the lane goes on."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    failing, healthy = Raising(fail_on="bad"), Recorder()
    async with aioqlog.QueueListener(q, failing, healthy) as listener:
        for message in ("ok 1", "bad 2", "ok 3", "bad 4", "ok 5"):
            logger.info(message)
    assert failing.reported == [("bad 2", OSError), ("bad 4", OSError)]
    assert failing.messages() == ["ok 1", "ok 3", "ok 5"]
    assert len(healthy.records) == 5
    stats = listener.stats.handlers
    assert (stats[0].handled, stats[0].errors) == (3, 2)
    assert (stats[1].handled, stats[1].errors) == (5, 0)


@pytest.mark.anyio
async def test_an_async_handler_error_goes_to_handle_error(logger: logging.Logger) -> None:
    """An exception from aemit: handleError gets it, it is counted, the lane goes on."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = AsyncRaising()
    async with aioqlog.QueueListener(q, handler) as listener:
        for message in ("ok 1", "bad 2", "ok 3"):
            logger.info(message)
    assert handler.reported == [("bad 2", ConnectionResetError)]
    assert handler.messages() == ["ok 1", "ok 3"]
    assert (listener.stats.handlers[0].handled, listener.stats.handlers[0].errors) == (2, 1)


@pytest.mark.anyio
async def test_broken_formatting_is_reported_once_per_handler(logger: logging.Logger) -> None:
    """A %-format mismatch reaches handleError as it would attached directly."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Raising(fail_on="never")
    async with aioqlog.QueueListener(q, handler):
        logger.info("%d apples", "three")
        logger.info("fine")
    assert len(handler.reported) == 1
    assert handler.reported[0][1] is TypeError
    assert handler.messages() == ["fine"]


@pytest.mark.anyio
async def test_a_broken_handle_error_does_not_stop_the_lane(logger: logging.Logger) -> None:
    """Even a handleError that raises leaves the lane delivering."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    class Hopeless(Raising):
        def handleError(self, record: logging.LogRecord) -> None:
            raise RuntimeError("cannot even report")

    handler = Hopeless(fail_on="bad")
    async with aioqlog.QueueListener(q, handler) as listener:
        logger.info("bad")
        logger.info("good")
    assert handler.messages() == ["good"]
    assert listener.stats.handlers[0].errors == 1


class Chatty(Recorder):
    """Logs to the logger it serves from inside its own emit (a classic mistake)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.logger.warning("handled %r", record.getMessage())


@pytest.mark.anyio
async def test_a_handler_logging_from_emit_neither_deadlocks_nor_loops(
    logger: logging.Logger,
) -> None:
    """Its own diagnostics arrive once; what they cause in turn is dropped and reported."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Chatty(logger)
    async with aioqlog.QueueListener(q, handler) as listener:
        logger.info("a")
        logger.info("b")
    # What the handler logs while the listener winds down is delivered in the caller,
    # possibly after stop() returned: wait for the drops to be reported.

    def reported() -> int:
        return sum(int(m.split()[2]) for m in handler.messages() if m.startswith("aioqlog dropped"))

    assert await in_thread(lambda: handler.wait_until(lambda: reported() == 2))
    app = [m for m in handler.messages() if not m.startswith("aioqlog")]
    assert sorted(app) == sorted(["a", "b", "handled 'a'", "handled 'b'"])
    assert app.index("a") < app.index("handled 'a'")
    assert listener.stats.recursion_dropped >= 2


class ChattyThroughAThread(Chatty):
    """Logs from a thread of its own, started in its context, from inside its emit."""

    def emit(self, record: logging.LogRecord) -> None:
        Recorder.emit(self, record)
        ctx = contextvars.copy_context()
        message = record.getMessage()
        thread = threading.Thread(target=ctx.run, args=(self.logger.warning, "handled %r", message))
        thread.start()
        thread.join()


class _Handling(aioqlog.QueueListener):
    """A listener with its own handle() hook (run for each record, inside its context)."""

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "how",
    [
        "lone handler",
        "no thread in records",
        "handle() hook",
        "beside another handler",
        "through a thread of its own",
    ],
)
async def test_what_a_handler_logs_is_one_level_deeper_on_every_path(
    logger: logging.Logger, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What it logs from emit is delivered once; what that causes is dropped and counted."""
    if how == "no thread in records":
        # Records then say nothing of the thread that logged them: contexts carry it all.
        monkeypatch.setattr(logging, "logThreads", False)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    threaded = how == "through a thread of its own"
    handler = ChattyThroughAThread(logger) if threaded else Chatty(logger)
    other = Recorder()
    handlers = [handler, other] if how == "beside another handler" else [handler]
    kind = _Handling if how == "handle() hook" else aioqlog.QueueListener
    listener = kind(q, *handlers)
    async with listener:
        for i in range(5):
            logger.info("app %d", i)
        assert await in_thread(lambda: handler.wait_until(lambda: len(handler.records) >= 10))
    if not threaded:
        # Drops are reported at most once per interval, and at the latest by stop()
        # (a thread of the handler's may log its last one after that report: it is
        # counted at once, and announced by the next).
        assert await in_thread(lambda: handler.wait_until(lambda: _drops(handler) == 5))
    app = [m for m in handler.messages() if not m.startswith("aioqlog")]
    assert sorted(app) == sorted(
        [f"app {i}" for i in range(5)] + [f"handled 'app {i}'" for i in range(5)]
    )
    # And the one it logs about the drop summary, dropped quietly.
    assert listener.stats.recursion_dropped >= 5


def _drops(handler: Recorder) -> int:
    """Return how many recursion drops *handler* was told of."""
    return sum(
        int(m.split()[2])
        for m in handler.messages()
        if m.startswith("aioqlog dropped") and "logged by handlers" in m
    )


def test_a_handler_logging_from_emit_terminates_while_idle(logger: logging.Logger) -> None:
    """The same, with no listener running: records are handled in the caller."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Chatty(logger)
    aioqlog.QueueListener(q, handler)
    logger.info("a")
    assert handler.messages() == [
        "a",
        "handled 'a'",
        "aioqlog dropped 1 records that handlers logged while handling records logged "
        "by handlers (a handler logging from its own emit())",
    ]


@pytest.mark.anyio
async def test_an_async_handler_logging_from_aemit_terminates(logger: logging.Logger) -> None:
    """Recursion from an async handler is bounded the same way."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    class AsyncChatty(AsyncRecorder):
        async def aemit(self, record: logging.LogRecord) -> None:
            await super().aemit(record)
            logger.warning("handled %r", record.getMessage())

    handler = AsyncChatty()
    listener = aioqlog.QueueListener(q, handler)
    async with listener:
        logger.info("a")
        await in_thread(lambda: logger.info("b"))
    # What it logged while the listener wound down waits for the next run.
    async with listener:
        pass

    def reported() -> int:
        return sum(int(m.split()[2]) for m in handler.messages() if m.startswith("aioqlog dropped"))

    app = sorted(m for m in handler.messages() if not m.startswith("aioqlog"))
    assert app == sorted(["a", "b", "handled 'a'", "handled 'b'"])
    assert reported() == 2
    assert listener.stats.recursion_dropped >= 2


def test_an_async_handler_attached_directly_says_how_to_serve_it(
    logger: logging.Logger,
) -> None:
    """Attached to a logger, an AsyncHandler reports a clear error; no coroutine is leaked."""
    handler = AsyncRecorder()
    logger.addHandler(handler)
    stderr = io.StringIO()
    logging.raiseExceptions = True
    with contextlib.redirect_stderr(stderr):
        logger.info("nobody can await me")
        gc.collect()
    text = stderr.getvalue()
    assert "is an aioqlog.AsyncHandler: its aemit() coroutine cannot run" in text
    assert "Serve it with aioqlog.QueueListener(queue, handler)" in text
    assert "never awaited" not in text
    assert handler.records == []
    assert handler.dropped == 1


@pytest.mark.anyio
async def test_records_an_async_handler_gets_between_two_install_blocks_are_counted(
    logger: logging.Logger,
) -> None:
    """install() gives the handler back at the end of its block: what it gets then is counted."""
    handler = AsyncRecorder()
    logger.addHandler(handler)
    stderr = io.StringIO()
    async with aioqlog.install(logger):
        logger.info("served")
    with contextlib.redirect_stderr(stderr):
        logger.info("between")
        logger.info("the blocks")
    async with aioqlog.install(logger) as listener:
        logger.info("served again")
        dropped = listener.stats.handlers[0].dropped
    assert [r.getMessage() for r in handler.records] == ["served", "served again"]
    assert dropped == 2
    assert stderr.getvalue().count("is an aioqlog.AsyncHandler") == 2


@pytest.mark.anyio
async def test_an_overridden_hook_that_raises_does_not_stop_delivery(
    logger: logging.Logger,
) -> None:
    """A prepare() override that fails for one record: reported, the rest delivered."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    class Picky(aioqlog.QueueListener):
        def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
            if record.getMessage() == "poison":
                raise ValueError("cannot prepare")
            return record

    rec = Recorder()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        async with Picky(q, rec):
            for message in ("one", "poison", "two"):
                logger.info(message)
    assert rec.messages() == ["one", "two"]
    assert "handle() raised ValueError('cannot prepare')" in stderr.getvalue()


class ChattyInAContextOfItsOwn(Recorder):
    """Logs about application records in a new, empty context; about its own, as usual.

    Nothing in the new context says a handler logged there: only the thread does.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        message = record.getMessage()
        if message.startswith("app"):
            contextvars.Context().run(self.logger.warning, "handled %r", message)
        elif message.startswith("handled"):
            self.logger.warning("again %r", message)


@pytest.mark.anyio
async def test_a_worker_is_known_by_its_thread_whatever_context_its_handler_logs_in(
    logger: logging.Logger,
) -> None:
    """What a sync handler logs on its worker, in a context of its own, is one level deeper.

    Its lines are delivered once; what it logs while handling them is two
    levels deep: dropped and counted, never delivered.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = ChattyInAContextOfItsOwn(logger)
    async with aioqlog.QueueListener(q, handler) as listener:
        for i in range(3):
            logger.info("app %d", i)
        assert await in_thread(lambda: handler.wait_until(lambda: len(handler.records) >= 6))
    assert await in_thread(lambda: handler.wait_until(lambda: _drops(handler) == 3))
    app = [m for m in handler.messages() if not m.startswith("aioqlog")]
    assert sorted(app) == sorted(
        [f"app {i}" for i in range(3)] + [f"handled 'app {i}'" for i in range(3)]
    )
    assert listener.stats.recursion_dropped >= 3
