"""Batched emission: a sync handler's lane hands it a whole batch at once.

A lane's worker that calls ``handler.handle(record)`` per record takes the
handler's lock, formats, writes and flushes once per record. Every flush is a
system call that releases the GIL, and while logging threads hold it the
worker waits out the switch interval (5 ms) before it runs again, so a burst
outruns it. A batch is formatted first, then written to a file and flushed
once, under the lock once.

Two ways in:

* A handler may define ``emit_batch(records)``: the lane calls it, under the
  handler's lock, with records that passed the handler's filters, in order.
  Records logged in different ``contextvars`` contexts come in separate calls,
  each made inside its records' context (as for ``AsyncHandler.aemit_batch``),
  unless the handler has a true ``mix_contexts`` attribute: then a call holds
  the records handled at the same depth, made inside a copy of its first
  record's context.
  An exception from it counts each of its records as an error and goes to
  ``handleError`` once, with the first record.
* The stdlib's ``StreamHandler``, ``FileHandler``, ``RotatingFileHandler``,
  ``TimedRotatingFileHandler`` and ``WatchedFileHandler`` get a built-in batch
  path, used only when the handler's class overrides nothing that the path
  would bypass (``emit``, ``handle``, ``format``, ``flush``, the rollover and
  reopen hooks). Its output is what the same handler attached to the logger
  writes, byte for byte: each record passes the filters and is formatted
  inside its own log call's context, ``handleError`` runs once for each record
  that fails to format, the terminator is the handler's, and a rotating handler
  decides rollover for each record in turn (a rollover can fall mid-batch). A
  ``RotatingFileHandler`` decides it from its file's size kept through the
  batch (``_Size``), not read from the file per record.

Anything else is handled record by record, as before.

A batch call can last a while (a formatter or a stream turned slow after a run
of cheap records): the built-in paths count each step of it in ``Steps`` (each
record filtered and formatted, each write and rollover, each call of
``emit_batch``), so that a shutdown waiting on the lane sees a slow handler
move, not a stuck one; and each record they are done with, so that a handler
stuck in the middle of a call is reported holding only the records it has not
handled yet.
"""

from __future__ import annotations

import codecs
import contextvars
import functools
import gc
import io
import logging
import logging.handlers
import operator
import os
import re
import time
import types
from collections.abc import Callable
from typing import Any

from ._context import DEPTH, Entry
from ._diagnostics import report_error
from ._records import filters_nothing, stdlib_own

__all__ = ["BatchEmit", "Format", "HereFormat", "Lines", "LoopFormat", "Steps", "batch_emitter"]

#: Handle a batch of (record, context) entries; return (handled, errors).
Deliver = Callable[[list[Entry]], tuple[int, int]]

#: Format one record to its text (without the terminator).
Format = Callable[[logging.LogRecord], str]

#: The same, on the thread that logged the record: None where that could run
#: code other than the interpreter's and the standard library's.
HereFormat = Callable[[logging.LogRecord], "str | None"]


def _always() -> bool:
    """Say that a path applies to every batch."""
    return True


class BatchEmit:
    """How to hand a handler a batch: call it with the (record, context) entries.

    It returns (handled, errors). ``fits()`` says whether the path still
    applies to this batch: a built-in path no longer does once a method it
    does the work of is replaced on a standard library class (see
    ``_Kept``); the records then go one by one through the handler's
    ``handle``. A stream's path also writes records the thread that logged
    them has formatted already (``write_lines``), and says how that thread
    may format them (``loop_format``): both None elsewhere.
    """

    __slots__ = ("_deliver", "fits", "loop_format", "write_lines")

    def __init__(
        self,
        deliver: Deliver,
        fits: Callable[[], bool] = _always,
        write_lines: Callable[[Lines], tuple[int, int]] | None = None,
        loop_format: LoopFormat | None = None,
    ) -> None:
        self._deliver = deliver
        self.fits = fits
        self.write_lines = write_lines
        self.loop_format = loop_format

    def __call__(self, entries: list[Entry]) -> tuple[int, int]:
        """Hand *entries* to the handler; return (handled, errors)."""
        return self._deliver(entries)


class Lines:
    """Records formatted on the thread that logged them, each to its text, for a stream's path.

    What the event loop's thread hands a lone handler's worker at the loop's
    turn (see ``_listener._OneHop``): the records themselves are gone, each
    text is one record's, written followed by the handler's *terminator* as
    it was then, and *created* is when the first was logged. A text that
    fails to be written is reported to ``handleError`` with a stand-in
    record whose message is that text (``stand_in``), which is what the
    stdlib's ``handleError`` prints.
    """

    __slots__ = ("created", "terminator", "texts")

    def __init__(self, texts: list[str], created: float, terminator: str) -> None:
        self.texts = texts
        self.created = created
        self.terminator = terminator

    def stand_in(self, index: int) -> logging.LogRecord:
        """Return a record to report text *index* with: the text, as its message."""
        record = _LogRecord("aioqlog", logging.NOTSET, "", 0, self.texts[index], None, None)
        record.created = self.created
        return record


_LogRecord = logging.LogRecord

# The methods a built-in batch path replaces, per stdlib class: a subclass that
# overrides any of them, or any of them replaced on a standard library class
# the handler's class inherits, gets record-by-record delivery instead.
_BYPASSED: tuple[str, ...] = ("emit", "handle", "format", "flush", "acquire", "release")
_ROTATING: tuple[str, ...] = ("shouldRollover", "doRollover", "rotate", "namer", "rotator")
_BUILT_IN: tuple[tuple[type[logging.Handler], tuple[str, ...]], ...] = (
    # Most derived first: the first class in a handler's MRO decides.
    (logging.handlers.WatchedFileHandler, (*_BYPASSED, "reopenIfNeeded", "_statstream", "_open")),
    (logging.handlers.RotatingFileHandler, (*_BYPASSED, *_ROTATING, "_open")),
    (logging.handlers.TimedRotatingFileHandler, (*_BYPASSED, *_ROTATING, "_open")),
    (logging.FileHandler, (*_BYPASSED, "_open")),
    (logging.StreamHandler, _BYPASSED),
)


class Steps:
    """Progress inside a batch call, written by the worker that makes it.

    ``count`` grows at each step the call takes, for good (read by whoever
    waits on the handler to move); ``finished`` counts the records of the
    call under way that the handler is done with (filtered out, failed, or
    written and flushed), ``failed`` those of them that failed. Both go back
    to 0 once the call returns and its records are counted as done.
    """

    __slots__ = ("count", "failed", "finished")

    def __init__(self) -> None:
        self.count = 0
        self.finished = 0
        self.failed = 0

    def fail(self, records: int) -> None:
        """Note that *records* of the call under way failed (they are finished, too)."""
        self.failed += records
        self.finished += records


def batch_emitter(handler: logging.Handler, steps: Steps | None = None) -> BatchEmit | None:
    """Return how to hand *handler* a batch, or None to go record by record.

    The returned callable counts its steps in *steps* as it goes (see ``Steps``).
    """
    if steps is None:
        steps = Steps()
    if callable(getattr(handler, "emit_batch", None)):
        return _protocol(handler, steps)
    kind = type(handler)
    own = vars(handler)
    for base, methods in _BUILT_IN:
        if issubclass(kind, base):
            # A method overridden in a subclass, or replaced on the instance.
            if any(
                getattr(kind, name, None) is not getattr(base, name, None) or name in own
                for name in methods
            ):
                return None
            kept = _Kept((kind, methods))
            if not kept():
                return None
            if isinstance(handler, logging.handlers.BaseRotatingHandler):
                return BatchEmit(_rotating(handler, steps), kept)
            deliver, write_lines = _stream(handler, steps)  # type: ignore[arg-type]
            return BatchEmit(deliver, kept, write_lines, _loop_format(handler, methods))
    return None


class LoopFormat:
    """How the thread that logs a record may format it for a stream's handler: call it.

    Called for each run of records (see ``_listener._OneHop``), it returns
    the ``format_here`` of ``_plain_format`` where formatting and writing
    run no code but the interpreter's and the standard library's: the
    path's methods, ``handleError`` (a line that fails to be written is
    reported with a stand-in record: see ``Lines``), ``filter`` and
    ``LogRecord.getMessage`` as the stdlib defines them, no filter, a plain
    ``logging.Formatter`` whose format names only the record's own fields,
    and a stream that is exactly ``io.TextIOWrapper``; otherwise None, and
    the handler's worker formats the records. The caller checks that each
    record is an exact ``LogRecord``. A clock of its own: the worker's runs
    on another thread.
    """

    __slots__ = ("_clock", "_handler", "_kept")

    def __init__(self, handler: logging.Handler, methods: tuple[str, ...]) -> None:
        self._handler = handler
        self._kept = _Kept(
            (type(handler), (*methods, "handleError", "filter")),
            (_LogRecord, ("getMessage", "__getattribute__", "__getattr__")),
        )
        self._clock = _Clock()

    def __call__(self) -> HereFormat | None:
        """Return how to format the records of this run, or None if the worker is to."""
        handler = self._handler
        if (
            # A file's text stream, or the console's: its write runs no code of
            # the application's (which would see the worker's context).
            type(getattr(handler, "stream", None)) is not io.TextIOWrapper
            or not filters_nothing(handler)
            or "handleError" in vars(handler)
        ):
            return None
        # The cheaper checks first: where one declines, each turn still asks.
        formats = self._clock.formats(handler)
        if formats is None or formats[1] is None or not self._kept():
            return None
        return formats[1]


def _loop_format(handler: logging.Handler, methods: tuple[str, ...]) -> LoopFormat | None:
    """Return a ``LoopFormat`` for *handler*; None if its class overrides handleError or filter."""
    kind = type(handler)
    if (
        kind.handleError is not logging.Handler.handleError
        or kind.filter is not logging.Filterer.filter
    ):
        return None
    return LoopFormat(handler, methods)


class _Kept:
    """Whether the classes a handler's class inherits hold the stdlib's own methods.

    Checked for the methods a built-in path does the work of or calls, on
    each class in the handler's class's MRO but ``object``, so that a recipe
    that replaces one (wraps ``logging.StreamHandler.emit``, which a
    ``FileHandler``'s ``emit`` calls, or sets ``emit`` on the application's
    own subclass) is honoured, whenever it is applied: each call looks at
    every place again. ``namer`` and ``rotator`` are None unless set. Made
    with (class, method names) pairs: each names the methods looked for on
    that class's classes.
    """

    __slots__ = ("_codes", "_functions", "_get", "_names", "_seen", "_verdict", "_views")

    def __init__(self, *pairs: tuple[type, tuple[str, ...]]) -> None:
        bases = [(base, methods) for kind, methods in pairs for base in kind.__mro__[:-1]]
        # Live views of the classes' attributes, one per class: a later
        # replacement shows.
        views = {base: _attributes(base) for base, _ in bases}
        self._views = tuple(views[base] for base, methods in bases for _ in methods)
        self._names = tuple(name for _, methods in bases for name in methods)
        self._get: Callable[[Any, str], object] = (
            dict.get if all(type(view) is dict for view in views.values()) else _view_get
        )
        # What each place held at the last look (None: nothing), the functions
        # among that and their code.
        self._seen: tuple[object, ...] = ()
        self._functions: tuple[Any, ...] = ()
        self._codes: tuple[object, ...] = ()
        self._verdict = False

    def __call__(self) -> bool:
        """Return whether every such method is the stdlib's own (or unset)."""
        # Compared by identity (no __eq__ is called), in C loops: each turn of
        # the loop's formatting asks.
        now = tuple(map(self._get, self._views, self._names))
        if (
            len(now) == len(self._seen)
            and all(map(operator.is_, now, self._seen))
            # A hot patch may swap a function's code in place.
            and all(map(operator.is_, map(_code, self._functions), self._codes))
        ):
            return self._verdict
        self._verdict = all(method is None or stdlib_own(method) for method in now)
        self._seen = now
        # Anything but a function is not the stdlib's own, whatever its code.
        self._functions = tuple(method for method in now if type(method) is _Function)
        self._codes = tuple(map(_code, self._functions))
        return self._verdict


def _attributes(kind: type) -> Any:
    """Return the dict that holds *kind*'s own attributes (live), or a live view of it."""
    view = vars(kind)
    # The dict itself, as the view refers to it: looked up without a call per name.
    held = gc.get_referents(view)
    return held[0] if len(held) == 1 and type(held[0]) is dict else view


def _view_get(view: Any, name: str) -> object:
    return view.get(name)


_Function = types.FunctionType
_Method = types.MethodType
_code = operator.attrgetter("__code__")


def _same(now: tuple[object, ...], seen: tuple[object, ...]) -> bool:
    """Return whether *now* holds the very objects *seen* does (no ``__eq__`` is called)."""
    return len(now) == len(seen) and all(map(operator.is_, now, seen))


def _passed(handler: logging.Handler, record: _LogRecord, ctx: contextvars.Context) -> Any:
    """Run *handler*'s filters on *record* in *ctx*: the record to emit, or None.

    *ctx* is a copy of the record's context, made by the caller.
    """
    rv = ctx.run(handler.filter, record)
    if not rv:
        return None
    return rv if isinstance(rv, _LogRecord) else record


def _protocol(handler: logging.Handler, steps: Steps) -> BatchEmit:
    return BatchEmit(_protocol_deliver(handler, steps))


def _protocol_deliver(handler: logging.Handler, steps: Steps) -> Deliver:
    emit_batch: Callable[[list[_LogRecord]], object] = handler.emit_batch  # type: ignore[attr-defined]

    def deliver(entries: list[Entry]) -> tuple[int, int]:
        handled = errors = 0
        i, n = 0, len(entries)
        # Each entry's context is the one it is handled in, which carries its depth.
        mixing = bool(getattr(handler, "mix_contexts", False))
        while i < n:
            # A run of records logged in the same context goes in one call (with
            # mix_contexts, a run of records logged at the same depth).
            ctx = entries[i][1]
            depth = ctx.get(DEPTH, 0)
            records: list[_LogRecord] = []
            while i < n and (
                entries[i][1] is ctx or (mixing and entries[i][1].get(DEPTH, 0) == depth)
            ):
                record, record_ctx = entries[i]
                i += 1
                steps.count += 1
                try:
                    passed = _passed(handler, record, record_ctx.copy())
                except BaseException:  # noqa: BLE001 - the lane must outlive any handler
                    errors += 1
                    steps.fail(1)
                    report_error(handler, record)
                    continue
                if passed is None:
                    handled += 1
                    steps.finished += 1
                else:
                    records.append(passed)
            if not records:
                continue
            handler.acquire()
            try:
                ctx.copy().run(emit_batch, records)
            except BaseException:  # noqa: BLE001
                errors += len(records)
                steps.fail(len(records))
                report_error(handler, records[0])
            else:
                handled += len(records)
                steps.finished += len(records)
            finally:
                handler.release()
                steps.count += 1
        return handled, errors

    return deliver


class _Clock:
    """``Formatter.formatTime`` with its ``strftime`` done once per second of a batch.

    Records of one batch mostly share their second, and ``strftime`` with
    ``localtime`` is the costliest step of formatting a plain record. The text
    is the stdlib's: the same calls, on the same whole second (``localtime``
    and ``gmtime`` floor the timestamp), with the milliseconds added per record
    (from a table where the stdlib's ``"%s,%03d"`` would write the same). Each
    batch starts afresh, so that a change of timezone (``TZ``, ``time.tzset()``)
    or of the formatter's settings shows from the next batch on.
    """

    __slots__ = ("_formats", "_key", "second", "text")

    def __init__(self) -> None:
        #: The whole second ``text`` is for (None: none yet in this batch).
        self.second: int | None = None
        self.text = ""
        # The formats made last, and what they were made from (see formats).
        self._formats: tuple[Format, HereFormat | None] | None = None
        self._key: tuple[object, ...] = ()

    def formatter(self, handler: logging.Handler) -> Callable[[_LogRecord], str]:
        """Return how to format a batch of records for *handler*, as it would.

        The handler's formatter is never changed, and one swapped or changed
        since the last batch is honoured: this is decided again per batch. A
        formatter that is not a whole ``logging.Formatter`` (an object with
        only ``format``, a subclass that skips ``Formatter.__init__``) is
        called as it is, as the handler would.
        """
        plain = self.formats(handler)
        return handler.format if plain is None else plain[0]

    def formats(self, handler: logging.Handler) -> tuple[Format, HereFormat | None] | None:
        """Return *handler*'s formats with this clock (see ``_plain_format``); None if it has none.

        None where its formatter is not a plain ``logging.Formatter`` with
        the stdlib's ``formatTime`` and converter (see ``formatter``). What
        was made last is kept with what it was made from, and made again
        when any of that changes.
        """
        self.second = None  # each batch starts afresh (a change of timezone shows)
        fmt = handler.formatter or logging._defaultFormatter  # type: ignore[attr-defined]
        try:
            style = fmt._style
            key = (
                fmt,
                fmt.converter,
                fmt.datefmt,
                fmt.default_time_format,
                fmt.default_msec_format,
                type(fmt).formatTime,
                len(vars(fmt)),
                style,
                type(style),
                style._fmt,
                getattr(style, "_defaults", None),
                type(handler).format,
                len(vars(handler)),
                len(vars(_LogRecord)),
                _own_steps(),
            )
            if not _same(key, self._key):
                self._formats = self._made(handler, fmt)
                self._key = key
        except AttributeError:  # not a whole logging.Formatter: called as it is
            return None
        return self._formats

    def _made(
        self, handler: logging.Handler, fmt: logging.Formatter
    ) -> tuple[Format, HereFormat | None] | None:
        """Make *fmt*'s formats with this clock (see ``formats``)."""
        converter = fmt.converter
        if (
            not stdlib_own(type(fmt).formatTime)
            or "formatTime" in vars(fmt)
            or converter not in (time.localtime, time.gmtime)
        ):
            return None
        datefmt = fmt.datefmt
        default_time = fmt.default_time_format
        default_msec = fmt.default_msec_format
        pattern = datefmt or default_time
        with_msecs = not datefmt and default_msec
        table = _MSECS if with_msecs == "%s,%03d" else None

        def made(here: bool) -> Callable[[_LogRecord], str | None]:
            """Return ``formatTime``; *here*: None for a date an object of another type holds."""

            def format_time(record: _LogRecord) -> str | None:
                created = record.created
                if type(created) is float and 0.0 <= created < _LAST_SECOND:
                    second = int(created)  # as localtime and gmtime take it: floored
                    if second != self.second:
                        self.text = time.strftime(pattern, converter(created))
                        self.second = second
                    text = self.text
                elif here and type(created) not in _PRINTED_AS_IS:
                    return None  # the converter would read the object's own number
                else:  # not a time this cache can key: as the stdlib does, each time
                    text = time.strftime(pattern, converter(created))
                if not with_msecs:
                    return text
                msecs = record.msecs
                if table is not None and type(msecs) is float and 0.0 <= msecs < 1000.0:
                    return text + table[int(msecs)]  # "%03d" takes the float's whole part
                if here and type(msecs) not in _PRINTED_AS_IS:
                    return None
                return with_msecs % (text, msecs)

            return format_time

        # A formatter of its own class is called as it is (None): a copy of it
        # with this clock would keep its own state apart (a line counter), and
        # some cannot be copied at all (one that forwards attributes to another).
        return _plain_format(handler, fmt, made(here=False), made(here=True))


#: The fields a record has of its own (as the logger makes it), and those
#: formatting adds: a format naming only these prints no object of the
#: application's.
_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", logging.NOTSET, "", 0, "", None, None))) | {
    "message",
    "asctime",
}

#: ``",%03d" % n`` for each whole millisecond.
_MSECS = tuple(f",{n:03d}" for n in range(1000))
#: Past this (the year 5138), a time is formatted afresh for each record.
_LAST_SECOND = 1e11

#: What ``_plain_format`` does in place of the stdlib's own methods: an
#: instance attribute of any of these names means the formatter is not plain,
#: and so does any of them replaced on the stdlib's class.
_FORMATTER_STEPS = ("format", "formatTime", "formatMessage", "usesTime")
#: The same, of the ``%``-style the formatter holds.
_STYLE_STEPS = tuple(
    name for name in ("format", "_format", "usesTime") if hasattr(logging.PercentStyle, name)
)


#: Whether the stdlib's ``Formatter`` and ``PercentStyle`` hold their own
#: steps, those ``_plain_format`` does in their place: checked again whenever
#: what they hold changes (a recipe may patch them at any time).
_own_steps = _Kept((logging.Formatter, _FORMATTER_STEPS), (logging.PercentStyle, _STYLE_STEPS))


#: A ``%``-style field the positional form handles: a name, then flags, width,
#: precision and a conversion, none of them read from the arguments (``*``).
_FIELD = re.compile(r"%(?:%|\(([A-Za-z_][A-Za-z0-9_]*)\)([#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]))")


@functools.lru_cache(maxsize=64)
def _positional(text: str) -> tuple[str, tuple[str, ...]] | None:
    """Return *text* with its fields by position, and their names; None where it cannot be.

    ``text % record.__dict__`` and ``positional % values`` (the fields read
    from the record as attributes, in order) give the same string for a
    ``LogRecord`` that holds every field as an attribute of its own: each
    field is converted as the mapping form converts it. Reading attributes
    spares the record's ``__dict__``, which CPython 3.11+ builds on first use.
    """
    fields: list[str] = []
    parts: list[str] = []
    at = 0
    for match in _FIELD.finditer(text):
        if "%" in text[at : match.start()]:
            return None  # a "%" this form does not know: leave the text to the stdlib
        parts.append(text[at : match.start()])
        name, spec = match.group(1), match.group(2)
        if name is None:
            parts.append("%%")
        else:
            fields.append(name)
            parts.append("%" + spec)
        at = match.end()
    if "%" in text[at:] or not fields:
        return None
    parts.append(text[at:])
    return "".join(parts), tuple(fields)


#: What reads a format's fields but the date from a record, in order; whether
#: the format has the date; what puts it (first in the tuple it is given)
#: where the format has it, where that is anywhere but first alone (else None);
#: and the names of the fields read.
Reader = tuple[
    Callable[[_LogRecord], tuple[Any, ...]],
    bool,
    Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
    tuple[str, ...],
]


@functools.lru_cache(maxsize=64)
def _reader(text: str) -> tuple[str, Reader] | None:
    """Return ``_positional(text)``'s text with what gives its values, in order.

    The date (``asctime``) is not read from the record: where the text has
    it, the caller puts it first in the tuple of the other fields (read from
    the record as attributes), and the last function, if any, puts each
    value where the text has it. None where the text has no positional
    form. The caller checks, each time, that no field read is named like
    something of the class ``LogRecord`` (a method, or a class attribute
    set later): that is no attribute of the record's own, and the stdlib's
    mapping form would not find it.
    """
    compiled = _positional(text)
    if compiled is None:
        return None
    positional, fields = compiled
    read = tuple(name for name in fields if name != "asctime")
    getter: Callable[[_LogRecord], tuple[Any, ...]]
    if not read:
        getter = _nothing
    elif len(read) == 1:
        name = read[0]
        getter = lambda record: (getattr(record, name),)  # noqa: E731
    else:
        getter = operator.attrgetter(*read)
    order = None
    if len(read) < len(fields) and fields[1:] != read:  # the date, but not first alone
        taken = iter(range(1, len(fields)))
        places = [0 if name == "asctime" else next(taken) for name in fields]
        order = operator.itemgetter(*places)
    return positional, (getter, len(read) < len(fields), order, read)


#: The attributes of ``LogRecord``'s classes, as they are now (live views).
_CLASS_ATTRIBUTES = tuple(vars(kind) for kind in _LogRecord.__mro__)


def _of_the_class(names: tuple[str, ...]) -> bool:
    """Return whether a ``LogRecord`` finds any of *names* on its class (a method, say)."""
    return any(name in attributes for attributes in _CLASS_ATTRIBUTES for name in names)


def _nothing(record: _LogRecord) -> tuple[Any, ...]:
    """Read no field: the format's only fields are the date."""
    return ()


def _plain_format(
    handler: logging.Handler,
    fmt: logging.Formatter,
    format_time: Callable[[_LogRecord], str | None],
    time_here: Callable[[_LogRecord], str | None],
) -> tuple[Format, HereFormat | None] | None:
    """Return ``Formatter.format`` for a stdlib ``Formatter`` with ``%``-style, inlined.

    The steps are the stdlib's, in its order (``Formatter.format``,
    ``PercentStyle.format``), without a call per step; the record's own
    ``getMessage`` gives the message, the clock the time. The message is
    stored on the record as ``message``, as ``Formatter.format`` does; the
    time goes into the text only, not onto the record as ``asctime``: a
    second attribute past those the logger set costs a record a larger
    store, on this worker, in memory the logging thread has just written. A
    ``LogRecord`` (not a subclass) with every field as its own attribute is
    formatted by position (see ``_reader``); any other, from its
    ``__dict__`` as the stdlib does. A record with an exception or stack goes through the
    formatter's own ``format``. None if *fmt* is anything else (a subclass,
    another style, a method replaced on the instance) or the handler's
    ``format`` is its own.

    Two of them: the worker's, and the one for the thread that logged the
    record (``format_here``), which formats only a record whose formatting
    runs no code but the interpreter's and the standard library's, and
    returns None for a record with an exception or a stack (the stdlib's
    steps for those may read source files), or one with a field it reads
    missing, or set to anything but a ``str``, ``int``, ``float``, ``bool``
    or None (a record factory's object prints through its own ``str()``).
    That second one is None where
    the format names a field other than the record's own (an ``extra``
    value, of any class, is printed by its own ``str()``). The caller sees
    to the rest (see ``LoopFormat``).
    """
    style = fmt._style
    if (
        type(fmt) is not logging.Formatter
        or type(style) is not logging.PercentStyle
        or not stdlib_own(type(handler).format)
        or any(name in vars(fmt) for name in _FORMATTER_STEPS)
        or "format" in vars(handler)
        or not _own_steps()
    ):
        return None
    text: str = style._fmt
    defaults: dict[str, Any] | None = getattr(style, "_defaults", None)
    uses_time = style.usesTime()
    full = fmt.format
    by_position = _reader(text)
    if by_position is not None and (
        _of_the_class((*by_position[1][3], "__getattr__")) or "__getattribute__" in vars(_LogRecord)
    ):
        by_position = None  # found on the class, or answered by it: not the record's own
    positional, (getter, dated, order, read_names) = (
        by_position if by_position is not None else ("", (None, False, None, ()))
    )
    # Only a format that names the record's own fields, whose values the
    # logger made, formats without calling code of the application's (an
    # ``extra`` object's ``str()``): on the thread that logged, only such a one.
    here = by_position is not None and _STANDARD_FIELDS.issuperset(read_names)

    def fill(record: _LogRecord) -> str:
        """Return the text of *record*, its message stored."""
        asctime = format_time(record) if uses_time else None
        if getter is not None and type(record) is _LogRecord:
            try:
                values = getter(record)
            except AttributeError:
                pass  # a field it lacks: the stdlib's way below (defaults, or its error)
            else:
                if dated:
                    values = (asctime,) + values  # noqa: RUF005 - one operation, not three
                    if order is not None:
                        values = order(values)
                return positional % values
        # The stdlib's mapping: the defaults, the record's attributes, and
        # the date it would have stored on the record.
        mapping = defaults | record.__dict__ if defaults else record.__dict__
        if uses_time:
            if mapping is record.__dict__:
                mapping = dict(mapping)
            mapping["asctime"] = asctime
        try:
            return text % mapping
        except KeyError as e:
            # As PercentStyle.format: the same error, raised while handling the KeyError.
            raise ValueError(f"Formatting field not found in record: {e}")  # noqa: B904

    def format_plain(record: _LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return full(record)
        record.message = record.getMessage()
        return fill(record)

    def format_here(record: _LogRecord) -> str | None:
        if record.exc_info or record.exc_text or record.stack_info:
            return None
        # The class's getMessage (the stdlib's: LoopFormat checks), not one of
        # the application's set on this record (read without its __dict__,
        # which CPython 3.11+ would build).
        get_message = record.getMessage
        if type(get_message) is not _Method or get_message.__func__ is not _LogRecord.getMessage:
            return None
        record.message = get_message()
        try:
            values = getter(record)  # type: ignore[misc]  # here: always a getter
        except AttributeError:
            return None  # a field it lacks: the stdlib's way, on the worker
        # A field a record factory (or a filter) set to an object of another
        # type would print through code of the application's.
        for value in values:  # a loop costs less than issuperset(map(type, ...)) here
            if type(value) not in _PRINTED_AS_IS:
                return None
        if dated:
            asctime = time_here(record)
            if asctime is None:
                return None
            values = (asctime,) + values  # noqa: RUF005 - one operation
            if order is not None:
                values = order(values)
        return positional % values

    return format_plain, format_here if here else None


#: The types a standard field's value is printed as, by the interpreter alone.
_PRINTED_AS_IS = frozenset({str, int, float, bool, type(None)})


def _format_all(
    handler: logging.StreamHandler[Any], entries: list[Entry], clock: _Clock, steps: Steps
) -> tuple[list[str], list[_LogRecord], list[contextvars.Context], int, int]:
    """Filter and format each record in its own context; return texts, records, contexts, counts.

    Each record's text is written in the same context (see ``_write_all``).
    Each record is a step (see ``Steps``).
    """
    terminator = handler.terminator
    texts: list[str] = []
    kept: list[_LogRecord] = []
    contexts: list[contextvars.Context] = []
    handled = errors = 0
    fmt = clock.formatter(handler)
    # With no filters (the common case), filtering passes every record: skip
    # the call and the switch into the record's context.
    unfiltered = filters_nothing(handler)
    for record, ctx in entries:
        steps.count += 1
        try:
            # One copy per record: its filters and its formatting see the same
            # context, as when the handler handles it directly.
            run_ctx = ctx.copy()
            if not unfiltered:
                passed = _passed(handler, record, run_ctx)
                if passed is None:
                    handled += 1
                    steps.finished += 1
                    continue
                record = passed
            texts.append(run_ctx.run(fmt, record) + terminator)
        except BaseException:  # noqa: BLE001 - as StreamHandler.emit: handleError, go on
            errors += 1
            steps.fail(1)
            report_error(handler, record)
            continue
        kept.append(record)
        contexts.append(run_ctx)
    return texts, kept, contexts, handled, errors


def _stream(
    handler: logging.StreamHandler[Any], steps: Steps
) -> tuple[Deliver, Callable[[Lines], tuple[int, int]]]:
    """Return the stream's path: for a batch of entries, and for lines formatted already."""
    is_file = isinstance(handler, logging.FileHandler)
    watched = isinstance(handler, logging.handlers.WatchedFileHandler)
    clock = _Clock()

    def write(
        texts: list[str],
        record_at: Callable[[int], _LogRecord],
        terminator: str = "",
        contexts: list[contextvars.Context] | None = None,
    ) -> tuple[int, int]:
        """Write *texts* (a record's each), each followed by *terminator*.

        Returns (handled, errors).
        """
        handler.acquire()
        try:
            try:
                if watched:
                    handler.reopenIfNeeded()  # type: ignore[attr-defined]
                if is_file:
                    _open_on_first_use(handler)  # type: ignore[arg-type]
            except BaseException:  # noqa: BLE001 - opening failed: each record's emit would have
                for index in range(len(texts)):
                    report_error(handler, record_at(index))
                return 0, len(texts)
            if is_file and not handler.stream:
                return len(texts), 0
            failed = _write_all(
                handler, texts, record_at, steps, terminator=terminator, contexts=contexts
            )
        finally:
            handler.release()
        return len(texts) - failed, failed

    def deliver(entries: list[Entry]) -> tuple[int, int]:
        texts, kept, contexts, handled, errors = _format_all(handler, entries, clock, steps)
        if not texts:
            return handled, errors
        written, failed = write(texts, kept.__getitem__, "", contexts)
        return handled + written, errors + failed

    def write_lines(lines: Lines) -> tuple[int, int]:
        return write(lines.texts, lines.stand_in, lines.terminator)

    return deliver, write_lines


def _open_on_first_use(handler: logging.FileHandler) -> None:
    """Open *handler*'s file as ``FileHandler.emit`` does: on first use, unless closed."""
    # Precondition: the handler's lock is held.
    if handler.stream is None and (handler.mode != "w" or not getattr(handler, "_closed", False)):
        handler.stream = handler._open()


def _write_all(
    handler: logging.StreamHandler[Any],
    texts: list[str],
    record_at: Callable[[int], _LogRecord],
    steps: Steps,
    *,
    terminator: str = "",
    contexts: list[contextvars.Context] | None = None,
) -> int:
    """Write the texts and flush; report each failure; return how many failed.

    Nothing is ever written twice. A file (the stdlib's text stream) gets the
    batch in one write, then one flush: a write per record would reach the
    disk every few kilobytes, and each system call lets logging threads take
    the GIL, which the worker then waits a switch interval to get back. Such a
    write either fails to encode (nothing written: each record is then written
    on its own, as when attached directly) or fails in a system call (there,
    or in the flush), when what reached the file cannot be known: then each
    record of the batch is reported (a pipe's or a socket's text stream, too:
    it is the same class). Any other stream (a wrapper, a ``StringIO``, a
    stream of the application's own) gets each record written and flushed, as
    ``StreamHandler.emit`` does: a failing write or flush is that record's
    alone (*record_at* gives the record of a text, by its index), and each
    record is done with once its flush returned, so a stream stuck for good
    holds only the records from the one it is stuck on.

    Each text is written followed by *terminator* (none where the texts end
    in it already), in its record's context from *contexts* where given (a
    batch written at once, in the deepest of them): what a stream logs while
    it writes is then as deep as when the handler handles the record itself,
    and the recursion guard stops it. Each write is a step; each record done
    with is ``finished`` (see ``Steps``).
    """
    # Precondition: the handler's lock is held.
    stream = handler.stream
    if type(stream) is io.TextIOWrapper:  # a file, or stderr
        steps.count += 1
        try:
            text = terminator.join(texts) + terminator if terminator else "".join(texts)
            if contexts:
                max(contexts, key=_depth).run(stream.write, text)
            else:
                stream.write(text)
        except UnicodeError:
            pass  # encoded before anything was written: write them one by one below
        except Exception:  # noqa: BLE001 - some of it may be on disk: report, never rewrite
            return _all_failed(handler, len(texts), record_at, steps)
        else:
            try:
                if contexts:
                    max(contexts, key=_depth).run(handler.flush)
                else:
                    handler.flush()
            except Exception:  # noqa: BLE001 - the same
                return _all_failed(handler, len(texts), record_at, steps)
            steps.finished += len(texts)
            return 0
    failed = 0
    flush = handler.flush
    for index, text in enumerate(texts):
        steps.count += 1
        try:
            if contexts:
                contexts[index].run(_write_flush, stream, flush, text + terminator)
            else:
                stream.write(text + terminator)
                flush()
        except Exception:  # noqa: BLE001 - as StreamHandler.emit: handleError, go on
            failed += 1
            steps.fail(1)
            report_error(handler, record_at(index))
        else:
            steps.finished += 1
    return failed


def _depth(ctx: contextvars.Context) -> int:
    """Return the handling depth *ctx* carries (see ``_context.to_handle``)."""
    depth: int = ctx.get(DEPTH, 0)
    return depth


def _write_flush(stream: Any, flush: Callable[[], None], text: str) -> None:
    """Write *text* to *stream*, then flush: ``StreamHandler.emit``'s steps."""
    stream.write(text)
    flush()


def _all_failed(
    handler: logging.Handler, count: int, record_at: Callable[[int], _LogRecord], steps: Steps
) -> int:
    """Report each of *count* records: a write of them all failed. Return how many."""
    for index in range(count):
        report_error(handler, record_at(index))
    steps.fail(count)
    return count


def _rotating(handler: logging.handlers.BaseRotatingHandler, steps: Steps) -> Deliver:
    rotating: Any = handler  # shouldRollover/doRollover: on each concrete class
    clock = _Clock()
    sized = isinstance(handler, logging.handlers.RotatingFileHandler)
    seeks = _size_rule() if sized else None
    size = None if seeks is None else _Size(rotating, seeks=seeks)
    # The stdlib's shouldRollover by size reads the file, so it must find each
    # record written before it is asked about the next.
    joined = not sized or seeks is not None

    def deliver(entries: list[Entry]) -> tuple[int, int]:
        terminator = handler.terminator
        texts, kept, contexts, handled, errors = _format_all(handler, entries, clock, steps)
        if not texts:
            return handled, errors
        handler.acquire()
        try:
            if size is not None:
                size.begin(terminator)
            # The records between two rollovers: written together, as _write_all does.
            run: list[str] = []
            run_records: list[_LogRecord] = []
            run_contexts: list[contextvars.Context] = []

            def write_run() -> None:
                nonlocal handled, errors
                failed = _write_all(
                    handler, run, run_records.__getitem__, steps, contexts=run_contexts
                )
                if failed and size is not None:
                    size.pos = None
                handled += len(run_records) - failed
                errors += failed
                run.clear()
                run_records.clear()
                run_contexts.clear()

            for text, record, ctx in zip(texts, kept, contexts, strict=True):
                # As BaseRotatingHandler.emit, record by record: rollover is
                # decided before each record is written.
                try:
                    rolls = (
                        rotating.shouldRollover(record)
                        if size is None
                        else size.rolls(record, text)
                    )
                    if rolls:
                        if run:
                            write_run()
                        rotating.doRollover()
                        steps.count += 1
                        if size is not None:
                            size.pos = None
                    if handler.stream is None:
                        _open_on_first_use(handler)
                except Exception:  # noqa: BLE001
                    if size is not None:
                        size.pos = None
                    if run:
                        write_run()
                    errors += 1
                    steps.fail(1)
                    report_error(handler, record)
                    continue
                if not handler.stream:
                    handled += 1  # a closed handler in "w" mode: as FileHandler.emit
                    steps.finished += 1
                    continue
                run.append(text)
                run_records.append(record)
                run_contexts.append(ctx)
                # Where the size is not known past this record, the file must
                # hold it before the next is decided on: the size is read there.
                if not joined or (size is not None and not size.wrote(text)):
                    write_run()
            if run:
                write_run()
        finally:
            handler.release()
        return handled, errors

    return deliver


#: The names ``RotatingFileHandler.shouldRollover`` uses, in the two versions
#: of it that Pythons 3.10 to 3.13 ship. The older seeks to the file's end and
#: tells, after checking that the file is a regular one. The newer tells
#: without seeking, never rolls an empty file over, and checks for a regular
#: file only when the size says to roll over.
_SEEK_NAMES = frozenset(
    {"_open", "baseFilename", "exists", "format", "isfile", "len", "maxBytes", "os", "path"}
    | {"seek", "stream", "tell"}
)
_TELL_NAMES = _SEEK_NAMES - {"seek"}


def _size_rule() -> bool | None:
    """Return whether this Python's ``shouldRollover`` seeks (True), tells (False), or None.

    None means a version of it this module does not know (or one replaced on
    the class): it is then called, as it is, for each record.
    """
    names = frozenset(logging.handlers.RotatingFileHandler.shouldRollover.__code__.co_names)
    if names == _SEEK_NAMES:
        return True
    if names == _TELL_NAMES:
        return False
    return None


def _irregular(path: str) -> bool:
    """Say whether *path* is something other than a regular file: never rolled over."""
    return os.path.exists(path) and not os.path.isfile(path)


class _Size:
    """Decide a ``RotatingFileHandler``'s rollovers in a batch, its file's size kept in memory.

    ``shouldRollover`` reads the size from the stream for each record: a
    ``tell`` (which writes out the stream's buffer first), after a ``seek`` to
    the end on older Pythons, and on those a check that the file is a regular
    one: up to five system calls per record, each a chance for logging threads
    to take the GIL from the worker. This reads the size once a batch, the same
    way, then adds each record's bytes as written, and makes the same decision
    as ``shouldRollover`` from it, with the same length (the formatted record
    and a newline, in characters). The size is read again after a rollover, a
    failure, or a record whose bytes it cannot count without encoding it (a
    stream other than a text file in UTF-8, ASCII or Latin-1; a non-ASCII record
    outside strict UTF-8). A record that finds no stream open goes to
    ``shouldRollover`` itself, which opens the file.

    Whether the file is a regular one is checked once for each stream the
    handler opens (a file that is not is never sought, sized or rolled over)
    and again before each rollover, not for each record.

    What it does not see: another process appending to the same file, or
    cutting it, within a batch (a size read from the file per record would
    include that).
    """

    __slots__ = (
        "confirm",
        "extra",
        "handler",
        "irregular",
        "plain",
        "pos",
        "seeks",
        "stream",
        "utf8",
    )

    def __init__(self, handler: logging.handlers.RotatingFileHandler, *, seeks: bool) -> None:
        self.handler = handler
        self.seeks = seeks
        self.extra = 0
        #: The file's size in bytes as the stream would tell it, while known.
        self.pos: int | None = None
        #: The stream the rest describes, held so that its identity stays its own.
        self.stream: object = None
        self.plain = self.utf8 = self.irregular = self.confirm = False

    def begin(self, terminator: str) -> None:
        """Start a batch whose texts end in *terminator*: the size is read afresh."""
        # Precondition: the handler's lock is held until the batch is written.
        # shouldRollover measures "%s\n" % the formatted record; a text ends in the terminator.
        self.extra = 1 - len(terminator)
        self.pos = None

    def rolls(self, record: _LogRecord, text: str) -> bool:
        """Say whether writing *text* (*record*'s) rolls the file over first."""
        handler = self.handler
        stream = handler.stream
        if stream is None:
            self.pos = None
            return bool(handler.shouldRollover(record))
        max_bytes = handler.maxBytes
        if max_bytes <= 0:
            return False
        pos = self.pos
        if pos is None or stream is not self.stream:
            if stream is not self.stream:
                self._learn(stream)
            if self.seeks:
                if self.irregular:
                    return False
                stream.seek(0, 2)
            pos = self.pos = stream.tell()
            self.confirm = not self.seeks
        if (not pos and not self.seeks) or pos + len(text) + self.extra < max_bytes:
            return False
        return not _irregular(handler.baseFilename)

    def wrote(self, text: str) -> bool:
        """Add the bytes *text* takes in the file; say whether the size is still known.

        Once it is not, the file must hold *text* before the size is read again.
        """
        if self.pos is None:
            return False
        if self.confirm:
            # Where shouldRollover tells without seeking, the stream's position
            # is where its last write ended, and a write to a file opened for
            # appending ends at the file's end, whatever another writer added
            # or cut since: it reads that after the batch's first write.
            self.confirm = False
            self.pos = None
            return False
        if self.plain and text.isascii():
            self.pos += len(text)
        elif self.utf8:
            self.pos += len(text.encode())
        else:
            self.pos = None
            return False
        return True

    def _learn(self, stream: Any) -> None:
        """Learn what *stream* is: a regular file's, and one byte per ASCII character?"""
        self.stream = stream
        self.irregular = self.seeks and _irregular(self.handler.baseFilename)
        self.plain = self.utf8 = False
        if type(stream) is not io.TextIOWrapper or os.linesep != "\n":
            return
        try:
            name = codecs.lookup(stream.encoding).name
        except LookupError:
            return
        self.plain = name in ("utf-8", "ascii", "iso8859-1")
        self.utf8 = name == "utf-8" and stream.errors == "strict"
