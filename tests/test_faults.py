"""Faults inside handlers and around the listener: the application keeps running.

Each test injects one fault (a handler that hangs, cancels itself, raises
``KeyboardInterrupt`` or ``SystemExit``, whose stream's ``flush`` fails; a
listener task cancelled from outside) and checks the guarantees: the log call
never raises, the fault reaches ``handleError`` once, every other record is
delivered, and ``stop()`` returns.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest
from support import STALL, AsyncRecorder, Recorder, bounded, run_on

import aioqlog


class Reporting(AsyncRecorder):
    """An async recorder that keeps what ``handleError`` was given."""

    def __init__(self, timeout: float | None = None) -> None:
        aioqlog.AsyncHandler.__init__(self, timeout=timeout)
        self.records = []
        self.lines = []
        self.closed = 0
        self.reported: list[tuple[str, type[BaseException] | None]] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append((record.getMessage(), sys.exc_info()[0]))


class Hanging(Reporting):
    """Awaits forever on the record "hang": a peer that never answers."""

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(timeout)
        self.cut_off = 0

    async def aemit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "hang":
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cut_off += 1
                raise
        await super().aemit(record)


@pytest.mark.anyio
async def test_an_async_handler_that_hangs_is_cut_off_by_its_timeout(
    logger: logging.Logger,
) -> None:
    """timeout= bounds each aemit: the hung call is cancelled and reported, the rest flows."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Hanging(timeout=0.2)
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    for message in ("before", "hang", "after"):
        logger.info(message)
    stats = await bounded(listener.stop())
    assert handler.messages() == ["before", "after"]
    assert handler.cut_off == 1
    assert handler.reported == [("hang", TimeoutError)]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (2, 1)


class HangingBatch(Reporting):
    """A batching handler whose first batch never completes."""

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(timeout)
        self.entered = anyio.Event()

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await anyio.sleep_forever()
        for record in records:
            await self.aemit(record)


@pytest.mark.anyio
async def test_the_timeout_bounds_each_batch_call(logger: logging.Logger) -> None:
    """A hung aemit_batch is cut off and reported once; the next batch arrives."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = HangingBatch(timeout=0.2)
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    logger.info("first")
    await bounded(handler.entered.wait())
    logger.info("second")
    stats = await bounded(listener.stop())
    assert handler.reported == [("first", TimeoutError)]
    assert handler.messages() == ["second"]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (1, 1)


@pytest.mark.anyio
async def test_a_hanging_aclose_is_cut_off_by_the_timeout(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """stop() does not wait forever on an aclose() that never returns."""

    class NeverCloses(Reporting):
        async def aclose(self) -> None:
            await anyio.sleep_forever()

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = NeverCloses(timeout=0.2)
    async with aioqlog.QueueListener(q, handler):
        logger.info("delivered")
    assert handler.messages() == ["delivered"]
    assert "aclose() raised TimeoutError('aclose() did not finish within timeout=0.2s')" in (
        capfd.readouterr().err
    )


@pytest.mark.parametrize("timeout", [0, -1.0, True, "1", float("nan")])
def test_a_bad_timeout_is_refused(timeout: object) -> None:
    """timeout must be a positive number of seconds or None; the error says so."""
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        Reporting(timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="Python 3.10 cannot tell a handler's own CancelledError from a cancellation",
)
@pytest.mark.asyncio  # a task raising CancelledError unasked, told apart by asyncio's cancelling()
async def test_an_async_handler_that_cancels_itself_is_its_own_error(
    logger: logging.Logger,
) -> None:
    """A CancelledError nobody asked for is the handler's error: reported once, lane goes on."""

    class SelfCancelling(Reporting):
        async def aemit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "cancel":
                raise asyncio.CancelledError
            await super().aemit(record)

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = SelfCancelling()
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    for message in ("a", "cancel", "b"):
        logger.info(message)
    stats = await bounded(listener.stop())
    assert handler.messages() == ["a", "b"]
    assert handler.reported == [("cancel", asyncio.CancelledError)]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (2, 1)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


class SyncRaiser(Recorder):
    """Raises the given exception from emit on the record "boom"."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc
        self.reported: list[tuple[str, type[BaseException] | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "boom":
            raise self.exc
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append((record.getMessage(), sys.exc_info()[0]))


class AsyncRaiser(Reporting):
    """Raises the given exception from aemit on the record "boom"."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.lowlevel.checkpoint()
        if record.getMessage() == "boom":
            raise self.exc
        await super().aemit(record)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_in_a_handler_is_its_error(
    kind: str,
    exc: type[BaseException],
    logger: logging.Logger,
    anyio_backend: object,
) -> None:
    """The app's loop runs to its end; the handler's exit request is reported, not obeyed."""
    handler: SyncRaiser | AsyncRaiser = SyncRaiser(exc()) if kind == "sync" else AsyncRaiser(exc())
    reached_the_end = []

    async def main() -> aioqlog.ListenerStats:
        q = aioqlog.LogQueue()
        logger.addHandler(aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, handler)
        listener.start()
        for message in ("a", "boom", "b"):
            logger.info(message)
        stats = await bounded(listener.stop())
        reached_the_end.append(True)
        return stats

    stats = run_on(anyio_backend, main)
    assert reached_the_end == [True]
    assert handler.messages() == ["a", "b"]
    assert handler.reported == [("boom", exc)]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (2, 1)


class FailingStream(io.StringIO):
    """A stream whose flush fails on demand, as a closed pipe's would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def flush(self) -> None:
        if self.fail:
            self.fail = False
            raise BrokenPipeError("reader went away")


@pytest.mark.anyio
async def test_a_stream_whose_flush_fails_reports_and_goes_on(logger: logging.Logger) -> None:
    """StreamHandler's flush raising inside emit: handleError once, every other line written."""
    stream = FailingStream()
    reported: list[type[BaseException] | None] = []

    class Handler(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            stream.fail = record.getMessage() == "flush fails"
            super().emit(record)

        def handleError(self, record: logging.LogRecord) -> None:
            reported.append(sys.exc_info()[0])

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, Handler(stream)):
        for message in ("one", "flush fails", "two"):
            logger.info(message)
    assert reported == [BrokenPipeError]
    # The line was written before its flush failed; nothing else was affected.
    assert stream.getvalue().splitlines() == ["one", "flush fails", "two"]


@pytest.mark.parametrize("handlers", ["sync and async", "lone sync"])
@pytest.mark.parametrize("when", ["before its first step", "while serving"])
@pytest.mark.asyncio  # a blanket cancel of every task is asyncio's; trio has no such thing
async def test_the_listener_cancelled_from_outside_delivers_then_hands_back(
    when: str, handlers: str, logger: logging.Logger
) -> None:
    """A blanket cancel of every task (a task group or supervisor) loses nothing.

    A lone sync handler's worker serves the queue from start() on: cancelled
    before its first step, the listener takes the queue back from it.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sync_handler, async_handler = Recorder(), AsyncRecorder()
    if handlers == "lone sync":
        listener = aioqlog.QueueListener(q, sync_handler)
    else:
        listener = aioqlog.QueueListener(q, sync_handler, async_handler)
    listener.start()
    before = [f"before {i}" for i in range(500)]
    for message in before:
        logger.info(message)
    if when == "while serving":
        await sync_handler.arrived(1)
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    for task in others:
        task.cancel()
    await bounded(asyncio.wait(others))
    assert not listener.running
    assert not q._attached  # handed back to in-caller delivery
    await sync_handler.arrived(500)
    # Handed back: the sync handler takes records in the caller, the async one keeps them.
    logger.info("while stopped")
    await sync_handler.arrived(501)
    async with listener:
        logger.info("restarted")
    assert sync_handler.messages() == [*before, "while stopped", "restarted"]
    if handlers != "lone sync":
        assert async_handler.messages() == [*before, "while stopped", "restarted"]


_HUNG_APP = """
import asyncio, logging, sys, threading, time
import aioqlog

class Hung(logging.Handler):
    def emit(self, record):
        threading.Event().wait()  # a peer that never answers

log = logging.getLogger("app")
log.propagate = False
q = aioqlog.LogQueue()
log.addHandler(aioqlog.QueueHandler(q))

async def main():
    listener = aioqlog.QueueListener(q, Hung(), shutdown_timeout=0.5)
    listener.start()
    for i in range(5):
        log.warning("record %d", i)
    stats = await listener.stop(timeout=0.2)
    print("pending", stats.handlers[0].pending, flush=True)

asyncio.run(main())
print("stopped", flush=True)
"""


def test_a_sync_handler_that_hangs_forever_lets_the_app_exit() -> None:
    """stop(timeout) returns and reports what is undelivered; the process then exits."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_HUNG_APP)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["pending 5", "stopped"]
    assert "stop() ran out of time; still being delivered" in result.stderr
    assert "5 for" in result.stderr
    # logging.shutdown would wait forever for the lock the stuck emit() holds.
    assert "exiting without flushing or closing it (5 records undelivered)" in result.stderr
    assert time.monotonic() - started < STALL


@pytest.mark.anyio
async def test_an_async_handler_that_raises_from_aclose_does_not_stop_a_restart(
    logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """aclose() raising is reported on stderr; the listener stops and starts again."""

    class BadClose(AsyncRecorder):
        async def aclose(self) -> None:
            raise OSError("socket already gone")

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = BadClose()
    listener = aioqlog.QueueListener(q, handler)
    for round_ in range(2):
        async with listener:
            logger.info("round %d", round_)
        assert not listener.running
    assert handler.messages() == ["round 0", "round 1"]
    assert capfd.readouterr().err.count("aclose() raised OSError('socket already gone')") == 2
