"""Context plumbing shared by the bridge, the lanes and the listener.

Records carry the ``contextvars.Context`` of their log call (captured by
``LogQueue.put_nowait``; records logged in the same context share one, which
nothing enters or changes). Handlers run inside a copy of it, so filters and
formatters see a request id set by web middleware exactly as it was at the call.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = [
    "DEPTH",
    "HANDLER_THREADS",
    "MAX_DEPTH",
    "SUMMARY_DEPTH",
    "Entry",
    "delivering_for_others",
    "depth_of",
    "handling",
    "mark_handler_thread",
    "mark_helper_thread",
    "on_handler_thread",
    "run_in_context",
    "to_handle",
]

_T = TypeVar("_T")

#: A queued record with the context of its log call.
Entry = tuple[logging.LogRecord, contextvars.Context]

#: How deep in handler-caused logging the current code runs: 0 for application
#: code, 1 inside a handler handling an application record, and so on. A record
#: captures it with its context, which is how the listener recognises a record
#: logged by a handler from inside its own emit() (which would otherwise feed
#: itself forever).
DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("aioqlog_depth", default=0)

#: The threads that run only handlers, the sync handlers' lane workers, as
#: ``(ident, name)``: what a record says of the thread that logged it. A record
#: logged on one of them was logged by a handler, whatever its context says
#: (one of the handler's own making, say), even once that worker has exited; the name tells
#: a later thread that reuses the ident apart. Never emptied: a handful of
#: entries per handler (a worker's ident comes back from a small pool).
HANDLER_THREADS: set[tuple[int | None, str | None]] = set()

#: The idents of ``HANDLER_THREADS``: a record from any other thread needs no
#: look-up of its pair (see ``depth_of``). Both grow in ``mark_handler_thread``.
_HANDLER_IDENTS: set[int | None] = set()


def on_handler_thread() -> bool:
    """Return whether the calling thread is a lane's worker (see ``HANDLER_THREADS``)."""
    ident = threading.get_ident()
    return ident in _HANDLER_IDENTS and (ident, threading.current_thread().name) in HANDLER_THREADS


#: Set in aioqlog's own helper threads that deliver queued records (drainers).
_HELPER = threading.local()


def delivering_for_others() -> bool:
    """Return whether the calling thread is a helper delivering other threads' records.

    Such a thread is aioqlog's, not the application's: an exception that a
    handler raises there (even ``KeyboardInterrupt`` or ``SystemExit``) goes
    to its ``handleError``, as on a lane's worker, and delivery goes on.
    """
    return getattr(_HELPER, "on", False)


def mark_helper_thread() -> None:
    """Record the calling thread as a helper delivering for others (see above)."""
    _HELPER.on = True


def mark_handler_thread() -> None:
    """Record the calling thread as one that runs only handlers (see ``HANDLER_THREADS``)."""
    ident = threading.get_ident()
    _HANDLER_IDENTS.add(ident)
    HANDLER_THREADS.add((ident, threading.current_thread().name))


#: Records logged at a depth above this are dropped and counted: a handler's own
#: diagnostics reach the handlers once, and what they log in turn stops there.
MAX_DEPTH = 1

#: The depth at which aioqlog's own summary records ("dropped N records") are
#: handled. What a handler logs while handling one is dropped and counted but
#: not announced again: announcing it would make another summary, and so on.
SUMMARY_DEPTH = 1_000


def depth_of(record: logging.LogRecord, ctx: contextvars.Context) -> int:
    """Return how deep in handler-caused logging *record* (logged in *ctx*) was logged."""
    depth = ctx.get(DEPTH, 0)
    if (
        not depth
        and record.thread in _HANDLER_IDENTS
        and (record.thread, record.threadName) in HANDLER_THREADS
    ):
        return 1  # logged by a sync handler, on its worker (see to_handle)
    return depth


def to_handle(
    entries: list[Entry],
    refuse: Callable[[int], object] | None = None,
    floor: int | None = None,
) -> list[Entry]:
    """Return *entries*, each with the context its handler runs in a copy of.

    Records logged in the same context share one ``Context`` object (see
    ``LogQueue.put_nowait``), which nothing enters or changes: a handler
    handles each record inside a copy of its own, made right then, so that
    what it sets there stays with that record. What it
    logs there, on any thread, while handling a record logged at depth *d*
    must read as *d + 1*: each record gets a context with ``DEPTH`` set to
    *d + 1* to copy, one per run of records logged in the same context at the
    same depth. Call once per handling, before the handler sees the records.

    With *refuse*, this is also the listener's fan-out to a lone handler, in
    the same pass: a record logged deeper than ``MAX_DEPTH`` is left out and
    its depth passed to *refuse*, and one below level *floor* (if not None) is
    left out (see ``lowest_taken``).
    """
    handled: list[Entry] = []
    keep = handled.append
    logged: contextvars.Context | None = None
    last_depth = -1
    marked: contextvars.Context  # set by the first entry
    idents = _HANDLER_IDENTS
    for record, ctx in entries:
        # depth_of(record, ctx), inline: the call would cost as much as the
        # rest of the pass (tests check that the two agree).
        depth = ctx.get(DEPTH, 0)
        if (
            not depth
            and record.thread in idents
            and (record.thread, record.threadName) in HANDLER_THREADS
        ):
            depth = 1
        if refuse is not None:
            if depth > MAX_DEPTH:
                refuse(depth)
                continue
            if floor is not None and record.levelno < floor:
                continue
        if ctx is not logged or depth != last_depth:
            logged, last_depth = ctx, depth
            marked = handling(ctx, depth)
        keep((record, marked))
    return handled


def handling(ctx: contextvars.Context, depth: int) -> contextvars.Context:
    """Return a copy of *ctx* in which a handler handles a record logged at *depth*.

    What the handler logs there reads as *depth + 1* (see ``to_handle``);
    *ctx* itself is left as logged, so a record handled again (after a
    cancellation) is marked the same way again. One copy serves a whole run
    of records logged in the same context at the same depth.
    """
    marked = ctx.copy()
    marked.run(DEPTH.set, depth + 1)
    return marked


class _Relay:
    """Yield one object to the running task and hand back what the task sends."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.item)


async def run_in_context(
    ctx: contextvars.Context,
    coro: Coroutine[Any, Any, _T],
    give_up: Callable[[], bool] | None = None,
) -> _T:
    """Await *coro* with every one of its steps running inside *ctx*.

    This is what ``asyncio.create_task(coro, context=ctx)`` does (Python 3.11+),
    without the cost of a task per record and on every supported Python. Each
    step of the inner coroutine runs under ``ctx.run``; whatever it yields (an
    asyncio future, ``None`` for a bare yield, or one of trio's traps) is relayed
    untouched to the task that drives us, what the task sends back (trio's
    outcome, for one) is sent in, and cancellation or errors delivered to us are
    thrown back in. It knows no event loop.

    With *give_up*, a cancellation or error delivered to us while ``give_up()``
    is true is not thrown in: *coro* is abandoned (closed, which runs its
    finally blocks) and the cancellation propagates, so the task that drives
    us ends even when *coro* swallows every cancellation. If *coro* ignores
    the close too (it awaits again on ``GeneratorExit``), the ``RuntimeError``
    that ``close()`` raises propagates instead, the cancellation as its context.
    """
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                if error is None:
                    yielded = ctx.run(coro.send, value)
                else:
                    # Drop our reference before re-raising inside the coroutine.
                    pending, error = error, None
                    yielded = ctx.run(coro.throw, pending)
            except StopIteration as stop:
                result: _T = stop.value
                return result
            value = None
            try:
                value = await _Relay(yielded)
            except BaseException as exc:  # relayed into the coroutine, unless given up
                if give_up is not None and give_up():
                    raise  # abandoned: closed below
                error = exc
    finally:
        # Closing a finished coroutine is a no-op; closing one we abandon
        # (because we were closed ourselves, or told to give up) runs its
        # finally blocks (inside ctx, like every step).
        ctx.run(coro.close)
