"""The one-hop path's stream handlers: the loop's thread formats what it logged, the worker writes.

A lone ``StreamHandler`` or ``FileHandler`` with a plain formatter gets the
records the loop's thread logged as lines formatted on that thread, at its
next turn: each record dies where it was made. Everything else (another
thread's records, a record with an exception or a stack, a formatter or
filter of the application's) goes through the worker, in order, and the file
holds what the handler attached directly writes.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from support import STALL, in_thread
from test_batch import FORMATTERS

import aioqlog
from aioqlog._bridge import SPILL

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")

#: A format that reads fields the loop's thread and a thread set differently.
PLAIN = "%(levelname)s %(name)s %(threadName)s %(message)s"


@pytest.fixture
def pinned_clock() -> Iterator[None]:
    """Every record made is logged at the same instant: dates compare across runs."""
    made = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        record.created = 1_700_000_000.25
        record.msecs = 250.0
        return record

    logging.setLogRecordFactory(factory)
    yield
    logging.setLogRecordFactory(made)


def _file_handler(path: Path, fmt: logging.Formatter | None) -> logging.FileHandler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(fmt)
    return handler


def _log_a_mix(logger: logging.Logger) -> None:
    """Records of every kind the loop's thread logs, in one burst: the lines' order is theirs."""
    logger.info("plain %s %d", "text", 1)
    logger.debug("below the handler's level")
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("with an exception")
    logger.info("after the exception")
    logger.info("with a stack", stack_info=True)
    logger.warning({"a": "dict as the message"})
    token = REQUEST.set("req-1")
    logger.info("in a context")
    REQUEST.reset(token)
    logger.info("a mutable argument %s", [1, 2])
    logger.info("last of the burst")


def _file_or_string(path: Path, fmt: str, kind: str) -> logging.StreamHandler[Any]:
    handler: logging.StreamHandler[Any] = (
        logging.FileHandler(path, encoding="utf-8")
        if kind == "file"
        else logging.StreamHandler(io.StringIO())
    )
    handler.setFormatter(logging.Formatter(fmt))
    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fmt", "kind", "where"),
    [
        ("%(asctime)s %(levelname)s %(message)s", "file", "loop"),
        # An extra field's value is printed by its own str(): on the worker.
        ("%(asctime)s %(request)s %(message)s", "file", "worker"),
        # A stream of the application's own class runs its code as it writes.
        ("%(asctime)s %(levelname)s %(message)s", "string", "worker"),
    ],
)
async def test_records_the_loop_logs_die_on_its_thread(
    logger: logging.Logger, tmp_path: Path, fmt: str, kind: str, where: str
) -> None:
    """Where formatting and writing run only the stdlib's code, the loop formats and frees them."""
    died: list[int] = []
    all_died = threading.Event()
    alive: set[weakref.ref[logging.LogRecord]] = set()
    made = logging.getLogRecordFactory()

    def gone(ref: weakref.ref[logging.LogRecord]) -> None:
        died.append(threading.get_ident())
        alive.discard(ref)
        if len(died) == 500:
            all_died.set()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        alive.add(weakref.ref(record, gone))
        return record

    handler = _file_or_string(tmp_path / "app.log", fmt, kind)
    logging.setLogRecordFactory(factory)
    try:

        def bursts() -> None:
            for i in range(50):
                logger.info("record %d", i, extra={"request": "r"})

        q = aioqlog.LogQueue()
        logger.addHandler(aioqlog.QueueHandler(q))
        async with aioqlog.QueueListener(q, handler):
            await anyio.lowlevel.checkpoint()
            for _ in range(10):
                bursts()
                await anyio.lowlevel.checkpoint()
            loop_thread = threading.get_ident()
            # Each turn came before the stop (on trio, a turn's callback may
            # take more than one checkpoint): the stop's own last batch would
            # be the worker's to take.
            assert await in_thread(lambda: all_died.wait(STALL))
            # The handler's worker (3.12 has a helper thread of aioqlog's too).
            name = f"aioqlog-{type(handler).__name__}"
            worker = {t.ident for t in threading.enumerate() if t.name == name}
    finally:
        logging.setLogRecordFactory(made)
        handler.close()
    assert len(died) == 500
    assert set(died) == ({loop_thread} if where == "loop" else worker)


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(FORMATTERS))
async def test_the_lines_are_what_the_handler_attached_directly_writes(
    logger: logging.Logger, tmp_path: Path, pinned_clock: None, name: str
) -> None:
    """Every formatter, a mix of records from the loop and a thread: the same bytes as directly."""

    async def log() -> None:
        # One call site for both runs: the stacks logged name it.
        for _ in range(2):
            _log_a_mix(logger)
            await in_thread(lambda: logger.info("from a thread %d", 2))
            _log_a_mix(logger)
            await anyio.lowlevel.checkpoint()  # the loop's turn

    written = {}
    for how in ("direct", "behind a listener"):
        handler = _file_handler(tmp_path / f"{how}.log", FORMATTERS[name]())
        handler.setLevel(logging.INFO)
        q = aioqlog.LogQueue()
        attached = handler if how == "direct" else aioqlog.QueueHandler(q)
        serving = contextlib.nullcontext() if how == "direct" else aioqlog.QueueListener(q, handler)
        logger.addHandler(attached)
        try:
            async with serving:
                await anyio.lowlevel.checkpoint()
                await log()
        finally:
            logger.removeHandler(attached)
            handler.close()
        assert q.dropped == 0
        written[how] = (tmp_path / f"{how}.log").read_bytes()
    assert written["behind a listener"] == written["direct"]


class _Watched(io.StringIO):
    """A stream that says when it holds a given text."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            n = super().write(text)
            self.changed.notify_all()
        return n

    def holds(self, text: str) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.getvalue() == text, STALL)

    def holds_lines(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.getvalue().count("\n") >= count, STALL)


async def _until_written(stream: _Watched, text: str) -> None:
    assert await in_thread(lambda: stream.holds(text)), stream.getvalue()


def _eventually(check: Callable[[], bool]) -> bool:
    """Wait (in a thread) until *check()* holds; False after ``STALL`` seconds."""
    deadline = time.monotonic() + STALL
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.mark.anyio
async def test_a_filter_or_formatter_changed_while_running_counts_from_the_next_turn(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """Each turn decides afresh: a filter added, a formatter swapped, apply to what follows."""
    path = tmp_path / "app.log"
    handler = _file_handler(path, logging.Formatter("%(message)s"))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    async def written(text: str) -> None:
        assert await in_thread(lambda: _eventually(lambda: path.read_text() == text))

    try:
        async with aioqlog.QueueListener(q, handler):
            await anyio.lowlevel.checkpoint()
            logger.info("one")
            await written("one\n")
            handler.addFilter(lambda record: record.msg != "two")
            logger.info("two")
            logger.info("three")
            await written("one\nthree\n")
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logger.info("four")
            await written("one\nthree\nINFO four\n")
            handler.filters.clear()
            logger.info("two")
    finally:
        handler.close()
    assert path.read_text() == "one\nthree\nINFO four\nINFO two\n"


def _skipping_two(self: logging.Handler, record: logging.LogRecord) -> bool:
    return record.msg != "two"


def _shouting(self: logging.Handler, record: logging.LogRecord) -> str:
    return logging.Handler.format(self, record).upper()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "method", "expected"),
    [("filter", _skipping_two, "one\nthree\n"), ("format", _shouting, "one\nTWO\nTHREE\n")],
)
async def test_a_method_set_on_the_applications_own_subclass_counts_from_the_next_turn(
    logger: logging.Logger, tmp_path: Path, name: str, method: Any, expected: str
) -> None:
    """A handler class of the application's that overrode nothing, patched while running."""

    class Own(logging.FileHandler):
        pass

    path = tmp_path / "app.log"
    handler = Own(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    try:
        async with aioqlog.QueueListener(q, handler):
            await anyio.lowlevel.checkpoint()
            logger.info("one")
            assert await in_thread(lambda: _eventually(lambda: path.read_text() == "one\n"))
            setattr(Own, name, method)
            logger.info("two")
            logger.info("three")
            # Written at a turn of the loop's, before the stop.
            assert await in_thread(lambda: _eventually(lambda: path.read_text() == expected))
    finally:
        handler.close()
    assert path.read_text() == expected


async def _logged_through_a_factory(
    logger: logging.Logger,
    path: Path,
    fmt: str,
    change: Callable[[logging.LogRecord], None],
    *,
    messages: list[str],
    written: Callable[[str], bool],
) -> int:
    """Log *messages* on the loop, each record changed by *change* as the factory makes it.

    Waits, before the stop, until the file's text satisfies *written* (the
    loop's turns saw every record); returns the loop's thread's ident.
    """
    made = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        change(record)
        return record

    handler = _file_handler(path, logging.Formatter(fmt))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    logging.setLogRecordFactory(factory)
    try:
        async with aioqlog.QueueListener(q, handler):
            await anyio.lowlevel.checkpoint()
            for message in messages:
                logger.info(message)
            assert await in_thread(lambda: _eventually(lambda: written(path.read_text())))
            return threading.get_ident()
    finally:
        logging.setLogRecordFactory(made)
        handler.close()


class _Tag:
    """A value of the application's, printed by its own ``str()``: says where that ran."""

    def __init__(self) -> None:
        self.printed_on: set[int] = set()

    def __str__(self) -> str:
        self.printed_on.add(threading.get_ident())
        return "tagged"


@pytest.mark.anyio
async def test_a_standard_field_a_record_factory_sets_to_an_object_is_printed_on_the_worker(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """The loop's thread runs no ``str()`` of the application's: that record goes to the worker."""
    tag = _Tag()

    def change(record: logging.LogRecord) -> None:
        if record.msg == "tagged":
            record.processName = tag  # type: ignore[assignment]

    expected = "MainProcess plain\ntagged tagged\nMainProcess after\n"
    loop_thread = await _logged_through_a_factory(
        logger,
        tmp_path / "app.log",
        "%(processName)s %(message)s",
        change,
        messages=["plain", "tagged", "after"],
        written=expected.__eq__,
    )
    assert tag.printed_on
    assert loop_thread not in tag.printed_on


@pytest.mark.anyio
async def test_a_get_message_a_record_factory_sets_on_a_record_is_called_on_the_worker(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """A record's own ``getMessage`` is the application's code: called, off the loop's thread."""
    called_on: set[int] = set()

    def get_message() -> str:
        called_on.add(threading.get_ident())
        return "its own message"

    def change(record: logging.LogRecord) -> None:
        if record.msg == "own":
            record.getMessage = get_message  # type: ignore[method-assign]

    loop_thread = await _logged_through_a_factory(
        logger,
        tmp_path / "app.log",
        "%(levelname)s %(message)s",
        change,
        messages=["plain", "own"],
        written="INFO plain\nINFO its own message\n".__eq__,
    )
    assert called_on
    assert loop_thread not in called_on


class _Number:
    """A number of the application's own class: says where it was read as one."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.read_on: set[int] = set()

    def __index__(self) -> int:
        self.read_on.add(threading.get_ident())
        return self.value

    __int__ = __index__


@pytest.mark.anyio
@pytest.mark.parametrize(("field", "value"), [("msecs", 250), ("created", 1_700_000_000)])
async def test_a_date_field_a_record_factory_sets_to_an_object_is_read_on_the_worker(
    logger: logging.Logger, tmp_path: Path, field: str, value: int
) -> None:
    """The date's numbers are the record's too: an object there is read off the loop's thread."""
    number = _Number(value)

    def change(record: logging.LogRecord) -> None:
        if field == "created":
            record.msecs = 250.0
        setattr(record, field, number)

    path = tmp_path / "app.log"
    loop_thread = await _logged_through_a_factory(
        logger,
        path,
        "%(asctime)s %(message)s",
        change,
        messages=["one"],
        written=lambda text: text.endswith("one\n"),
    )
    assert ",250 one\n" in path.read_text()
    assert number.read_on
    assert loop_thread not in number.read_on


class _Refusing(io.RawIOBase):
    """Raw bytes whose writes fail: a file's text stream over a full disk."""

    def writable(self) -> bool:
        return True

    full = True

    def write(self, data: Any) -> int:
        if self.full:
            raise OSError("disk full")
        return len(data)


@pytest.mark.anyio
async def test_a_line_that_fails_to_be_written_goes_to_handle_error_with_its_text(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each record the loop formatted that fails to be written is reported, its text as message."""
    raw = _Refusing()
    handler: logging.StreamHandler[Any] = logging.StreamHandler(
        io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler) as listener:
        await anyio.lowlevel.checkpoint()
        for word in ("one", "two", "three"):
            logger.info("%s", word)
        # The loop's turn formats them, before the stop.
        assert await in_thread(lambda: _eventually(lambda: listener.stats.handlers[0].errors == 3))
    stats = listener.stats.handlers[0]
    assert (stats.handled, stats.errors) == (0, 3)
    err = capsys.readouterr().err
    assert err.count("--- Logging error ---") == 3
    assert "OSError: disk full" in err
    for word in ("one", "two", "three"):
        assert f"Message: 'INFO {word}'" in err
    raw.full = False  # room again: what its text stream still holds goes as it closes
    handler.stream.close()


@pytest.mark.anyio
async def test_after_stop_a_thread_is_handled_in_the_caller_at_once(
    logger: logging.Logger,
) -> None:
    """The queue keeps no token of the stopped run's: a thread's record does not wait in it."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    handler = logging.StreamHandler(stream)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    for _ in range(3):
        async with aioqlog.QueueListener(q, handler):
            await anyio.lowlevel.checkpoint()
            logger.info("during")
            await anyio.lowlevel.checkpoint()
        await in_thread(lambda: logger.info("after"))
        # Handled in the logging thread's own call, as before start().
        assert stream.buffer.getvalue().endswith(b"during\nafter\n")
        assert q.qsize() == 0


class _LineCount:
    """A thread that counts a file's lines and says once they number *want*."""

    def __init__(self, path: Path, want: int) -> None:
        self.path, self.want = path, want
        self.lines = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            if self.path.exists():
                self.lines = self.path.read_bytes().count(b"\n")
                if self.lines >= self.want:
                    self.done.set()
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STALL)


@pytest.mark.anyio
async def test_a_tight_burst_into_a_file_is_written_while_the_loop_is_busy(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """50,000 records logged on the loop without yielding: written before it yields (but the last).

    The loop formats a turn's worth once SPILL records wait, and the worker
    takes the rest off the queue meanwhile.
    """
    n = 50_000
    path = tmp_path / "app.log"
    handler = _file_handler(path, logging.Formatter("%(asctime)s %(message)s"))
    q = aioqlog.LogQueue()
    q._tick = None  # only the hand-offs themselves may wake the worker
    logger.addHandler(aioqlog.QueueHandler(q))
    watcher = _LineCount(path, n - SPILL)
    try:
        async with aioqlog.QueueListener(q, handler) as listener:
            await anyio.lowlevel.checkpoint()
            for i in range(n):
                logger.info("r %d", i)
            # Still on the loop, which has not yielded since the burst began.
            assert watcher.done.wait(STALL), f"{watcher.lines} of {n} written meanwhile"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [line.split(" ", 2)[-1] for line in lines] == [f"r {i}" for i in range(n)]
        assert (listener.stats.dropped, listener.stats.handlers[0].dropped) == (0, 0)
    finally:
        watcher.stop()
        handler.close()


@pytest.mark.anyio
async def test_the_loop_and_threads_logging_at_once_keep_each_ones_order(
    logger: logging.Logger, tmp_path: Path
) -> None:
    """Two threads log flat out while the loop logs in bursts: every line, each source in order."""
    path = tmp_path / "app.log"
    handler = _file_handler(path, logging.Formatter(PLAIN))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    n = 5_000
    start = threading.Barrier(3)

    def flat_out(tag: str) -> None:
        start.wait(STALL)
        for i in range(n):
            logger.info("%s %d", tag, i)

    try:
        async with aioqlog.QueueListener(q, handler) as listener:
            await anyio.lowlevel.checkpoint()
            threads = [threading.Thread(target=flat_out, args=(f"t{k}",)) for k in range(2)]
            for thread in threads:
                thread.start()
            await in_thread(lambda: start.wait(STALL))
            for burst in range(2 * n // 50):
                for i in range(50):
                    logger.info("loop %d", burst * 50 + i)
                await anyio.lowlevel.checkpoint()

            def join() -> None:
                for thread in threads:
                    thread.join(STALL)

            await in_thread(join)
        assert listener.stats.dropped == 0
    finally:
        handler.close()
    lines = [line.split()[-2:] for line in path.read_text(encoding="utf-8").splitlines()]
    for tag, count in (("t0", n), ("t1", n), ("loop", 2 * n)):
        assert [int(i) for source, i in lines if source == tag] == list(range(count)), tag


class _Chatty(io.StringIO):
    """A stream that logs a line about each write it takes, through the logger it serves."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.writes = 0
        self.summarised = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes < 200:  # a runaway chain stops here, and fails the test
            self.logger.info("wrote %d characters", len(text))
        if text.startswith("aioqlog dropped"):
            self.summarised.set()
        return super().write(text)


@pytest.mark.anyio
async def test_a_stream_that_logs_as_it_writes_is_stopped_by_the_recursion_guard(
    logger: logging.Logger,
) -> None:
    """What the handler logs on its own thread is never the loop's to format: the guard stops it."""
    stream = _Chatty(logger)
    handler = logging.StreamHandler(stream)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler) as listener:
        await anyio.lowlevel.checkpoint()
        for i in range(3):
            logger.info("line %d", i)
        # Written at the loop's turn, then the echoes, then the summary.
        assert await in_thread(lambda: stream.summarised.wait(STALL)), stream.getvalue()
    lines = stream.getvalue().splitlines()
    # Each line, and the line its write logged; that line's own echo is
    # dropped, and a summary says so.
    assert lines[:6] == ["line 0", "line 1", "line 2", *["wrote 7 characters"] * 3]
    assert lines[6].startswith("aioqlog dropped 3 records that handlers logged")
    assert len(lines) == 7
    assert listener.stats.recursion_dropped >= 3


class _LazyRequest:
    """An ``extra`` value printed when the line is formatted: the request of the log call."""

    def __str__(self) -> str:
        return REQUEST.get()


@pytest.mark.anyio
async def test_a_value_printed_when_formatted_sees_its_log_calls_context(
    logger: logging.Logger,
) -> None:
    """Each record is formatted in its own log call's context (the loop's turn runs in none)."""
    stream = _Watched()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(request)s"))
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    async def request(k: int) -> None:
        REQUEST.set(f"req-{k}")
        logger.info("request %d", k, extra={"request": _LazyRequest()})

    async with aioqlog.QueueListener(q, handler):
        await anyio.lowlevel.checkpoint()
        async with anyio.create_task_group() as group:
            for k in range(4):
                group.start_soon(request, k)
        logger.info("no request", extra={"request": _LazyRequest()})
        assert await in_thread(lambda: stream.holds_lines(5)), stream.getvalue()
    lines = stream.getvalue().splitlines()
    # The tasks log in the order they run (trio's is its own).
    assert sorted(lines[:4]) == [f"request {k} req-{k}" for k in range(4)]
    assert lines[4:] == ["no request -"]
