"""The consumer side: ``QueueListener`` serves a ``LogQueue`` from an asyncio task.

Data path: the listener's task takes batches of records off the queue
(``dequeue``), and for each record, inside the context of its log call,
``prepare``s it and ``handle``s it: the record goes into the lane of every
handler that takes it. Lanes deliver on their own (see ``_lanes``).

Lifecycle: ``start()`` attaches the task to the queue; ``stop()`` (or the task
being cancelled, as at the end of ``asyncio.run``) delivers what was logged
before it, lets every lane finish, switches the lanes to in-caller delivery,
and hands the queue back to the producers. While no listener runs, records are
handled in the thread that logs them (see ``QueueListener``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from types import TracebackType

from . import _lifecycle
from ._async_handler import AsyncHandler
from ._bridge import BATCH_LIMIT, Entry, LogQueue
from ._context import DEPTH, MAX_DEPTH, SUMMARY_DEPTH, bounded, resolve, uncancel
from ._lanes import IDLE, RUNNING, Lane, TaskLane, ThreadLane, make_lane
from ._lifecycle import write_stderr as _stderr
from ._stats import HandlerStats, ListenerStats

__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT", "QueueListener"]

#: Seconds the listener keeps delivering after its task is cancelled from outside
#: (``asyncio.run`` ending without ``stop()``), so a hung handler cannot hang exit.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

_copy_context = contextvars.copy_context


def _summary(message: str, *args: object) -> logging.LogRecord:
    """Make a WARNING record from aioqlog itself, through the record factory."""
    factory = logging.getLogRecordFactory()
    return factory("aioqlog", logging.WARNING, __file__, 0, message, args, None, "QueueListener")


class QueueListener:
    """Serve a ``LogQueue`` from an asyncio task and deliver records to handlers.

    Each handler gets its own ordered lane: it sees records in the order they
    were logged (per logging thread), and a slow or stuck handler does not delay
    the others. Sync ``logging.Handler`` objects run in a worker thread per handler,
    owned by the listener, a batch at a time; ``AsyncHandler`` objects are awaited on
    the loop. Filters and formatters see the ``contextvars`` of the log call.

    Start it inside a running event loop, with ``start()`` from an app's startup
    hook or as an async context manager; ``await stop()`` delivers everything
    logged before it. If the loop ends without ``stop()`` (``asyncio.run``
    cancels the listener's task), it still delivers what was queued, for at most
    *shutdown_timeout* seconds.

    While the listener is not running (before ``start()``, after ``stop()``,
    after its loop closed), records are not lost: sync handlers handle them in
    the thread that logs, exactly as if attached to the logger, and async
    handlers keep them (up to the queue's maxsize) until the next ``start()``.

    Args:
        queue: The ``LogQueue`` that a ``QueueHandler`` feeds.
        *handlers: The handlers to deliver to: any ``logging.Handler``, and
            ``AsyncHandler`` subclasses for awaitable I/O.
        respect_handler_level: As in the stdlib: when true, a handler only gets
            records at or above its level; otherwise, every record.
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

    # Set by _start_afresh (at creation, and again in a forked child).
    _lanes: list[Lane]
    _task: asyncio.Task[None] | None
    _deadline: float | None

    def __init__(
        self,
        queue: LogQueue,
        *handlers: logging.Handler,
        respect_handler_level: bool = False,
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
        if shutdown_timeout is not None and (
            isinstance(shutdown_timeout, bool)
            or not isinstance(shutdown_timeout, (int, float))
            or not shutdown_timeout > 0
        ):
            raise ValueError(
                f"QueueListener shutdown_timeout must be a positive number of seconds "
                f"or None, got {shutdown_timeout!r}"
            )
        owner = queue._owner
        if isinstance(owner, QueueListener) and owner.running:
            raise RuntimeError(
                f"{queue!r} is already served by a running QueueListener; "
                f"stop it before creating another listener for this queue"
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
        self._start_afresh()
        self._bind()
        _lifecycle.track(self)
        # Records logged before this listener existed are delivered now.
        queue._drain_in_caller()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<QueueListener {state} handlers={len(self.handlers)} queue={self.queue!r}>"

    # ------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """Whether the listener's task is serving its queue."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def start(self) -> None:
        """Start serving the queue from a task on the running event loop.

        A plain call, made inside a running loop (an async function, a startup
        hook). Records already queued are delivered first.

        Raises:
            RuntimeError: when no event loop runs in this thread, when the
                listener is already running, or when another listener serves
                the same queue.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "QueueListener.start() must be called inside a running event loop: "
                "call it from an async function (such as your app's startup hook), "
                "or use `async with QueueListener(...)`"
            ) from None
        if self.running:
            raise RuntimeError("QueueListener is already running; call stop() before start() again")
        owner = self.queue._owner
        if owner is not self and isinstance(owner, QueueListener) and owner.running:
            raise RuntimeError(
                f"{self.queue!r} is already served by another running QueueListener; "
                f"stop it before starting this one"
            )
        self._bind()
        self._renew_lanes()
        self._stopping = False
        self._deadline = None
        self.queue._attach()
        self._began = False
        task = loop.create_task(self._run(), name="aioqlog-listener")
        task.add_done_callback(self._on_task_done)
        self._task = task

    async def stop(self, timeout: float | None = None) -> ListenerStats:
        """Deliver every record logged before this call, then stop.

        Awaitable: the loop keeps running while handlers finish. A second call
        (or a call on a listener that is not running) does nothing more than
        wait for the first and return the stats.

        Args:
            timeout: At most this many seconds to wait, or ``None`` for as long
                as it takes. When time runs out, records still waiting for a
                handler are reported (on stderr, and as ``pending`` in the
                returned stats); a handler that never returns is left behind
                in its thread, and records for it are dropped and counted
                until it catches up.

        Returns:
            A ``ListenerStats`` snapshot taken once stopped.
        """
        if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
            raise ValueError(
                f"stop() timeout must be a non-negative number or None, got {timeout!r}"
            )
        task = self._task
        if task is None or task.done() or task.get_loop().is_closed():
            return self.stats
        loop = asyncio.get_running_loop()
        if task.get_loop() is not loop:
            raise RuntimeError(
                "QueueListener.stop() must be awaited on the event loop the listener runs on"
            )
        if not self._stopping:
            self._stopping = True
            self._stop_mark = self.queue._enqueued
            self.queue._kick()
        if timeout is not None:
            deadline = loop.time() + timeout
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
        for lane in self._lanes:
            lane._notify()  # re-evaluate any wait against the new deadline
        await asyncio.wait({task})
        return self.stats

    async def __aenter__(self) -> QueueListener:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- hooks

    async def dequeue(self) -> list[Entry]:
        """Wait for the next batch of queued records, each with its log call's context.

        Returns an empty list once the listener is stopping and everything
        logged before ``stop()`` has been taken. You may override this to
        observe or reorder batches; call the base implementation to get them.
        """
        q = self.queue
        while True:
            limit = BATCH_LIMIT
            if q.overflow == "block":
                limit = await self._room_for_batch()
            if self._stopping:
                # Take what was logged before stop(); later records are
                # delivered after the lanes go idle, keeping each thread's order.
                limit = min(limit, self._stop_mark - q._taken - q._evicted)
                if limit <= 0 or self._time_left() == 0.0:
                    return []
            batch = q._take(limit)
            if batch or self._stopping:
                return batch
            await q._wait()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return the record to hand to the handlers (the stdlib's hook).

        The base implementation returns *record* unchanged. You may override it
        to enrich or redact records once, before every handler sees them; it
        runs on the event loop, inside the record's log-call context.
        """
        return record

    def handle(self, record: logging.LogRecord) -> None:
        """Prepare *record* and pass it to every handler's lane (the stdlib's hook).

        Runs inside the record's log-call context; never blocks: each lane
        delivers on its own.
        """
        record = self.prepare(record)
        respect = self.respect_handler_level
        for lane in self._lanes:
            if not respect or record.levelno >= lane.handler.level:
                lane.put(record, _copy_context())

    # ------------------------------------------------------------- internals

    def _start_afresh(self) -> None:
        """Set the lanes, the run's state and the counters to those of a new listener."""
        q = self.queue
        shared = len(self.handlers) > 1
        self._lanes = [make_lane(h, q.maxsize, q.overflow, shared) for h in self.handlers]
        self._task = None
        self._stopping = False
        self._deadline = None
        self._stop_mark = 0
        self._recursion_dropped = 0
        self._recursion_quiet = 0  # dropped while handling a summary: not announced
        self._began = False
        self._drainer: threading.Thread | None = None
        self._drops_reported = 0
        self._recursion_reported = 0

    def _bind(self) -> None:
        self.queue._bind(self, self._dispatch_idle, self._on_consumer_lost)

    def _renew_lanes(self) -> None:
        """Replace lanes that an earlier run left busy (a stuck or orphaned worker)."""
        for i, lane in enumerate(self._lanes):
            if isinstance(lane, ThreadLane) and (
                lane.state != IDLE or (lane.thread is not None and lane.thread.is_alive())
            ):
                lane.stop_serving()
                self._lanes[i] = lane.successor()

    def _dispatch(self, batch: list[Entry]) -> None:
        """Hand each record of *batch* to ``handle``, inside its log call's context."""
        if not self._hooked:
            self._fan_out(batch)
            return
        one = self._dispatch_one
        for record, ctx in batch:
            ctx.run(one, record)

    def _fan_out(self, batch: list[Entry]) -> None:
        """Do what ``_dispatch_one`` and the base ``handle`` do, for the common case.

        With ``handle`` and ``prepare`` not overridden, no user code runs here,
        so nothing needs to run inside each record's context: the depth is read
        from the context as a mapping and set in it by one C call, and a lone
        lane takes the record's own context (nothing else ever enters it), so
        it needs no copy, and takes the whole batch at once.
        """
        lanes = self._lanes
        respect = self.respect_handler_level
        lone = lanes[0] if len(lanes) == 1 else None
        kept: list[Entry] = []
        keep = kept.append
        for entry in batch:
            record, ctx = entry
            depth = ctx.get(DEPTH, 0)
            if depth > MAX_DEPTH:
                self._refuse(depth)
                continue
            # Handlers run one level deeper: what they log is recognised as theirs.
            ctx.run(DEPTH.set, depth + 1)
            if lone is None:
                for lane in lanes:
                    if not respect or record.levelno >= lane.handler.level:
                        lane.put(record, ctx.copy())
            elif not respect or record.levelno >= lone.handler.level:
                keep(entry)
        if lone is not None and kept:
            lone.put_many(kept)

    def _dispatch_idle(self, batch: list[Entry]) -> None:
        """Deliver *batch* while no listener runs (in a logging thread), and report drops."""
        self._dispatch(batch)
        self._report_drops(force=True)

    def _dispatch_one(self, record: logging.LogRecord) -> None:
        depth = DEPTH.get()
        if depth > MAX_DEPTH:
            self._refuse(depth)
            return
        # Handlers run one level deeper: what they log is recognised as theirs.
        DEPTH.set(depth + 1)
        try:
            self.handle(record)
        except Exception as exc:  # noqa: BLE001 - an overridden hook must not stop delivery
            _stderr(f"QueueListener.handle() raised {exc!r}; the record was not delivered")

    def _refuse(self, depth: int) -> None:
        """Count a record that a handler logged too deep in handler-caused logging."""
        if depth >= SUMMARY_DEPTH:
            self._recursion_quiet += 1  # logged while handling a summary: not announced
        else:
            self._recursion_dropped += 1

    def _on_consumer_lost(self) -> None:
        # The loop closed under the task: nothing can await async handlers now.
        for lane in self._lanes:
            if isinstance(lane, TaskLane):
                lane.state = IDLE

    def _time_left(self) -> float | None:
        deadline = self._deadline
        if deadline is None:
            return None
        return max(0.0, deadline - asyncio.get_running_loop().time())

    async def _room_for_batch(self) -> int:
        """Under "block", wait until every running lane has room; return how much."""
        while True:
            room = BATCH_LIMIT
            full: Lane | None = None
            for lane in self._lanes:
                if lane.state == RUNNING:
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
            await full.wait_progress(full.has_room, left)

    async def _settle(self) -> bool:
        """Wait until every lane has handled what it was given; False if out of time."""
        for lane in self._lanes:
            while lane.state == RUNNING and lane.pending:
                left = self._time_left()
                if left == 0.0:
                    return False
                await lane.wait_progress(lane.settled, left)
        return True

    async def _run(self) -> None:
        """The listener's task: serve, then wind down, however it ends."""
        self._began = True
        q = self.queue
        loop = asyncio.get_running_loop()
        try:
            await q._acquire()
        except asyncio.CancelledError:
            q._abandon_attach()
            raise
        for lane in self._lanes:
            thread_id = lane.start()
            if thread_id is not None:
                q._add_nonblocking(thread_id)
        cancelled = False
        while True:
            try:
                await self._serve()
                break
            except asyncio.CancelledError:
                uncancel()
                now = loop.time()
                if cancelled:
                    self._deadline = now  # cancelled again: wind down at once
                else:
                    cancelled = True
                    if not self._stopping:
                        self._stopping = True
                        self._stop_mark = q._enqueued
                    if self.shutdown_timeout is not None:
                        deadline = now + self.shutdown_timeout
                        if self._deadline is None or deadline < self._deadline:
                            self._deadline = deadline
            except Exception as exc:  # noqa: BLE001 - wind down cleanly even on a bug
                _stderr(f"the listener failed ({exc!r}); delivering in the caller from now on")
                break
        await self._wind_down()
        if cancelled:
            raise asyncio.CancelledError

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """Hand the queue back if the task was cancelled before its first step.

        A task cancelled that early never runs ``_run`` (not even its
        ``finally``), so the queue would stay attached to nobody. Records go
        back to in-caller delivery, and what is queued is delivered from a
        helper thread (never on the loop), joined at interpreter exit.
        """
        if self._began or task is not self._task:
            return
        q = self.queue
        q._abandon_attach(drain=False)
        if q.qsize():
            self._drainer = threading.Thread(
                target=q._drain_in_caller, name="aioqlog-drain", daemon=True
            )
            self._drainer.start()

    async def _serve(self) -> None:
        """Move records into the lanes until stopped and every lane has settled."""
        q = self.queue
        while True:
            batch = await self.dequeue()
            if batch:
                self._dispatch(batch)
                self._report_drops(force=False)
                await asyncio.sleep(0)  # let the loop breathe between batches
                continue
            self._report_drops(force=True)
            if not await self._settle():
                return
            if self._time_left() == 0.0 or q._taken + q._evicted >= self._stop_mark:
                return

    async def _wind_down(self) -> None:
        """Switch the lanes to in-caller delivery and hand the queue back."""
        q = self.queue
        # No await between the lanes going idle and the queue's release: from
        # here on, records are delivered by whoever holds the delivery right.
        left_behind = []
        for lane in self._lanes:
            if lane.pending and lane.state == RUNNING:
                left_behind.append(f"{lane.pending} for {lane.stats_name()}")
            lane.stop_serving()
        q._release()
        if left_behind:
            _stderr("stop() ran out of time; records not yet delivered: " + ", ".join(left_behind))
        if q.qsize():
            # Logged while stopping: deliver them off the loop, in order.
            await self._drain_off_loop()
        for lane in self._lanes:
            await lane.finished()
        for lane in self._lanes:
            if isinstance(lane, TaskLane):
                await self._aclose(lane)

    async def _drain_off_loop(self) -> None:
        """Deliver what is queued from a helper thread, as a logging thread would.

        Waits until the records queued now are delivered; the helper may go on
        delivering what threads keep logging, like any logging thread.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        remaining = [self.queue.qsize()]

        def signal() -> None:
            try:
                loop.call_soon_threadsafe(resolve, done)
            except RuntimeError:  # the loop closed meanwhile
                pass

        def delivered(count: int) -> None:
            if remaining[0] > 0:
                remaining[0] -= count
                if remaining[0] <= 0:
                    signal()

        def drain() -> None:
            try:
                self.queue._drain_in_caller(delivered)
            finally:
                signal()

        threading.Thread(target=drain, name="aioqlog-drain", daemon=True).start()
        await asyncio.wait({done}, timeout=self._time_left())

    async def _aclose(self, lane: TaskLane) -> None:
        handler = lane.handler
        left = self._time_left()
        bound = handler.timeout
        if left is not None and (bound is None or left < bound):
            bound = left
        try:
            await bounded(handler.aclose(), bound, "aclose()")
        except Exception as exc:  # noqa: BLE001
            _stderr(f"{lane.stats_name()}.aclose() raised {exc!r}")

    def _report_drops(self, *, force: bool) -> None:
        """Tell the handlers, once room returns, how many records were dropped."""
        q = self.queue
        dropped = q.dropped - self._drops_reported
        if dropped and (force or q.qsize() <= q.maxsize // 2):
            self._drops_reported += dropped
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
                lane.drops_reported += missed
                self._announce(
                    _summary(
                        "aioqlog dropped %d records for this handler: it fell behind "
                        "(maxsize=%d, overflow=%r)",
                        missed,
                        q.maxsize,
                        q.overflow,
                    ),
                    [lane],
                )

    def _announce(self, record: logging.LogRecord, lanes: list[Lane]) -> None:
        """Put one of aioqlog's own records straight into *lanes* (past their bound)."""
        for lane in lanes:
            if not self.respect_handler_level or record.levelno >= lane.handler.level:
                ctx = contextvars.Context()
                ctx.run(DEPTH.set, SUMMARY_DEPTH)
                lane.put(record, ctx, force=True)

    # --------------------------------------------------------------- stats

    @property
    def stats(self) -> ListenerStats:
        """A snapshot: enqueued, dropped, queue depth and high-water mark, per-handler counts."""
        q = self.queue
        depth = q.qsize()
        return ListenerStats(
            running=self.running,
            enqueued=q._enqueued,
            dropped=q.dropped,
            queue_depth=depth,
            high_water=max(q._high_water, depth),
            recursion_dropped=self._recursion_dropped + self._recursion_quiet,
            handlers=tuple(
                HandlerStats(
                    name=lane.stats_name(),
                    handled=lane.handled,
                    errors=lane.errors,
                    dropped=lane.dropped,
                    pending=lane.pending + _held(lane.handler),
                )
                for lane in self._lanes
            ),
        )

    # -------------------------------------------------------------- at exit

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, the parent's run: its task, threads and records.

        The lanes are rebuilt empty (their worker threads do not exist here and
        their records are the parent's); the listener is stopped, delivers in
        the caller like one never started, and can be started on a new loop.
        """
        self._start_afresh()

    def _at_exit(self) -> None:
        """Deliver what an unfinished run left behind, as the interpreter exits."""
        drainer = self._drainer
        if drainer is not None:
            drainer.join(self.shutdown_timeout)
        task = self._task
        if task is not None and not task.done():
            if task.get_loop().is_running():
                return  # a loop in another thread still serves the queue
            # The loop stopped or closed with our task still inside it: take
            # the queue back and let the lanes' threads finish what they hold.
            self.queue._consumer_lost()
        for lane in self._lanes:
            if isinstance(lane, ThreadLane):
                thread = lane.thread
                if thread is not None and thread.is_alive():
                    lane.stop_serving()
                    thread.join(self.shutdown_timeout)
                    if thread.is_alive():
                        _stderr(
                            f"{lane.stats_name()} is still handling a record after "
                            f"shutdown_timeout={self.shutdown_timeout}s; exiting without "
                            f"flushing or closing it ({lane.pending} records undelivered)"
                        )
                        _lifecycle.skip_at_shutdown(lane.handler)
            elif lane.buffer:
                _stderr(
                    f"{len(lane.buffer)} records for {lane.stats_name()} were never "
                    f"delivered: no listener was running to await the async handler"
                )


def _held(handler: logging.Handler) -> int:
    """Return what an async handler holds in a buffer of its own (``AsyncHandler.pending``)."""
    return handler.pending if isinstance(handler, AsyncHandler) else 0
