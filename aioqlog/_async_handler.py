"""``AsyncHandler``: a logging handler whose output is a coroutine."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ._diagnostics import check_seconds

__all__ = ["AsyncHandler", "overrides_batch"]


class AsyncHandler(logging.Handler):
    """Base class for handlers that await their I/O on the event loop.

    Subclass it and implement ``aemit``; serve it with a ``QueueListener``,
    which awaits ``aemit`` on its loop, records in the order they were logged,
    inside the ``contextvars`` context of each log call. Level, filters and
    formatter work as for any ``logging.Handler``: call ``self.format(record)``
    in ``aemit``.

    Optional hooks:

    * ``aemit_batch(records)``: override it to receive the records that are
      ready at once (a list of one to 256, in order); the listener then calls
      it instead of ``aemit``. Records whose log calls ran in different
      ``contextvars`` contexts come in separate calls, each awaited inside
      its records' context, unless ``mix_contexts`` is true.
    * ``aclose()``: awaited by the listener's ``stop()`` to release what the
      handler holds on the loop (a client session). A listener may be started
      again later: reopen such resources lazily.
    * ``pending``: a handler that keeps records in a buffer of its own after
      ``aemit`` returned (to send them in batches, or until a server is back)
      says here how many it holds undelivered. The listener adds them to its
      ``stats`` (``HandlerStats.pending``, and so ``ListenerStats.undelivered``),
      so that records still held at ``stop()`` are counted, not lost unseen.
    * ``dropped``: a count of the records the handler itself dropped (its own
      buffer full, a server that refused them for good, or given to it by a
      plain logging call, see ``emit``); the listener adds it to
      ``HandlerStats.dropped``. The network handlers keep it up to date.

    Args:
        level: The handler's level, as for any ``logging.Handler``.
        timeout: At most this many seconds for each ``aemit`` (or
            ``aemit_batch``) call, and for ``aclose``; ``None`` (the default)
            waits as long as it takes. A call that runs out of time is
            cancelled, its records count as errors and ``handleError`` gets a
            ``TimeoutError``; the next records are delivered as usual. Set it
            for handlers whose peer can hang (a network server), so that one
            stuck call cannot hold back every later record.

    An ``AsyncHandler`` attached directly to a logger cannot await anything:
    each record it is given reports a ``RuntimeError`` through ``handleError``
    that says how to serve it instead. It never creates a coroutine that
    nobody awaits.

    Example:
        >>> class ListHandler(AsyncHandler):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.lines: list[str] = []
        ...     async def aemit(self, record: logging.LogRecord) -> None:
        ...         self.lines.append(self.format(record))

    Added in version 0.1.0.
    """

    #: Seconds allowed per ``aemit``/``aemit_batch``/``aclose`` call, or ``None``.
    timeout: float | None = None

    #: Records this handler dropped itself, after ``aemit`` took them (see above).
    dropped: int = 0

    #: Whether one ``aemit_batch`` call may hold records logged in different
    #: ``contextvars`` contexts. ``False`` (the default): a call holds the
    #: records of one context and is awaited inside it, so the handler reads
    #: their variables there; where each request sets a variable of its own
    #: (a request id, a tracing span), that makes most calls one record long.
    #: ``True``: a call holds whatever is ready, up to 256 records, awaited
    #: inside a copy of its first record's context; take each record's values
    #: from the record itself (the handler's filters run in each record's own
    #: context, and may copy them onto it). Added in version 0.1.0.
    mix_contexts: bool = False

    def __init__(self, level: int = logging.NOTSET, *, timeout: float | None = None) -> None:
        super().__init__(level)
        self.timeout = check_seconds(timeout, f"{type(self).__qualname__} timeout", allow_none=True)

    async def aemit(self, record: logging.LogRecord) -> None:
        """Handle one record: format it and send it wherever it goes."""
        raise NotImplementedError(
            f"{type(self).__qualname__} must implement async def aemit(self, record)"
        )

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        """Handle several records at once; the default awaits ``aemit`` for each."""
        for record in records:
            await self.aemit(record)

    async def aclose(self) -> None:
        """Release loop-bound resources; awaited by ``QueueListener.stop()``."""

    @property
    def pending(self) -> int:
        """Return how many records this handler holds undelivered in a buffer of its own.

        ``0`` here. Override it in a handler that buffers records after
        ``aemit`` returns; it is read on the loop thread, so keep it cheap.

        Added in version 0.1.0.
        """
        return 0

    def emit(self, record: logging.LogRecord) -> None:
        """Report that this handler was called outside a listener, and count the record dropped.

        A logger it is attached to directly (or that ``install()`` gave back
        at the end of its block) calls it like any handler: the record cannot
        be awaited, so it is lost, and counted in ``dropped`` (the next
        listener's ``stats`` include it).
        """
        self.dropped += 1
        try:
            raise RuntimeError(
                f"{self!r} is an aioqlog.AsyncHandler: its aemit() coroutine cannot "
                f"run from a plain logging call. Serve it with "
                f"aioqlog.QueueListener(queue, handler) and attach "
                f"aioqlog.QueueHandler(queue) to the logger instead."
            )
        except RuntimeError:
            self.handleError(record)


def overrides_batch(handler: AsyncHandler) -> bool:
    """Return whether *handler*'s class implements its own ``aemit_batch``."""
    return type(handler).aemit_batch is not AsyncHandler.aemit_batch
