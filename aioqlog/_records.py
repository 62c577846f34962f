"""Records as aioqlog makes them: copies for each lane, and its own summaries and reports."""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import types

from ._context import DEPTH, SUMMARY_DEPTH

__all__ = [
    "copy_record",
    "filters_nothing",
    "handler_takes",
    "lowest_taken",
    "own_record",
    "stdlib_own",
    "summary_context",
]

#: Where the stdlib's logging is defined: code from these files is its own.
#: Both as the modules name them and as their code does (which differs where
#: a bundler compiled them under another name); read from functions nobody
#: replaces.
_STDLIB_FILES = frozenset(
    {
        logging.__file__,
        logging.handlers.__file__,
        logging._checkLevel.__code__.co_filename,  # type: ignore[attr-defined]
        logging.handlers.BaseRotatingHandler.rotation_filename.__code__.co_filename,
    }
)


_Function = types.FunctionType


def stdlib_own(method: object) -> bool:
    """Return whether *method* (a function, as a class holds it) is the stdlib logging's own.

    Told by where its code was written, not by identity with what the stdlib's
    class holds now: a method replaced on the stdlib's class itself (a recipe
    that patches ``logging.Formatter.formatTime``, or wraps
    ``logging.StreamHandler.emit``) is what that class holds, and is not the
    stdlib's own. So a path that does a method's work in its place checks
    this each time it decides, and a patch made at any time is honoured.
    """
    # A function itself: a wrapper object (wrapt's, as instrumentation agents
    # use) hands on its function's __code__, and is not that function.
    return type(method) is _Function and method.__code__.co_filename in _STDLIB_FILES


def copy_record(record: logging.LogRecord) -> logging.LogRecord:
    """Return a shallow copy of *record* (its attributes, not their values).

    The copy keeps the record's class, and copying runs no user code. Lanes
    give each handler its own copy, since formatting writes ``message``,
    ``asctime`` and ``exc_text`` on the record; the ``QueueHandler`` copies a
    record before freezing its arguments.
    """
    clone: logging.LogRecord = object.__new__(type(record))
    clone.__dict__ = record.__dict__.copy()
    return clone


def handler_takes(
    handler: logging.Handler, record: logging.LogRecord, *, respect_level: bool
) -> bool:
    """Return whether a listener passes *record* to *handler*.

    With *respect_level* (the listener's ``respect_handler_level``), only
    records at or above the handler's level, as the stdlib's ``QueueListener``
    does; otherwise every record, and the handler's own ``handle`` decides.
    The same rule as ``lowest_taken``, without a call: it runs per record.
    """
    return not respect_level or record.levelno >= handler.level


def lowest_taken(handler: logging.Handler, *, respect_level: bool) -> int | None:
    """Return the lowest level a listener passes to *handler*; None: every record.

    ``handler_takes`` is the same rule for one record: a record is passed
    where this is None or its level is at least this.
    """
    return handler.level if respect_level else None


def filters_nothing(handler: logging.Handler) -> bool:
    """Return whether *handler*'s filtering passes every record unchanged.

    True for a handler with no filters that keeps the stdlib's ``filter``
    (neither overridden in a subclass, nor replaced on the instance or on the
    stdlib's class): the lanes then skip the call, and the switch into each
    record's context.
    """
    return (
        not handler.filters and stdlib_own(type(handler).filter) and "filter" not in vars(handler)
    )


def own_record(
    level: int, message: str, args: tuple[object, ...], func: str = "QueueListener"
) -> logging.LogRecord:
    """Make one of aioqlog's own records, through the record factory.

    The logger name is ``"aioqlog"``, so filters and formatters can tell these
    records (drop summaries, error reports) from the application's.
    """
    factory = logging.getLogRecordFactory()
    return factory("aioqlog", level, __file__, 0, message, args, None, func)


def summary_context() -> contextvars.Context:
    """Return a fresh context marked as handling one of aioqlog's own summaries.

    What a handler logs while handling a summary is dropped and counted, never
    announced again (see ``SUMMARY_DEPTH``), and a lane never evicts a record
    carrying this mark.
    """
    ctx = contextvars.Context()
    ctx.run(DEPTH.set, SUMMARY_DEPTH)
    return ctx
