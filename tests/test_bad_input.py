"""Hostile and broken input: the caller goes on, errors reach handleError, the rest arrives.

Every case is logged twice, between two good records: once into a handler
attached directly to the logger, once into the same kind of handler behind
aioqlog. Behind aioqlog the log call must never raise, and the handler must
write the same lines and report the same errors (through ``handleError``,
once per broken record) as it does attached directly.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable

import pytest

import aioqlog


class StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")

    def __repr__(self) -> str:
        return "<StrRaises>"


class ReprRaises:
    def __str__(self) -> str:
        return "ReprRaises"

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ failed")


class BothRaise:
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ failed")


class Custom:
    def __str__(self) -> str:
        return "a custom message object"


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of the exception failed")


# Shared by both runs of a case, so that reprs with addresses print alike.
LOCK = threading.Lock()
GENERATOR = (i for i in range(3))
BIG = "x" * 10_000_000


def cyclic_exception(logger: logging.Logger) -> None:
    """Log an exception whose __cause__ and __context__ form a cycle."""
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise KeyError("outer") from inner
    except KeyError as outer:
        cause = outer.__cause__
        assert cause is not None
        cause.__context__ = outer
        logger.exception("a cyclic chain")


def unprintable_exception(logger: logging.Logger) -> None:
    """Log an exception whose str() raises."""
    try:
        raise UnprintableError
    except UnprintableError:
        logger.exception("an unprintable exception")


Case = Callable[[logging.Logger], None]

CASES: dict[str, Case] = {
    "__str__ raises": lambda log: log.info("value %s", StrRaises()),
    "__repr__ raises": lambda log: log.info("value %r", ReprRaises()),
    "both raise": lambda log: log.info("value %s", BothRaise()),
    "msg whose __str__ raises": lambda log: log.info(StrRaises()),
    "%d given a str": lambda log: log.info("%d apples", "three"),
    "too few arguments": lambda log: log.info("%s and %s", 1),  # noqa: PLE1206 - on purpose
    "too many arguments": lambda log: log.info("no placeholders", 1),  # noqa: PLE1205 - on purpose
    "missing mapping key": lambda log: log.info("%(missing)s", {"present": 1}),
    "non-str msg object": lambda log: log.info(Custom()),
    "int msg": lambda log: log.info(42),
    "None msg": lambda log: log.info(None),
    "dict msg": lambda log: log.info({"event": "login", "user": "ann"}),
    "exception as msg": lambda log: log.info(ValueError("boom")),
    "10 MB message": lambda log: log.info("%s", BIG),
    "uncopyable, unpicklable args": lambda log: log.info("%s %s %r", LOCK, GENERATOR, LOCK),
    "cyclic exception chain": cyclic_exception,
    "exception whose str raises": unprintable_exception,
    "non-ASCII": lambda log: log.info("héllo ✓ 日本語 %s", "ünïcödé"),
    "lone surrogate": lambda log: log.info("half a pair: %s", "\ud800"),
}


class Utf8Stream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes UTF-8 bytes, as a FileHandler does; records each handleError."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(io.TextIOWrapper(self.buffer, encoding="utf-8", write_through=True))
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.errors: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:
        """Record the error's type instead of printing a traceback."""
        exc = sys.exc_info()[1]
        self.errors.append(type(exc).__name__)

    def text(self) -> str:
        return self.buffer.getvalue().decode("utf-8")


def log_case(logger: logging.Logger, case: Case) -> None:
    logger.info("before")
    case(logger)
    logger.info("after")


def direct(logger: logging.Logger, case: Case) -> Utf8Stream:
    handler = Utf8Stream()
    logger.addHandler(handler)
    try:
        log_case(logger, case)
    finally:
        logger.removeHandler(handler)
    return handler


async def behind_aioqlog(logger: logging.Logger, case: Case) -> Utf8Stream:
    handler = Utf8Stream()
    q = aioqlog.LogQueue()
    queue_handler = aioqlog.QueueHandler(q)
    logger.addHandler(queue_handler)
    try:
        async with aioqlog.QueueListener(q, handler) as listener:
            log_case(logger, case)
    finally:
        logger.removeHandler(queue_handler)
    stats = listener.stats
    assert stats.dropped == 0
    assert stats.handlers[0].handled + stats.handlers[0].errors == 3
    return handler


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input_is_handled_as_if_attached_directly(
    logger: logging.Logger, name: str
) -> None:
    """The call returns; the same lines and the same handleError calls as direct handling."""
    expected = direct(logger, CASES[name])
    got = await behind_aioqlog(logger, CASES[name])
    assert got.errors == expected.errors
    assert got.text() == expected.text()
    lines = got.text().splitlines()
    assert lines[0] == "INFO before"
    assert lines[-1] == "INFO after"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_while_no_listener_runs_is_handled_as_if_attached_directly(
    logger: logging.Logger, name: str
) -> None:
    """Delivered in the logging thread (listener created, not started): the same outcome."""
    expected = direct(logger, CASES[name])
    handler = Utf8Stream()
    q = aioqlog.LogQueue()
    queue_handler = aioqlog.QueueHandler(q)
    listener = aioqlog.QueueListener(q, handler)
    logger.addHandler(queue_handler)
    try:
        log_case(logger, CASES[name])
    finally:
        logger.removeHandler(queue_handler)
    assert handler.errors == expected.errors
    assert handler.text() == expected.text()
    assert listener.stats.queue_depth == 0


def test_the_cases_cover_both_outcomes(logger: logging.Logger) -> None:
    """Some cases are delivered intact and some go to handleError: both paths are exercised."""
    failing = {name for name, case in CASES.items() if direct(logger, case).errors}
    assert failing == {
        "__str__ raises",
        "__repr__ raises",
        "both raise",
        "msg whose __str__ raises",
        "%d given a str",
        "too few arguments",
        "too many arguments",
        "missing mapping key",
        "lone surrogate",
    }
    for name in failing:
        assert len(direct(logger, CASES[name]).errors) == 1, name
