"""The producer side: ``QueueHandler`` puts records on a ``LogQueue``.

Every ``logger.info`` in the application pays for ``QueueHandler.handle``, so
the common case is kept to a few checks and one append: the record goes on the
queue as the logger made it (no formatting, no copy), and formatting happens
later, in the handler's lane.

Deferring the formatting is only correct if ``msg % args`` gives the same text
later as it would now. It does when every argument is of an immutable builtin
type (the overwhelming case). Otherwise the handler sends a copy of the record
whose other arguments are frozen at the call: a ``list``, ``dict``, ``tuple``
or ``bytearray`` (or the standard library's dict subclasses) is copied, with
the containers in it (so a filter or a JSON formatter finds the same types,
and a filter that masks a value in a dict argument masks it in the message),
and any other object is replaced by a ``Snapshot`` of its ``str()`` and
``repr()``, through which its attributes still read. Enum members and the
standard library's values that never change go as they are.
The template (``record.msg``) and the arguments stay available to error
trackers that group by template, while the message shows each argument as it
was when it was logged. None of this is done for a record that no handler
behind the queue takes, by its level: it is never formatted.

A dict message (a structlog event) is copied with every builtin container in
it, so a list or dict value changed after the call still prints, and
serialises, as it was; ``exc_info=True`` in it is resolved at the call.

A record with ``exc_info`` (one attribute read on the common path) is always
copied: the copy is the queue's own, so a handler beside the ``QueueHandler``
that caches its ``exc_text`` on the logger's record cannot change what the
listener's handlers write, and the traceback is rendered at the call by the
listener's handlers' own formatters (see ``_exception_text``), so notes added
or ``args`` changed after the call do not show.

``extra`` values that are builtin containers are copied too, but only when the
record is copied anyway (an exception, a mutable argument, a dict message):
finding them means reading the record's ``__dict__``, which CPython 3.11+
creates on first use, about 0.1 µs on every call.
"""

from __future__ import annotations

import datetime
import enum
import functools
import logging
import logging.handlers
import queue as stdlib_queue
import sys
import types
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._bridge import LogQueue, _copy_context
from ._diagnostics import write_stderr
from ._dictconfig import (
    MISSING_HANDLERS,
    PendingListener,
    adopt,
    configured_without_handlers,
    from_config,
    is_placeholder,
    made_by_dictconfig,
)
from ._records import copy_record, handler_takes

if TYPE_CHECKING:
    from ._listener import QueueListener

__all__ = ["QueueHandler", "Snapshot", "snapshot"]

# Types whose str() and repr() cannot change after the call: an argument of
# one of these is safe to format later. Exact types only (a subclass may add
# mutable state); anything else takes the snapshot path, which is always correct.
_IMMUTABLE: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
    }
)

_FILTER_RETURNS_RECORD = sys.version_info >= (3, 12)

_FORMAT_EXCEPTION = logging.Formatter.formatException
_DEFAULT_FORMATTER: logging.Formatter = logging._defaultFormatter  # type: ignore[attr-defined]

_BLANK = logging.LogRecord("", logging.NOTSET, "", 0, "", None, None).__dict__
# A record as Logger.makeRecord builds it has exactly these attributes; any
# other came from ``extra`` (or a record factory) and may hold a mutable value.
_PLAIN_SIZE = len(_BLANK)
_STANDARD: frozenset[str] = frozenset(_BLANK) | {"message", "asctime"}
# Builtin containers whose contents can change after the call. Other objects
# pass as they are: copying them could run user code, or change their type.
_CONTAINERS: frozenset[type] = frozenset({list, dict, set, tuple, bytearray})


class Snapshot:
    """An argument as it printed at the log call: its ``str()`` and ``repr()``.

    Stands in for an argument of a class of its own (or a builtin one that can
    change, such as a ``set``) in ``record.args`` so that formatting the record
    later, in another thread, prints what the call would have printed. Other
    attributes are read from the object itself, as it is when read.
    """

    __slots__ = ("_obj", "_repr", "_str")

    def __init__(self, obj: object) -> None:
        self._obj = obj
        # One that fails now is left to fail where it is used (the handler's
        # formatting reports it, as attached directly), not lost with the rest.
        self._str: str | None = _or_none(str, obj)
        self._repr: str | None = _or_none(repr, obj)

    def __str__(self) -> str:
        return str(self._obj) if self._str is None else self._str

    def __repr__(self) -> str:
        return repr(self._obj) if self._repr is None else self._repr

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in Snapshot.__slots__:
            raise AttributeError(name)  # protocols, and a copy not yet filled in
        return getattr(self._obj, name)

    def __reduce__(self) -> tuple[Callable[[str, str], Snapshot], tuple[str, str]]:
        # Pickled (a handler that ships records) or copied as what it printed:
        # the object itself may not pickle.
        return _printed, (str(self), repr(self))


def _or_none(convert: Callable[[object], str], obj: object) -> str | None:
    """Return ``convert(obj)``, or None if it raises."""
    try:
        return convert(obj)
    except Exception:  # noqa: BLE001 - raised again where the text is used
        return None


_new_snapshot = object.__new__


def _printed(text: str, representation: str, obj: object = None) -> Snapshot:
    """Return a ``Snapshot`` of what *obj* printed (its attributes read through, if given)."""
    printed = _new_snapshot(Snapshot)
    printed._obj, printed._str, printed._repr = obj, text, representation
    return printed


# What freezing an argument copies: builtin containers whose repr (and so
# their str) is that of their items, in an order a copy keeps; and the
# standard library's dict subclasses, whose copy() keeps their class.
_DICTS: frozenset[type] = frozenset({dict, OrderedDict, defaultdict, Counter})
_COPIED: frozenset[type] = _DICTS | {list, tuple, bytearray}

# Classes of the standard library whose instances never change (by module
# and name: a module not imported has no instances to log).
_CONSTANT_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID")}
    | {("ipaddress", f"IPv{v}{it}") for v in (4, 6) for it in ("Address", "Network", "Interface")}
    | {
        (module, f"{pure}{flavour}Path")
        for module in ("pathlib", "pathlib._local")
        for pure in ("", "Pure")
        for flavour in ("", "Posix", "Windows")
    }
)


def _is_constant(kind: type) -> bool:
    """Return whether instances of *kind* print later as they print now, as the builtins do.

    Enum members (``HTTPStatus.OK``) whose class prints them as the enum
    module does and whose values are immutable, and the standard library's
    immutable values (``Decimal``, ``Fraction``, ``UUID``, ``ipaddress`` and
    ``pathlib`` objects): passed as they are, so a ``%d`` of an ``IntEnum``
    formats later.
    """
    if issubclass(kind, enum.Enum):
        # (_value_repr_, 3.11+: how repr() shows the value; None where it does not.)
        value_repr = getattr(kind, "_value_repr_", None)
        printers = (kind.__str__, kind.__repr__, kind.__format__, value_repr)
        return all(map(_printed_by_enum, filter(None, printers))) and all(
            _settled(member.value) for member in kind.__members__.values()
        )
    return (kind.__module__, kind.__qualname__) in _CONSTANT_CLASSES


def _printed_by_enum(method: object) -> bool:
    """Return whether *method* is the enum module's own or a builtin type's (a mixin's)."""
    if getattr(method, "__module__", None) == "enum":
        return True
    owner = getattr(method, "__objclass__", None)  # int.__str__, str.__format__...
    return getattr(owner, "__module__", None) == "builtins"


def _settled(value: object) -> bool:
    """Return whether *value* prints later as it prints now (a dict key, an enum's value)."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return True
    if kind is tuple or kind is frozenset:
        return all(map(_settled, value))  # type: ignore[call-overload]
    return _constant(kind)


_constant: Callable[[type], bool] = functools.lru_cache(maxsize=256)(_is_constant)


def _freeze(value: object) -> object:
    """Return an argument (or an item of one) as it prints now: itself, a copy, or a snapshot."""
    kind = type(value)
    if kind in _IMMUTABLE or _constant(kind):
        return value
    if kind in _COPIED:
        return _copy_data(value, leaf=_freeze)
    return Snapshot(value)


class _Factory:
    """A ``defaultdict``'s factory, called as itself, printed as it printed at the call."""

    __slots__ = ("_factory", "_repr")

    def __init__(self, factory: Callable[[], object]) -> None:
        self._factory = factory
        # As a defaultdict prints it (one that prints itself prints "...").
        self._repr = repr(defaultdict(factory))[len("defaultdict(") : -len(", {})")]

    def __call__(self) -> object:
        return self._factory()

    def __repr__(self) -> str:
        return self._repr


# A defaultdict's factory whose repr (part of the dict's) cannot change.
_PLAIN_FACTORIES: frozenset[type] = frozenset(
    {type, types.FunctionType, types.BuiltinFunctionType, types.MethodType}
)

#: Up to how many items a list or tuple argument holding other objects
#: than builtin values is copied item by item; a longer one is a ``Snapshot``
#: of its repr(), taken in one call at C speed (a copy would cost the caller
#: several times what formatting it costs).
ITEMWISE = 64


def _printed_whole(value: object) -> Snapshot:
    """Return a ``Snapshot`` of a container as it prints now (its str() is its repr())."""
    text = repr(value)
    return _printed(text, text, value)


def _copy_data(
    value: object,
    memo: dict[int, object] | None = None,
    leaf: Callable[[object], object] | None = None,
) -> object:
    """Return *value* with every builtin container in it copied (cycles included).

    With *leaf*, an argument's copy: what is not a ``list``, ``dict``,
    ``tuple`` or ``bytearray`` (a ``set`` included) is replaced by
    ``leaf(item)``; without, an ``extra`` value's: sets are copied too, and
    other objects kept.
    """
    kind = type(value)
    if kind not in (_CONTAINERS if leaf is None else _COPIED):
        return value if leaf is None else leaf(value)
    if memo is None:
        memo = {}
    done = memo.get(id(value))
    if done is not None:
        return done
    copied: Any
    if kind is list:
        if leaf is not None and _IMMUTABLE.issuperset(map(type, value)):  # type: ignore[call-overload]
            return list(value)  # type: ignore[call-overload]
        if leaf is not None and len(value) > ITEMWISE:  # type: ignore[arg-type]
            return _printed_whole(value)
        copied = memo[id(value)] = []
        copied.extend([_copy_data(v, memo, leaf) for v in value])  # type: ignore[attr-defined]
    elif kind in _DICTS:
        # Always item by item, however long: a filter that masks a value finds
        # a mapping of its class (a snapshot of the whole would leak it).
        settled_keys = True
        if leaf is not None:
            settled_keys = _IMMUTABLE.issuperset(map(type, value)) or all(map(_settled, value))  # type: ignore[call-overload]
            if settled_keys and kind is dict and _IMMUTABLE.issuperset(map(type, value.values())):  # type: ignore[attr-defined]
                return dict(value)  # type: ignore[call-overload]
        # copy() keeps the class (an OrderedDict's order, a defaultdict's factory).
        copied = memo[id(value)] = value.copy()  # type: ignore[attr-defined]
        if leaf is not None:
            factory = getattr(value, "default_factory", None)
            if factory is not None and type(factory) not in _PLAIN_FACTORIES:
                # Its repr shows the factory's: as it printed at the call.
                copied.default_factory = _Factory(factory)
        if not settled_keys:
            # A key that can change (an object of one's own, a tuple holding
            # one) is frozen too: a snapshot hashes as itself.
            copied.clear()
        for k, v in value.items():  # type: ignore[attr-defined]
            copied[k if settled_keys else _freeze(k)] = _copy_data(v, memo, leaf)
    elif kind is tuple:
        if leaf is not None and _IMMUTABLE.issuperset(map(type, value)):  # type: ignore[call-overload]
            return value  # as immutable as its items
        if leaf is not None and len(value) > ITEMWISE:  # type: ignore[arg-type]
            return _printed_whole(value)
        items = [_copy_data(v, memo, leaf) for v in value]  # type: ignore[attr-defined]
        done = memo.get(id(value))
        if done is not None:
            return done  # copied meanwhile, through a cycle back to it: one copy
        copied = tuple(items)
    else:  # a set (of hashable, so immutable-enough, items) or a bytearray
        copied = kind(value)  # type: ignore[call-arg]
    memo[id(value)] = copied
    return copied


def _event_dict(msg: dict[Any, Any]) -> dict[Any, Any]:
    """Return a dict message (a structlog event dict) as it is at the call."""
    frozen: dict[Any, Any] = _copy_data(msg)  # type: ignore[assignment]
    exc_info = frozen.get("exc_info")
    if exc_info is not None and not isinstance(exc_info, (BaseException, tuple)) and exc_info:
        # ``exc_info=True`` (structlog's ``exception()``) means "the exception
        # being handled now": only the calling thread knows which that is.
        frozen["exc_info"] = sys.exc_info()
    return frozen


def snapshot(record: logging.LogRecord, queue: LogQueue | None = None) -> logging.LogRecord:
    """Return *record*, or a copy of it that formats later exactly as it would now.

    The record the logger made is never modified: other handlers of the same
    logger may still be using it. A record with ``exc_info`` is always copied,
    so that what those handlers cache on it (``exc_text``) is theirs alone.
    ``extra`` values are copied when the record is (see the module docstring).
    With *queue*, a record that none of the handlers behind it takes, by its
    level, goes as it is: nothing formats it.
    """
    if not record.exc_info and _formats_later(record.msg, record.args):
        return record
    return _snapshot_slow(record, queue)


def _formats_later(msg: object, args: object) -> bool:
    """Return whether ``msg % args`` prints later as it would now, by their types alone.

    ``QueueHandler.handle`` makes the same check inline, for a ``str``
    message (every log call would pay for one more call); a test checks
    that the two agree.
    """
    if type(msg) is str:
        if not args:
            return True
        if type(args) is tuple:
            for arg in args:  # noqa: SIM110 - a loop is twice as fast as all() here
                if type(arg) not in _IMMUTABLE:
                    return False
            return True
        return False
    return type(msg) in _IMMUTABLE and not args


def _snapshot_slow(record: logging.LogRecord, queue: LogQueue | None) -> logging.LogRecord:
    if queue is not None and _takers(record, queue) == []:
        return record  # dropped behind the queue, by every handler's level
    changes = _frozen_message(record)
    attributes = record.__dict__
    if len(attributes) != _PLAIN_SIZE:
        for key in attributes.keys() - _STANDARD:
            value = attributes[key]
            if type(value) in _CONTAINERS:
                changes[key] = _copy_data(value)
    if not changes and not record.exc_info:
        return record
    clone = copy_record(record)
    clone.__dict__.update(changes)
    return clone


def _frozen_message(record: logging.LogRecord) -> dict[str, object]:
    """Return the ``msg`` and ``args`` that format later as they would now (none if they do)."""
    msg: Any = record.msg
    args = record.args
    if _formats_later(msg, args):
        return {}
    try:
        if type(msg) is dict:
            # A dict message is structured data for JSON formatters: keep a dict.
            frozen_msg: object = _event_dict(msg)
        elif type(msg) in _IMMUTABLE:
            frozen_msg = msg
        else:
            # Printed by getMessage() through str(); its attributes still read.
            frozen_msg = Snapshot(msg)
        if not args:
            return {"msg": frozen_msg}
        frozen_args: tuple[object, ...] | Mapping[str, object] | None
        if isinstance(args, tuple):
            frozen_args = tuple(_freeze(a) for a in args)
        elif isinstance(args, Mapping):
            if type(args) not in _DICTS:
                # Through "%s" a mapping prints as itself (a class that hides
                # secrets in its repr): a copy of another class would not.
                return _rendered_now(record)
            # A copy of its own class, its keys and values frozen as arguments
            # ("%(key)s" looks a value up; "%s" prints the whole, as a list).
            frozen_args = _copy_data(args, leaf=_freeze)  # type: ignore[assignment]
        else:
            frozen_args = args
        if type(frozen_args) in _DICTS:
            top: Iterable[object] | None = frozen_args.values()  # type: ignore[union-attr]
        else:
            top = frozen_args if type(frozen_args) is tuple else None
        if top is None or any(type(v) is Snapshot for v in top):
            # Prove the snapshots format; a numeric conversion (%d, %x...) of
            # one does not, and then the message is rendered right now. (A
            # copied container formats, or fails, as the argument itself would.)
            str(frozen_msg) % frozen_args
    except Exception:  # noqa: BLE001 - decided below, by the stdlib's own rendering
        return _rendered_now(record)
    return {"msg": frozen_msg, "args": frozen_args}


def _rendered_now(record: logging.LogRecord) -> dict[str, object]:
    """Return the message rendered now as ``msg`` (the template is lost)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001
        # Broken formatting: pass msg and args on untouched, so the handler's
        # formatter fails as it would have and reports through handleError.
        return {}
    return {"msg": message, "args": None}


def _takers(record: logging.LogRecord, queue: LogQueue) -> list[logging.Handler] | None:
    """Return the handlers behind *queue* that take *record*, by its level (None: unknown).

    Unknown while no listener was made for the queue: the handlers it will
    get are not known yet; or when a handler's level cannot be read (the
    listener's own check reports that).
    """
    listener = queue._consumer
    handlers = getattr(listener, "handlers", None)
    if not handlers:
        return None
    respect = bool(getattr(listener, "respect_handler_level", False))
    try:
        return [h for h in handlers if handler_takes(h, record, respect_level=respect)]
    except Exception:  # noqa: BLE001 - a level that is a property of its own, say
        return None


def _exception_text(record: logging.LogRecord, queue: LogQueue) -> str | None:
    """Return the traceback text the handlers behind *queue* would write now, if one.

    Each handler's own formatter renders it (a formatter that overrides
    ``formatException`` keeps its output). ``None`` (each lane renders the
    exception when it handles the record) when no listener serves the queue,
    when the handlers' formatters disagree, or when one fails.
    """
    handlers = _takers(record, queue)
    if not handlers:
        return None
    exc_info = record.exc_info
    texts: dict[object, str] = {}
    try:
        for handler in handlers:
            formatter = handler.formatter or _DEFAULT_FORMATTER  # as Handler.format does
            render = getattr(formatter, "formatException", None)
            if render is None:
                return None
            # The stdlib rendering depends on nothing but exc_info: do it once.
            stdlib = getattr(type(formatter), "formatException", None) is _FORMAT_EXCEPTION
            key = _FORMAT_EXCEPTION if stdlib else formatter
            if key not in texts:
                texts[key] = render(exc_info)
    except Exception:  # noqa: BLE001 - the lane renders it, and reports its error itself
        return None
    distinct = set(texts.values())
    return distinct.pop() if len(distinct) == 1 else None


class QueueHandler(logging.handlers.QueueHandler):
    """Put records on a ``LogQueue`` for a ``QueueListener`` to handle.

    A drop-in replacement for ``logging.handlers.QueueHandler``: attach it to a
    logger and keep calling ``logger.info(...)`` from any thread. It never
    blocks the event loop and never raises into the caller.

    Unlike the stdlib's, it does not format records eagerly: ``msg``, ``args``,
    ``exc_info`` and ``stack_info`` reach the handlers as given (mutable
    arguments frozen at the call: lists and dicts copied, other objects as a
    ``Snapshot`` of how they printed), so a handler
    behind the listener writes exactly what it would write attached directly.
    A record with an exception goes as a copy whose traceback the handlers'
    own formatters rendered at the call; like theirs would, that text is
    cached on the logger's record (``exc_text``) for the handlers after this
    one. If you set a formatter on the QueueHandler itself, the stdlib's
    behaviour applies: the record's ``msg`` becomes that formatted text.

    Raises:
        TypeError: *queue* is not an ``aioqlog.LogQueue`` (a stdlib queue
            belongs with ``logging.handlers.QueueHandler``).

    Args:
        queue: The queue to put records on. A new ``LogQueue()`` when omitted.
        **config: The keys of a ``logging.config.dictConfig`` entry, for
            configurations: ``handlers`` (the handlers, or their names, that the
            handler's listener delivers to), ``respect_handler_level``, and
            *queue* as a mapping of ``LogQueue`` options. With them, the handler
            gets its ``listener`` (an aioqlog ``QueueListener``, not started).

    Example:
        >>> import logging, aioqlog
        >>> q = aioqlog.LogQueue()
        >>> logging.getLogger("app").addHandler(aioqlog.QueueHandler(q))

    From ``dictConfig``, ``"class": "aioqlog.QueueHandler"`` with ``"handlers"``
    (and optionally ``"queue": {"()": "aioqlog.LogQueue", "maxsize": ...}``)
    builds the handler and its listener on every supported Python; start the
    listener with ``aioqlog.listening()`` once the event loop runs.

    Added in version 0.1.0.
    """

    # typeshed's protocol for the stdlib class also wants get(): a LogQueue is
    # consumed by aioqlog's listener only, so it deliberately has none.
    queue: LogQueue  # type: ignore[assignment]

    #: Whether the class keeps ``emit``, ``prepare``, ``enqueue`` and ``format``
    #: as defined here: ``handle`` then does their work in one call (every log
    #: call pays for each call). A subclass that overrides any of them gets them
    #: called.
    _plain = True
    #: Whether the class has a ``format`` of its own: ``prepare`` then formats
    #: the record at the call, as the stdlib's ``QueueHandler`` does.
    _formats = False
    #: Whether the class has a ``filter`` of its own: ``handle`` then calls it
    #: for every record, as ``Handler.handle`` does, filters added or not.
    _own_filter = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._formats = cls.format is not logging.Handler.format
        cls._own_filter = cls.filter is not logging.Handler.filter
        cls._plain = not cls._formats and all(
            getattr(cls, name) is getattr(QueueHandler, name)
            for name in ("emit", "prepare", "enqueue", "_complete")
        )

    def __init__(
        self, queue: LogQueue | stdlib_queue.Queue[Any] | None = None, **config: Any
    ) -> None:
        # The class's _plain and _own_filter, read from the instance on every log call.
        self._plain = type(self)._plain
        self._own_filter = type(self)._own_filter
        self._listener: QueueListener | None = None
        # Handler names dictConfig had not configured yet (see aioqlog._dictconfig).
        self._pending: PendingListener | None = None
        connect = None
        if config:
            queue, connect = from_config(queue, config)
        elif queue is None and configured_without_handlers():
            raise ValueError(MISSING_HANDLERS)
        elif queue is None:
            queue = LogQueue()
        elif not isinstance(queue, LogQueue):
            if not (is_placeholder(queue) and made_by_dictconfig()):
                raise TypeError(
                    f"aioqlog.QueueHandler needs an aioqlog.LogQueue, got "
                    f"{type(queue).__module__}.{type(queue).__qualname__}; pass "
                    f"aioqlog.LogQueue(maxsize=...) instead, or use "
                    f"logging.handlers.QueueHandler to put records on a stdlib queue"
                )
            # dictConfig (Python 3.12+) passes an empty queue.Queue() when the
            # configuration names no queue: aioqlog's default queue replaces it.
            queue = LogQueue()
        super().__init__(queue)  # type: ignore[arg-type]
        if connect is not None:
            connect(self)

    @property
    def listener(self) -> QueueListener | None:
        """The listener that serves this handler's queue, if configuration made one.

        Set by ``logging.config.dictConfig`` (or by you). A stdlib
        ``logging.handlers.QueueListener`` assigned here, as dictConfig does on
        Python 3.12+, is replaced by an aioqlog ``QueueListener`` over the same
        handlers; it is not started: ``aioqlog.listening()`` starts it.
        """
        return self._listener

    @listener.setter
    def listener(self, value: object) -> None:
        self._listener = adopt(self, value)

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter *record* and enqueue it; returns what ``Handler.handle`` returns.

        Unlike ``Handler.handle`` it takes no lock: the queue is thread-safe,
        and a lock here would serialise every logging thread. A filter that
        raises goes to ``handleError``, as a failing ``emit`` does, and its
        record is not queued: the log call does not raise.
        """
        rv: bool | logging.LogRecord
        if self.filters or self._own_filter:
            try:
                rv = self.filter(record)
            except Exception:  # noqa: BLE001 - logging never raises into the caller
                self.handleError(record)
                return False
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):
                record = rv
        else:
            rv = record if _FILTER_RETURNS_RECORD else True
        if self._plain and self.formatter is None:
            # emit(), prepare(), enqueue() and the queue's put_nowait() as
            # defined here and there, in one call, with snapshot()'s check of a
            # str message inline (_formats_later).
            try:
                args = record.args
                if record.exc_info or type(record.msg) is not str:
                    queued = self._frozen(record)
                elif type(args) is tuple:
                    for arg in args:
                        if type(arg) not in _IMMUTABLE:
                            queued = self._frozen(record)
                            break
                    else:
                        queued = record
                elif args:
                    queued = self._frozen(record)
                else:
                    queued = record
                q = self.queue
                if q._put_inline:
                    # LogQueue.put_nowait, step for step (change both together).
                    items = q._items
                    if len(items) < q._limit or q._past_limit():
                        ctx = _copy_context()
                        if not ctx:
                            items.append(queued)
                        else:
                            q._put_in_context(queued, ctx)
                        if q._parked:
                            q._wake()
                        elif not q._attached:
                            q._drain_in_caller(share=True)
                else:
                    q.put_nowait(queued)
            except Exception:  # noqa: BLE001 - logging never raises into the caller
                self.handleError(record)
        else:
            self.emit(record)
        return rv

    def close(self) -> None:
        """Close the handler, once its listener has delivered what is on its way.

        ``logging.shutdown()`` (at exit, or called by the application) flushes
        and closes every handler, the ones behind the listener included, right
        after this one: records still queued or in a lane would reach closed
        handlers (and a ``FileHandler`` opened with ``mode="w"`` would drop them
        silently). So the listener finishes first: stopped on its loop if that
        loop runs in another thread, its threads waited for while they make
        progress. Called from a coroutine on the listener's own loop, nothing
        can be waited for: what is undelivered is reported on stderr.
        """
        consumer = self.queue._consumer
        if consumer is not None:
            try:
                consumer._finish("at close")
            except Exception as exc:  # noqa: BLE001 - closing must go on
                write_stderr(f"could not finish the listener of {self!r} at close: {exc!r}")
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        """Enqueue a prepared copy of *record*; errors go to ``handleError``."""
        try:
            self.enqueue(self.prepare(record))
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        """Put *record* on the queue (with the caller's ``contextvars`` context)."""
        self.queue.put_nowait(record)

    def prepare(self, record: logging.LogRecord) -> Any:
        """Return the record to enqueue: *record* itself, or a snapshot copy (see ``snapshot``).

        You may override this to enrich or redact records on the logging thread;
        mind that every log call pays for it. With a formatter set on this
        handler, or a ``format`` of its class's own, it is the stdlib's: the
        record's ``msg`` becomes the formatted text.
        """
        if self.formatter is not None or self._formats:
            return super().prepare(record)
        if not record.exc_info and _formats_later(record.msg, record.args):
            return record  # the common case: nothing to freeze, no exception
        return self._frozen(record)

    def _frozen(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return what ``prepare`` returns for *record* (``snapshot``, then ``_complete``)."""
        prepared = _snapshot_slow(record, self.queue)
        return record if prepared is record else self._complete(record, prepared)

    def _complete(self, record: logging.LogRecord, prepared: logging.LogRecord) -> Any:
        """Finish *prepared*, the snapshot copy of *record*: render its exception now."""
        if prepared.exc_info and prepared.exc_text is None:
            # Render the traceback now, as the handlers would if attached
            # directly: the exception may change (notes, args) once we return.
            text = _exception_text(prepared, self.queue)
            if text is not None:
                # And cache it on the logger's record, as their formatter
                # would: the handlers after this one reuse it, as they would.
                prepared.exc_text = record.exc_text = text
        return prepared
