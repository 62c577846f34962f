"""Batched emission: whole batches to stdlib file handlers and to emit_batch, same bytes."""

from __future__ import annotations

import contextvars
import functools
import io
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import STALL, in_thread

import aioqlog
from aioqlog import _batch
from aioqlog._batch import BatchEmit, Steps, batch_emitter

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")


class _Gate(logging.Filter):
    """Hold the worker on the first record until the rest are queued (one batch follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "first":
            self.entered.set()
            self.release.wait(STALL)
        return record.msg != "filtered out"


class _Request(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request = REQUEST.get()
        return True


class _Exploding:
    """An argument whose str() raises: formatting its record fails (handleError)."""

    def __str__(self) -> str:
        raise ValueError("cannot render")


FORMAT = "%(levelname)s %(request)s %(name)s %(message)s"


def _log_all(logger: logging.Logger) -> None:
    logger.info("first")
    for i in range(300):
        REQUEST.set(f"req-{i % 7}")
        if i == 150:
            logger.info("bad %s", _Exploding())
        if i == 200:
            logger.info("filtered out")
        logger.warning("record %d %s", i, "x" * (i % 40))
    REQUEST.set("-")


def _prepare(handler: logging.Handler, gate: _Gate) -> logging.Handler:
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(gate)
    handler.addFilter(_Request())
    handler.handleError = lambda record: None  # type: ignore[method-assign]
    return handler


Make = Callable[[Path], logging.Handler]

HANDLERS: dict[str, Make] = {
    "StreamHandler": lambda d: logging.StreamHandler(open(d / "out.log", "w", encoding="utf-8")),  # noqa: SIM115
    "FileHandler": lambda d: logging.FileHandler(d / "out.log", encoding="utf-8"),
    "FileHandler(delay)": lambda d: logging.FileHandler(d / "out.log", delay=True),
    "RotatingFileHandler": lambda d: logging.handlers.RotatingFileHandler(
        d / "out.log", maxBytes=4_000, backupCount=50, encoding="utf-8"
    ),
    "TimedRotatingFileHandler": lambda d: logging.handlers.TimedRotatingFileHandler(
        d / "out.log", when="D", encoding="utf-8"
    ),
    "WatchedFileHandler": lambda d: logging.handlers.WatchedFileHandler(d / "out.log"),
}


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _close(handler: logging.Handler) -> None:
    handler.close()
    if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
        handler.stream.close()


@pytest.mark.parametrize("kind", sorted(HANDLERS))
@pytest.mark.anyio
async def test_each_stdlib_file_handler_writes_the_same_bytes_in_batches(
    kind: str, tmp_path: Path, logger: logging.Logger
) -> None:
    """Behind a listener, in batches, each handler writes what it writes attached directly.

    Records are formatted in their own contexts, a record that fails to format
    mid-batch is reported and skipped, a filtered record is skipped, and a
    rotating handler rolls over mid-batch where it would have.
    """
    make = HANDLERS[kind]
    direct_dir, queued_dir = tmp_path / "direct", tmp_path / "queued"
    direct_dir.mkdir()
    queued_dir.mkdir()

    gate = _Gate()
    gate.release.set()
    direct = _prepare(make(direct_dir), gate)
    assert batch_emitter(direct) is not None
    logger.addHandler(direct)
    _log_all(logger)
    logger.removeHandler(direct)
    _close(direct)

    gate = _Gate()
    queued = _prepare(make(queued_dir), gate)
    errors: list[str] = []
    queued.handleError = lambda record: errors.append(record.msg)  # type: ignore[method-assign]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, queued) as listener:
        logger.info("first")
        await in_thread(lambda: gate.entered.wait(STALL))
        ctx = contextvars.copy_context()
        ctx.run(_log_rest, logger)
        gate.release.set()
    _close(queued)
    assert errors == ["bad %s"]
    stats = listener.stats.handlers[0]
    assert (stats.handled, stats.errors, stats.pending) == (302, 1, 0)
    assert _files(queued_dir) == _files(direct_dir)
    if kind == "RotatingFileHandler":
        assert len(_files(queued_dir)) > 3  # it did roll over, several times


def _log_rest(logger: logging.Logger) -> None:
    for i in range(300):
        REQUEST.set(f"req-{i % 7}")
        if i == 150:
            logger.info("bad %s", _Exploding())
        if i == 200:
            logger.info("filtered out")
        logger.warning("record %d %s", i, "x" * (i % 40))


class _CountingFile(io.RawIOBase):
    """A file's raw stream that keeps what it is given and counts the writes (system calls)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.writes += 1
        self.data += bytes(b)
        return len(b)


@pytest.mark.anyio
async def test_a_batch_is_written_and_flushed_once(logger: logging.Logger) -> None:
    """A backlog of 201 records reaches a file in a handful of writes, not 201.

    The first calls grow by doubling (1, 2, 4, ...: see ``Lane.call_size``).
    The records wait in the queue before any listener exists, so the worker
    finds them all at once (a wait inside its first call would size the next
    ones for a slow handler).
    """
    raw = _CountingFile()
    stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    handler = logging.StreamHandler(stream)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    for i in range(201):
        logger.info("r%d", i)
    assert q.qsize() == 201  # no listener yet: they wait for one
    async with aioqlog.QueueListener(q, handler):
        pass
    assert raw.data.decode().splitlines() == [f"r{i}" for i in range(201)]
    assert raw.writes <= 9


def test_a_subclass_that_overrides_what_the_batch_bypasses_goes_record_by_record() -> None:
    """emit, format, flush or a rollover hook overridden: no built-in batch path."""

    class OwnEmit(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)

    class OwnRollover(logging.handlers.RotatingFileHandler):
        def shouldRollover(self, record: logging.LogRecord) -> int:
            return 0

    class OwnFormat(logging.FileHandler):
        def format(self, record: logging.LogRecord) -> str:
            return "!"

    class JustAName(logging.StreamHandler):  # type: ignore[type-arg]
        pass

    assert batch_emitter(OwnEmit()) is None
    assert batch_emitter(OwnRollover("/dev/null", delay=True)) is None
    assert batch_emitter(OwnFormat("/dev/null", delay=True)) is None
    assert batch_emitter(JustAName()) is not None
    assert batch_emitter(logging.handlers.MemoryHandler(10)) is None


@pytest.mark.parametrize("rotating", [False, True], ids=["FileHandler", "RotatingFileHandler"])
def test_a_closed_file_handler_in_w_mode_gets_a_batch_as_it_gets_a_record(
    rotating: bool, tmp_path: Path
) -> None:
    """A mode-"w" handler opened by its first batch and closed: the same bytes as attached directly.

    A closed ``FileHandler`` in mode "w" writes nothing (its file is not
    reopened, which would truncate it); the stdlib's rotating handlers reopen
    it (their rollover check opens the file), and so does a batch.
    """

    def make(path: Path) -> logging.FileHandler:
        if rotating:
            return logging.handlers.RotatingFileHandler(path, mode="w", delay=True)
        return logging.FileHandler(path, mode="w", delay=True)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("app", logging.INFO, __file__, 1, msg, None, None)

    direct = make(tmp_path / "direct.log")
    direct.handle(record("kept"))
    direct.close()
    direct.handle(record("after close"))
    direct.close()

    batched = make(tmp_path / "batched.log")
    deliver = batch_emitter(batched)
    assert deliver is not None
    assert not (tmp_path / "batched.log").exists()
    assert deliver([(record("kept"), contextvars.copy_context())]) == (1, 0)
    batched.close()
    assert deliver([(record("after close"), contextvars.copy_context())]) == (1, 0)
    batched.close()

    written = (tmp_path / "batched.log").read_text()
    assert written == (tmp_path / "direct.log").read_text()
    if not rotating:
        assert written == "kept\n"


class _Batches(logging.Handler):
    """A sync handler with emit_batch: keeps each call's records and context value."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []
        self.locked: list[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        raise AssertionError("emit_batch is used instead")

    def emit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        lock = self.lock
        assert lock is not None
        self.locked.append(not lock.acquire(blocking=False) or _released(lock))
        if any(r.getMessage() == "boom" for r in records):
            raise OSError("disk full")
        self.calls.append((REQUEST.get(), [r.getMessage() for r in records]))


def _released(lock: threading.RLock) -> bool:
    lock.release()
    return True  # an RLock: re-entrant, so held by this thread is what we check below


@pytest.mark.anyio
async def test_emit_batch_gets_runs_of_one_context_in_order(logger: logging.Logger) -> None:
    """emit_batch is called under the lock, per run of records from one context, in order."""
    handler = _Batches()
    gate = _Gate()
    handler.addFilter(gate)
    errors: list[str] = []
    handler.handleError = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    async def request(name: str, count: int) -> None:
        REQUEST.set(name)
        for i in range(count):
            logger.info("%s %d", name, i)

    async with aioqlog.QueueListener(q, handler) as listener:
        logger.info("first")
        await in_thread(lambda: gate.entered.wait(STALL))
        for name, count in (("a", 3), ("b", 2)):
            async with anyio.create_task_group() as tg:  # a task, in a context of its own
                tg.start_soon(request, name, count)
        logger.info("boom")
        logger.info("filtered out")
        gate.release.set()
    # Each call holds one context's records; a run may take more than one call
    # (the first calls grow by doubling: see Lane.call_size).
    runs: list[tuple[str, list[str]]] = []
    for name, messages in handler.calls:
        if runs and runs[-1][0] == name:
            runs[-1][1].extend(messages)
        else:
            runs.append((name, list(messages)))
    assert runs == [
        ("-", ["first"]),
        ("a", ["a 0", "a 1", "a 2"]),
        ("b", ["b 0", "b 1"]),
    ]
    assert errors == ["boom"]
    stats = listener.stats.handlers[0]
    assert (stats.handled, stats.errors) == (7, 1)
    assert all(handler.locked)


@pytest.mark.anyio
async def test_batches_survive_a_handler_whose_stream_fails(logger: logging.Logger) -> None:
    """A stream that fails to write: each record goes to handleError, the lane goes on."""

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = logging.StreamHandler(Broken())
    errors: list[str] = []
    all_failed = threading.Event()

    def failed(record: logging.LogRecord) -> None:
        errors.append(record.getMessage())
        if len(errors) == 5:
            all_failed.set()

    handler.handleError = failed  # type: ignore[method-assign]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler) as listener:
        for i in range(5):
            logger.info("r%d", i)
        assert await in_thread(lambda: all_failed.wait(STALL))
    assert errors == [f"r{i}" for i in range(5)]
    assert listener.stats.handlers[0].errors == 5


class _Upper(logging.Formatter):
    """A formatter of its own class: its format() must run as it is."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).upper()


class _OwnMessage(logging.LogRecord):
    """A record class with its own getMessage()."""

    def getMessage(self) -> str:
        return "own: " + super().getMessage()


def _gmt() -> logging.Formatter:
    fmt = logging.Formatter("%(asctime)s %(message)s")
    fmt.converter = time.gmtime
    return fmt


def _no_msecs() -> logging.Formatter:
    fmt = logging.Formatter("%(asctime)s|%(message)s")
    fmt.default_msec_format = None
    return fmt


FORMATTERS: dict[str, Callable[[], logging.Formatter | None]] = {
    "none (the default)": lambda: None,
    "asctime": lambda: logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
    "datefmt": lambda: logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"),
    "defaults": lambda: logging.Formatter("%(request)s %(message)s", defaults={"request": "-"}),
    "missing field": lambda: logging.Formatter("%(request)s %(message)s"),
    "gmtime": _gmt,
    "no msecs": _no_msecs,
    "brace style": lambda: logging.Formatter("{asctime} {message}", style="{"),
    "own class": lambda: _Upper("%(asctime)s %(message)s"),
    "widths and conversions": lambda: logging.Formatter(
        "%(levelname)-8s|%(lineno)5d|%(msecs)03d|%(created).3f|%(name)r|%(levelno)#x|"
        "%(process)+d|%(msecs)5.1f%%|%(lineno)c %(message)s"
    ),
    "one field": lambda: logging.Formatter("%(message)s"),
    "no field": lambda: logging.Formatter("the same text", validate=False),
    "a method's name": lambda: logging.Formatter("%(getMessage)s %(message)s"),
    "the wrong conversion": lambda: logging.Formatter("%(request)d %(message)s"),
    "a lone percent": lambda: logging.Formatter("%(message)s at 100%"),
    "a positional field": lambda: logging.Formatter("%(message)s %s"),
    "defaults and widths": lambda: logging.Formatter(
        "[%(request)8s] %(message)s", defaults={"request": "-"}
    ),
    "a keyword's name": lambda: logging.Formatter("%(class)s %(message)s", defaults={"class": "-"}),
    "the message and the date twice": lambda: logging.Formatter(
        "%(asctime)s %(message)s | %(message)r %(asctime)-30s|"
    ),
    "defaults for the message and the date": lambda: logging.Formatter(
        "%(asctime)s %(message)s %(request)s", defaults={"message": "-", "asctime": "-"}
    ),
    "an escaped date": lambda: logging.Formatter("%%(asctime)s %(message)s"),
    "the date alone": lambda: logging.Formatter("%(asctime)s"),
    "the date last": lambda: logging.Formatter("%(levelname)s %(message)s %(asctime)s"),
}


def _records() -> list[logging.LogRecord]:
    """Records across three seconds, with extras, an exception, a stack, a record subclass."""
    made: list[logging.LogRecord] = []
    try:
        raise KeyError("boom")
    except KeyError:
        exc_info = sys.exc_info()
    for i in range(40):
        cls = _OwnMessage if i == 7 else logging.LogRecord
        record = cls("app", logging.INFO, __file__, i, "n=%d %s", (i, "x"), None)
        record.created = 1_700_000_000 + i // 15 + (i % 15) / 15
        record.msecs = int((record.created % 1) * 1000)
        if i % 5 == 0:
            record.request = f"req-{i}"
            setattr(record, "class", f"cls-{i}")
        if i == 11:
            record.exc_info = exc_info
        if i == 12:
            record.stack_info = "Stack (most recent call last):\n  here"
        if i == 20:
            record.msecs = 999.99  # "%03d" takes the whole part
        if i == 21:
            record.msecs = 1234.0  # past three digits
        if i == 22:
            record.created, record.msecs = -0.5, 500.0  # before 1970: floored, not truncated
        if i == 23:
            record.created = 0.25
        if i == 24:
            record.msg, record.args = 42, None  # not a string
        if i == 25:
            record.args = {"n": 1}  # a mapping, for "%(n)s" templates
            record.msg = "n=%(n)d"
        made.append(record)
    return made


def _direct_and_batched(
    make_formatter: Callable[[], logging.Formatter | None],
    make_records: Callable[[], list[logging.LogRecord]],
) -> list[tuple[str, list[tuple[int, str]]]]:
    """Return (text, errors as (line, error)) attached directly, then batched."""
    results = []
    for batched in (False, True):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(make_formatter())
        failed: list[tuple[int, str]] = []

        def report(record: logging.LogRecord, failed: list[tuple[int, str]] = failed) -> None:
            failed.append((record.lineno, repr(sys.exc_info()[1])))

        handler.handleError = report  # type: ignore[method-assign]
        records = make_records()
        if batched:
            emit = batch_emitter(handler)
            assert emit is not None
            emit([(record, contextvars.copy_context()) for record in records])
        else:
            for record in records:
                handler.handle(record)
        results.append((stream.getvalue(), failed))
    return results


@pytest.mark.parametrize("formatter", list(FORMATTERS))
def test_a_batch_formats_each_record_as_the_handler_would(formatter: str) -> None:
    """Same text, same handleError calls, whatever the formatter, the time or the record."""
    (direct, direct_errors), (batched, batched_errors) = _direct_and_batched(
        FORMATTERS[formatter], _records
    )
    assert batched == direct
    assert batched_errors == direct_errors
    assert direct.count("\n") >= 40 or direct_errors


def _batched_stream(
    fmt: str,
) -> tuple[io.StringIO, logging.StreamHandler[io.StringIO], BatchEmit]:
    """A ``StreamHandler`` on a ``StringIO`` with formatter *fmt*, and its batch path."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    emit = batch_emitter(handler)
    assert emit is not None
    return stream, handler, emit


def test_a_plain_formatter_stores_the_message_and_not_the_date() -> None:
    """The record gets ``message``, as ``Formatter.format`` sets it; the date is in the text."""
    stream, _, emit = _batched_stream("%(asctime)s %(message)s")
    records = [
        logging.LogRecord("app", logging.INFO, __file__, i, "n=%d", (i,), None) for i in range(3)
    ]
    before = [dict(vars(record)) for record in records]
    emit([(record, contextvars.copy_context()) for record in records])
    assert stream.getvalue().endswith(" n=2\n")
    assert stream.getvalue().count("\n") == 3
    assert [vars(record) for record in records] == [
        {**fields, "message": f"n={i}"} for i, fields in enumerate(before)
    ]


def _marked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap *method* so that what it returns shows the wrapper ran."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        return f"<{result}>" if isinstance(result, str) else result

    return wrapper


def _iso_time(
    self: logging.Formatter, record: logging.LogRecord, datefmt: str | None = None
) -> str:
    """The ISO 8601 recipe for ``formatTime``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        (logging.Formatter, "formatTime"),
        (logging.Formatter, "format"),
        (logging.Formatter, "formatMessage"),
        (logging.Formatter, "usesTime"),
        (logging.PercentStyle, "format"),
        (logging.PercentStyle, "_format"),
    ],
)
@pytest.mark.parametrize("wrap", ["function", "proxy"])
def test_a_method_replaced_on_the_stdlib_class_is_honoured(
    owner: type, name: str, wrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe that patches the stdlib's own class (ISO dates, say): the batch gives its text."""
    replacement = _iso_time if name == "formatTime" else _marked(getattr(owner, name))
    if name == "usesTime":
        replacement = lambda self: False  # noqa: E731 - the date no longer set: an error
    if wrap == "proxy":  # as instrumentation agents patch: an object, not a function
        replacement = _wrapt_like(replacement)
    monkeypatch.setattr(owner, name, replacement)
    (direct, direct_errors), (batched, batched_errors) = _direct_and_batched(
        lambda: logging.Formatter("%(asctime)s %(levelname)s %(message)s"), _records
    )
    assert batched == direct
    assert batched_errors == direct_errors
    assert "Z " in direct or "<" in direct or direct_errors


def _wrapt_like(method: Callable[..., Any]) -> Any:
    """A wrapper object that hands on its function's ``__code__``, as wrapt's proxies do."""

    class Proxy:
        __code__ = method.__code__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        def __get__(self, instance: Any, owner: Any = None) -> Any:
            return self if instance is None else functools.partial(self, instance)

    return Proxy()


_HANDLERS: dict[str, Callable[[Path], logging.Handler]] = {
    "stream": lambda path: logging.StreamHandler(io.StringIO()),
    "file": lambda path: logging.FileHandler(path, delay=True),
    "rotating": lambda path: logging.handlers.RotatingFileHandler(path, delay=True),
    "timed": lambda path: logging.handlers.TimedRotatingFileHandler(path, delay=True),
    "watched": lambda path: logging.handlers.WatchedFileHandler(path, delay=True),
}


@pytest.mark.parametrize(
    "case",
    [
        (logging.StreamHandler, "emit", list(_HANDLERS)),  # FileHandler.emit calls it
        (logging.FileHandler, "emit", ["file", "rotating", "timed", "watched"]),
        (logging.Handler, "handle", list(_HANDLERS)),
        (logging.Handler, "format", list(_HANDLERS)),
        (logging.StreamHandler, "flush", list(_HANDLERS)),
        (logging.handlers.RotatingFileHandler, "shouldRollover", ["rotating"]),
        (logging.handlers.BaseRotatingHandler, "rotate", ["rotating", "timed"]),
        (logging.handlers.WatchedFileHandler, "reopenIfNeeded", ["watched"]),
    ],
)
@pytest.mark.parametrize("wrap", ["function", "proxy"])
def test_a_handler_method_replaced_on_the_stdlib_class_sends_records_one_by_one(
    case: tuple[type, str, list[str]], wrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "colour the console" recipe wraps ``StreamHandler.emit``: each record goes through it.

    Whenever it is applied: a path built before the patch no longer fits its batches.
    """
    owner, name, kinds = case
    for kind in kinds:
        handler = _HANDLERS[kind](tmp_path / f"{kind}.log")
        emit = batch_emitter(handler)
        assert emit is not None
        assert emit.fits()
        with monkeypatch.context() as patch:
            method = getattr(owner, name)
            patch.setattr(
                owner, name, _marked(method) if wrap == "function" else _wrapt_like(method)
            )
            assert batch_emitter(handler) is None, kind
            assert not emit.fits(), kind
        assert emit.fits()
        handler.close()


@pytest.mark.parametrize("name", ["emit", "format", "flush", "handle"])
def test_a_method_set_later_on_the_applications_own_subclass_sends_records_one_by_one(
    name: str, tmp_path: Path
) -> None:
    """A subclass that overrode nothing gets the batch path, until one of its methods is set."""

    class Own(logging.FileHandler):
        pass

    handler = Own(tmp_path / "own.log")
    emit = batch_emitter(handler)
    assert emit is not None
    assert emit.fits()
    setattr(Own, name, _marked(getattr(logging.FileHandler, name)))
    assert not emit.fits()
    delattr(Own, name)
    assert emit.fits()
    handler.close()


def test_a_method_set_where_another_attribute_was_deleted_is_honoured(tmp_path: Path) -> None:
    """A class that loses one attribute and gains a method keeps its size: the method counts."""

    class Own(logging.FileHandler):
        retries = 3

    handler = Own(tmp_path / "own.log")
    emit = batch_emitter(handler)
    assert emit is not None
    assert emit.fits()
    del Own.retries
    Own.emit = _marked(logging.FileHandler.emit)  # type: ignore[method-assign]
    assert not emit.fits()
    handler.close()


class _Signalling(io.StringIO):
    """A stream that says when a line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        self.written.set()
        return n


@pytest.mark.anyio
async def test_emit_wrapped_while_the_listener_runs_is_called_from_then_on(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker that batched before the patch hands later records to the wrapped ``emit``."""
    stream = _Signalling()
    handler = logging.StreamHandler(stream)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler):
        logger.info("one")
        assert await anyio.to_thread.run_sync(stream.written.wait, STALL)
        own = logging.StreamHandler.emit

        def coloured(self: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
            record.msg = f"COLOURED {record.msg}"
            own(self, record)

        monkeypatch.setattr(logging.StreamHandler, "emit", coloured)
        logger.info("two")
    assert stream.getvalue() == "one\nCOLOURED two\n"


def _shouting(self: logging.Formatter, record: logging.LogRecord) -> str:
    """``formatMessage``, upper-cased: no closure, so its code can stand in for the stdlib's."""
    return self._style.format(record).upper()


def _emit_marked(self: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
    """``emit`` that marks each line: no closure, so its code can stand in for the stdlib's."""
    self.stream.write("PATCHED " + self.format(record) + self.terminator)


def test_a_stdlib_method_whose_code_is_swapped_in_place_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hot patch that swaps a method's ``__code__`` (the same function object) counts too."""
    stream, handler, emit = _batched_stream("%(levelname)s %(message)s")

    def batch(message: str) -> None:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, message, None, None)
        if emit.fits():
            emit([(record, contextvars.copy_context())])
        else:
            handler.handle(record)

    batch("plain")
    with monkeypatch.context() as patch:
        patch.setattr(logging.Formatter.formatMessage, "__code__", _shouting.__code__)
        batch("shouted")
    batch("plain again")
    with monkeypatch.context() as patch:
        patch.setattr(logging.StreamHandler.emit, "__code__", _emit_marked.__code__)
        assert not emit.fits()
        batch("marked")
    assert emit.fits()
    assert stream.getvalue() == (
        "INFO plain\nINFO SHOUTED\nINFO plain again\nPATCHED INFO marked\n"
    )


def test_a_filter_replaced_on_the_stdlib_class_runs_for_each_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Filterer.filter`` patched on the stdlib's class decides, with no filter added."""
    own = logging.Filterer.filter

    def every_other(self: logging.Filterer, record: logging.LogRecord) -> Any:
        return record.lineno % 2 == 0 and own(self, record)

    monkeypatch.setattr(logging.Filterer, "filter", every_other)
    (direct, _), (batched, _) = _direct_and_batched(
        lambda: logging.Formatter("%(lineno)d %(message)s"), _records
    )
    assert batched == direct
    assert "\n1 " not in direct


def test_a_class_attribute_added_to_log_record_later_is_not_read_as_a_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the stdlib's mapping: the format's default, not a class attribute set since."""

    def formatter() -> logging.Formatter:
        return logging.Formatter("%(service)s %(message)s", defaults={"service": "-"})

    assert _direct_and_batched(formatter, _records)[1][0].startswith("- n=0 x\n")
    monkeypatch.setattr(logging.LogRecord, "service", "class", raising=False)
    (direct, _), (batched, _) = _direct_and_batched(formatter, _records)
    assert batched == direct
    assert direct.startswith("- n=0 x\n")


def test_a_getattr_on_log_record_does_not_answer_for_a_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the stdlib's mapping: a field the record lacks is missing, whatever ``__getattr__``."""

    def answer(record: logging.LogRecord, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return f"<{name} missing>"

    monkeypatch.setattr(logging.LogRecord, "__getattr__", answer, raising=False)
    (direct, direct_errors), (batched, batched_errors) = _direct_and_batched(
        lambda: logging.Formatter("%(user)s %(message)s"), _records
    )
    assert batched == direct
    assert batched_errors == direct_errors
    assert "missing>" not in direct


def test_a_get_message_the_application_replaced_is_the_one_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``LogRecord.getMessage`` replaced on the class (brace-style messages) is honoured."""

    def braces(record: logging.LogRecord) -> str:
        return str(record.msg).format(*record.args)  # type: ignore[misc]

    monkeypatch.setattr(logging.LogRecord, "getMessage", braces)
    (direct, _), (batched, _) = _direct_and_batched(
        lambda: logging.Formatter("%(levelname)s %(message)s"),
        lambda: [
            logging.LogRecord("app", logging.INFO, __file__, i, "n={} {}", (i, "x"), None)
            for i in range(3)
        ],
    )
    assert direct == "INFO n=0 x\nINFO n=1 x\nINFO n=2 x\n"
    assert batched == direct


def test_a_get_message_set_on_the_record_itself_is_the_one_called() -> None:
    """A filter that replaces one record's ``getMessage`` (say, to redact it) is honoured."""

    def records() -> list[logging.LogRecord]:
        redacted = logging.LogRecord("app", logging.INFO, __file__, 1, "secret %s", ("x",), None)
        redacted.getMessage = lambda: "REDACTED"  # type: ignore[method-assign]
        broken = logging.LogRecord("app", logging.INFO, __file__, 2, "a", None, None)
        broken.getMessage = "not callable"  # type: ignore[assignment,method-assign]
        return [redacted, broken]

    direct, batched = _direct_and_batched(lambda: logging.Formatter("%(message)s"), records)
    assert direct == ("REDACTED\n", [(2, "TypeError(\"'str' object is not callable\")")])
    assert batched == direct


def test_a_change_of_timezone_shows_from_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The date is cached within a batch only: ``time.tzset()`` between two batches shows."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset() is Unix-only")
    stream, _, emit = _batched_stream("%(asctime)s %(message)s")

    def batch(message: str) -> None:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, message, None, None)
        record.created, record.msecs = 1_700_000_000.5, 500.0
        emit([(record, contextvars.copy_context())])

    try:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        batch("utc")
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        batch("kolkata")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stream.getvalue() == ("2023-11-14 22:13:20,500 utc\n2023-11-15 03:43:20,500 kolkata\n")


class _Picky:
    """A stream that writes a text up to a BEL character, then fails (a device refusing a byte)."""

    def __init__(self) -> None:
        self.data: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        for ch in text:
            if ch == "\x07":
                raise OSError("device refused byte 0x07")
            self.data.append(ch)
        return len(text)

    def flush(self) -> None:
        self.flushes += 1


def test_a_stream_failing_mid_batch_gets_the_same_bytes_and_reports() -> None:
    """Part of a failing record written, the rest after it, nothing twice; one report each.

    A stream other than a file is written and flushed record by record, as attached directly.
    """
    texts: list[str] = []
    flushes: list[int] = []
    reports: list[list[tuple[str, BaseException | None]]] = []
    for batched in (False, True):
        stream = _Picky()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        reported: list[tuple[str, BaseException | None]] = []

        def report(record: logging.LogRecord, reported: list[Any] = reported) -> None:
            error = sys.exc_info()[1]
            reported.append((record.getMessage(), error and error.__context__))

        handler.handleError = report  # type: ignore[method-assign]
        records = [
            logging.LogRecord("app", logging.INFO, __file__, 1, msg, (), None)
            for msg in ("line 0", "line 1", "bell \x07 here", "line 3", "caf\u00e9 \x07")
        ]
        if batched:
            emit = batch_emitter(handler)
            assert emit is not None
            assert emit([(r, contextvars.copy_context()) for r in records]) == (3, 2)
        else:
            for record in records:
                handler.handle(record)
        texts.append("".join(stream.data))
        flushes.append(stream.flushes)
        reports.append(reported)
    assert texts[1] == texts[0] == "line 0\nline 1\nbell line 3\ncaf\u00e9 "
    assert reports[1] == reports[0] == [("bell \x07 here", None), ("caf\u00e9 \x07", None)]
    assert flushes[1] == flushes[0] == 3


class _FullDisk(io.RawIOBase):
    """A file that takes *room* bytes, then fails every write (a disk filling up)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        take = min(len(b), self.room - len(self.data))
        if take <= 0:
            raise OSError(28, "No space left on device")
        self.data += bytes(b)[:take]
        return take


@pytest.mark.parametrize("count", [400, 2_000])
def test_a_file_failing_mid_batch_writes_nothing_twice_and_reports_each_record(count: int) -> None:
    """What reached the file is a prefix of the batch; every record of it is reported.

    400 records fail in the flush; 2,000, more than the text stream keeps, in the write.
    """
    disk = _FullDisk(room=1_000)
    stream = io.TextIOWrapper(io.BufferedWriter(disk, buffer_size=1024), encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    reported: list[str] = []
    handler.handleError = lambda record: reported.append(record.getMessage())  # type: ignore[method-assign]
    records = [
        logging.LogRecord("app", logging.INFO, __file__, 1, "line %04d", (i,), None)
        for i in range(count)
    ]
    emit = batch_emitter(handler)
    assert emit is not None
    handled, errors = emit([(r, contextvars.copy_context()) for r in records])
    written = disk.data.decode()
    whole = "".join(f"line {i:04d}\n" for i in range(count))
    assert 0 < len(written) <= 1_000
    assert whole.startswith(written)
    assert (handled, errors) == (0, count)
    assert reported == [f"line {i:04d}" for i in range(count)]


def _sized_records() -> list[logging.LogRecord]:
    """Records of every length near a small maxBytes, some non-ASCII, one longer than it.

    The first is longer than any limit, on an empty file (older Pythons roll
    that over, newer ones do not). The next 30 are 20 characters each, so that
    some of the limits the test uses fall exactly where a record would end.
    """
    words = ["a", "caf\u00e9", "\u65e5\u672c", "x" * 37, "emoji \U0001f600", "b" * 120, "z" * 300]
    same = [("%s", ("z" * 300,))] + [("%s", (f"{i:020d}",)) for i in range(30)]
    rest = [("%d %s", (i, words[i * 7 % 11 % 7])) for i in range(150)]
    return [
        logging.LogRecord("app", logging.INFO, __file__, 1, msg, args, None)
        for msg, args in same + rest
    ]


ROTATING_CASES: dict[str, dict[str, Any]] = {
    "utf-8": {"encoding": "utf-8"},
    "delay": {"encoding": "utf-8", "delay": True},
    "latin-1": {"encoding": "latin-1", "errors": "replace"},
    "utf-16": {"encoding": "utf-16"},
    "crlf terminator": {"encoding": "utf-8", "terminator": "\r\n"},
    "no terminator": {"encoding": "utf-8", "terminator": ""},
}


@pytest.mark.parametrize("case", list(ROTATING_CASES))
@pytest.mark.parametrize("max_bytes", [0, 61, 63, 65, 200, 256])
def test_a_batch_rolls_a_sized_file_over_before_the_same_records(
    case: str, max_bytes: int, tmp_path: Path
) -> None:
    """Rollover by size, decided from a size kept through the batch, falls where it would.

    Every file, backups included, holds the same bytes as with the handler
    attached directly, at each length around the limit, with multibyte
    records and a record longer than the limit.
    """
    _assert_batches_write_as_direct(tmp_path, max_bytes, dict(ROTATING_CASES[case]))


@pytest.mark.parametrize("max_bytes", [61, 200])
def test_a_shouldrollover_of_unknown_shape_is_asked_for_each_record_after_the_last_is_written(
    max_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python whose shouldRollover this path does not know: asked per record, file up to date."""
    monkeypatch.setattr(_batch, "_size_rule", lambda: None)
    _assert_batches_write_as_direct(tmp_path, max_bytes, {"encoding": "utf-8"})


def _assert_batches_write_as_direct(
    tmp_path: Path, max_bytes: int, options: dict[str, Any]
) -> None:
    """Write _sized_records() to a RotatingFileHandler directly, then in batches: same files."""
    terminator = options.pop("terminator", "\n")
    outputs = []
    for batched in (False, True):
        directory = tmp_path / str(batched)
        directory.mkdir()
        handler = logging.handlers.RotatingFileHandler(
            directory / "out.log", maxBytes=max_bytes, backupCount=200, **options
        )
        handler.terminator = terminator
        handler.setFormatter(logging.Formatter("%(message)s"))
        records = _sized_records()
        if batched:
            emit = batch_emitter(handler)
            assert emit is not None
            for start in range(0, len(records), 64):
                batch = records[start : start + 64]
                assert emit([(r, contextvars.copy_context()) for r in batch]) == (len(batch), 0)
        else:
            for record in records:
                handler.handle(record)
        handler.close()
        outputs.append(_files(directory))
    assert outputs[1] == outputs[0]
    assert len(outputs[0]) > (1 if max_bytes else 0) * 20


@pytest.mark.parametrize("delay", [False, True])
def test_a_batch_reads_a_sized_files_size_once_not_per_record(delay: bool, tmp_path: Path) -> None:
    """Within a batch the size is kept, not read: shouldRollover runs only where no file is open.

    shouldRollover formats the record to measure it; the batch path formats
    each record once, to write it, so the formatter counts the calls.
    """

    class Counting(logging.Formatter):
        calls = 0

        def format(self, record: logging.LogRecord) -> str:
            Counting.calls += 1
            return super().format(record)

    handler = logging.handlers.RotatingFileHandler(
        tmp_path / "out.log", maxBytes=2_000, backupCount=50, encoding="utf-8", delay=delay
    )
    handler.setFormatter(Counting("%(message)s"))
    emit = batch_emitter(handler)
    assert emit is not None
    records = [
        logging.LogRecord("app", logging.INFO, __file__, 1, "line %04d %s", (i, "y" * 30), None)
        for i in range(500)
    ]
    assert emit([(r, contextvars.copy_context()) for r in records]) == (500, 0)
    handler.close()
    assert len(list(tmp_path.iterdir())) > 5  # it rolled over
    # With delay, the first record finds no file open and goes to shouldRollover
    # (which measures it, except on a Python that never rolls an empty file).
    # A record written after a rollover opens the next file, as FileHandler.emit does.
    assert Counting.calls in ((500, 501) if delay else (500,))


def test_a_batch_never_rolls_over_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A sized handler writing to a device (a link to /dev/null) never renames it in a batch."""
    base = tmp_path / "out.log"
    base.symlink_to(os.devnull)
    handler = logging.handlers.RotatingFileHandler(base, maxBytes=100, backupCount=5)
    handler.setFormatter(logging.Formatter("%(message)s"))
    emit = batch_emitter(handler)
    assert emit is not None
    records = [
        logging.LogRecord("app", logging.INFO, __file__, 1, "line %04d", (i,), None)
        for i in range(200)
    ]
    assert emit([(r, contextvars.copy_context()) for r in records]) == (200, 0)
    handler.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.log"]
    assert base.is_symlink()


class _Forwarding(logging.Formatter):
    """A formatter that forwards what it lacks to another (it cannot be copied)."""

    def __init__(self, inner: logging.Formatter) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def format(self, record: logging.LogRecord) -> str:
        return "fwd " + self.inner.format(record)


class _Numbering(logging.Formatter):
    """A formatter that numbers the lines it formats (it keeps state)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s")
        self.count = 0

    def format(self, record: logging.LogRecord) -> str:
        self.count += 1
        return f"{self.count} {super().format(record)}"


class _Duck:
    """A formatter that is no logging.Formatter: it has format() and nothing else."""

    def format(self, record: logging.LogRecord) -> str:
        return "duck " + record.getMessage()


class _Uninitialised(logging.Formatter):
    """A Formatter subclass that never calls Formatter.__init__."""

    def __init__(self) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return "own " + record.getMessage()


@pytest.mark.parametrize("formatter", ["forwarding", "numbering", "duck", "uninitialised"])
def test_a_formatter_of_its_own_class_formats_the_batch_itself(formatter: str) -> None:
    """The handler's own formatter formats every record: not a copy, which may fail or fork."""
    outputs = []
    records = [
        logging.LogRecord("app", logging.INFO, __file__, 1, "line %d", (i,), None)
        for i in range(50)
    ]
    for batched in (False, True):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        made: Any = {
            "forwarding": _Forwarding,
            "numbering": _Numbering,
            "duck": _Duck,
            "uninitialised": _Uninitialised,
        }[formatter]
        args = [logging.Formatter("%(message)s")] if formatter == "forwarding" else []
        handler.setFormatter(made(*args))
        if batched:
            emit = batch_emitter(handler)
            assert emit is not None
            for start in (0, 25):
                batch = records[start : start + 25]
                assert emit([(r, contextvars.copy_context()) for r in batch]) == (25, 0)
        else:
            for record in records:
                handler.handle(record)
        outputs.append(stream.getvalue())
    assert outputs[1] == outputs[0]
    assert outputs[0].count("\n") == 50


@pytest.mark.parametrize("method", ["emit", "handle", "format", "flush", "shouldRollover"])
def test_a_method_replaced_on_the_handler_is_honoured_record_by_record(
    method: str, tmp_path: Path
) -> None:
    """A handler with a method replaced on the instance is not given the built-in batch path."""
    handler = logging.handlers.RotatingFileHandler(tmp_path / "out.log", maxBytes=1_000)
    plain = logging.FileHandler(tmp_path / "plain.log")
    try:
        assert batch_emitter(handler) is not None
        setattr(handler, method, getattr(handler, method))
        assert batch_emitter(handler) is None
        if method != "shouldRollover":
            setattr(plain, method, getattr(plain, method))
            assert batch_emitter(plain) is None
    finally:
        handler.close()
        plain.close()


@pytest.mark.anyio
async def test_a_filter_replaced_on_the_handler_filters_behind_a_listener(
    logger: logging.Logger,
) -> None:
    """An instance's own filter() keeps records out behind a listener as it does attached."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.filter = lambda record: record.msg != "secret"  # type: ignore[method-assign]
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler, logging.NullHandler()):
        logger.info("public")
        logger.info("secret")
    assert stream.getvalue() == "public\n"


@pytest.mark.parametrize("change", ["append", "truncate"])
def test_a_sized_file_changed_between_batches_rolls_over_where_it_would(
    change: str, tmp_path: Path
) -> None:
    """Another writer appends to the file, or cuts it (copytruncate), between two batches."""
    outputs: list[dict[str, bytes]] = []
    records = [
        logging.LogRecord("app", logging.INFO, __file__, 1, "line %02d %s", (i, "x" * 50), None)
        for i in range(40)
    ]
    for batched in (False, True):
        directory = tmp_path / str(batched)
        directory.mkdir()
        path = directory / "out.log"
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000, backupCount=50)
        handler.setFormatter(logging.Formatter("%(message)s"))
        emit = batch_emitter(handler)
        assert emit is not None
        for start in range(0, 40, 10):
            batch = records[start : start + 10]
            if batched:
                assert emit([(r, contextvars.copy_context()) for r in batch]) == (10, 0)
            else:
                for record in batch:
                    handler.handle(record)
            if change == "append":
                with path.open("a") as other:
                    other.write("another writer " + "y" * 600 + "\n")
            else:
                os.truncate(path, 0)
        handler.close()
        outputs.append(_files(directory))
    assert outputs[1] == outputs[0]
    # Appended to, it rolls over mid-batch; cut, it never fills up.
    assert len(outputs[0]) > 1 if change == "append" else len(outputs[0]) == 1


class _SeesSteps(logging.Formatter):
    """Notes the batch's step count each time it formats a record (mid-call)."""

    def __init__(self, steps: Steps) -> None:
        super().__init__("%(message)s")
        self.steps = steps
        self.seen: list[int] = []

    def format(self, record: logging.LogRecord) -> str:
        self.seen.append(self.steps.count)
        return super().format(record)


@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_a_batch_counts_its_steps_while_it_runs(kind: str, tmp_path: Path) -> None:
    """Each record formatted is a step, seen from outside before the call returns.

    What a shutdown watches to tell a handler that turned slow mid-batch from
    a stuck one.
    """
    handler = HANDLERS[kind](tmp_path)
    steps = Steps()
    formatter = _SeesSteps(steps)
    handler.setFormatter(formatter)
    emit = batch_emitter(handler, steps)
    assert emit is not None
    records = _sized_records()
    assert emit([(r, contextvars.copy_context()) for r in records]) == (len(records), 0)
    _close(handler)
    assert formatter.seen == sorted(set(formatter.seen))  # grew at every record
    assert len(formatter.seen) == len(records)
    assert steps.count > formatter.seen[-1]


def test_each_write_to_a_stream_other_than_a_file_is_a_step() -> None:
    """A stream written record by record (not a file's) counts each write as a step."""

    class SlowPipe(io.StringIO):
        def __init__(self, steps: Steps) -> None:
            super().__init__()
            self.steps = steps
            self.seen: list[int] = []

        def write(self, text: str) -> int:
            self.seen.append(self.steps.count)
            return super().write(text)

    steps = Steps()
    pipe = SlowPipe(steps)
    handler = logging.StreamHandler(pipe)
    emit = batch_emitter(handler, steps)
    assert emit is not None
    records = _sized_records()[:50]
    assert emit([(r, contextvars.copy_context()) for r in records]) == (50, 0)
    # 50 records formatted (steps 0-49), then each write a step of its own.
    assert pipe.seen == list(range(51, 101))


class _StuckOn(io.StringIO):
    """A stream (not a file) that hangs on the line "stuck" until released.

    *done* is set once it holds *lines* lines.
    """

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        self.lines = lines

    def write(self, text: str) -> int:
        if text == "stuck\n":
            self.entered.set()
            self.release.wait(STALL)
        written = super().write(text)
        self.lines -= text.count("\n")
        if not self.lines:
            self.done.set()
        return written


@pytest.mark.anyio
async def test_a_stream_stuck_mid_batch_holds_only_the_records_from_the_stuck_one(
    logger: logging.Logger,
) -> None:
    """A stop() that gives up on a handler stuck mid-call counts what it wrote as delivered.

    The records written before the stuck one, in the same call, are not among
    those reported undelivered: they are among those handled.
    """
    stream = _StuckOn(lines=3_051)
    handler = logging.StreamHandler(stream)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    try:
        for i in range(3_000):
            logger.info("cheap %d", i)  # no await: the calls grow to hundreds of records
        logger.info("stuck")
        for i in range(50):
            logger.info("after %d", i)
        assert await in_thread(lambda: stream.entered.wait(STALL))
        stats = await listener.stop(0.3)
        assert stream.getvalue().count("\n") == 3_000
        assert stats.undelivered == 51
        assert (stats.handlers[0].pending, stats.handlers[0].handled) == (51, 3_000)
    finally:
        stream.release.set()
    assert await in_thread(lambda: stream.done.wait(STALL))  # its worker wrote the rest
