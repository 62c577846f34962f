"""contextvars: handlers see the context of the log call, in threads and on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import pathlib
import threading
import weakref
from collections.abc import Callable, Sequence

import anyio
import anyio.lowlevel
import pytest
from support import STALL, AsyncRecorder, Recorder, bounded, in_thread

import aioqlog
from aioqlog._context import (
    DEPTH,
    MAX_DEPTH,
    SUMMARY_DEPTH,
    depth_of,
    mark_handler_thread,
    run_in_context,
    to_handle,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """The usual middleware pattern: copy the context variable onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class ContextFormatter(logging.Formatter):
    """A formatter that reads the context variable itself, at format time."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{request_id.get()} {record.getMessage()}"


class ContextAwareAsync(AsyncRecorder):
    """Reads the variable in aemit, before and after a real suspension."""

    async def aemit(self, record: logging.LogRecord) -> None:
        before = request_id.get()
        await anyio.lowlevel.checkpoint()
        self.lines.append(f"{before}/{request_id.get()} {record.getMessage()}")


async def _serve_requests(logger: logging.Logger) -> None:
    async def request(n: int) -> None:
        request_id.set(f"req-{n}")
        logger.info("start %d", n)
        await anyio.lowlevel.checkpoint()  # interleave with the other requests
        logger.info("end %d", n)
        request_id.set("changed after logging")

    async with anyio.create_task_group() as tg:  # tasks, each in a copy of the context
        for n in range(20):
            tg.start_soon(request, n)


def _expected() -> list[str]:
    return sorted(f"req-{n} {what} {n}" for n in range(20) for what in ("start", "end"))


@pytest.mark.anyio
async def test_sync_handlers_see_the_context_of_the_call(logger: logging.Logger) -> None:
    """Filters and formatters in worker threads read request ids as they were at the call."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    with_filter, with_formatter = Recorder(), Recorder()
    with_filter.addFilter(RequestIdFilter())
    with_filter.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    with_formatter.setFormatter(ContextFormatter())
    async with aioqlog.QueueListener(q, with_filter, with_formatter) as listener:
        await _serve_requests(logger)
    assert sorted(with_filter.lines) == _expected()
    assert sorted(with_formatter.lines) == _expected()
    assert all(h.errors == 0 for h in listener.stats.handlers)


@pytest.mark.anyio
async def test_async_handlers_see_the_context_of_the_call(logger: logging.Logger) -> None:
    """aemit runs in the call's context, across its own awaits."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = ContextAwareAsync()
    async with aioqlog.QueueListener(q, handler):
        await _serve_requests(logger)
    assert sorted(handler.lines) == sorted(
        f"req-{n}/req-{n} {what} {n}" for n in range(20) for what in ("start", "end")
    )


stamp: contextvars.ContextVar[str] = contextvars.ContextVar("stamp", default="-")


class _Stamping(logging.Filter):
    """Sets a variable for the handler to read, as a filter that enriches records may."""

    def filter(self, record: logging.LogRecord) -> bool:
        stamp.set(f"stamped {record.getMessage()}")
        return True


class _StampReader(AsyncRecorder):
    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.lowlevel.checkpoint()
        self.lines.append(f"{record.getMessage()}: {stamp.get()}")


class _StampBatchReader(AsyncRecorder):
    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        await anyio.lowlevel.checkpoint()
        self.lines.extend(f"{r.getMessage()}: {stamp.get()}" for r in records[:1])


@pytest.mark.anyio
@pytest.mark.parametrize("reader", [_StampReader, _StampBatchReader])
async def test_an_async_handler_reads_what_its_filter_set_for_the_record(
    logger: logging.Logger, reader: type[AsyncRecorder]
) -> None:
    """aemit (or aemit_batch, for its first record) runs in the context its filter ran in."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = reader()
    handler.addFilter(_Stamping())
    async with aioqlog.QueueListener(q, handler):
        logger.info("one")  # delivered by the time the block's stop() returns
    assert handler.lines == ["one: stamped one"]
    assert stamp.get() == "-"


@pytest.mark.anyio
async def test_many_lanes_never_enter_one_context_at_once(logger: logging.Logger) -> None:
    """Several thread lanes and an async lane handle each record: no context is shared."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    sync_handlers = [Recorder() for _ in range(3)]
    for handler in sync_handlers:
        handler.setFormatter(ContextFormatter())
    async_handler = ContextAwareAsync()
    async with aioqlog.QueueListener(q, *sync_handlers, async_handler) as listener:
        for _ in range(10):
            await _serve_requests(logger)
    stats = listener.stats
    assert [h.errors for h in stats.handlers] == [0, 0, 0, 0]
    for handler in sync_handlers:
        assert len(handler.lines) == 400
        assert sorted(set(handler.lines)) == _expected()


class _Rendezvous:
    """Two handlers' workers meet here, each inside its handler, before going on."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=STALL)

    def meet(self) -> None:
        self.barrier.wait()


class _MeetingHandler(Recorder):
    def __init__(self, meeting: _Rendezvous) -> None:
        super().__init__()
        self.meeting = meeting

    def emit(self, record: logging.LogRecord) -> None:
        self.meeting.meet()
        super().emit(record)


class _MeetingBatchHandler(_MeetingHandler):
    def emit_batch(self, records: list[logging.LogRecord]) -> None:
        self.meeting.meet()
        for record in records:
            Recorder.emit(self, record)


class _MeetingFormatter(logging.Formatter):
    def __init__(self, meeting: _Rendezvous) -> None:
        super().__init__()
        self.meeting = meeting

    def format(self, record: logging.LogRecord) -> str:
        self.meeting.meet()
        return super().format(record)


def _meeting_stream(meeting: _Rendezvous, *, in_filter: bool) -> logging.StreamHandler[io.StringIO]:
    handler = logging.StreamHandler(io.StringIO())
    if in_filter:

        def meet(record: logging.LogRecord) -> bool:
            meeting.meet()
            return True

        handler.addFilter(meet)
    else:
        handler.setFormatter(_MeetingFormatter(meeting))
    return handler


_MEETING_PLACES: dict[str, Callable[[_Rendezvous], logging.Handler]] = {
    "handle": _MeetingHandler,
    "emit_batch": _MeetingBatchHandler,
    "filter": lambda meeting: _meeting_stream(meeting, in_filter=True),
    "format": lambda meeting: _meeting_stream(meeting, in_filter=False),
}


@pytest.mark.anyio
@pytest.mark.parametrize("place", list(_MEETING_PLACES))
async def test_two_handlers_handle_one_record_at_once(logger: logging.Logger, place: str) -> None:
    """Two sync handlers inside their handle/emit_batch/filter/format with one record, at once.

    Records logged in one context share it in the queue; each handler runs in
    a copy of its own: entering the shared one from two workers would fail.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    meeting = _Rendezvous()
    handlers = [_MEETING_PLACES[place](meeting) for _ in range(2)]
    async with aioqlog.QueueListener(q, *handlers) as listener:
        logger.info("one record for both")
    assert [h.errors for h in listener.stats.handlers] == [0, 0]
    assert not meeting.barrier.broken
    for handler in handlers:
        if isinstance(handler, Recorder):
            assert handler.lines == ["one record for both"]
        else:
            assert isinstance(handler, logging.StreamHandler)
            assert handler.stream.getvalue() == "one record for both\n"


@pytest.mark.anyio
async def test_records_logged_in_one_context_share_it_until_it_changes(
    logger: logging.Logger,
) -> None:
    """Calls in an unchanged context queue one Context object; a changed variable, a new one."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))  # no listener: the records stay queued
    request_id.set("req-1")
    logger.info("one")
    logger.info("two")
    request_id.set("req-2")
    logger.info("three")
    contexts = [ctx for _, ctx in q._peek()]
    assert contexts[0] is contexts[1]
    assert contexts[2] is not contexts[1]
    assert [ctx[request_id] for ctx in contexts] == ["req-1", "req-1", "req-2"]
    q._take(3)


@pytest.mark.anyio
async def test_records_logged_with_no_variable_set_share_one_empty_context(
    logger: logging.Logger,
) -> None:
    """Calls made where no variable is set (most calls of most programs) share one Context.

    Nothing is noted beside such a record: the queue's empty context is its.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))  # no listener: the records stay queued
    contextvars.Context().run(logger.info, "one")
    contextvars.Context().run(logger.info, "two")
    assert not q._contexts  # nothing noted beside them
    request_id.set("req-1")
    logger.info("three")
    contexts = [ctx for _, ctx in q._peek()]
    assert contexts[0] is contexts[1]
    assert len(contexts[0]) == 0
    assert contexts[2] is not contexts[0]
    q._take(3)


class _Tampering(aioqlog.QueueListener):
    """A dequeue override that changes a variable inside the first record's context."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[contextvars.Context] = []

    async def dequeue(self) -> list[tuple[logging.LogRecord, contextvars.Context]]:
        batch = await super().dequeue()
        for _, ctx in batch:
            if not self.seen:
                ctx.run(request_id.set, "tampered")
                self.seen.append(ctx)  # kept alive: the queue could share it next
        return batch


@pytest.mark.anyio
async def test_a_context_changed_after_its_call_is_not_shared_with_the_next(
    logger: logging.Logger,
) -> None:
    """A queued context that a hook changed no longer matches the caller's: not shared."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    request_id.set("req-1")
    async with _Tampering(q, rec):
        logger.info("one")
        await rec.arrived(1)
        logger.info("two")  # the caller's context has not changed since "one"
        await rec.arrived(2)
    assert rec.lines == ["tampered one", "req-1 two"]


@pytest.mark.anyio
async def test_an_empty_context_a_hook_changed_is_not_shared_with_the_next(
    logger: logging.Logger,
) -> None:
    """A hook sets a variable in the empty context of a call: the next such call gets none."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    async with _Tampering(q, rec):
        contextvars.Context().run(logger.info, "one")
        await rec.arrived(1)
        contextvars.Context().run(logger.info, "two")
        await rec.arrived(2)
    assert rec.lines == ["tampered one", "- two"]


class _TamperingOnce(aioqlog.QueueListener):
    """A dequeue override that changes the first batch's context, then waits for ``go``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tampered = anyio.Event()
        self.go = anyio.Event()

    async def dequeue(self) -> list[tuple[logging.LogRecord, contextvars.Context]]:
        batch = await super().dequeue()
        if batch and not self.tampered.is_set():
            batch[0][1].run(request_id.set, "tampered")
            self.tampered.set()
            await self.go.wait()
        return batch


@pytest.mark.anyio
async def test_a_context_changed_while_records_of_it_wait_is_not_shared(
    logger: logging.Logger,
) -> None:
    """A hook changes a context that records still queued share: later calls do not get it.

    The first batch takes 256 of the 300 records logged in one context, and
    the hook changes that context while the other 44 still wait in the queue.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    request_id.set("req-1")
    listener = _TamperingOnce(q, rec)
    async with listener:
        for i in range(300):
            logger.info("r%d", i)
        await listener.tampered.wait()
        assert q.qsize() == 44  # records of the changed context still wait
        logger.info("after")  # the caller's context has not changed
        listener.go.set()
        await rec.arrived(301)
    assert rec.lines[0] == "tampered r0"
    assert rec.lines[-1] == "req-1 after"


flag: contextvars.ContextVar[object] = contextvars.ContextVar("flag")


class _FlagFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        value = flag.get()
        return f"{record.getMessage()}: {value!r} ({type(value).__name__}, {id(value)})"


class _FormattingBatches(aioqlog.AsyncHandler):
    """Formats each record of each aemit_batch call inside the call (its context)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        self.lines.extend(self.format(record) for record in records)


class _FormattingSyncBatches(Recorder):
    """A sync handler with emit_batch: formats each record of a call inside the call."""

    def emit_batch(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            self.emit(record)


@pytest.mark.anyio
async def test_a_value_equal_to_the_last_but_not_it_is_seen_as_set(
    logger: logging.Logger,
) -> None:
    """1, then True, then 1.0, then an equal new list: each record sees the object set.

    Sharing the last call's context must not go by equality: the handler
    sees what synchronous logging would, the very object set at the call.
    """
    direct = Recorder()
    direct.setFormatter(_FlagFormatter())
    rec = Recorder()
    rec.setFormatter(_FlagFormatter())
    batches = _FormattingBatches(_FlagFormatter())
    sync_batches = _FormattingSyncBatches()
    sync_batches.setFormatter(_FlagFormatter())
    values: list[object] = [1, True, 1.0, [1], [1], 0.0, -0.0]
    logger.addHandler(direct)
    logger.addHandler(aioqlog.QueueHandler(q := aioqlog.LogQueue()))
    async with aioqlog.QueueListener(q, rec, batches, sync_batches):
        for n, value in enumerate(values):
            flag.set(value)
            logger.info("call %d", n)
        await rec.arrived(len(values))
    assert rec.lines == direct.lines
    assert batches.lines == direct.lines
    assert sync_batches.lines == direct.lines


class _Watched:
    """A context variable's value that notes every == on it, and refuses it."""

    calls = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        _Watched.calls += 1
        raise KeyboardInterrupt("== on a context variable's value")

    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.name


watched: contextvars.ContextVar[_Watched] = contextvars.ContextVar("watched")


class _WatchedFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{watched.get()} {record.getMessage()}"


@pytest.mark.anyio
async def test_a_log_call_never_compares_context_values(logger: logging.Logger) -> None:
    """No value's == runs, at a log call or in a lane (it could raise, block or log).

    Records are queued before a listener exists, so each call finds the
    last call's context still held, with a different value in it.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    _Watched.calls = 0
    try:
        for name in ("first", "second", "third"):
            watched.set(_Watched(name))
            logger.info("call")
    except KeyboardInterrupt:
        pytest.fail("a log call compared context values, and raised what == raised")
    rec = Recorder()
    rec.setFormatter(_WatchedFormatter())
    batches = _FormattingBatches(_WatchedFormatter())
    async with aioqlog.QueueListener(q, rec, batches):
        await rec.arrived(3)
    assert rec.lines == ["first call", "second call", "third call"]
    assert batches.lines == rec.lines
    assert _Watched.calls == 0


class _SettingFilter(logging.Filter):
    """Sets a context variable that the handler's formatter then reads."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id.set(f"filtered {record.getMessage()}")
        return True


@pytest.mark.anyio
async def test_what_a_filter_sets_its_formatter_sees(
    logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    """A StreamHandler's filter and formatter share one context per record, as attached directly."""

    def file_handler(name: str) -> logging.FileHandler:
        handler = logging.FileHandler(tmp_path / name)
        handler.addFilter(_SettingFilter())
        handler.setFormatter(ContextFormatter())
        return handler

    direct, queued = file_handler("direct.log"), file_handler("queued.log")
    q = aioqlog.LogQueue()
    # The QueueHandler first: it captures the context before the direct
    # handler's filter changes it in the caller.
    logger.addHandler(aioqlog.QueueHandler(q))
    logger.addHandler(direct)
    async with aioqlog.QueueListener(q, queued):
        for n in range(3):
            request_id.set(f"req-{n}")
            logger.info("call %d", n)
    direct.close()
    queued.close()
    expected = "".join(f"filtered call {n} call {n}\n" for n in range(3))
    assert (tmp_path / "direct.log").read_text() == expected
    assert (tmp_path / "queued.log").read_text() == expected


class _Payload:
    """A request-scoped object held by a context variable."""


payload: contextvars.ContextVar[_Payload] = contextvars.ContextVar("payload")


def _log_in_a_request(logger: logging.Logger) -> threading.Event:
    """Log one record in a context of its own whose value is a fresh payload.

    Returns an event set once the payload has been freed.
    """
    freed = threading.Event()

    def request() -> None:
        value = _Payload()
        weakref.finalize(value, freed.set)
        payload.set(value)
        logger.info("in a request")

    contextvars.Context().run(request)
    return freed


@pytest.mark.anyio
@pytest.mark.parametrize("handlers", ["one sync", "two sync", "async"])
async def test_a_handled_record_leaves_its_context_to_be_collected(
    logger: logging.Logger, handlers: str
) -> None:
    """Once a record is handled, nothing keeps its context's values, the listener running.

    Neither the queue (it remembers the last call's context only while a
    record holds it) nor a lane's worker or the listener's task between
    batches.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    makers: dict[str, Callable[[], list[Recorder | AsyncRecorder]]] = {
        "one sync": lambda: [Recorder()],
        "two sync": lambda: [Recorder(), Recorder()],
        "async": lambda: [AsyncRecorder()],
    }
    recorders = makers[handlers]()
    async with aioqlog.QueueListener(q, *recorders):
        freed = _log_in_a_request(logger)
        # No further record comes: the value must be freed all the same.
        assert await in_thread(lambda: freed.wait(STALL / 4)), "the payload is still held"
        assert all(len(r.records) == 1 for r in recorders)


class EnrichingListener(aioqlog.QueueListener):
    """The stdlib's hook, overridden: copies the request id onto each record."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.request_id = request_id.get()
        return record


@pytest.mark.anyio
async def test_an_overridden_prepare_runs_in_the_context_of_the_call(
    logger: logging.Logger,
) -> None:
    """A listener subclass's prepare() reads context variables as they were at the call."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    async with EnrichingListener(q, rec):
        await _serve_requests(logger)
    assert sorted(rec.lines) == _expected()


class SettingRecorder(Recorder):
    """Sets the context variable after formatting each record."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        request_id.set("set by the handler")


@pytest.mark.anyio
async def test_what_a_handler_sets_in_its_context_stays_with_that_record(
    logger: logging.Logger,
) -> None:
    """A lone handler that sets a context variable never changes the next record's."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = SettingRecorder()
    rec.setFormatter(ContextFormatter())
    async with aioqlog.QueueListener(q, rec):
        await _serve_requests(logger)
    assert sorted(rec.lines) == _expected()
    assert request_id.get() == "-"


@pytest.mark.anyio
async def test_records_from_threads_carry_the_threads_context(logger: logging.Logger) -> None:
    """A thread's own context is the one seen: copied by to_thread, empty in a new thread."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    async with aioqlog.QueueListener(q, rec):
        request_id.set("from-loop")
        await anyio.to_thread.run_sync(logger.info, "to_thread")  # copies the caller's context
        await in_thread(lambda: logger.info("new thread"))  # starts with an empty one
        logger.info("loop")
    assert rec.lines == ["from-loop to_thread", "- new thread", "from-loop loop"]


class BatchByContext(aioqlog.AsyncHandler):
    """Records the request id each batch was awaited in, and its records'."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[str, list[str]]] = []

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        await anyio.lowlevel.checkpoint()
        self.batches.append((request_id.get(), [r.getMessage() for r in records]))


@pytest.mark.anyio
async def test_batches_are_awaited_in_their_records_context(logger: logging.Logger) -> None:
    """aemit_batch gets records of one context per call, and runs inside it."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = BatchByContext()
    # No shutdown bound: no call sizing, so each context's run is one call.
    async with aioqlog.QueueListener(q, handler, shutdown_timeout=None):
        for n in range(3):
            request_id.set(f"req-{n}")
            for i in range(4):
                logger.info("req-%d #%d", n, i)
    for context_id, messages in handler.batches:
        assert all(m.startswith(context_id + " ") for m in messages)
    assert sum(len(m) for _, m in handler.batches) == 12
    assert len(handler.batches) == 3  # one batch per context: they were logged back to back


class MixedBatches(aioqlog.AsyncHandler):
    """Takes whatever is ready in one call; reads each record's request id off the record."""

    mix_contexts = True

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())  # runs in each record's own context
        self.calls: list[list[tuple[str, str]]] = []

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        await anyio.sleep(0.02)  # a round trip: records pile up meanwhile
        self.calls.append([(r.request_id, r.getMessage()) for r in records])  # type: ignore[attr-defined]


async def _interleaved_requests(logger: logging.Logger, requests: int, lines: int) -> None:
    """Serve *requests* requests at once, each in its own context, each logging *lines* lines."""

    async def request(n: int) -> None:
        request_id.set(f"req-{n}")
        for i in range(lines):
            logger.info("req-%d #%d", n, i)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for n in range(requests):
            tg.start_soon(request, n)


@pytest.mark.anyio
async def test_mix_contexts_batches_records_of_many_requests(logger: logging.Logger) -> None:
    """With ``mix_contexts``, one call takes what piled up, whatever context each came from.

    Forty requests interleave their lines, each in its own context: without
    it every call would hold one record. Each record still passed the
    handler's filter in its own context.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = MixedBatches()
    async with aioqlog.QueueListener(q, handler):
        await _interleaved_requests(logger, 40, 5)
    delivered = [line for call in handler.calls for line in call]
    assert len(delivered) == 200
    for context_id, message in delivered:
        assert message.startswith(context_id + " ")
    assert len(handler.calls) <= 20, [len(call) for call in handler.calls]


class MixedSyncBatches(Recorder):
    """A sync handler with ``emit_batch`` that takes records of any context per call."""

    mix_contexts = True

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.calls: list[list[tuple[str, str]]] = []

    def emit_batch(self, records: list[logging.LogRecord]) -> None:
        self.calls.append([(r.request_id, r.getMessage()) for r in records])  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_mix_contexts_batches_a_sync_handlers_records_of_many_contexts(
    logger: logging.Logger,
) -> None:
    """A sync ``emit_batch`` with ``mix_contexts`` gets records of alternating contexts at once."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    mixed = MixedSyncBatches()
    async with aioqlog.QueueListener(q, mixed):
        for i in range(100):  # without yielding: they are taken in batches
            contextvars.Context().run(_log_as, logger, f"req-{i % 2}", i)
    delivered = [line for call in mixed.calls for line in call]
    assert [m for _, m in delivered] == [f"req-{i % 2} #{i}" for i in range(100)]
    for context_id, message in delivered:
        assert message.startswith(context_id + " ")
    assert len(mixed.calls) < 10, [len(call) for call in mixed.calls]


def _log_as(logger: logging.Logger, context_id: str, i: int) -> None:
    request_id.set(context_id)
    logger.info("%s #%d", context_id, i)


# run_in_context: the trampoline that awaits a coroutine inside a given Context.

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="outer")


@pytest.mark.anyio
async def test_run_in_context_runs_every_step_inside() -> None:
    """Each step of the coroutine sees the given context; changes stay inside it."""
    ctx = contextvars.copy_context()
    ctx.run(marker.set, "inner")
    seen: list[str] = []

    async def body() -> str:
        seen.append(marker.get())
        await anyio.lowlevel.checkpoint()
        seen.append(marker.get())
        await anyio.sleep(0.001)
        marker.set("set inside")
        await anyio.lowlevel.checkpoint()
        seen.append(marker.get())
        return "result"

    assert await run_in_context(ctx, body()) == "result"
    assert seen == ["inner", "inner", "set inside"]
    assert ctx[marker] == "set inside"
    assert marker.get() == "outer"


@pytest.mark.anyio
async def test_run_in_context_propagates_errors() -> None:
    """An exception inside comes out of the await, as it would from the coroutine."""

    async def body() -> None:
        await anyio.lowlevel.checkpoint()
        raise LookupError("inside")

    with pytest.raises(LookupError, match="inside"):
        await run_in_context(contextvars.copy_context(), body())


@pytest.mark.anyio
async def test_run_in_context_delivers_cancellation_inside() -> None:
    """Cancelling the awaiting task cancels the coroutine at its own await."""
    started = anyio.Event()
    cleaned_up: list[str] = []

    async def body() -> None:
        started.set()
        try:
            await anyio.Event().wait()
        finally:
            cleaned_up.append(marker.get())

    ctx = contextvars.copy_context()
    ctx.run(marker.set, "inner")
    cancelled: list[bool] = []

    async def awaiting() -> None:
        try:
            await run_in_context(ctx, body())
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(awaiting)
        await bounded(started.wait())
        tg.cancel_scope.cancel()
    assert cancelled == [True]
    assert cleaned_up == ["inner"]


@pytest.mark.asyncio  # asyncio futures; trio's traps are relayed in every other test here
async def test_run_in_context_relays_futures_and_results() -> None:
    """Awaiting a future inside gets its result, set later from the outside."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    async def body() -> int:
        return (await future) * 2

    task = asyncio.ensure_future(run_in_context(contextvars.copy_context(), body()))
    await asyncio.sleep(0)
    future.set_result(21)
    assert await bounded(task) == 42


@pytest.mark.asyncio  # on trio a cancellation is a value sent in, only ever ignored when shielded
async def test_run_in_context_gives_up_on_a_coroutine_that_swallows_cancellation() -> None:
    """Once give_up() holds, a cancellation is not thrown in: the coroutine is closed."""
    swallowed: list[str] = []
    closed: list[str] = []
    give_up = False

    async def body() -> None:
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    swallowed.append(marker.get())
        finally:
            closed.append(marker.get())

    ctx = contextvars.copy_context()
    ctx.run(marker.set, "inner")
    task = asyncio.ensure_future(run_in_context(ctx, body(), lambda: give_up))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert swallowed == ["inner"]
    assert not task.done()
    give_up = True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(task)
    assert swallowed == ["inner"]
    assert closed == ["inner"]


@pytest.mark.asyncio
async def test_run_in_context_reports_a_coroutine_that_ignores_being_closed() -> None:
    """A coroutine given up on that ignores GeneratorExit too makes the await raise."""
    ignored: list[str] = []

    async def body() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except BaseException as exc:
                if ignored:
                    raise  # the test's own close(), at the end
                ignored.append(type(exc).__name__)  # a retry loop that catches too much

    coro = body()
    task = asyncio.ensure_future(run_in_context(contextvars.copy_context(), coro, lambda: True))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        await bounded(task)
    # Given up on at once: the cancellation was never thrown in, only the close.
    assert ignored == ["GeneratorExit"]
    coro.close()


def test_a_record_queued_twice_keeps_each_calls_context() -> None:
    """One record put on a queue twice, the context changed between: each copy keeps its own."""
    q = aioqlog.LogQueue()
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "twice", None, None)

    def put_in(value: str) -> None:
        request_id.set(value)
        q.put_nowait(record)

    contextvars.Context().run(put_in, "first")
    contextvars.Context().run(put_in, "second")
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    aioqlog.QueueListener(q, rec)  # delivers what waited, in this thread
    assert rec.lines == ["first twice", "second twice"]
    assert q.qsize() == 0


def test_an_evicted_record_leaves_its_context_to_be_collected() -> None:
    """Under "drop_old", a record evicted before any listener took it frees its context."""
    q = aioqlog.LogQueue(maxsize=1, overflow="drop_old")
    freed = threading.Event()

    def request() -> None:
        value = _Payload()
        weakref.finalize(value, freed.set)
        payload.set(value)
        q.put_nowait(logging.LogRecord("t", logging.INFO, __file__, 1, "evicted", None, None))

    contextvars.Context().run(request)
    contextvars.Context().run(
        q.put_nowait, logging.LogRecord("t", logging.INFO, __file__, 1, "kept", None, None)
    )
    assert q.dropped == 1
    assert freed.is_set(), "the evicted record's context is still held"


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("overflow", ["drop_new", "drop_old"])
async def test_racing_threads_each_see_their_own_context(
    logger: logging.Logger, overflow: str
) -> None:
    """Threads log at once, each in its own context, into a small queue being drained.

    Every delivered record is handled in the context of the thread that
    logged it, evictions and drops racing the takes; nothing is left behind.
    """
    threads, per_thread = 6, 3000
    q = aioqlog.LogQueue(maxsize=64, overflow=overflow)  # type: ignore[arg-type]
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    rec.addFilter(RequestIdFilter())  # runs in each record's context, when handled
    barrier = threading.Barrier(threads)

    def producer(index: int) -> None:
        request_id.set(f"thread-{index}")
        barrier.wait()
        for seq in range(per_thread):
            logger.info("%d %d", index, seq)

    async with aioqlog.QueueListener(q, rec) as listener:
        workers = [
            threading.Thread(target=contextvars.Context().run, args=(producer, i))
            for i in range(threads)
        ]
        for w in workers:
            w.start()

        def join_all() -> None:
            for w in workers:
                w.join(STALL)

        await in_thread(join_all)
    delivered = [r for r in rec.records if r.name == logger.name]
    assert delivered, "nothing was delivered"
    for record in delivered:
        assert isinstance(record.args, tuple)
        assert record.request_id == f"thread-{record.args[0]}"  # type: ignore[attr-defined]
    assert len(delivered) + q.dropped + listener.stats.handlers[0].dropped == threads * per_thread
    assert not q._contexts, "contexts are held for records no longer queued"


class _ComparedRecord(logging.LogRecord):
    """A record class that compares and hashes by what it says, as a dataclass would."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, logging.LogRecord) and other.getMessage() == self.getMessage()

    def __hash__(self) -> int:
        return hash(getattr(self, "message", None))  # changes once a formatter sets message


def test_records_that_hash_their_own_way_keep_their_context() -> None:
    """Records whose class hashes by a field a handler changes are delivered in their context.

    Another handler of the logger formats each record (setting ``message``)
    while it waits in the queue; each still arrives in its call's context,
    and nothing is kept for it once it is handled.
    """
    q = aioqlog.LogQueue()
    records = [
        _ComparedRecord("t", logging.INFO, __file__, 1, "hashed %d", (i,), None) for i in range(20)
    ]

    def put(i: int) -> None:
        request_id.set(f"req-{i}")
        q.put_nowait(records[i])

    for i in range(20):
        contextvars.Context().run(put, i)
        logging.Formatter().format(records[i])  # what a handler after the QueueHandler does
    rec = Recorder()
    rec.setFormatter(ContextFormatter())
    aioqlog.QueueListener(q, rec)
    assert rec.lines == [f"req-{i} hashed {i}" for i in range(20)]
    assert not q._contexts


def test_marking_a_batch_agrees_with_depth_of_record_by_record() -> None:
    """to_handle's inline depth (and its fan-out filters) give what depth_of gives each record."""

    def at(depth: int) -> contextvars.Context:
        ctx = contextvars.Context()
        ctx.run(DEPTH.set, depth)
        return ctx

    def record(level: int, thread: int | None, name: str | None) -> logging.LogRecord:
        made = logging.LogRecord("marking", level, __file__, 1, "m", None, None)
        made.thread, made.threadName = thread, name
        return made

    handler_thread: list[tuple[int | None, str | None]] = []

    def as_handler() -> None:
        mark_handler_thread()
        handler_thread.append((threading.get_ident(), threading.current_thread().name))

    helper = threading.Thread(target=as_handler, name="marking-worker")
    helper.start()
    helper.join()
    ((worker, worker_name),) = handler_thread
    blank, one, two, summary = contextvars.Context(), at(1), at(2), at(SUMMARY_DEPTH)
    entries = [
        (record(logging.INFO, threading.get_ident(), "MainThread"), blank),
        (record(logging.DEBUG, threading.get_ident(), "MainThread"), blank),
        (record(logging.INFO, worker, worker_name), blank),  # a handler's: depth 1
        (record(logging.INFO, worker, "another thread, same ident"), blank),
        (record(logging.WARNING, worker, worker_name), two),  # its context says deeper
        (record(logging.INFO, None, None), one),
        (record(logging.ERROR, threading.get_ident(), "MainThread"), summary),
        (record(logging.INFO, threading.get_ident(), "MainThread"), blank),
    ]
    depths = [depth_of(r, ctx) for r, ctx in entries]
    assert depths == [0, 0, 1, 0, 2, 1, SUMMARY_DEPTH, 0]

    marked = to_handle(entries)
    assert [r for r, _ in marked] == [r for r, _ in entries]
    assert [ctx.get(DEPTH) for _, ctx in marked] == [d + 1 for d in depths]
    # One marked context per run of records of one context and depth; never the logged one.
    assert marked[0][1] is marked[1][1]
    assert marked[1][1] is not marked[2][1]
    assert marked[3][1] is not marked[2][1]
    assert all(ctx is not logged for (_, ctx), (_, logged) in zip(marked, entries, strict=True))

    refused: list[int] = []
    kept = to_handle(entries, refused.append, logging.INFO)
    expected = [
        (r, d)
        for (r, _), d in zip(entries, depths, strict=True)
        if d <= MAX_DEPTH and r.levelno >= logging.INFO
    ]
    assert [(r, ctx.get(DEPTH, 0) - 1) for r, ctx in kept] == expected
    assert refused == [d for d in depths if d > MAX_DEPTH]
    everything = to_handle(entries, refused.append, None)
    assert len(everything) == sum(d <= MAX_DEPTH for d in depths)
