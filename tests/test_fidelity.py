"""A handler behind the listener writes exactly what it writes attached directly."""

from __future__ import annotations

import copy
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import sniffio
from support import AsyncRecorder, Gate, Recorder

import aioqlog

FIELDS = (
    "%(asctime)s %(msecs)03d %(relativeCreated)d %(name)s %(levelname)s %(levelno)s "
    "%(pathname)s %(filename)s %(module)s %(funcName)s %(lineno)d "
    "%(process)d %(processName)s %(thread)d %(threadName)s "
    "req=%(request_id)s %(message)s"
)
if sys.version_info >= (3, 12):
    FIELDS += " task=%(taskName)s"


def _formatter() -> logging.Formatter:
    return logging.Formatter(FIELDS, defaults={"request_id": "-"})


class Reference(logging.Handler):
    """What a handler attached directly writes: the record formatted at the call.

    It formats a copy, so the record that goes on the queue is not touched
    (no cached exc_text the listener's handler could lean on).
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_formatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(copy.copy(record)))


def log_from_a_helper(logger: logging.Logger) -> None:
    """Log from a function of its own, so funcName and lineno are not the test's."""
    logger.warning("from a helper, %s", "with args")


async def _log_everything(logger: logging.Logger) -> None:
    items = ["a"]
    logger.debug("plain")
    logger.info("args %s %d %.2f %r", "s", 3, 2.5, None)
    logger.info("mutable %s", items)
    items.append("changed after the call")
    logger.info("extra", extra={"request_id": "r-42"})
    log_from_a_helper(logger)
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception("failed %s", "op")
    logger.error("with stack", stack_info=True)
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError:
        logger.error("chained", exc_info=True)

    async def request() -> None:
        logger.info("inside a named task")

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, name="request-7")

    def worker() -> None:
        logger.info("from a thread")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("thread traceback")

    thread = threading.Thread(target=worker, name="worker-3")
    thread.start()
    thread.join()


@pytest.mark.parametrize("kind", ["sync", "async", "both"])
@pytest.mark.anyio
async def test_output_matches_direct_handling(logger: logging.Logger, kind: str) -> None:
    """Every field, traceback and stack is the same as a handler attached directly."""
    q = aioqlog.LogQueue()
    reference = Reference()
    logger.addHandler(aioqlog.QueueHandler(q))
    logger.addHandler(reference)
    handlers: list[Recorder | AsyncRecorder] = []
    if kind in ("sync", "both"):
        handlers.append(Recorder())
    if kind in ("async", "both"):
        handlers.append(AsyncRecorder())
    for handler in handlers:
        handler.setFormatter(_formatter())
    async with aioqlog.QueueListener(q, *handlers):
        await _log_everything(logger)
    assert len(reference.lines) == 11
    for handler in handlers:
        assert handler.lines == reference.lines
    joined = "\n".join(handlers[0].lines)
    (failed,) = [line for line in handlers[0].lines if "failed op" in line]
    assert failed.count("Traceback (most recent call last)") == 1
    (stacked,) = [line for line in handlers[0].lines if "with stack" in line]
    assert stacked.count("Stack (most recent call last)") == 1
    assert "mutable ['a']" in joined
    assert "changed after the call" not in joined
    assert "req=r-42 extra" in joined
    assert "log_from_a_helper" in joined
    assert " worker-3 " in joined
    assert "The above exception was the direct cause" in joined
    # LogRecord.taskName is the asyncio task's name; trio's tasks have none there.
    if sys.version_info >= (3, 12) and sniffio.current_async_library() == "asyncio":
        assert "task=request-7" in joined


class _Masking(logging.Filter):
    """A redaction filter, as applications write them: it masks a dict argument's password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, dict) and "password" in arg:
                arg["password"] = "***"
        return True


class _ArgsAsJson(logging.Formatter):
    """A JSON formatter that keeps the template and the arguments as data."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"template": record.msg, "args": record.args, "message": record.getMessage()},
            default=str,
        )


class _Order:
    def __init__(self, number: int) -> None:
        self.number = number

    def __str__(self) -> str:
        return f"order {self.number}"


def _log_data(logger: logging.Logger) -> None:
    credentials = {"name": "bob", "password": "hunter2"}
    items = ["a", {"n": 1}]
    order = _Order(7)
    logger.info("login %s from %s", credentials, ["10.0.0.1"])
    logger.info("cart %s for %s", items, order)
    items.append("b")
    order.number = 8
    logger.info("set %(key)s to %(value)s", {"key": "k", "value": [1, 2]})


@pytest.mark.parametrize("handlers", [1, 2])
@pytest.mark.anyio
async def test_filters_and_formatters_that_read_the_arguments_write_what_they_would(
    logger: logging.Logger, handlers: int
) -> None:
    """A redaction filter masks, and a JSON formatter dumps, the arguments as attached directly.

    Lists and dicts arrive as lists and dicts (copies taken at the call): the
    password is masked in the message, and the arguments serialise as data.
    """

    def writer() -> Recorder:
        handler = Recorder()
        handler.addFilter(_Masking())
        handler.setFormatter(_ArgsAsJson())
        return handler

    direct = logging.getLogger(f"{logger.name}.direct")
    direct.propagate = False
    reference = writer()
    direct.addHandler(reference)
    try:
        _log_data(direct)
    finally:
        direct.removeHandler(reference)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    behind = [writer() for _ in range(handlers)]
    async with aioqlog.QueueListener(q, *behind):
        _log_data(logger)
    assert len(reference.lines) == 3
    for handler in behind:
        assert handler.lines == reference.lines
    assert "hunter2" not in "".join(reference.lines)
    assert json.loads(reference.lines[1])["args"] == [["a", {"n": 1}], "order 7"]


@pytest.mark.anyio
async def test_handlers_see_exc_info_and_the_template(logger: logging.Logger) -> None:
    """Error trackers read exc_info and group by msg: both arrive as logged."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    async with aioqlog.QueueListener(q, rec):
        try:
            raise KeyError("k")
        except KeyError as error:
            raised = error
            logger.exception("lookup of %s failed", "k")
    (record,) = rec.records
    assert record.msg == "lookup of %s failed"
    assert record.args == ("k",)
    assert record.exc_info is not None
    assert record.exc_info[1] is raised


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.anyio
async def test_every_handler_formats_its_own_copy(logger: logging.Logger) -> None:
    """Lanes run at once: each handler's asctime is its own formatter's, never another's."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    first, second = Recorder(), Recorder()
    first.setFormatter(logging.Formatter("%(asctime)s", datefmt="A%Y"))
    second.setFormatter(logging.Formatter("%(asctime)s", datefmt="B%Y"))
    async with aioqlog.QueueListener(q, first, second):
        for i in range(2000):
            logger.info("r%d", i)
    assert all(line.startswith("A") for line in first.lines)
    assert all(line.startswith("B") for line in second.lines)
    assert len(first.lines) == len(second.lines) == 2000


class OneLineExceptionFormatter(logging.Formatter):
    """The logging cookbook's formatter: the traceback as one repr() line."""

    def formatException(self, ei: Any) -> str:
        return repr(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.exc_text:
            text = text.replace("\n", "") + "|"
        return text


FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "stdlib": lambda: logging.Formatter("%(levelname)s %(message)s user=%(user)s"),
    "one-line": lambda: OneLineExceptionFormatter("%(levelname)s %(message)s user=%(user)s"),
}


class Direct(Recorder):
    """A handler attached directly that formats a copy: the record's text at the call."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(copy.copy(record))


@pytest.mark.parametrize("formatter", sorted(FORMATTERS))
@pytest.mark.anyio
async def test_state_changed_after_the_call_does_not_show(
    logger: logging.Logger, formatter: str
) -> None:
    """An extra dict, the exception's args and notes changed after the call print as at it."""
    q = aioqlog.LogQueue()
    gate, direct = Gate(), Direct()
    gate.setFormatter(FORMATTERS[formatter]())
    direct.setFormatter(FORMATTERS[formatter]())
    logger.addHandler(aioqlog.QueueHandler(q))
    logger.addHandler(direct)
    user = {"name": "alice"}
    async with aioqlog.QueueListener(q, gate):
        try:
            raise ValueError("original message")
        except ValueError as error:
            logger.exception("failed", extra={"user": user})
            user["name"] = "mallory"
            error.args = ("changed after the call",)
            if sys.version_info >= (3, 11):
                error.add_note("a note added after the call")
        gate.opened.set()
        await gate.arrived(1)
    assert gate.lines == direct.lines
    assert "alice" in gate.lines[0]
    assert "original message" in gate.lines[0]
    assert "after the call" not in gate.lines[0]


@pytest.mark.parametrize("sibling_first", [False, True], ids=["sibling-after", "sibling-before"])
@pytest.mark.anyio
async def test_a_handler_beside_the_queue_handler_does_not_change_the_output(
    logger: logging.Logger, sibling_first: bool
) -> None:
    """A sibling that caches exc_text: output is that of the same handlers attached directly."""

    def handlers(behind: Recorder) -> tuple[Recorder, Recorder]:
        behind.setFormatter(OneLineExceptionFormatter("%(message)s"))
        sibling = Recorder()
        sibling.setFormatter(logging.Formatter("%(message)s"))
        return behind, sibling

    direct_logger = logging.getLogger(f"{logger.name}.direct")
    direct_logger.propagate = False
    gate = Gate()
    behind, sibling = handlers(gate)
    direct_behind, direct_sibling = handlers(Recorder())
    queued = aioqlog.QueueHandler(aioqlog.LogQueue())
    pairs: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = [
        (logger, queued, sibling),
        (direct_logger, direct_behind, direct_sibling),
    ]
    for target, first, second in pairs:
        for handler in (second, first) if sibling_first else (first, second):
            target.addHandler(handler)
    try:
        async with aioqlog.QueueListener(queued.queue, behind):
            for target in (logger, direct_logger):
                try:
                    raise KeyError("missing")
                except KeyError:
                    target.exception("failed")
            gate.opened.set()
            await gate.arrived(1)
    finally:
        for handler in list(direct_logger.handlers):
            direct_logger.removeHandler(handler)
    assert behind.lines == direct_behind.lines
    assert sibling.lines == direct_sibling.lines
    assert behind.lines[0].endswith("|")
    if not sibling_first:
        assert "\n" not in behind.lines[0]
        assert "'Traceback" in behind.lines[0]


@pytest.mark.anyio
async def test_handlers_that_render_differently_each_write_their_own(
    logger: logging.Logger,
) -> None:
    """Two formatters behind one listener: each writes its own traceback, as if alone."""
    q = aioqlog.LogQueue()
    plain, one_line = Recorder(), Recorder()
    plain.setFormatter(logging.Formatter("%(message)s"))
    one_line.setFormatter(OneLineExceptionFormatter("%(message)s"))
    sibling = Recorder()
    sibling.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(aioqlog.QueueHandler(q))
    logger.addHandler(sibling)
    async with aioqlog.QueueListener(q, plain, one_line):
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("failed")
    assert plain.lines[0].startswith("failed\nTraceback (most recent call last):")
    assert one_line.lines[0].startswith("failed'Traceback (most recent call last):\\n")
    assert sibling.lines == plain.lines


class _Broken(logging.Formatter):
    """A formatter whose formatException raises."""

    def formatException(self, ei: Any) -> str:
        raise RuntimeError("formatter bug")


@pytest.mark.anyio
async def test_a_formatter_that_fails_on_the_exception_fails_in_its_lane(
    logger: logging.Logger,
) -> None:
    """Rendering at the call never loses the record: the handler reports its own error."""
    errors: list[logging.LogRecord] = []
    q = aioqlog.LogQueue()
    queued = aioqlog.QueueHandler(q)
    queued.handleError = errors.append  # type: ignore[method-assign,assignment]
    broken = Recorder()
    broken.setFormatter(_Broken())
    reported: list[logging.LogRecord] = []
    broken.handleError = reported.append  # type: ignore[method-assign,assignment]
    healthy = Recorder()
    logger.addHandler(queued)
    async with aioqlog.QueueListener(q, broken, healthy):
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("failed")
    assert errors == []
    assert [r.getMessage() for r in reported] == ["failed"]
    assert healthy.lines[0].startswith("failed\nTraceback (most recent call last):")
