"""Sentry: its logging integration next to aioqlog still sees every record, in the right scope.

``sentry_sdk``'s ``LoggingIntegration`` wraps ``Logger.callHandlers``: after a
logger's handlers (here, aioqlog's ``QueueHandler``) have taken a record, it
turns the record into a breadcrumb of the current isolation scope, or into an
event with that scope's breadcrumbs, in the thread that logs. These tests check,
through a transport that keeps the envelopes (no network), that each simulated
request's error becomes one event with its stack trace and with that request's
breadcrumbs only, and that aioqlog's handler still gets every record once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.logging import BreadcrumbHandler, EventHandler, LoggingIntegration
from sentry_sdk.transport import Transport
from support import STALL, Recorder, bounded, in_thread, join_all

import aioqlog


class Keep(Transport):
    """A transport that keeps every envelope instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            self.envelopes.append(envelope)
            self._sent.notify_all()

    def wait_events(self, count: int) -> list[dict[str, Any]]:
        """Wait until *count* events were sent (by another thread); return them."""
        with self._sent:
            assert self._sent.wait_for(lambda: len(self.envelopes) >= count, STALL)
        return self.events()

    def events(self) -> list[dict[str, Any]]:
        """Return the error events sent so far."""
        with self._lock:
            events = [e.get_event() for e in self.envelopes]
        return [dict(e) for e in events if e is not None]


@pytest.fixture
def sentry() -> Iterator[Keep]:
    """Sentry with only its logging integration (breadcrumbs from INFO, events from ERROR).

    No default integrations: their deduplication would hide a duplicate, and
    their patches of other libraries would outlive the test.
    """
    transport = Keep()
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
    )
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def fail(name: str) -> None:
    """Raise the error a request logs (a frame of its own in the stack trace)."""
    raise ValueError(f"{name} failed")


def log_request(logger: logging.Logger, name: str, step: int) -> None:
    """Log one step of request *name*; the last step logs an exception."""
    if step == 0:
        logger.debug("%s debug", name)  # below the breadcrumb level: Sentry ignores it
        logger.info("%s started", name)
    elif step == 1:
        logger.warning("%s is slow", name)
    else:
        try:
            fail(name)
        except ValueError:
            logger.exception("%s failed", name)


def check_events(events: list[dict[str, Any]], names: list[str]) -> None:
    """Check one event per request, with its traceback, its tag and its own breadcrumbs."""
    by_request = {e["tags"]["request"]: e for e in events}
    assert len(events) == len(by_request) == len(names), events  # no duplicate, none lost
    for name in names:
        event = by_request[name]
        assert event["logentry"]["message"] == "%s failed"
        assert event["logentry"]["params"] == [name]
        (exception,) = event["exception"]["values"]
        assert (exception["type"], exception["value"]) == ("ValueError", f"{name} failed")
        functions = [f["function"] for f in exception["stacktrace"]["frames"]]
        assert functions[-2:] == ["log_request", "fail"]
        crumbs = [(c["level"], c["message"]) for c in event["breadcrumbs"]["values"]]
        assert crumbs == [("info", f"{name} started"), ("warning", f"{name} is slow")]


def check_delivered(recorder: Recorder, names: list[str]) -> None:
    """Check aioqlog's handler got each request's records once, in order, with tracebacks."""
    for name in names:
        mine = [r for r in recorder.records if r.getMessage().startswith(f"{name} ")]
        assert [r.getMessage() for r in mine] == [
            f"{name} debug",
            f"{name} started",
            f"{name} is slow",
            f"{name} failed",
        ]
    errors = [line for line in recorder.lines if "Traceback" in line]
    assert len(errors) == len(names)
    assert all("ValueError" in line for line in errors)
    assert len(recorder.records) == 4 * len(names)


@pytest.mark.anyio
async def test_concurrent_requests_get_their_own_events_and_breadcrumbs(
    logger: logging.Logger, sentry: Keep
) -> None:
    """Two interleaved requests on the loop: one event each, with only its own breadcrumbs."""
    recorder = Recorder()
    recorder.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(recorder)
    names = ["a", "b"]
    turns = {name: anyio.Event() for name in names}

    async def request(name: str, other: str) -> None:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("request", name)
            for step in range(3):
                await turns[name].wait()  # take turns: a, b, a, b, ...
                turns[name] = anyio.Event()  # anyio's events cannot be cleared: a fresh one
                log_request(logger, name, step)
                turns[other].set()

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "a", "b")
            tg.start_soon(request, "b", "a")

    async with aioqlog.install(logger):
        turns["a"].set()
        await bounded(both())
    check_events(sentry.events(), names)
    check_delivered(recorder, names)
    assert all(name.startswith("aioqlog-") for name in recorder.threads)


@pytest.mark.anyio
async def test_requests_in_threads_get_their_own_events_and_breadcrumbs(
    logger: logging.Logger, sentry: Keep
) -> None:
    """Requests served by threads, in step: each event carries its own thread's breadcrumbs."""
    recorder = Recorder()
    logger.addHandler(recorder)
    names = ["t1", "t2", "t3"]
    barrier = threading.Barrier(len(names))

    def request(name: str) -> None:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("request", name)
            for step in range(3):
                barrier.wait(STALL)  # every request is at the same step at once
                log_request(logger, name, step)

    async with aioqlog.install(logger):
        threads = [threading.Thread(target=request, args=(n,)) for n in names]
        for t in threads:
            t.start()
        await in_thread(lambda: join_all(threads))
    check_events(sentry.events(), names)
    check_delivered(recorder, names)


class Hold(logging.Filter):
    """Hold the handler in its lane until released (so Sentry sees the record first)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        return self.released.wait(STALL)


@pytest.mark.anyio
async def test_sentrys_handlers_moved_behind_aioqlog_keep_the_request_scope(
    logger: logging.Logger, sentry: Keep
) -> None:
    """Sentry's EventHandler and BreadcrumbHandler in the worker see the log call's scope.

    Without the integration's hook, with Sentry's handlers attached to the logger
    and moved behind aioqlog by install(): the events carry the request's tag and
    only its breadcrumbs. But each handler has its own lane, so an event can be
    captured before the breadcrumb lane caught up: held here, it has none.
    """
    client = sentry_sdk.get_client()
    integration = client.get_integration(LoggingIntegration)
    assert integration is not None
    integration._handler = integration._breadcrumb_handler = None  # the hook does nothing
    crumbs = BreadcrumbHandler(level=logging.INFO)
    hold = Hold()
    crumbs.addFilter(hold)
    logger.handlers[:] = [EventHandler(level=logging.ERROR), crumbs]
    names = ["a", "b"]

    async def request(name: str) -> None:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("request", name)
            for step in range(3):
                log_request(logger, name, step)
                await anyio.lowlevel.checkpoint()  # let the other request log in between

    async def every() -> None:
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(request, name)

    async with aioqlog.install(logger):
        await bounded(every())
        events = await in_thread(lambda: sentry.wait_events(len(names)))
        hold.released.set()
    assert sorted(e["tags"]["request"] for e in events) == names
    for event in events:
        (exception,) = event["exception"]["values"]
        assert exception["value"] == f"{event['tags']['request']} failed"
        assert event["breadcrumbs"]["values"] == []  # the breadcrumb lane was held


class OneLineExceptionFormatter(logging.Formatter):
    """The logging cookbook's formatter: the traceback on the same line, as its repr."""

    def formatException(self, ei: Any) -> str:
        return repr(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        s = super().format(record)
        if record.exc_text:
            s = s.replace("\n", "") + "|"
        return s


def formatted_with_sentry(logger: logging.Logger, recorder: Recorder) -> str:
    """Log an exception with Sentry's integration on; return the recorder's line."""
    log_request(logger, "x", 2)
    assert recorder.wait_for(1)
    return recorder.lines[0]


@pytest.mark.anyio
async def test_a_handler_behind_aioqlog_writes_its_own_traceback_text(
    logger: logging.Logger, sentry: Keep
) -> None:
    """With Sentry on, the cookbook's one-line formatter writes what it writes attached directly."""
    direct = Recorder()
    direct.setFormatter(OneLineExceptionFormatter())
    logger.addHandler(direct)
    expected = formatted_with_sentry(logger, direct)
    logger.removeHandler(direct)
    assert expected.endswith("'|")  # the repr of the traceback, on one line

    queued = Recorder()
    queued.setFormatter(OneLineExceptionFormatter())
    hold = Hold()
    queued.addFilter(hold)
    logger.addHandler(queued)
    async with aioqlog.install(logger):
        line = await in_thread(lambda: _release_after_logging(logger, queued, hold))
    assert line == expected


def _release_after_logging(logger: logging.Logger, recorder: Recorder, hold: Hold) -> str:
    log_request(logger, "x", 2)  # returns after Sentry handled the record
    hold.released.set()
    assert recorder.wait_for(1)
    return recorder.lines[0]
