"""Logging configuration: what turns a ``dictConfig`` entry into an aioqlog pair.

Two paths reach ``aioqlog.QueueHandler`` from ``logging.config.dictConfig``:

* Python 3.12+ with ``"class": "aioqlog.QueueHandler"``: the stdlib builds the
  queue (a plain ``queue.Queue()`` when ``"queue"`` is omitted) and a stdlib
  ``logging.handlers.QueueListener`` over the named handlers, then assigns it
  to ``handler.listener``. The handler swaps the plain queue for a
  ``LogQueue`` and the stdlib listener (never started, so no thread exists)
  for an aioqlog ``QueueListener`` over the same handlers: the obvious config
  never yields a thread-based listener.
* Python 3.10/3.11 (any "class" entry), and the ``"()":
  "aioqlog.config.queue_handler"`` factory on any version: the keys arrive as
  keyword arguments, handler names unresolved. Names of handlers configured
  already are resolved at once; dictConfig configures handlers in name order,
  so the others are resolved on first use (the first record, or
  ``aioqlog.listening()``), when the configuration is complete.

Records logged before the listener's loop starts are not lost: the listener's
sync handlers handle them in the logging thread, as if attached directly.
"""

from __future__ import annotations

import logging
import logging.handlers
import pkgutil
import queue as stdlib_queue
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from ._bridge import LogQueue
from ._listener import QueueListener

if TYPE_CHECKING:
    from ._handler import QueueHandler

__all__ = [
    "PendingListener",
    "adopt",
    "configured_listeners",
    "from_config",
    "is_placeholder",
    "made_by_dictconfig",
]

# QueueHandlers that configuration gave a listener (or will, once their
# handler names resolve), for aioqlog.listening() to start.
_configured: weakref.WeakSet[QueueHandler] = weakref.WeakSet()

_QUEUE_OPTIONS = ("maxsize", "overflow", "block_timeout")
_KEYS = ("queue", "handlers", "respect_handler_level")

#: The fix for a "listener" key, on every Python (dictConfig reaches the handler
#: through its arguments before 3.12, through ``handler.listener`` since).
_NO_LISTENER_KEY = (
    "remove the 'listener' key from the handler's configuration (aioqlog provides the listener)"
)


class PendingListener(NamedTuple):
    """The listener a QueueHandler gets once every handler its configuration names exists."""

    #: The handlers to deliver to: ``logging.Handler`` objects, or names in *table*.
    names: Sequence[object]
    #: dictConfig's handler table, where the names resolve (``None`` when all are handlers).
    table: Mapping[str, object] | None
    #: The listener's ``respect_handler_level``.
    respect_handler_level: bool


MISSING_HANDLERS = (
    "aioqlog.QueueHandler needs a 'handlers' key: the names of the handlers its listener "
    "delivers to"
)


def is_placeholder(q: object) -> bool:
    """Return whether *q* is the empty ``queue.Queue()`` dictConfig passes by default."""
    return type(q) is stdlib_queue.Queue and q.maxsize == 0 and q.empty()


def made_by_dictconfig() -> bool:
    """Return whether dictConfig's queue-handler step (Python 3.12+) is building the handler.

    Only there does a plain ``queue.Queue()`` stand for "no queue configured"; a
    queue passed by hand is the caller's, and is never silently replaced.
    """
    return _dictconfig_frame("_configure_queue_handler") is not None


def configured_without_handlers() -> bool:
    """Return whether dictConfig's handler step builds a QueueHandler with no keys of ours.

    Python 3.10/3.11 call the class with the entry's keys: none means no
    ``'handlers'`` key. (Python 3.12+ pass a listener without handlers, which
    ``adopt`` refuses.)
    """
    return _dictconfig_frame("configure_handler") is not None


def _dictconfig_frame(step: str) -> FrameType | None:
    """Return the frame of ``DictConfigurator.<step>`` if it is a few calls up, else None.

    None on Python 3.10/3.11 for the queue-handler steps, which they lack, and
    when ``logging.config`` was never imported.
    """
    config = sys.modules.get("logging.config")
    method = getattr(getattr(config, "DictConfigurator", None), step, None)
    code = getattr(method, "__code__", None)
    if code is None:
        return None
    frame = sys._getframe(2)
    # A few frames up: QueueHandler.__init__ (or the listener setter), any
    # subclass __init__ between, and dictConfig's own steps.
    for _ in range(10):
        if frame.f_code is code:
            return frame
        if frame.f_back is None:
            return None
        frame = frame.f_back
    return None


def _configured_respect(listener: logging.handlers.QueueListener) -> bool:
    """Return ``respect_handler_level`` for the stdlib listener dictConfig built (3.12+).

    The stdlib fills in its own default (false) when the entry has no such key;
    aioqlog's is true, as everywhere else, so the entry itself is read. A
    listener assigned by hand keeps its own setting.
    """
    frame = _dictconfig_frame("configure_handler")
    entry = None if frame is None else frame.f_locals.get("config")
    if isinstance(entry, Mapping):
        return _respect_option(entry)
    return bool(listener.respect_handler_level)


def _respect_option(entry: Mapping[str, Any]) -> bool:
    """Return the entry's ``respect_handler_level`` (true when absent); only a bool is one."""
    respect = entry.get("respect_handler_level", True)
    if not isinstance(respect, bool):
        raise ValueError(
            f"aioqlog.QueueHandler 'respect_handler_level' must be true or false, got {respect!r}"
        )
    return respect


def adopt(handler: QueueHandler, value: object) -> QueueListener | None:
    """Return the aioqlog listener to keep for ``handler.listener = value``."""
    if value is None:
        return None
    if isinstance(value, QueueListener):
        if value.queue is not handler.queue:
            raise ValueError(
                "this QueueListener serves another queue than the handler's; create it "
                "with the handler's queue: aioqlog.QueueListener(handler.queue, ...)"
            )
        _configured.add(handler)
        return value
    if type(value) is logging.handlers.QueueListener:
        # What dictConfig built (Python 3.12+), never started: rebuild it as ours.
        if getattr(value, "_thread", None) is not None:
            raise ValueError(
                "this logging.handlers.QueueListener is already running in a thread; "
                "aioqlog.QueueHandler needs an aioqlog.QueueListener instead"
            )
        if not value.handlers:
            # No 'handlers' key, or an empty list: Python 3.12+ cannot tell us which.
            raise ValueError(
                "aioqlog.QueueHandler has no handlers to deliver to: list their names "
                "under its 'handlers' key"
            )
        listener = QueueListener(
            handler.queue, *value.handlers, respect_handler_level=_configured_respect(value)
        )
        _configured.add(handler)
        return listener
    if isinstance(value, logging.handlers.QueueListener):
        raise TypeError(
            f"aioqlog.QueueHandler is served by an aioqlog.QueueListener, not by "
            f"{type(value).__qualname__}: {_NO_LISTENER_KEY}"
        )
    raise TypeError(
        f"QueueHandler.listener must be an aioqlog.QueueListener or None, got {value!r}"
    )


def from_config(
    queue_spec: object, config: Mapping[str, Any]
) -> tuple[LogQueue, Callable[[QueueHandler], None]]:
    """Parse dictConfig keys given as arguments; return the queue and a connect step.

    The connect step runs once the handler exists and gives it its listener.
    """
    for key in config:
        if key in _KEYS:
            continue
        if key == "listener":
            raise TypeError(
                f"aioqlog.QueueHandler is served by an aioqlog.QueueListener: {_NO_LISTENER_KEY}"
            )
        if key in _QUEUE_OPTIONS:
            raise TypeError(
                f"{key!r} is an option of the queue, not of the handler: write it under "
                f'\'queue\', as in "queue": {{"()": "aioqlog.LogQueue", "{key}": ...}}'
            )
        raise TypeError(
            f"aioqlog.QueueHandler has no configuration key {key!r}; its keys are "
            f"'queue', 'handlers' and 'respect_handler_level'"
        )
    if "handlers" not in config:
        raise ValueError(MISSING_HANDLERS)
    names = config["handlers"]
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names:
        raise ValueError(
            f"aioqlog.QueueHandler 'handlers' must be a non-empty list of handler names, "
            f"got {names!r}"
        )
    respect = _respect_option(config)
    configured = _configured_handlers(names)
    q = _make_queue(queue_spec)

    def connect(handler: QueueHandler) -> None:
        _configured.add(handler)
        if not _connect(handler, names, configured, respect):
            handler._pending = PendingListener(names, configured, respect)
            q._resolve_consumer = lambda: _resolve(handler)

    return q, connect


def _configured_handlers(names: Sequence[object]) -> Mapping[str, object] | None:
    """Return dictConfig's handler table if *names* are names in it; check each name."""
    if all(isinstance(n, logging.Handler) for n in names):
        return None
    configurator = getattr(names, "configurator", None)
    table = None if configurator is None else configurator.config.get("handlers")
    if not isinstance(table, Mapping):
        raise TypeError(
            f"aioqlog.QueueHandler handlers must be logging.Handler objects (or, inside "
            f"logging.config.dictConfig, handler names), got {list(names)!r}"
        )
    for name in names:
        if isinstance(name, logging.Handler):
            continue
        if not isinstance(name, str) or name not in table:
            known = ", ".join(repr(k) for k in table) or "none"
            raise ValueError(
                f"aioqlog.QueueHandler 'handlers' names {name!r}, which is not a handler "
                f"of this configuration (handlers: {known}); fix the name or define it"
            )
    _refuse_a_loop(names, table)
    return table


_QUEUE_HANDLER_FACTORIES = frozenset(
    {"aioqlog.QueueHandler", "aioqlog.config.queue_handler", "aioqlog._handler.QueueHandler"}
)


def _refuse_a_loop(names: Sequence[object], table: Mapping[str, object]) -> None:
    """Refuse a 'handlers' key that leads back to the queue handler it configures.

    Its records would come back to its own queue (through another aioqlog
    queue handler, or straight away) until the recursion guard dropped them.
    dictConfig gives the list the entry it comes from (``parent``): that
    entry's name is the one the loop would come back to.
    """
    entry = getattr(names, "parent", None)
    own = next((key for key, value in table.items() if value is entry), None)
    if entry is None or own is None:
        return
    seen = set()
    stack = [(name, [own, name]) for name in names if isinstance(name, str)]
    while stack:
        name, path = stack.pop()
        if name == own:
            chain = " -> ".join(repr(n) for n in path)
            raise ValueError(
                f"aioqlog.QueueHandler {own!r} would deliver its records back to its own queue "
                f"({chain}); list under 'handlers' the handlers that write the records"
            )
        if name in seen:
            continue
        seen.add(name)
        for further in _names_behind(dict.get(table, name)):  # type: ignore[call-overload]
            stack.append((further, [*path, further]))


def _names_behind(entry: object) -> list[str]:
    """Return the handler names an aioqlog queue handler's entry (or object) delivers to."""
    if isinstance(entry, dict):
        # dict.get: the entry as written, without dictConfig's conversions.
        factory = dict.get(entry, "class", dict.get(entry, "()"))
        handlers = dict.get(entry, "handlers")
        if factory in _QUEUE_HANDLER_FACTORIES and isinstance(handlers, Sequence):
            return [n for n in handlers if isinstance(n, str)]
        return []
    pending = getattr(entry, "_pending", None)
    if isinstance(pending, PendingListener):
        return [n for n in pending.names if isinstance(n, str)]
    return []


def _connect(
    handler: QueueHandler,
    names: Sequence[object],
    table: Mapping[str, object] | None,
    respect: bool,
) -> bool:
    """Give *handler* its listener if every named handler exists now; return whether."""
    handlers: list[logging.Handler] = []
    for name in names:
        # dict.get: read the table as it is, without dictConfig's conversion.
        found = name if table is None else dict.get(table, name)  # type: ignore[call-overload]
        if not isinstance(found, logging.Handler):
            return False
        handlers.append(found)
    handler._listener = QueueListener(handler.queue, *handlers, respect_handler_level=respect)
    return True


def _resolve(handler: QueueHandler) -> bool:
    """Resolve a handler's names left over from dictConfig; return whether done."""
    pending = handler._pending
    if pending is None:
        return True
    names, table, respect = pending
    if not _connect(handler, names, table, respect):
        return False
    handler._pending = None
    handler.queue._resolve_consumer = None
    return True


def _make_queue(spec: object) -> LogQueue:
    """Build the LogQueue a ``'queue'`` key describes."""
    if spec is None:
        return LogQueue()
    if isinstance(spec, LogQueue):
        return spec
    if isinstance(spec, str):
        spec = {"()": spec}
    if isinstance(spec, Mapping):
        options = {k: v for k, v in spec.items() if k not in ("()", ".")}
        factory: Any = spec.get("()", LogQueue)
        if isinstance(factory, str):
            try:
                factory = pkgutil.resolve_name(factory)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(
                    f"aioqlog.QueueHandler 'queue' names {factory!r}, which cannot be "
                    f'imported ({exc}); use "aioqlog.LogQueue"'
                ) from None
        q = factory(**options)
        if not isinstance(q, LogQueue):
            raise TypeError(
                f"aioqlog.QueueHandler 'queue' must build an aioqlog.LogQueue, got {q!r}; "
                f'write "queue": {{"()": "aioqlog.LogQueue", "maxsize": ...}}'
            )
        return q
    raise TypeError(
        f"aioqlog.QueueHandler 'queue' must describe an aioqlog.LogQueue, got {spec!r}; "
        f'write "queue": {{"()": "aioqlog.LogQueue", "maxsize": ...}}'
    )


def configured_listeners() -> list[QueueListener]:
    """Return the listeners of configured QueueHandlers attached to a logger now.

    Handler names left for later (Python 3.10/3.11) are resolved here.

    Raises:
        RuntimeError: when a configured QueueHandler names handlers that still
            do not exist.
    """
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *manager.loggerDict.values()]
    attached = {id(h) for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}
    listeners = []
    for handler in list(_configured):
        if id(handler) not in attached:
            continue  # replaced by a later configuration, or removed
        if not _resolve(handler):
            raise RuntimeError(
                f"{handler!r} names handlers that were never configured; check its 'handlers' key"
            )
        if handler.listener is not None:
            listeners.append(handler.listener)
    return listeners
