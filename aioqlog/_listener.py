"""The consumer side: ``QueueListener`` serves a ``LogQueue`` from a task on the loop.

The loop is asyncio's (uvloop's) or trio's: ``start()`` captures it once as a
``Backend`` (see ``_backend``), and everything here goes through it.

Data path: the listener's task takes batches of records off the queue
(``dequeue``), and for each record, inside the context of its log call,
``prepare``s it and ``handle``s it: the record goes into the lane of every
handler that takes it. Lanes deliver on their own (see ``_lanes``).

Lifecycle: ``start()`` attaches the task to the queue; ``stop()`` (or the task
being cancelled, as at the end of ``asyncio.run``, or the end of ``trio.run``'s
main task) delivers what was logged
before it, lets every lane finish, switches the lanes to in-caller delivery,
and hands the queue back to the producers. While no listener runs, records are
handled in the thread that logs them (see ``QueueListener``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import SimpleQueue
from types import TracebackType
from typing import Any, NoReturn

from . import _lifecycle
from ._async_handler import AsyncHandler
from ._backend import Backend, Task, loop_runs_here, running_backend
from ._batch import Lines
from ._bridge import BATCH_LIMIT, TURN_LIMIT, LogQueue, Parking
from ._context import (
    DEPTH,
    MAX_DEPTH,
    SUMMARY_DEPTH,
    Entry,
    delivering_for_others,
    depth_of,
    mark_helper_thread,
    run_in_context,
    to_handle,
)
from ._diagnostics import check_seconds
from ._diagnostics import write_stderr as _stderr
from ._lanes import (
    DRAINING,
    IDLE,
    RUNNING,
    WORKER_BATCH,
    Lane,
    TaskLane,
    ThreadLane,
    make_lane,
)
from ._records import handler_takes, lowest_taken, own_record, summary_context
from ._stats import HandlerStats, ListenerStats

__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT", "QueueListener"]

#: Seconds any shutdown waits at most by default: ``async with``, ``install()``,
#: ``listening()`` and the framework integrations stop with this bound, the task
#: keeps delivering this long after being cancelled from outside (``asyncio.run``
#: ending without ``stop()``), and at exit a handler that makes no progress for
#: this long is given up on. A hung handler can never hang shutdown.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

#: Seconds between two drop summaries of the same kind: a handler that keeps
#: losing records hears about it once per interval, not once per batch.
SUMMARY_INTERVAL = 5.0

#: Seconds a cancelled async handler gets to end once a stop's deadline has passed.
_CANCEL_GRACE = 1.0

#: Seconds a stop (or the exit) waits on the handlers before saying what it waits for.
_NOTICE_AFTER = 1.0

#: Most seconds one batch call is sized to take (see ``Lane.call_size``): a
#: quarter of the short look at exit that tells a slow handler from a stuck
#: one, so a slow handler's progress shows several times within it.
_CALL_BUDGET = _NOTICE_AFTER / 4

#: Most records the loop's thread formats at one turn (about 0.5 ms): the
#: worker takes the rest (see ``_OneHop``).
LOOP_TURN = 512

_copy_context = contextvars.copy_context
_LogRecord = logging.LogRecord


@dataclass
class _Run:
    """One run of a listener, from ``start()`` to the end of its task.

    Everything here is forgotten at the next ``start()``; what survives a
    restart (the lanes, their workers and counts, the drop reports) lives on
    the listener itself.
    """

    #: The event loop the task runs on.
    backend: Backend | None = None
    #: The listener's task.
    task: Task | None = None
    #: Whether the task reached ``_run`` (one cancelled before its first step never does).
    entered: bool = False
    #: Whether the lanes serve: the delivery right taken and the lanes started
    #: (by ``start()`` itself where the lone lane's worker can serve the queue
    #: at once, else by the task).
    serving: bool = False
    #: ``stop()`` was called, or the task was cancelled from outside.
    stopping: bool = False
    #: The task was cancelled from outside: the loop is ending.
    cancelled: bool = False
    #: ...once, with no stop under way: wait as long as the handlers make progress.
    patient: bool = False
    #: Loop time by which to wind down, or None for no bound.
    deadline: float | None = None
    #: A second cancellation (a second Ctrl-C) cut the wind-down short: the
    #: user asked to skip the wait, and the exit skips it too.
    cut_short: bool = False


@dataclass
class _Notice:
    """When a shutdown's wait on the handlers began, and whether it said what it waits for."""

    began: float
    given: bool = False
    #: The lane whose handler's ``aclose()`` the wait is for (None: the lanes' records).
    closing: Lane | None = None


def _summary(message: str, *args: object) -> logging.LogRecord:
    """Make a WARNING record from aioqlog itself."""
    return own_record(logging.WARNING, message, args)


class _OneHop:
    """The lone sync lane's worker serves the queue itself: the one-hop path.

    A ``Feed`` for that ``ThreadLane``: when its buffer runs dry, the worker
    takes a batch off the queue and hands it to the listener's one dispatch
    (``_dispatch`` and ``_report_drops``, exactly what the task does), then
    handles it; with nothing queued it parks on the queue and on its own bell
    at once, so a producer wakes it directly, without the loop. The listener
    lends it the queue's delivery right for the run: the task only waits for
    ``stop()``, then for the feed to end once everything logged before the
    stop has been taken, and takes the right back (``end``) when time runs out,
    the loop is lost, or the listener fails.

    Where the handler's path can write lines formatted elsewhere (a stream's:
    see ``_batch.Lines``), the loop's thread formats what it logged itself,
    at its next turn (``turn``): an exact ``LogRecord`` without an exception
    or stack, for a plain formatter and no filter (see ``_batch.LoopFormat``),
    is formatted there and dies there, on the thread that made it, and the
    worker only writes the lines. Its
    token then stays on the queue between wake-ups: the loop's thread wins
    it with the first record it logs after a turn, and rings it at the next
    turn, or once ``SPILL`` records wait; another thread wins it to have the
    worker take records off the queue (``asked``), as do records the turn
    leaves, or the safety tick.

    ``lock`` is held while a batch is taken and dispatched (no handler code
    runs there), and while the worker announces itself to the queue, so that
    ``end`` never leaves a token behind or a batch half dispatched.

    Once the feed ends it lets go of the listener, its queue and its run: the
    worker may still hold the feed for a moment, and must not keep a listener
    alive (with a task that a closed loop abandoned) past its owner's last
    reference, or the garbage collector reports that task later, elsewhere.
    """

    def __init__(self, listener: QueueListener, lane: ThreadLane) -> None:
        self.lane = lane
        # What the feed was lent (None once it has ended).
        self._lent: tuple[QueueListener, LogQueue, _Run] | None = (
            listener,
            listener.queue,
            listener._run_state,
        )
        self.tick = listener.queue._tick
        self.lock = threading.Lock()
        self.serving = True
        # The queue's token for the parked worker (see LogQueue._listen_in_thread).
        self._token: Any = None
        # How the loop's thread formats records for the lane (None: it does not).
        emit_batch = lane.emit_batch
        self._loop_format = (
            None if emit_batch is None or lane.copy_records else emit_batch.loop_format
        )
        self._loop_thread = listener.queue._loop_thread
        # Whether the worker is to take records off the queue when it next looks.
        self.asked = False
        if self._loop_format is not None:
            # The token the loop's turns use, out from the start: the worker
            # may not run before the loop logs (it waits for the GIL).
            self._token = listener.queue._listen_in_thread(self.turn)

    def pull(self, room: int, size: int) -> list[Entry] | None:
        """Take up to *room* queued records and dispatch them; None if none came.

        Returns what the worker is to handle next, ready for its handler (see
        ``to_handle``): the records themselves, at most *size* of them, where
        its buffer is empty and nothing else is dispatched on the way (the
        common case); otherwise they go into its buffer, and the list is empty.
        Nothing while lines the loop's thread formatted wait (they were taken
        first), nor, while the loop's thread formats, unless ``asked``.
        """
        with self.lock:
            lent = self._lent
            if lent is None:
                return None
            listener, q, run = lent
            if self.lane.lines:
                return []
            formatting = self._loop_format is not None
            if formatting:
                if not (self.asked or run.stopping):
                    return None
                self.asked = False
            limit = min(WORKER_BATCH, room)
            if run.stopping:
                # Only what was logged before stop(): later records are
                # delivered once the lanes go idle, keeping each thread's order.
                limit = min(limit, q._left_before_stop())
            batch = q._take(limit) if limit > 0 else []
            if batch:
                # A full batch: more may wait, so the worker looks again. Only
                # ever set here: another thread's ring sets it without the lock.
                if formatting and len(batch) == limit:
                    self.asked = True
                handed = listener._hand_over(self.lane, batch, size)
                if handed is None:
                    handed = []
                    listener._dispatch(batch)
                listener._report_drops(force=False)
                return handed
            if not run.stopping:
                return None
            # Everything logged before stop() is in the lane.
            self.serving = False
            self._withdraw()  # the token the loop's turns use stays out between wake-ups
            q._serve_from(None)
            self._lent = None
        self._ended()
        return None

    def listen(self, bell: Callable[[], None]) -> bool:
        """Have the next producer ring *bell*; False once the feed has ended."""
        with self.lock:
            lent = self._lent
            if lent is None:
                return False
            q = lent[1]
            if self._loop_format is None:
                self._token = q._listen_in_thread(bell)
            elif self._token is None:
                self._token = q._listen_in_thread(self.turn)
            else:
                q._listen_again(self._token)
            return True

    def ready(self) -> bool:
        """Return whether records, or a stop, wait for the worker."""
        lent = self._lent
        if lent is None:
            return True  # ended: the worker goes back to its lane alone
        q = lent[1]
        if self._loop_format is None:
            return bool(q._items) or q._kicked
        if self.asked or q._kicked:
            return True
        # Records queued while the token was out, that no turn takes yet: if
        # this worker wins the token back (else its winner rings), the loop's
        # next turn takes those its thread logged, as if it had won it, and
        # this worker the others.
        if q._items and q._stop_listening(self._token):
            try:
                head = q._items[0]
            except IndexError:  # taken meanwhile (a "drop_old" eviction)
                head = None
            if type(head) is _LogRecord and head.thread == self._loop_thread:
                q._ring_at_loop_turn(self.turn)  # rings here if the loop has closed
            else:
                self.asked = True
        return self.asked

    def unlisten(self, *, timed_out: bool = False) -> None:
        """Withdraw the worker's token from the queue (but the one the loop's turns use)."""
        if self._loop_format is not None:
            if timed_out:
                self.asked = True  # the loop may be busy, its turn far off: look
            return
        with self.lock:
            self._withdraw()

    def turn(self) -> None:
        """Ring the worker for the queue's records: the bell of the token the loop's turns use.

        On the loop's thread (at its next turn, or at ``SPILL`` records) the
        records it logged are formatted first (see ``_format_queued``); from
        another thread, the worker is asked to take them off the queue.
        """
        if threading.get_ident() != self._loop_thread:
            self.asked = True
            self.lane.wake_worker()
            return
        lane = self.lane
        try:
            with self.lock:
                lent = self._lent
                if lent is None:
                    return  # ended: the worker was rung then
                listener, q, run = lent
                try:
                    if run.stopping or lane.state != RUNNING or lane.buffer:
                        self.asked = True  # the worker takes what is queued (or ends the feed)
                    else:
                        # As the worker formats a record: in the context of its
                        # log call, one level deeper (see to_handle), not in the
                        # one this callback happens to run in.
                        handling = contextvars.Context()
                        handling.run(DEPTH.set, 1)
                        handling.run(self._format_queued, listener, q, handling)
                finally:
                    # Even when interrupted (a signal handler that raises).
                    q._listen_again(self._token)
                    # What is left (another thread's records, a turn's worth and
                    # more, records queued while the token was out): the worker
                    # takes it, if this thread wins the token back.
                    if not self.asked and q._items and q._stop_listening(self._token):
                        self.asked = True
        finally:
            if self.asked or lane.lines:
                lane.wake_worker()

    def _format_queued(
        self, listener: QueueListener, q: LogQueue, handling: contextvars.Context
    ) -> None:
        """Format the queued records this thread logged, up to the first it may not.

        The lines go into the lane, whose buffer is empty (what it holds would
        be older). On the loop's thread, with the lock held, in *handling*:
        an empty context one level deep, where a record logged with no
        variable set is formatted; one logged in a context is formatted in a
        copy of it, as deep.
        """
        loop_format = self._loop_format
        assert loop_format is not None  # formatting on the loop's thread
        fmt = loop_format()
        if fmt is None:
            return
        lane = self.lane
        handler = lane.handler
        floor = lowest_taken(handler, respect_level=listener.respect_handler_level)
        terminator = handler.terminator  # type: ignore[attr-defined]
        items = q._items
        contexts = q._contexts
        me = self._loop_thread
        texts: list[str] = []
        add = texts.append
        taken = 0
        created = 0.0
        record: Any = None
        # The last context a record was logged in, and its copy one level deep.
        logged: contextvars.Context | None = None
        marked = handling
        try:
            for _ in range(min(LOOP_TURN, lane.room())):
                try:
                    record = items.popleft()
                except IndexError:
                    record = None
                    break
                if type(record) is not _LogRecord or record.thread != me:
                    break
                ctx = contexts.get(record) if contexts else None
                if ctx is not None and ctx.get(DEPTH, 0):
                    break  # logged by a handler: its depth decides
                if floor is None or record.levelno >= floor:
                    if ctx is None:
                        text = fmt(record)
                    else:
                        if ctx is not logged:
                            logged, marked = ctx, ctx.copy()
                            marked.run(DEPTH.set, 1)
                        text = marked.run(fmt, record)
                    if text is None:
                        break  # not plain: the worker formats it
                    add(text)
                    if not created:
                        created = record.created
                # Else not this handler's, as the dispatch decides (to_handle).
                if contexts:
                    contexts.pop(record, None)
                taken += 1
            else:
                record = None
        except Exception:  # noqa: BLE001 - the worker formats it again, and reports it
            pass
        finally:
            if record is not None:
                items.appendleft(record)  # left for the worker, at the head, with its context
            q._took(taken)
            if texts:
                lane.put_count += len(texts)
                lane.lines.append(Lines(texts, created, terminator))

    def _withdraw(self) -> None:
        # Precondition: self.lock is held.
        token, self._token = self._token, None
        if token is not None and self._lent is not None:
            self._lent[1]._stop_listening(token)

    def end(self) -> None:
        """Take the queue back from the worker (it then serves only its lane).

        Waits for a batch being dispatched (never for a handler): called on
        the loop when stop() runs out of time or the listener fails, and from
        any thread when the loop is lost.
        """
        with self.lock:
            if not self.serving:
                return
            self.serving = False
            self._withdraw()
            if self._lent is not None:
                self._lent[1]._serve_from(None)
            self._lent = None
        self._ended()

    def _ended(self) -> None:
        self.lane.feed = None
        self.lane.wake_worker()  # a parked worker goes back to its lane alone
        self.lane.notify()  # the task waits for the feed to end


class QueueListener:
    """Serve a ``LogQueue`` from a task on the event loop and deliver records to handlers.

    Each handler gets its own ordered lane: it sees records in the order they
    were logged (per logging thread), and a slow or stuck handler does not delay
    the others. Sync ``logging.Handler`` objects run in a worker thread per handler,
    owned by the listener, a batch at a time; ``AsyncHandler`` objects are awaited on
    the loop. Filters and formatters see the ``contextvars`` of the log call.

    Start it inside a running event loop (asyncio, uvloop, or trio), with
    ``start()`` from an app's startup hook or as an async context manager;
    ``await stop()`` delivers everything logged before it. If the loop ends
    without ``stop()`` (``asyncio.run`` cancels the listener's task; trio's main
    task returns), it still delivers what was queued, for at most
    *shutdown_timeout* seconds without progress.

    While the listener is not running (before ``start()``, after ``stop()``,
    after its loop closed), records are not lost: sync handlers handle them in
    the thread that logs, exactly as if attached to the logger, and async
    handlers keep them (up to the queue's maxsize) until the next ``start()``.

    Args:
        queue: The ``LogQueue`` that a ``QueueHandler`` feeds.
        *handlers: The handlers to deliver to: any ``logging.Handler``, and
            ``AsyncHandler`` subclasses for awaitable I/O.
        respect_handler_level: When true (the default), a handler only gets
            records at or above its level, as when attached to the logger.
            False gives every record to every handler, as the stdlib's
            ``QueueListener`` does by default.
        shutdown_timeout: Seconds to keep delivering when the task is cancelled
            from outside; ``None`` waits as long as it takes.

    Example:
        >>> async def main() -> None:
        ...     q = aioqlog.LogQueue()
        ...     logging.getLogger().addHandler(aioqlog.QueueHandler(q))
        ...     async with aioqlog.QueueListener(q, logging.StreamHandler()):
        ...         logging.getLogger("app").warning("served from the loop")

    The stdlib's hooks keep their names: override ``dequeue`` (async),
    ``prepare`` or ``handle`` as you would on ``logging.handlers.QueueListener``.

    Added in version 0.1.0.
    """

    queue: LogQueue

    # Set by _start_afresh (at creation, and again in a forked child).
    _lanes: list[Lane]
    _run_state: _Run

    def __init__(
        self,
        queue: LogQueue,
        *handlers: logging.Handler,
        respect_handler_level: bool = True,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        if not isinstance(queue, LogQueue):
            raise TypeError(
                f"aioqlog.QueueListener needs an aioqlog.LogQueue, got "
                f"{type(queue).__module__}.{type(queue).__qualname__}; pass the queue "
                f"your aioqlog.QueueHandler puts records on"
            )
        for handler in handlers:
            if not isinstance(handler, logging.Handler):
                raise TypeError(
                    f"aioqlog.QueueListener handlers must be logging.Handler instances, "
                    f"got {handler!r}"
                )
            if getattr(handler, "queue", None) is queue:
                raise ValueError(
                    f"{handler!r} puts records on the queue this listener serves: each "
                    f"record would come back to it; list the handlers that write the records "
                    f"(a 'handlers' key that names its own handler, in dictConfig)"
                )
        shutdown_timeout = check_seconds(
            shutdown_timeout, "QueueListener shutdown_timeout", allow_none=True
        )
        owner = queue._consumer
        if isinstance(owner, QueueListener) and owner.running:
            raise RuntimeError(
                f"{queue!r} is already served by a running QueueListener; "
                f"stop it before creating another listener for this queue"
            )
        if not isinstance(respect_handler_level, bool):
            raise TypeError(
                f"QueueListener respect_handler_level must be True or False, "
                f"got {respect_handler_level!r}"
            )
        self.queue = queue
        self.handlers = handlers
        self.respect_handler_level = respect_handler_level
        self.shutdown_timeout = shutdown_timeout
        # Overridden hooks run inside each record's context (see _dispatch).
        cls = type(self)
        self._hooked = cls.handle is not QueueListener.handle or (
            cls.prepare is not QueueListener.prepare
        )
        # Whether records may skip the loop (see _OneHop): a lone sync handler,
        # and every hook as the stdlib's (an overridden one runs on the loop).
        self._may_skip_loop = (
            len(handlers) == 1
            and not isinstance(handlers[0], AsyncHandler)
            and not self._hooked
            and cls.dequeue is QueueListener.dequeue
            # Under "block" the task makes room, and passes a stuck handler
            # over; a worker stuck in its handler could do neither.
            and queue.overflow != "block"
        )
        if cls.dequeue is not QueueListener.dequeue:
            # Its code sees the queued contexts, and may enter and change them.
            queue._expose_contexts()
        # While _dispatch runs the hooks: the record's context as logged.
        self._origin: contextvars.Context | None = None
        self._start_afresh()
        self._bind()
        _lifecycle.track(self)
        # Records logged before this listener existed are delivered now, unless
        # an event loop runs here: its handlers would hold the loop (a slow one
        # for as long as it takes). start() hands them to the lanes instead; a
        # listener never started delivers them with the next record logged, or
        # at exit.
        if not loop_runs_here():
            # Through the workers, with several sync handlers (see _lending):
            # a stuck one cannot hold this thread, nor the others, for good.
            with self._lending():
                queue._drain_in_caller()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<QueueListener {state} handlers={len(self.handlers)} queue={self.queue!r}>"

    # ------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """Whether the listener's task is serving its queue."""
        run = self._run_state
        task, backend = run.task, run.backend
        return (
            task is not None and backend is not None and not task.done() and not backend.is_closed()
        )

    def start(self) -> None:
        """Start serving the queue from a task on the running event loop.

        A plain call, made inside a running loop (an async function, a startup
        hook). Records already queued are delivered first.

        On asyncio (and uvloop) the listener is a task of the running loop. On
        trio, where a task needs a nursery, it is a *system task*
        (``trio.lowlevel.spawn_system_task``) running in a copy of the caller's
        context: ``start()`` stays a plain call, and the listener outlives the
        task that started it. When ``trio.run``'s main task ends without
        ``stop()``, the listener delivers what was logged before ``trio.run``
        returns (for at most *shutdown_timeout* seconds without progress).

        Raises:
            RuntimeError: when no event loop runs in this thread, when the
                listener is already running, or when another listener serves
                the same queue.
        """
        backend = running_backend()
        if backend is None:
            raise RuntimeError(
                "QueueListener.start() must be called inside a running event loop: "
                "call it from an async function (such as your app's startup hook), "
                "or use `async with QueueListener(...)`"
            )
        if self.running:
            raise RuntimeError("QueueListener is already running; call stop() before start() again")
        owner = self.queue._consumer
        if owner is not self and isinstance(owner, QueueListener) and owner.running:
            raise RuntimeError(
                f"{self.queue!r} is already served by another running QueueListener; "
                f"stop it before starting this one"
            )
        if self.queue._attached:
            # Still held by a run whose loop closed under its task (which never
            # wound down): take the queue back from it, or this run would wait
            # for the delivery right for ever. What is queued is this run's.
            self.queue._consumer_lost(drain=False)
        self._bind()
        self.queue._attach(backend)
        run = self._run_state = _Run(backend=backend)
        self._gave_up = False  # a new run: its leftovers are delivered at exit again
        try:
            task = backend.spawn(self._run, "aioqlog-listener", on_run_ending=self._run_ending)
        except BaseException:
            # No task (trio refuses system tasks once its run is ending): the
            # queue goes back to delivering in the caller.
            self.queue._abandon_attach()
            raise
        run.task = task
        task.add_done_callback(self._on_task_done)
        if self._may_skip_loop and self.queue._try_acquire():
            # The lone lane's worker takes records from the first one logged,
            # even while the loop runs on without yielding to the task.
            self._open_lanes(backend)

    async def stop(self, timeout: float | None = None) -> ListenerStats:
        """Deliver every record logged before this call, then stop.

        Awaitable: the loop keeps running while handlers finish. A second call
        (or a call on a listener that is not running) does nothing more than
        wait for the first and return the stats.

        Args:
            timeout: At most this many seconds to wait, or ``None`` for as long
                as it takes. When time runs out, records still waiting for a
                handler are reported (on stderr, and as ``pending`` in the
                returned stats); a sync handler still busy goes on in its
                thread, and records for it wait behind it (bounded by
                ``maxsize``, counted when dropped) until it catches up.

        Returns:
            A ``ListenerStats`` snapshot taken once stopped: its
            ``undelivered`` counts what this stop left of the records logged
            before it (see ``ListenerStats.logged_after_stop``).
        """
        timeout = check_seconds(timeout, "stop() timeout", allow_none=True, allow_zero=True)
        run = self._run_state
        task, backend = run.task, run.backend
        if task is None or backend is None or task.done() or backend.is_closed():
            return self.stats
        if not backend.runs_here():
            raise RuntimeError(
                "QueueListener.stop() must be awaited on the event loop the listener runs on"
            )
        self._begin_stop(None if timeout is None else backend.time() + timeout)
        self._notify_lanes()
        await backend.join(task)
        return self.stats

    async def __aenter__(self) -> QueueListener:
        self.start()
        return self

    def __enter__(self) -> NoReturn:
        """Refuse ``with``: the listener runs on an event loop; use ``async with``."""
        raise TypeError(
            f"{type(self).__name__} is an async context manager: write `async with` "
            f"inside a coroutine (or call start() there, and later `await stop()`)"
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never called: ``__enter__`` refuses."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Bounded: a stuck handler must not keep the block (and the app) from ending.
        # Shielded: a cancelled block (trio: a crashed sibling task) still stops
        # the listener and delivers what it logged, as on asyncio.
        with self._shielded():
            await self.stop(self.shutdown_timeout)

    def _shielded(self) -> contextlib.AbstractContextManager[object]:
        """Return a block that the caller's cancellation does not interrupt (see Backend)."""
        backend = self._run_state.backend
        return contextlib.nullcontext() if backend is None else backend.shielded()

    # ----------------------------------------------------------------- hooks

    async def dequeue(self) -> list[Entry]:
        """Wait for the next batch of queued records, each with its log call's context.

        Returns an empty list once the listener is stopping and everything
        logged before ``stop()`` has been taken. You may override this to
        observe or reorder batches; call the base implementation to get them.

        The contexts are the captured ones, not copies, and records logged in
        an unchanged context share one: code that enters one and sets a
        variable there changes it for every record that shares it, queued or
        still to come in this batch. Read them, or hand on a copy
        (``(record, ctx.copy())``) changed as you need.
        """
        q = self.queue
        while True:
            limit = max(BATCH_LIMIT, min(q.qsize() // 2, TURN_LIMIT, self._turn_room()))
            if q.overflow == "block":
                limit = await self._room_for_batch(limit)
            stopping = self._run_state.stopping
            if stopping:
                # Take what was logged before stop(); later records are
                # delivered after the lanes go idle, keeping each thread's order.
                limit = min(limit, q._left_before_stop())
                if limit <= 0 or self._time_left() == 0.0:
                    return []
            batch = q._take(limit)
            if batch or stopping:
                return batch
            await q._wait()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return the record to hand to the handlers (the stdlib's hook).

        The base implementation returns *record* unchanged. You may override it
        to enrich or redact records once, before every handler sees them; it
        runs on the event loop, inside a copy of the record's log-call context:
        it reads the caller's variables, and what it sets there stays there
        (the handlers run in copies of the context as logged). Put what the
        handlers need on the record.
        """
        return record

    def handle(self, record: logging.LogRecord) -> None:
        """Prepare *record* and pass it to every handler's lane (the stdlib's hook).

        Runs inside the record's log-call context; never blocks: each lane
        delivers on its own.
        """
        record = self.prepare(record)
        respect = self.respect_handler_level
        # The lanes run handlers in copies of it (see to_handle): one serves all.
        ctx = self._origin
        if ctx is None:
            ctx = _copy_context()
        for lane in self._lanes:
            if handler_takes(lane.handler, record, respect_level=respect):
                lane.put(record, ctx)

    # ------------------------------------------------------------- internals

    def _start_afresh(self) -> None:
        """Set the lanes, the run's state and the counters to those of a new listener."""
        if _EXIT_STARTS_NO_THREAD:
            _STANDBY.ready()
        q = self.queue
        copying = len(self.handlers) > 1
        self._lanes = [
            make_lane(h, q.maxsize, q.overflow, copy_records=copying) for h in self.handlers
        ]
        self._thread_lanes = [lane for lane in self._lanes if isinstance(lane, ThreadLane)]
        names = Counter(lane.stats_name() for lane in self._lanes)
        for position, lane in enumerate(self._lanes, 1):
            if names[lane.stats_name()] > 1:
                lane.position = position
        self._run_state = _Run()
        # The one-hop path while it serves the queue (see _OneHop).
        self._one_hop: _OneHop | None = None
        # The task parks here until stop() (while the one-hop path serves).
        self._until_stop = Parking()
        self._recursion_dropped = 0
        self._recursion_quiet = 0  # dropped while handling a summary: not announced
        # Threads delivering what a stopping listener left queued (joined at exit).
        self._drainers: list[threading.Thread] = []
        self._drainers_lock = threading.Lock()
        # Whether _give_up_on_threads went on without them: no drainer starts
        # again (one may be stuck in a handler, holding its lock).
        self._gave_up = False
        # What _give_up_on_threads last said was left in the queue.
        self._queued_reported = 0
        # When ("at exit", ...) the "delivering N records" notice was given.
        self._noticed: set[str] = set()
        self._drops_reported = 0
        self._recursion_reported = 0
        self._summary_due = 0.0  # time.monotonic() before which no summary goes out
        # What _fan_out had not handed on when an interrupt ended it (see _serve).
        self._not_handed_on: list[Entry] = []
        self._turn_cost = 0.0  # seconds the task took to hand on a record, in its last batch
        self._turn_ended = 0.0  # time.thread_time() when the task's last batch was handed on

    def _bind(self) -> None:
        self.queue._bind(self)

    def _dispatch(self, batch: list[Entry]) -> None:
        """Hand each record of *batch* to ``handle``, inside its log call's context."""
        if not self._hooked:
            self._fan_out(batch)
            return
        one = self._dispatch_one
        entries = iter(batch)
        entry: Entry | None = None
        try:
            for entry in entries:
                record, ctx = entry
                # handle() gives the lanes the record's context as logged; the
                # hooks run one level deeper (see _dispatch_one), in a copy:
                # records logged in one context share it (see to_handle).
                self._origin = ctx
                ctx.copy().run(one, record, depth_of(record, ctx))
        except BaseException:
            self._keep_not_handed_on([], entry, entries)
            raise
        finally:
            self._origin = None

    def _fan_out(self, batch: list[Entry]) -> None:
        """Do what ``_dispatch_one`` and the base ``handle`` do, for the common case.

        With ``handle`` and ``prepare`` not overridden, no user code runs here,
        so nothing needs to run inside each record's context: the depth is read
        from the context as a mapping, and every lane takes the record's context
        as logged (each runs its handler in copies and sets the next depth
        there, see ``to_handle`` and ``handling``); a lone lane takes the whole
        batch at once.
        """
        lanes = self._lanes
        respect = self.respect_handler_level
        # Not a lane that delivers in the caller: one record at a time there,
        # so that an interrupt in a handler leaves the rest known (see below).
        lone = lanes[0] if len(lanes) == 1 and lanes[0].state == RUNNING else None
        kept: list[Entry] = []
        keep = kept.append
        entries = iter(batch)
        entry: Entry | None = None
        try:
            for entry in entries:
                record, ctx = entry
                depth = depth_of(record, ctx)
                if depth > MAX_DEPTH:
                    self._refuse(depth)
                    continue
                if lone is None:
                    for lane in lanes:
                        if handler_takes(lane.handler, record, respect_level=respect):
                            lane.put(record, ctx)
                elif handler_takes(lone.handler, record, respect_level=respect):
                    keep(entry)
        except BaseException:
            self._keep_not_handed_on(kept, entry, entries)
            raise
        if lone is not None and kept:
            lone.put_many(kept)

    def _hand_over(self, lane: ThreadLane, batch: list[Entry], size: int) -> list[Entry] | None:
        """Return *batch* as ``_dispatch`` would give it to *lane*, ready for its handler.

        For the one-hop path: the worker that took *batch* handles what comes
        back itself, instead of finding it in its buffer (see ``_OneHop.pull``),
        and the same pass that picks the records (``_fan_out``) marks them
        (``to_handle``). None where ``_dispatch`` must do it: hooks run per
        record, the lane does not run or holds records already (they go
        first), or *batch* is more than *size* records.
        """
        if (
            self._hooked
            or len(self._lanes) != 1
            or self._lanes[0] is not lane
            or lane.state != RUNNING
            or lane.buffer
            or len(batch) > min(size, lane.room())
        ):
            return None
        floor = lowest_taken(lane.handler, respect_level=self.respect_handler_level)
        try:
            handed = to_handle(batch, self._refuse, floor)
        except BaseException:
            self._keep_not_handed_on([], None, iter(batch))
            raise
        lane.put_count += len(handed)
        return handed

    def _keep_not_handed_on(
        self, kept: list[Entry], entry: Entry | None, entries: Iterator[Entry]
    ) -> None:
        """Note what an interrupted ``_dispatch`` had not handed on yet; see ``_hand_on``.

        A ``KeyboardInterrupt`` lands wherever the main thread is (Python
        3.10's Ctrl-C, 3.11+'s second one; in a handler called in the caller,
        too): *kept* (taken for a lone lane, not yet given to it), the record
        under way, *entry*, and what *entries* had left. The record under way
        may have reached some handlers: it may reach them twice (at least
        once, rather than lost).
        """
        undone = kept
        if entry is not None and not (undone and undone[-1] is entry):
            undone.append(entry)
        undone.extend(entries)
        self._not_handed_on = undone

    def _dispatch_idle(self, batch: list[Entry]) -> None:
        """Deliver *batch* while no listener runs (in a logging thread), and report drops.

        The drops are reported once the queue is empty: the records queued
        before them are delivered first, whatever the size of the batches.
        """
        try:
            self._dispatch(batch)
        except BaseException:
            # Interrupted in a handler (KeyboardInterrupt): what this call had
            # not handed on goes back to the head of the queue, for the next
            # delivery (a log call's, or the exit's), not lost with the batch.
            undone, self._not_handed_on = self._not_handed_on, []
            self.queue._give_back(undone)
            raise
        if not self.queue.qsize():
            # Not rate-limited: nothing else would report them later. Each
            # summary follows a queue that filled while one thread delivered.
            self._report_drops(force=True)
            self._after_drain()

    def _dispatch_one(self, record: logging.LogRecord, depth: int) -> None:
        if depth > MAX_DEPTH:
            self._refuse(depth)
            return
        # Handlers run one level deeper: what they log is recognised as theirs.
        DEPTH.set(depth + 1)
        try:
            self.handle(record)
        except Exception as exc:  # noqa: BLE001 - an overridden hook must not stop delivery
            _stderr(f"QueueListener.handle() raised {exc!r}; the record was not delivered")
        except BaseException as exc:
            if not delivering_for_others():
                raise  # KeyboardInterrupt in the application's thread: its own
            _stderr(f"QueueListener.handle() raised {exc!r}; the record was not delivered")

    def _refuse(self, depth: int) -> None:
        """Count a record that a handler logged too deep in handler-caused logging."""
        if depth >= SUMMARY_DEPTH:
            self._recursion_quiet += 1  # logged while handling a summary: not announced
        else:
            self._recursion_dropped += 1

    def _on_consumer_lost(self) -> None:
        # The loop closed under the task: nothing can await async handlers now,
        # and sync handlers go back to the caller once their workers catch up.
        self._end_one_hop()
        for lane in self._lanes:
            if isinstance(lane, TaskLane):
                lane.state = IDLE
                lane.discard_abandoned_task()
            else:
                lane.stop_serving()

    def _begin_stop(self, deadline: float | None) -> None:
        """Start winding down (once), and bring the deadline forward to *deadline*.

        From here on the listener takes only what was logged before this call
        (the queue keeps the mark), then lets the lanes settle and stops.
        """
        run = self._run_state
        if not run.stopping:
            run.stopping = True
            self.queue._mark_stop()
            self.queue._kick()
            self._until_stop.wake()
        if deadline is not None and (run.deadline is None or deadline < run.deadline):
            run.deadline = deadline

    def _notify_lanes(self) -> None:
        """Make any wait on a lane's progress re-evaluate against a new deadline."""
        for lane in self._lanes:
            lane.notify()

    def _cancelled_from_outside(self) -> None:
        """Wind down because the loop is ending without ``stop()``.

        ``asyncio.run`` ending cancels the task, and ``trio.run``'s main task
        ending calls ``_run_ending``. The first time, the listener delivers
        what was queued as long as the handlers make progress; a second time,
        or during a ``stop()`` already under way (a second Ctrl-C), it winds
        down at once: the lanes' threads go on off the loop, and the exit hook
        waits for them.
        """
        run = self._run_state
        assert run.backend is not None  # running
        now = run.backend.time()
        if run.cancelled or run.stopping:
            run.patient = False
            run.cut_short = True
            self._begin_stop(now)
        else:
            run.patient = True
            bound = self.shutdown_timeout
            self._begin_stop(None if bound is None else now + bound)
        run.cancelled = True

    def _run_ending(self) -> None:
        """On trio: the run's main task ended with the listener running; drain, then stop.

        Called on the loop by the backend's watcher (the listener's own task
        runs shielded, so it never sees the cancellation itself): once as the
        main task ends, then again at each Ctrl-C, which trio itself holds back
        until ``trio.run`` returns: stop now, as a second cancellation does.
        """
        self._cancelled_from_outside()
        self._notify_lanes()

    def _time_left(self) -> float | None:
        run = self._run_state
        deadline = run.deadline
        if deadline is None:
            return None
        assert run.backend is not None  # running
        return max(0.0, deadline - run.backend.time())

    async def _room_for_batch(self, want: int) -> int:
        """Under "block", wait until every running lane has room; return how much (<= *want*).

        A lane whose handler handles nothing for half of ``block_timeout``
        while full is passed over until it moves again: its records are
        dropped and counted meanwhile, so one stuck handler cannot hold back
        the others, nor keep logging threads waiting on a full queue (half:
        the listener takes records again before a thread that began waiting
        for room since gives up, after ``block_timeout`` without progress).
        """
        patience = self.queue.block_timeout / 2
        backend = self._run_state.backend
        assert backend is not None  # running
        while True:
            room = want
            full: Lane | None = None
            for lane in self._lanes:
                if lane.state != RUNNING:
                    continue
                if not lane.moved_since(lane.stalled_at):
                    continue  # still stuck: passed over
                free = lane.room()
                if free < room:
                    room = free
                    if free <= 0:
                        full = lane
                        break
            if full is None:
                return room
            left = self._time_left()
            if left == 0.0:
                return 0
            done = full.progress()
            wait = patience if left is None else min(left, patience)
            in_time = await full.wait_progress(full.has_room, wait, backend)
            if not in_time and wait == patience and full.progress() == done:
                full.stalled_at = done  # full, and not a record handled for block_timeout

    async def _settle(self, feeding: _OneHop | None = None) -> bool:
        """Wait until every lane has handled what it was given; False if out of time.

        With *feeding*, also until that lane's worker has taken, and handled,
        everything logged before ``stop()`` (the one-hop path). The wait
        follows progress when the loop is ending without ``stop()`` (see
        ``_follow``).
        """
        backend = self._run_state.backend
        assert backend is not None  # running
        notice = _Notice(began=backend.time())
        for lane in self._lanes:
            fed = feeding if feeding is not None and feeding.lane is lane else None

            def settled(lane: Lane = lane, fed: _OneHop | None = fed) -> bool:
                return lane.state != RUNNING or (
                    lane.settled() and (fed is None or not fed.serving)
                )

            if not await self._follow(lane, settled, lane.progress, notice):
                return False
        return True

    async def _follow(
        self, lane: Lane, ready: Callable[[], bool], progress: Callable[[], int], notice: _Notice
    ) -> bool:
        """Wait on *lane*'s progress until *ready()* holds; False if out of time first.

        *progress()* grows with each step the handler takes (records handled,
        steps of a batch call, records its ``aclose()`` sent). The lane wakes
        the wait at each call (each record, for a handler fed one at a time),
        when its ``aclose()`` task ends, and when the deadline moves; progress
        inside a call is seen when the wait times out.

        When the loop is ending without ``stop()`` (the task was cancelled from
        outside), the wait is as long as the handler makes progress: each wake
        that finds *progress()* grown moves the deadline ``shutdown_timeout``
        ahead, so the wait ends only after ``shutdown_timeout`` without any.
        Either way, a notice on stderr says what the wait is for once it takes
        more than a second, and that Ctrl-C cuts it short.
        """
        run = self._run_state
        backend = run.backend
        assert backend is not None  # running
        timeout = self.shutdown_timeout
        while not ready():
            left = self._time_left()
            if left == 0.0:
                return False
            mark = progress()
            if not notice.given:
                until_notice = max(0.0, notice.began + _NOTICE_AFTER - backend.time())
                left = until_notice if left is None else min(left, until_notice)
            await lane.wait_progress(ready, left, backend)
            now = backend.time()
            if run.patient and timeout is not None and progress() > mark:
                run.deadline = now + timeout
            if notice.given or now - notice.began < _NOTICE_AFTER or ready():
                continue
            notice.given = True
            self._say_what_the_wait_is_for(notice.closing)
        return True

    def _say_what_the_wait_is_for(self, closing: Lane | None) -> None:
        """Say on stderr what a shutdown that takes a while waits for, and how to skip it.

        *closing* is the lane whose handler's ``aclose()`` is awaited, if that is the wait.
        """
        count = _held(closing.handler) if closing is not None else self.stats.undelivered
        if not count:
            return  # nothing left to send or deliver: no records to speak of
        bound = self._wait_bound("it makes" if closing is not None else "the handlers make")
        if bound is None:
            return  # about to end anyway
        if closing is not None:
            _stderr(
                f"waiting for {closing.stats_name()}.aclose() to send the {count} records it holds "
                f"({bound}{_ctrl_c_skips()})"
            )
        elif self._run_state.patient:
            _stderr(
                f"the event loop is ending without QueueListener.stop(); "
                f"delivering {count} records first ({bound}{_ctrl_c_skips()})"
            )
        else:
            _stderr(
                f"stopping: waiting for the handlers to deliver {count} records "
                f"({bound}{_ctrl_c_skips()})"
            )

    def _wait_bound(self, who_make: str) -> str | None:
        """Say how long a shutdown wait may last; None if it is over.

        *who_make* names what the wait follows ("it makes", "the handlers make").
        """
        if self._run_state.patient:
            return f"as long as {who_make} progress"
        left = self._time_left()
        if left is None:
            return "no timeout"
        if left < 0.05:
            return None
        return f"up to {left:.0f}s more" if left >= 1.0 else f"up to {left:.1f}s more"

    async def _run(self) -> None:
        """The listener's task: serve, then wind down, however it ends."""
        run = self._run_state
        run.entered = True
        backend = run.backend
        assert backend is not None  # set by start()
        q = self.queue
        if not run.serving:
            try:
                await q._acquire()
            except backend.Cancelled:
                q._abandon_attach()
                raise
            self._open_lanes(backend)
        cancelled = False
        while True:
            try:
                await self._serve()
                break
            except backend.Cancelled:  # asyncio only: on trio the task runs shielded
                backend.uncancel()
                self._cancelled_from_outside()
                cancelled = True
            except Exception as exc:  # noqa: BLE001 - wind down cleanly even on a bug
                _stderr(f"the listener failed ({exc!r}); delivering in the caller from now on")
                break
        await self._wind_down()
        if cancelled:
            raise backend.Cancelled

    def _open_lanes(self, backend: Backend) -> None:
        """Start the lanes (and the one-hop path), once the delivery right is taken."""
        q = self.queue
        timeout = self.shutdown_timeout
        budget = math.inf if timeout is None else timeout / 4
        if q.overflow == "block":
            # A lane full and not moving for half of block_timeout is passed over
            # (_room_for_batch): a call a quarter of that leaves room for a slow
            # machine's jitter before it looks stuck.
            budget = min(budget, q.block_timeout / 8)
        for lane in self._lanes:
            # A worker thread's progress is also what the exit's short look
            # watches once a stop gave up on it (_wait_for_threads).
            kept = min(budget, _CALL_BUDGET) if isinstance(lane, ThreadLane) else budget
            lane.call_budget = None if kept == math.inf else kept
            if isinstance(lane, ThreadLane):
                lane.room_patience = q.block_timeout
            thread_id = lane.start(backend)
            if thread_id is not None:
                q._add_nonblocking(thread_id)
        for lane in self._thread_lanes:
            lane.pace_with(self._thread_lanes)
        if self._may_skip_loop:
            lane = self._lanes[0]
            assert isinstance(lane, ThreadLane)  # a lone sync handler
            one_hop = self._one_hop = _OneHop(self, lane)
            lane.feed = one_hop
            worker = lane.thread.ident if lane.thread is not None else None
            q._serve_from(None if worker is None else (worker,))
            lane.wake_worker()  # records already queued
        else:
            me = threading.get_ident()
            threads = (lane.thread for lane in self._thread_lanes)
            workers = [t.ident for t in threads if t is not None and t.ident is not None]
            q._serve_from((me, *workers), own=me)
        self._run_state.serving = True

    def _on_task_done(self, task: Task) -> None:
        """Hand the queue back if the task ended without winding down.

        A task cancelled before its first step never runs ``_run`` (not even
        its ``finally``); and on Python 3.10 a Ctrl-C raises
        ``KeyboardInterrupt`` wherever the loop's thread is, inside the task's
        step too, which ends it there. Either way the queue would stay attached
        to nobody. Records go back to in-caller delivery, and what is queued is
        delivered from a helper thread (never on the loop), joined at exit.
        """
        if task is not self._run_state.task:
            return
        q = self.queue
        if not self._run_state.entered:
            if self._run_state.serving:
                # start() had the lanes serve: take the queue back from them
                # now (no handler code runs here), as from a listener whose
                # loop closed; the lane's worker finishes what it holds.
                self._on_consumer_lost()
                q._release()
            else:
                q._abandon_attach(drain=False)
            if q.qsize():
                self._start_drainer(q._drain_in_caller)
        elif not task.cancelled() and task.exception() is not None and q._attached:
            # Taken back here (no handler code runs), so that the drainer
            # finds the lanes stopped and lends their workers (see below).
            q._consumer_lost(drain=False)
            self._start_drainer(q._drain_in_caller)

    def _start_drainer(self, drain: Callable[..., None], *, lend: bool = True) -> None:
        """Run ``drain(limit=1)`` in a helper thread (never on the loop), joined at exit.

        *drain* takes records off the queue in batches of at most *limit*: a
        drainer takes one at a time, so that a record is always in the queue
        or in a lane, counted, even when a handler gets stuck on the one
        before it (a batch in the drainer's hands would be counted nowhere).

        With more than one sync handler, and *lend*, the drainer hands the
        records to the lanes' workers rather than calling each handler itself
        (``ThreadLane.lend``): one handler stuck in its emit cannot keep the
        others from getting theirs. (Without *lend*, ``delivered`` counts
        records once handled: ``_drain_off_loop`` waits on that.)

        A daemon, so that a stuck handler cannot hang the interpreter before the
        exit hook runs; the exit hook waits for it while it makes progress.
        """
        one = functools.partial(drain, limit=1)

        def run() -> None:
            mark_helper_thread()
            try:
                if lend:
                    with self._lending():
                        one()
                else:
                    one()
            finally:
                with self._drainers_lock:
                    # Done: what waits for drainers (_draining) no longer waits for this one.
                    me = threading.current_thread()
                    self._drainers = [t for t in self._drainers if t is not me]
                self._after_drain()

        thread = threading.Thread(target=run, name="aioqlog-drain", daemon=True)
        with self._drainers_lock:  # logging threads hand off too
            # Listed before it starts: it takes itself off once done (see run).
            self._drainers = [t for t in self._drainers if t.is_alive()]
            self._drainers.append(thread)
        try:
            thread.start()
        except RuntimeError:
            # The interpreter is exiting (Python 3.12 starts no thread then,
            # and a daemon thread's loop can end only now): the thread
            # started for this beforehand runs it, else it runs right here.
            with self._drainers_lock:
                self._drainers = [t for t in self._drainers if t is not thread]
                standby = _STANDBY.thread()
                if standby is not None:
                    self._drainers.append(standby)
            if standby is None:
                one()
            else:
                _STANDBY.run(run)
            return

    @contextlib.contextmanager
    def _lending(self) -> Iterator[None]:
        """Within: with more than one sync handler, this thread hands records to their workers.

        A thread delivering queued records while no listener runs would call
        each handler in turn, so that one stuck in its emit would keep the
        others from theirs; it puts them in the lanes instead, whose workers
        handle them (``ThreadLane.lend``). One sync handler is called here.
        """
        lanes = self._thread_lanes if len(self._thread_lanes) > 1 else []
        lent = [lane for lane in lanes if lane.lend()]
        try:
            yield
        finally:
            for lane in lent:
                lane.end_loan()

    def _hand_off(self, drain: Callable[..., None]) -> None:
        """Have a helper thread deliver what other threads queued (see ``_drain_in_caller``)."""
        self._start_drainer(drain)

    def _after_drain(self) -> None:
        """Called once a delivery outside the listener's run has emptied the queue.

        In a drainer thread once it has delivered what it was started for, and
        in whichever thread delivered the last queued records (a log call's).
        """

    def _draining(self) -> bool:
        """Return whether records are still queued, or a thread other than this one delivers some.

        A drainer, or a log call delivering what it took from the queue (it
        holds the delivery right): the queue may be empty meanwhile.
        """
        me = threading.current_thread()
        holder = self.queue._holder
        return (
            bool(self.queue.qsize())
            or holder not in (0, me.ident)
            or any(t.is_alive() and t is not me for t in self._drainers)
        )

    async def _serve(self) -> None:
        """Move records into the lanes until stopped and every lane has settled."""
        q = self.queue
        backend = self._run_state.backend
        assert backend is not None  # running
        checkpoint = backend.checkpoint
        while True:
            if self._one_hop is not None:
                await self._while_one_hop()
            else:
                batch = await self.dequeue()
                if batch:
                    began = time.perf_counter()
                    self._hand_on(batch)
                    self._turn_cost = (time.perf_counter() - began) / len(batch)
                    del batch  # hold no record (nor its context's values) while waiting
                    self._report_drops(force=False)
                    for lane in self._thread_lanes:
                        lane.keep_pace()
                    self._turn_ended = time.thread_time()
                    await checkpoint()  # let the loop breathe between batches
                    continue
            self._report_drops(force=True)
            if not await self._settle():
                return
            if self._time_left() == 0.0 or q._left_before_stop() <= 0:
                return

    def _turn_room(self) -> int:
        """Return how many records the task hands on in its fair share of the loop.

        That is as long as the loop's thread worked elsewhere (in CPU time)
        since the task's last batch, at what a record took the task in that
        batch (by the clock): a loop that logs a long burst between two turns
        gives the task as long to take it, and threads that log while the loop
        idles do not make the task hold the loop for longer. While threads
        hold the GIL the loop's thread waits for it: no work of the loop's.
        """
        cost = self._turn_cost
        if cost <= 0.0:
            return TURN_LIMIT
        return int((time.thread_time() - self._turn_ended) / cost)

    async def _while_one_hop(self) -> None:
        """Wait while the lone lane's worker serves the queue, until it is done.

        Until ``stop()`` the task only sleeps. Then the worker takes what was
        logged before the stop and ends the feed, and the task waits for that
        as it waits for the lanes to settle (with the same bound, patience and
        notice); if time runs out first, the task takes the queue back and
        puts what was logged before the stop in the lane, as its own path
        would have. Either way the task serves from here on.
        """
        run = self._run_state
        backend = run.backend
        one_hop = self._one_hop
        assert backend is not None  # running
        assert one_hop is not None  # the lone lane's worker serves the queue
        while not run.stopping:
            await self._until_stop.wait(lambda: run.stopping, None, backend)
        in_time = await self._settle(feeding=one_hop)
        self._end_one_hop()
        left = self.queue._left_before_stop()
        if not in_time and left > 0:
            self._hand_on(self.queue._take(left))

    def _hand_on(self, batch: list[Entry]) -> None:
        """Hand *batch* to the lanes from the listener's task, none of it lost to an interrupt.

        A ``KeyboardInterrupt`` in the middle (see ``_keep_not_handed_on``)
        ends the task, but first the rest of the batch goes to the lanes: they
        run, so handing it on blocks nobody, and their workers deliver it.
        """
        try:
            self._dispatch(batch)
        except BaseException:
            undone, self._not_handed_on = self._not_handed_on, []
            self._dispatch(undone)
            raise

    def _end_one_hop(self) -> None:
        """Take the queue back from the lone lane's worker, if it serves it."""
        one_hop, self._one_hop = self._one_hop, None
        if one_hop is not None:
            one_hop.end()

    async def _wind_down(self) -> None:
        """Switch the lanes to in-caller delivery and hand the queue back."""
        q = self.queue
        self._end_one_hop()  # the listener failed: the worker stops taking
        # No await between the lanes going idle and the queue's release: from
        # here on, records are delivered by whoever holds the delivery right.
        background: list[str] = []
        cut_off: list[str] = []
        out_of_time = self._time_left() == 0.0
        for lane in self._lanes:
            if lane.pending and lane.state == RUNNING:
                where = f"{lane.unfinished()} for {lane.stats_name()}"
                if isinstance(lane, ThreadLane):
                    # Its worker goes on off the loop (the lane drains).
                    lane.stop_serving(gave_up=out_of_time)
                    if out_of_time:
                        background.append(where)
                    continue
                cut_off.append(where)
            lane.stop_serving()
        # What was logged before the stop and is still queued (out of time)
        # reaches the thread lanes first: it counts as the stop's, not as later.
        before_stop = max(0, q._left_before_stop())
        if before_stop:
            for lane in self._lanes:
                if lane.stop_mark is not None:
                    lane.stop_mark += before_stop
        q._release()
        if background:
            if self._run_state.cancelled:
                what = "the event loop ended before the handlers caught up"
            else:
                what = "stop() ran out of time"
            _stderr(
                f"{what}; still being delivered by the handlers' threads (at exit, aioqlog "
                f"waits for them while they make progress, unless the process is killed "
                f"by a signal): " + ", ".join(background)
            )
        if cut_off:
            if self._run_state.cancelled:
                _stderr(
                    "the event loop ended before QueueListener.stop() (its task was "
                    "cancelled), and async handlers need the loop; kept for a next "
                    "start, else lost at exit: " + ", ".join(cut_off)
                )
            else:
                _stderr("stop() ran out of time; kept for the next start: " + ", ".join(cut_off))
        if q.qsize():
            # Logged while stopping: deliver them off the loop, in order.
            await self._drain_off_loop()
        for lane in self._lanes:
            # A handler cut off at the deadline was cancelled: it gets a moment
            # to end. One that ignores that is given up on (asyncio: a task
            # left running would hang asyncio.run, which waits for every task)
            # or, shielded on trio, left running: the stop still ends.
            left = self._time_left()
            if not await lane.finished(None if left is None else left + _CANCEL_GRACE):
                await self._give_up_on(lane)
        for lane in self._lanes:
            if isinstance(lane, TaskLane) and lane.task is None:
                await self._aclose(lane)

    async def _give_up_on(self, lane: Lane) -> None:
        """End *lane*'s task, whose handler ignored its cancellation, and say so."""
        backend = self._run_state.backend
        assert backend is not None  # running
        name = lane.stats_name()
        late = f"{name} did not end within {_CANCEL_GRACE:.0f}s of being cancelled"
        if (
            backend.name != "asyncio"
            or not isinstance(lane, TaskLane)
            or not await lane.abandon(_CANCEL_GRACE)
        ):
            _stderr(f"{late} (its aemit ignores cancellation); left running")
            return
        closed = "closed it"
        if lane.abandon_error is not None:
            closed = (
                f"closed it, which it ignored too ({lane.abandon_error!r}: its finally "
                f"blocks did not run)"
            )
        _stderr(
            f"{late} (its aemit ignores cancellation); gave up on its call: {closed}; "
            f"the {lane.abandoned} records it had are among those kept above"
        )

    async def _drain_off_loop(self) -> None:
        """Deliver what is queued from a helper thread, as a logging thread would.

        Waits (within the deadline) until the records queued now are delivered,
        except when the loop is ending: the exit hook waits for the helper then.
        The helper may go on delivering what threads keep logging, like any
        logging thread.
        """
        backend = self._run_state.backend
        assert backend is not None  # running
        done = backend.new_waiter()
        remaining = [self.queue.qsize()]
        queued, before_stop = remaining[0], max(0, self.queue._left_before_stop())

        def signal() -> None:
            try:
                backend.call_soon_threadsafe(backend.resolve, done)
            except RuntimeError:  # the loop closed meanwhile
                pass

        def delivered(count: int) -> None:
            if remaining[0] > 0:
                remaining[0] -= count
                if remaining[0] <= 0:
                    signal()

        def drain(limit: int) -> None:
            try:
                self.queue._drain_in_caller(delivered, limit=limit)
            finally:
                signal()

        self._start_drainer(drain, lend=False)
        if not self._run_state.cancelled and not await backend.wait(done, self._time_left()):
            left = remaining[0]
            if left > 0:
                # Delivered in order: those logged before the stop go first.
                before = max(0, before_stop - (queued - left))
                which = (
                    f" ({before} logged before stop(), {left - before} while it ran)"
                    if before
                    else " (logged while it ran)"
                )
                _stderr(
                    f"stop() ran out of time; {left} records still queued{which} are being "
                    f"delivered from a helper thread (at exit, aioqlog waits for it while it "
                    f"makes progress)"
                )

    async def _aclose(self, lane: TaskLane) -> None:
        """Await the handler's ``aclose()`` (where it sends what it buffered), within bounds.

        It runs in a task of its own, watched from here as the lanes are (see
        ``_follow``): after ``stop()``, the stop's deadline bounds it; when the
        loop is ending without ``stop()``, it goes on as long as the records
        the handler holds (``AsyncHandler.pending``) keep going down, and is
        cut off once none went out for ``shutdown_timeout``. The handler's own
        ``timeout`` bounds the call too.
        """
        handler = lane.handler
        if type(handler).aclose is AsyncHandler.aclose:
            return  # nothing to await, and nothing to report
        run = self._run_state
        backend = run.backend
        assert backend is not None  # running

        given_up: list[BaseException | None] = []

        async def close() -> None:
            # Driven through run_in_context (in a copy of this task's context)
            # so that _cut_off can give up on an aclose() that ignores its
            # cancellation: asyncio.run waits for every task before returning.
            call = run_in_context(_copy_context(), handler.aclose(), lambda: bool(given_up))
            try:
                await backend.bounded(call, handler.timeout, "aclose()")
            except Exception as exc:  # noqa: BLE001
                if given_up:
                    given_up[0] = exc  # closing it raised: it ignored GeneratorExit too
                else:
                    self._report_aclose(lane, f"raised {exc!r}")

        now = backend.time()
        timeout = self.shutdown_timeout
        if run.patient and timeout is not None:
            # The lanes have just settled, which is progress: aclose() starts
            # with a whole shutdown_timeout to make its own.
            run.deadline = now + timeout
        task = backend.spawn(close, f"aioqlog-{lane.stats_name()}-aclose")
        task.add_done_callback(lambda _: lane.notify())

        def closed() -> bool:
            return task.done()

        def sent() -> int:
            return -_held(handler)

        try:
            in_time = await self._follow(lane, closed, sent, _Notice(began=now, closing=lane))
        except backend.Cancelled:
            # Cancelled again (asyncio: a second cancellation of a listener
            # already winding down): cut it short now.
            await self._cut_off(
                lane, task, "was cut off: the listener was cancelled again", given_up
            )
            raise
        if in_time:
            return
        if run.patient and timeout is not None:
            outcome = (
                f"was cut off: it sent nothing for shutdown_timeout={timeout:g}s while the "
                f"event loop ended without QueueListener.stop()"
            )
        elif run.cancelled:
            # The run ended during a stop(), or Ctrl-C cut its end short (trio).
            outcome = "was cut off: the event loop is ending and the listener was told to stop now"
        else:  # the stop's deadline (what the handlers before it left of it)
            waited = backend.time() - now
            outcome = f"was cut off: stop()'s time ran out (it had {waited:.2g}s of it)"
        await self._cut_off(lane, task, outcome, given_up)

    async def _cut_off(
        self, lane: TaskLane, task: Task, outcome: str, given_up: list[BaseException | None]
    ) -> None:
        """Cancel *lane*'s ``aclose()`` task, give it a moment to end, and report *outcome*.

        One that ignores its cancellation is given up on (asyncio: appending
        to *given_up* makes its ``run_in_context`` close it at the next
        cancellation, and the task ends), or, shielded on trio, left running.
        """
        backend = self._run_state.backend
        assert backend is not None  # running
        task.cancel()
        if not await backend.join(task, _CANCEL_GRACE):
            late = f"{lane.stats_name()}.aclose() did not end within {_CANCEL_GRACE:.0f}s of being "
            if backend.name == "asyncio":
                given_up.append(None)
                task.cancel()
            if not given_up or not await backend.join(task, _CANCEL_GRACE):
                _stderr(f"{late}cancelled (it ignores cancellation); left running")
            elif given_up[0] is not None:
                _stderr(
                    f"{late}cancelled (it ignores cancellation); gave up on it: closed it, "
                    f"which it ignored too ({given_up[0]!r}: its finally blocks did not run)"
                )
            else:
                _stderr(f"{late}cancelled (it ignores cancellation); gave up on it: closed it")
        self._report_aclose(lane, outcome)

    def _report_aclose(self, lane: TaskLane, outcome: str) -> None:
        """Say on stderr how *lane*'s ``aclose()`` ended, and what the handler still holds."""
        held = _held(lane.handler)
        still = f"; it still holds {held} records undelivered" if held else ""
        _stderr(f"{lane.stats_name()}.aclose() {outcome}{still}")

    def _report_drops(self, *, force: bool) -> None:
        """Tell the handlers, once room returns, how many records were dropped.

        At most one round of summaries per ``SUMMARY_INTERVAL`` (unless
        *force*, when stopping): a handler that keeps losing records hears of
        it once per interval, with the count since the last summary.
        """
        if not force and time.monotonic() < self._summary_due:
            return
        q = self.queue
        announced = False
        dropped = q.dropped - self._drops_reported
        if dropped and (force or q.qsize() <= q.maxsize // 2):
            self._drops_reported += dropped
            announced = True
            self._announce(
                _summary(
                    "aioqlog dropped %d records: the queue was full (maxsize=%d, overflow=%r)",
                    dropped,
                    q.maxsize,
                    q.overflow,
                ),
                self._lanes,
            )
        recursive = self._recursion_dropped - self._recursion_reported
        if recursive:
            self._recursion_reported += recursive
            announced = True
            self._announce(
                _summary(
                    "aioqlog dropped %d records that handlers logged while handling "
                    "records logged by handlers (a handler logging from its own emit())",
                    recursive,
                ),
                self._lanes,
            )
        for lane in self._lanes:
            missed = lane.dropped - lane.drops_reported
            if missed and lane.state == RUNNING and (force or lane.room() >= lane.capacity // 2):
                summary = lane.drop_summary()
                if summary is not None:
                    announced = True
                    self._announce(summary[0], [lane])
        if announced:
            self._summary_due = time.monotonic() + SUMMARY_INTERVAL

    def _announce(self, record: logging.LogRecord, lanes: list[Lane]) -> None:
        """Put one of aioqlog's own records straight into *lanes* (past their bound).

        Whatever their handlers' levels: a handler at ERROR that missed records
        hears of it too (as of a lane's own drops, which its worker reports).
        """
        for lane in lanes:
            lane.put(record, summary_context(), past_bound=True)

    def _handled_so_far(self) -> int:
        """A count that grows while delivery moves: what threads waiting for room watch.

        What the lanes have done (records finished, steps of calls), and each
        wait for room in a thread lane that ended: the thread delivering in the
        caller goes on past it (see ``_delivery_held_up``).
        """
        return sum(lane.progress() for lane in self._lanes) + sum(
            lane.room_waits_ended for lane in self._thread_lanes
        )

    def _delivery_held_up(self) -> bool:
        """Return whether a thread delivering while no listener runs waits for room in a lane.

        Only that thread puts into a lane that may make it wait (one that is
        DRAINING): see ``ThreadLane._wait_for_room``, which bounds the wait.
        Threads waiting for room in the queue behind it wait on, rather than
        give up while it runs and drop what the other handlers would take once
        it ends; its end counts as a move (see ``_handled_so_far``).
        """
        return any(lane.room_waiters for lane in self._thread_lanes)

    # --------------------------------------------------------------- stats

    @property
    def stats(self) -> ListenerStats:
        """A snapshot: enqueued, dropped, queue depth and high-water mark, per-handler counts."""
        q = self.queue
        depth = q.qsize()
        now = time.time()
        # On the one-hop path the lone lane's records wait in the queue until its
        # worker takes them: the oldest queued record is the oldest it has to
        # handle (counted in queue_depth, not again in its pending).
        one_hop = self._one_hop
        fed = one_hop.lane if one_hop is not None and one_hop.serving else None
        after = 0
        if self._run_state.stopping:
            # What the stop takes ends at the queue's mark, and at each thread
            # lane's: the rest is delivered as the threads log, after it.
            after = depth - min(depth, max(0, q._left_before_stop()))
            after += sum(lane.pending_after_stop() for lane in self._lanes)
        return ListenerStats(
            running=self.running,
            enqueued=q._enqueued,
            dropped=q.dropped,
            queue_depth=depth,
            high_water=max(q._high_water, depth),
            recursion_dropped=self._recursion_dropped + self._recursion_quiet,
            handlers=tuple(
                _handler_stats(lane, _since(_oldest(lane, fed, q), now)) for lane in self._lanes
            ),
            oldest_queued_age=_since(q._oldest_created(), now),
            logged_after_stop=after,
        )

    def _left_over(self) -> str:
        """Say what is queued or held for a handler, however late it was logged ("": nothing).

        A queued record waits once, for every handler; in the lanes, a record
        waits once for each handler that has it still to handle: with several
        handlers, what each holds is said apart, not summed.
        """
        stats = self.stats
        queued = stats.queue_depth
        held = [h for h in stats.handlers if h.pending]
        if not queued and not held:
            return ""
        if len(stats.handlers) == 1:
            return f"{queued + held[0].pending if held else queued} records"
        parts = [f"{queued} records queued"] if queued else []
        parts.extend(f"{h.pending} for {h.name}" for h in held)
        return ", ".join(parts)

    # -------------------------------------------------------------- at exit

    def _before_fork(self, deadline: float) -> None:
        """Keep a fork from landing inside a handler's write: hold each sync handler's lock.

        Waits for each until the ``time.monotonic()`` *deadline* at most (see
        ``ThreadLane.hold_for_fork``).
        """
        for lane in self._thread_lanes:
            lane.hold_for_fork(max(0.0, deadline - time.monotonic()))

    def _after_fork_in_parent(self) -> None:
        """Release what ``_before_fork`` held: the workers write on."""
        self._release_after_fork()

    def _release_after_fork(self) -> None:
        """Release the handlers' locks ``_before_fork`` took, in the parent or the child."""
        for lane in reversed(self._thread_lanes):
            lane.release_after_fork()

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, the parent's run: its task, threads and records.

        The lanes are rebuilt empty (their worker threads do not exist here and
        their records are the parent's); the listener is stopped, delivers in
        the caller like one never started, and can be started on a new loop.
        """
        self._release_after_fork()
        self._start_afresh()

    def _at_exit(self) -> None:
        """Deliver what an unfinished run left behind, as the interpreter exits.

        Waits for the listener's threads as long as they make progress, and
        gives up on one that makes none for ``shutdown_timeout`` seconds (a
        second, if a ``stop()`` already gave up on it), or at Ctrl-C: what it
        still holds is reported on stderr, and ``logging.shutdown`` is kept
        away from its handler. From here on no thread waits for room.
        """
        self.queue._stop_waiting()
        self._finish("at exit")

    def _report_late_records(self) -> None:
        """Say on stderr what threads logging on through the exit lost, so far.

        Called once, after the last ``_at_exit``. The exit delivers what was
        queued when it began; what threads log after that stays queued, or is
        dropped once the queue is full, and no summary reaches the handlers
        any more. (After giving up on a handler, the exit has said what it left,
        and only the drops remain to be said.)
        """
        q = self.queue
        dropped = q.dropped - self._drops_reported
        dropped += sum(
            lane.dropped - lane.drops_reported
            for lane in self._lanes
            if isinstance(lane, ThreadLane)
        )
        if self._gave_up:
            if dropped:
                _stderr(
                    f"{dropped} records were dropped (the queue was full) with no summary "
                    f"to the handlers"
                )
            return
        before, late = (0, 0) if q._attached else q._exit_backlog()
        if not late and not dropped:
            return
        still = (
            f" ({before} queued before it were still being delivered by one of them)"
            if before
            else ""
        )
        _stderr(
            f"threads went on logging as the interpreter exited: {late} records they logged "
            f"after the exit began were not delivered{still}, and {dropped} were dropped (the "
            f"queue was full) with no summary to the handlers; what they log from now on is lost"
        )

    def _finish(self, when: str) -> None:
        """Deliver everything still on its way, here and now (at exit, or at close).

        Also what ``QueueHandler.close()`` runs, so that ``logging.shutdown()``
        finds the records delivered before it flushes and closes the handlers.
        """
        run = self._run_state
        task, backend = run.task, run.backend
        if task is not None and backend is not None and not task.done():
            if backend.runs_here():
                # Called from a coroutine of the listener's own loop (a queue
                # handler closed by logging.shutdown(), dictConfig or
                # basicConfig(force=True)): the listener cannot run until we
                # return, so nothing can be waited for here.
                if self.stats.undelivered:
                    _stderr(
                        f"a QueueHandler feeding this listener was closed on the "
                        f"listener's own event loop with {self.stats.undelivered} records "
                        f"not yet delivered: the listener delivers them once the loop runs "
                        f"again, possibly after what is logged meanwhile through other "
                        f"handlers, and to handlers that may be closed by then (a closed "
                        f'FileHandler with mode="w" writes nothing). Stop the listener before '
                        f"reconfiguring logging (await listener.stop(), or leave its "
                        f"`async with`, aioqlog.install() or aioqlog.listening() block)"
                    )
                return
            # The loop may run in another thread (a daemon thread's loop, still
            # alive at exit): ask it to stop the listener, and wait. If it
            # stopped or closed with our task still inside it, take the queue
            # back and let the lanes' threads finish what they hold.
            if not self._stop_in(backend):
                self.queue._consumer_lost()
        # The program ends on Ctrl-C (KeyboardInterrupt, printed and kept in
        # sys.last_value before exit hooks and logging.shutdown() run): a handler
        # that is not moving is given up on after a short look.
        hurry = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
        # A wind-down after the loop ended without stop() that never finished
        # was cut short too: on Python 3.10 a second Ctrl-C lands in asyncio.run's
        # own clean-up, outside the listener's task, and ends the program there.
        unfinished = run.patient and task is not None and not task.done()
        if hurry and (run.cut_short or unfinished) and self._threads():
            # Ctrl-C cut the stop short already: the user asked to skip the
            # wait, so the exit does not wait again (a third Ctrl-C).
            # (The count is the handlers' own, next: taken now, it could be
            # one record behind a worker still finishing its emit.)
            if "cut short" not in self._noticed:
                self._noticed.add("cut short")  # once: the exit runs this more than once
                _stderr("Ctrl-C cut the shutdown short; not waiting for the handlers' threads")
            self._give_up_on_threads(None, when)
            return
        try:
            if (
                self._wait_for_threads(when, hurry=hurry)
                and self.queue.qsize()
                and not self.queue._attached
                and not self._gave_up
            ):
                # Logged behind a handler that has caught up meanwhile, or
                # before a listener never started: delivered from a thread of
                # its own, waited for as the lanes are, so that a handler stuck
                # on one of them cannot hang the exit.
                self._start_drainer(self.queue._drain_in_caller)
                self._wait_for_threads(when, hurry=hurry)
        except KeyboardInterrupt:
            _stderr(f"interrupted while delivering the last records {when}")
            self._give_up_on_threads(None, when)
            return
        for lane in self._lanes:
            # Said once (this runs at close and at exit), and only what is new.
            if not isinstance(lane, TaskLane):
                continue
            left = (len(lane.buffer), lane.dropped - lane.drops_reported)
            if left != lane.reported_left and any(left):
                lane.reported_left = left
                held, dropped = left
                also = f" ({_lane_was_full(dropped, lane)})" if dropped else ""
                _stderr(
                    f"{held} records for {lane.stats_name()} were never delivered{also}: "
                    f"an async handler needs a running listener to await it, and none ran "
                    f"after they were logged{_held_reports(lane)}"
                )

    def _stop_in(self, backend: Backend) -> bool:
        """Run ``stop()`` on *backend*'s loop, in another thread; wait boundedly.

        Returns False when that loop does not run (anymore): nothing was asked.
        """
        bound = self.shutdown_timeout
        try:
            future = backend.submit(self.stop, bound)
        except RuntimeError:
            return False  # the loop stopped or closed
        try:
            future.result(None if bound is None else bound + 1.0)
        except Exception as exc:  # noqa: BLE001 - exit must go on
            future.cancel()
            _stderr(
                f"could not stop {self!r} on its event loop at exit ({exc!r}); "
                f"not delivered: {self._left_over() or 'nothing'}"
            )
        return True

    def _threads(self) -> list[threading.Thread]:
        me = threading.current_thread()
        threads = [t for t in self._drainers if t.is_alive() and t is not me]
        for lane in self._lanes:
            if isinstance(lane, ThreadLane) and not lane.abandoned:
                thread = lane.thread
                if thread is not None and thread.is_alive() and thread is not me:
                    threads.append(thread)
        return threads

    def _progress(self) -> int:
        return self.queue._taken + self._handled_so_far()

    def _only_given_up_on(self, threads: list[threading.Thread]) -> bool:
        """Return whether *threads* are all workers that a stop gave up on, unmoved since."""
        workers = {
            lane.thread: lane
            for lane in self._thread_lanes
            if lane.thread is not None
            and lane.gave_up_at is not None
            and lane.done_count == lane.gave_up_at
        }
        return all(thread in workers for thread in threads)

    def _wait_for_threads(self, when: str, *, hurry: bool = False) -> bool:
        """Join the drainers and lane workers while they make progress.

        Returns False once it gave up on them (see ``_give_up_on_threads``).
        """
        for lane in self._lanes:
            if isinstance(lane, ThreadLane) and lane.state == RUNNING:
                lane.stop_serving()  # a loop that ended under us: drain and exit
        bound = self.shutdown_timeout
        draining = [
            lane for lane in self._lanes if isinstance(lane, ThreadLane) and lane.state == DRAINING
        ]
        # A stop() already waited shutdown_timeout for each of them, or the
        # user pressed Ctrl-C: a short look tells a slow handler (it moves)
        # from a stuck one. Calls are sized to a quarter of it, but one
        # record may take longer: then the look lasts twice the slowest
        # record seen (not after Ctrl-C, which asks for a quick exit).
        slowest = max(
            (lane.per_record for lane in draining if lane.per_record < math.inf), default=0.0
        )
        look = _NOTICE_AFTER if hurry else max(_NOTICE_AFTER, 2 * slowest)
        if bound is not None:
            look = min(bound, look)
        if hurry or (
            draining
            and all(lane.gave_up_at is not None for lane in draining)
            and not any(t.is_alive() for t in self._drainers)
        ):
            bound = look
        # A handler that moves is slow, not stuck: waited for while it moves,
        # a stall at a time as long as shutdown_timeout, or the short look
        # after Ctrl-C (another handler's progress is no reason to wait longer).
        after_move = bound if hurry else self.shutdown_timeout
        began = last_move = time.monotonic()
        # Ctrl-C ends the program, and a stop spent its bound on each of them
        # already: the look is all they get, moving or not.
        cap = None
        if hurry and draining and all(lane.gave_up_at is not None for lane in draining):
            cap = began + (_NOTICE_AFTER if bound is None else bound)
        progress = self._progress()
        while threads := self._threads():
            threads[0].join(0.05)
            now = time.monotonic()
            moved = self._progress()
            if moved != progress:
                progress, last_move = moved, now
                bound = after_move
            elif (wait := look if self._only_given_up_on(threads) else bound) is not None and (
                now - last_move >= wait
            ):
                # Once the others are done, a worker that a stop gave up on and
                # that has not moved since gets the short look, not a stall as
                # long as shutdown_timeout after the others' last move.
                self._give_up_on_threads(wait, when)
                return False
            if cap is not None and now >= cap:
                self._give_up_on_threads(
                    None,
                    when,
                    why=f"Ctrl-C ended the program after its stop ran out of time; "
                    f"{cap - began:g}s more {when}",
                )
                return False
            if now - began >= _NOTICE_AFTER and when not in self._noticed:
                self._noticed.add(when)  # once: the exit runs this more than once
                self._say_what_the_exit_waits_for(when, threads)
        return self._watch_callers(bound, when)

    def _say_what_the_exit_waits_for(self, when: str, threads: list[threading.Thread]) -> None:
        """Say on stderr what is still being delivered, or, with nothing left, who is waited for.

        A thread may still be finishing when no record is left (a drainer
        returning, a worker closing its call): the notice then names it.
        """
        skips = _ctrl_c_skips(" (", ")")
        left = self._left_over()
        if left and len(self._lanes) == 1:
            _stderr(f"delivering {left} {when}{skips}")
        elif left:
            _stderr(f"delivering {when}: {left}{skips}")
        else:
            names = ", ".join(sorted({thread.name for thread in threads}))
            _stderr(f"waiting {when} for {names} to finish{skips}")

    def _watch_callers(self, bound: float | None, when: str) -> bool:
        """At exit, wait for logging threads' own calls, and give up on a stuck one.

        Once no listener runs, logging threads deliver in their own calls. What
        was queued when the exit began, if one of them is delivering it, is
        waited for while they make progress (a daemon thread is not joined by
        anything else). One
        stuck in a handler's ``emit`` holds its lock, and ``logging.shutdown``
        would wait for it for ever: it is given up on, as a stuck worker is,
        once nothing moved for *bound* seconds. A call that moves with nothing
        queued from before the exit is not waited for (a thread that logs on
        would keep the exit busy as long as it logs). Returns False when it
        gave up.
        """
        q = self.queue

        def left() -> tuple[bool, int]:
            busy = any(
                isinstance(lane, ThreadLane)
                and lane.thread is None
                and lane.pending
                and not lane.abandoned
                for lane in self._lanes
            )
            # Queued before the exit began, and a logging thread delivering it
            # (the right taken); otherwise the exit's own drainer delivers it.
            before = 0 if q._attached or q._right else q._exit_backlog()[0] + q._in_hand
            return busy, before

        if self._gave_up or bound is None or not q._exiting:
            # Given up on already (said once), or not exiting: a reconfiguration
            # that closes us does not wait on it.
            return True
        busy, before = left()
        if not (busy or before):
            return True
        progress = self._progress()
        deadline = time.monotonic() + bound
        while True:
            time.sleep(0.05)
            busy, before = left()
            if not (busy or before):
                return True
            moved = self._progress()
            if moved != progress:
                if not before:
                    return True  # it moves: logging.shutdown gets the lock between records
                progress, deadline = moved, time.monotonic() + bound
            elif time.monotonic() >= deadline:
                self._give_up_on_threads(bound, when)
                return False

    def _give_up_on_threads(self, waited: float | None, when: str, *, why: str = "") -> None:
        """Report what the listener's busy threads still hold; go on without them.

        *waited* is how long they made no progress (None: interrupted, or
        *why* says what ended the wait).
        """
        if why:
            pass
        elif waited is None:
            why = f"interrupted {when}"
        else:
            why = f"it handled nothing for {waited:g}s {when}"
        for lane in self._lanes:
            # Not thread.is_alive(): on Python 3.10 a join interrupted by Ctrl-C
            # can leave a running thread marked as stopped.
            # A lane without a worker holds records only while a thread (a
            # drainer, or one that logs while no listener runs) is in its emit.
            if isinstance(lane, ThreadLane) and lane.pending and not lane.abandoned:
                # Its drop summary would reach it only once it caught up: said here.
                missed = lane.dropped - lane.drops_reported
                lane.drops_reported += missed
                also = f", and {_lane_was_full(missed, lane)}" if missed else ""
                also += _held_reports(lane)
                _stderr(
                    f"{lane.stats_name()} is still busy ({why}); exiting without "
                    f"flushing or closing it ({lane.unfinished()} records undelivered{also})"
                )
                _lifecycle.skip_at_shutdown(lane.handler)
                lane.abandoned = True  # nothing waits for it again (at close)
        # The drainers are not waited for again: one may be stuck in a handler.
        # (Not is_alive(), again: it may be wrong after an interrupted join.)
        self._gave_up = True
        self._drainers = []
        queued = 0 if self.queue._attached else self.queue.qsize()
        if queued != self._queued_reported:
            self._queued_reported = queued  # said once (this runs at close and at exit)
            if queued:
                _stderr(f"{queued} records queued {when} were not delivered")


#: Python 3.12 refuses to start a thread once the interpreter exits, in exit
#: hooks too (3.11 and 3.13 do not): the exit's deliveries run in a thread
#: started beforehand (``_Standby``).
_EXIT_STARTS_NO_THREAD = sys.version_info[:2] == (3, 12)


class _Standby:
    """A daemon thread started before the exit, to run the exit's deliveries there.

    One per process, started with the first listener (again in a forked
    child), idle until the exit hands it a delivery; it runs them one after
    the other. A delivery run there, like one in a thread of its own, holds
    the exit only while its handlers make progress: the exit watches it and
    gives up on a handler stuck in its ``emit``.
    """

    def __init__(self) -> None:
        self._fresh()

    def _fresh(self) -> None:
        self._pid = os.getpid()
        self._jobs: SimpleQueue[Callable[[], None]] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ready(self) -> None:
        """Start the thread in this process, if it does not run yet."""
        if self._pid != os.getpid():
            self._fresh()  # a forked child: the parent's thread, lock and jobs are not its own
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(target=self._serve, name="aioqlog-drain", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                return  # exiting already: nothing to start it for
            self._thread = thread

    def thread(self) -> threading.Thread | None:
        """Return the thread, if it runs in this process."""
        thread = self._thread
        return thread if thread is not None and thread.is_alive() else None

    def run(self, job: Callable[[], None]) -> None:
        """Have the thread run *job*, after those handed to it before."""
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except BaseException:  # noqa: BLE001 - a delivery reports its own faults
                continue


_STANDBY = _Standby()


def _handler_stats(lane: Lane, oldest_pending_age: float | None) -> HandlerStats:
    """Return *lane*'s handler's stats (see ``QueueListener.stats``)."""
    handled, errors = lane.counts()
    return HandlerStats(
        name=lane.stats_name(),
        handled=handled,
        errors=errors,
        dropped=lane.dropped + _own_drops(lane.handler),
        pending=lane.unfinished() + _held(lane.handler),
        oldest_pending_age=oldest_pending_age,
    )


def _held_reports(lane: Lane) -> str:
    """Say which of aioqlog's own reports (drop summaries) are among *lane*'s undelivered records.

    The drops they tell of were counted as reported once they were queued
    for the handler: one that never gets them has them said here instead.
    """
    told = "; ".join(lane.held_summaries())
    return f"; among them, aioqlog's own reports: {told}" if told else ""


def _lane_was_full(dropped: int, lane: Lane) -> str:
    """Say that *lane* dropped *dropped* records it had no room for."""
    return f"{dropped} more were dropped: its lane was full, maxsize={lane.capacity}"


def _ctrl_c_skips(before: str = "; ", after: str = "") -> str:
    """Return the advice to press Ctrl-C to skip a wait, if Ctrl-C is Python's here.

    It is when SIGINT raises ``KeyboardInterrupt`` (Python's default handler,
    or the one ``asyncio.Runner`` or ``trio.run`` installs while they run). A
    server that handles SIGINT itself (uvicorn, aiohttp's ``run_app``) shuts
    down its own way on it: the advice would be wrong there.
    """
    try:
        handler = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):  # no such signal here
        return ""
    on_sigint = getattr(getattr(asyncio, "Runner", None), "_on_sigint", None)  # 3.11+
    skips = (
        handler is signal.default_int_handler
        or (
            isinstance(handler, functools.partial)
            and on_sigint is not None
            and getattr(handler.func, "__func__", None) is on_sigint
        )
        or getattr(handler, "__module__", None) == "trio._core._ki"
    )
    return f"{before}press Ctrl-C to skip{after}" if skips else ""


def _oldest(lane: Lane, fed: Lane | None, queue: LogQueue) -> float | None:
    """Return when the oldest record *lane* has yet to handle was logged (None: none).

    The lane *fed* on the one-hop path has the queue's records to handle too.
    """
    created = lane.oldest_created()
    if created is None and lane is fed:
        return queue._oldest_created()
    return created


def _since(created: float | None, now: float) -> float | None:
    """Return how long ago a record logged at *created* was; None for no record."""
    return None if created is None else max(0.0, now - created)


def _own_drops(handler: logging.Handler) -> int:
    """Return what an async handler dropped itself (``AsyncHandler.dropped``)."""
    return handler.dropped if isinstance(handler, AsyncHandler) else 0


def _held(handler: logging.Handler) -> int:
    """Return what an async handler holds in a buffer of its own (``AsyncHandler.pending``)."""
    return handler.pending if isinstance(handler, AsyncHandler) else 0
