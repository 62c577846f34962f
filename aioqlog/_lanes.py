"""Lanes: one ordered delivery path per handler.

A lane owns a bounded buffer of records for one handler, so a slow or stuck
handler only backs up its own lane. ``ThreadLane`` feeds a sync
``logging.Handler`` from a worker thread it owns (never the loop's default
executor, which application code can saturate); ``TaskLane`` awaits an
``AsyncHandler`` in a task on the loop (asyncio's or trio's: the listener's
``Backend``).

A lane is in one of three states:

* ``IDLE``: no listener runs. A ``ThreadLane`` handles records in the caller,
  as a handler attached to the logger would; a ``TaskLane`` keeps them (up to
  its capacity) for the next start, since nothing can await them now.
* ``RUNNING``: records go into the buffer and the worker (thread or task)
  takes them in batches, in order.
* ``DRAINING``: the listener stopped (or its loop ended) while this thread
  lane still held records. Its worker goes on delivering them off the loop,
  and records logged meanwhile join the same buffer, behind them, under the
  same bound and overflow policy (so a stuck handler costs a bounded buffer
  and counted drops, never a blocked caller). When the worker catches up it
  reports what was dropped meanwhile to the handler itself, and the lane goes
  back to ``IDLE``. A ``start()`` meanwhile re-attaches the same worker: one
  handler never has two workers, so it never sees records out of order.

Who writes what: ``put`` and the buffer-side counters are written by the
holder of the queue's delivery right (the listener's task, or while idle one
logging thread at a time); the handled/error counters by whoever delivers
(the worker while running or draining, the caller while idle), never both at
once. A ``ThreadLane``'s lock orders the worker leaving ``DRAINING`` against
a put made while it drains, and a restart against the worker exiting.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol

from . import _lifecycle
from ._async_handler import AsyncHandler, overrides_batch
from ._backend import Backend, Task, Waiter, loop_runs_here
from ._batch import BatchEmit, Lines, Steps, batch_emitter
from ._bridge import (
    BATCH_LIMIT,
    DEFAULT_BLOCK_TIMEOUT,
    Overflow,
    Pace,
    Parking,
    wait_while_moving,
)
from ._context import (
    DEPTH,
    SUMMARY_DEPTH,
    Entry,
    delivering_for_others,
    depth_of,
    handling,
    mark_handler_thread,
    on_handler_thread,
    run_in_context,
    to_handle,
)
from ._diagnostics import report_error
from ._records import copy_record, filters_nothing, own_record, summary_context

__all__ = [
    "DRAINING",
    "IDLE",
    "RUNNING",
    "WORKER_BATCH",
    "Feed",
    "Lane",
    "TaskLane",
    "ThreadLane",
    "make_lane",
]

State = Literal["idle", "running", "draining"]
IDLE: Final = "idle"
RUNNING: Final = "running"
DRAINING: Final = "draining"

#: Most records a worker takes at once: a batch is written in one go, and
#: progress (what stop() and the exit hook watch) is counted per batch.
WORKER_BATCH = 1024

#: A lane's ``in_hand`` while its worker holds no record.
_EMPTY_HAND: tuple[Sequence[Entry], int] = ((), 0)


class Feed(Protocol):
    """Where a ``ThreadLane``'s worker takes records itself, before its own buffer.

    The one-hop path: the listener lends its lone sync lane the queue, and the
    worker takes records from the queue when its buffer runs dry, instead of
    the listener's task doing it on the loop, and hands them to its handler
    (or, where the listener's dispatch must, moves them into its buffer
    through it). The listener sets ``ThreadLane.feed``, and clears it when
    the feed ends. A feed may also format records itself, on the thread that
    logged them, and put the lines in ``Lane.lines`` (only while the buffer
    is empty): the worker writes those before anything else, so ``pull``
    takes nothing while any wait.
    """

    #: Seconds between safety wake-ups while parked on the feed (None: never).
    tick: float | None

    def pull(self, room: int, size: int) -> list[Entry] | None:
        """Take up to *room* records for the lane; return None if none came.

        What comes back (at most *size*, ready for the handler: see
        ``to_handle``) the worker handles next; the rest went into the buffer.
        """
        ...

    def listen(self, bell: Callable[[], None]) -> bool:
        """Have the next record call *bell*; return False if the feed has ended."""
        ...

    def ready(self) -> bool:
        """Return whether ``pull`` has something to do (the re-check before sleeping)."""
        ...

    def unlisten(self, *, timed_out: bool = False) -> None:
        """Withdraw what ``listen`` arranged (after waking; *timed_out*: by the safety tick)."""
        ...


class Lane:
    """What both kinds of lane share: the buffer, its bound and the counters."""

    def __init__(
        self, handler: logging.Handler, capacity: int, overflow: Overflow, *, copy_records: bool
    ):
        self.handler = handler
        # Told apart from another handler of the listener named alike (see stats_name).
        self.position: int | None = None
        self.capacity = capacity
        self.overflow: Overflow = overflow
        # With several lanes, each formats its own copy of a record: formatting
        # writes record.message/asctime/exc_text, and lanes run concurrently.
        self.copy_records = copy_records
        self.state: State = IDLE
        self.buffer: deque[Entry] = deque()
        self.put_count = 0
        self.evicted = 0
        self.dropped = 0
        self.drops_reported = 0
        self.done_count = 0
        # Steps taken inside batch calls (see progress()).
        self.steps = Steps()
        self.handled = 0
        self.errors = 0
        # progress() when the listener found this lane full and not moving for
        # block_timeout (under "block"); it is passed over until it moves.
        self.stalled_at: int | None = None
        # A one-slot deque: the listener parks here waiting for progress.
        self._watch = Parking()
        self._loop_thread = 0
        # Seconds one batch call may be expected to take (None: any), and the
        # seconds per record calls are sized by, an estimate that rises at once
        # and falls by a quarter a call at most (inf: none made yet): see
        # call_size and timed.
        self.call_budget: float | None = None
        self.per_record = math.inf
        self.most_taken = 0  # records in the largest call timed
        # The batch the worker is handling and done_count when it took it, in
        # one attribute (read from other threads): see oldest_created.
        self.in_hand: tuple[Sequence[Entry], int] = _EMPTY_HAND
        # put_count when a thread lane stopped serving a run: later puts were
        # logged after its stop began (see pending_after_stop).
        self.stop_mark: int | None = None
        # A thread lane's records formatted by the thread that logged them,
        # to write before its buffer (see Feed), and those its worker is
        # writing: counted in put_count like any other.
        self.lines: deque[Lines] = deque()
        self.lines_in_hand: Lines | None = None

    def progress(self) -> int:
        """A count that grows while the handler makes progress: what waits on it watch.

        Records finished, plus the steps a batch call took so far (each record
        formatted, each write or rollover), so that a long call that moves is
        told from a stuck one.
        """
        return self.done_count + self.steps.count

    def moved_since(self, mark: int | None) -> bool:
        """Return whether the handler moved since *mark*, the ``progress()`` a wait ran out at.

        None (no wait ran out) counts as moved. ``progress()`` only grows, so a
        lane that moved once stays moved until a later wait marks it again.
        """
        return mark is None or self.progress() != mark

    @property
    def pending(self) -> int:
        """Records in the buffer or being handled right now (the call under way's, all of them).

        What the lane's bound, its state and every wait on it go by: the
        worker's call counts until it has returned and been counted.
        """
        return self.put_count - self.done_count - self.evicted

    def unfinished(self) -> int:
        """Of ``pending``, the records the handler is not done with: what is reported.

        Those of the call under way that the handler is done with are left out
        (see ``Steps.finished``): a handler stuck in the middle of a call is
        reported holding only the rest.
        """
        # Read before put_count, and done_count before finished (which the
        # worker clears before adding its call to done_count): this may count
        # a finished record for a moment, never leave out one that is not.
        done, finished, evicted = self.done_count, self.steps.finished, self.evicted
        return max(0, self.put_count - done - finished - evicted)

    def counts(self) -> tuple[int, int]:
        """Return (handled, errors), with the records of the call under way finished so far.

        A handler stuck in the middle of a call has those counted, as it has
        them left out of ``unfinished``.
        """
        # Read before the call's counts, which the worker clears before adding
        # them here: this may miss them for a moment, never count them twice.
        handled, errors = self.handled, self.errors
        steps = self.steps
        finished, failed = steps.finished, steps.failed
        return handled + max(0, finished - failed), errors + failed

    def pending_after_stop(self) -> int:
        """Of ``pending``, the records put after this lane stopped serving a run.

        Handled in order, so those before the mark go first (evictions take
        the oldest, too).
        """
        mark = self.stop_mark
        if mark is None:
            return 0
        return min(self.unfinished(), max(0, self.put_count - mark))

    def oldest_created(self) -> float | None:
        """When the oldest record not handled yet was logged; None if none waits.

        The worker's hand comes first: it holds the records taken from the buffer.
        """
        batch, start = self.in_hand
        index = self.done_count - start
        if 0 <= index < len(batch):
            return batch[index][0].created
        # Then lines formatted already, which go before the buffer.
        lines = self.lines_in_hand
        if lines is None:
            try:
                lines = self.lines[0]
            except IndexError:
                pass
        if lines is not None:
            return lines.created
        try:
            return self.buffer[0][0].created
        except IndexError:  # empty, or emptied by another thread just now
            return None

    def room(self) -> int:
        """Return how many more records the lane takes without overflowing.

        What the worker holds counts too, until its call is counted: a lane
        never holds more than its capacity, waiting or in hand.
        """
        return self.capacity - self.pending

    def has_room(self) -> bool:
        """Return whether the lane takes at least one more record."""
        return self.pending < self.capacity

    def settled(self) -> bool:
        """Return whether everything put in the lane has been handled."""
        return not self.pending

    def _accept(self, entry: Entry, *, past_bound: bool = False) -> bool:
        """Append *entry* under the overflow policy; return whether it was kept.

        *past_bound* skips the bound: for aioqlog's own summary records, at most a
        few per batch, which must not be lost to the overflow they report.
        """
        buffer = self.buffer
        if self.pending >= self.capacity and not past_bound:
            # "block" never gets here while the listener runs (it waits for
            # room before taking records); when it does, dropping is the only
            # choice that blocks nobody. "drop_old" evicts the oldest record
            # still waiting; what the handler already holds is beyond reach.
            if self.overflow != "drop_old" or not self._evict_oldest():
                self.dropped += 1
                return False
            self.evicted += 1
            self.dropped += 1
        buffer.append(entry)
        self.put_count += 1
        return True

    def _evict_oldest(self) -> bool:
        """Evict the oldest waiting record; return False if there was none.

        aioqlog's own summary records are passed over and stay: evicting one
        would lose the report and count it as one of the user's records.
        """
        buffer = self.buffer
        passed_over: list[Entry] = []
        try:
            while True:
                entry = buffer.popleft()
                if entry[1].get(DEPTH, 0) < SUMMARY_DEPTH:
                    break
                passed_over.append(entry)
        except IndexError:  # only summaries were waiting, or the worker took the rest
            buffer.extendleft(reversed(passed_over))
            return False
        buffer.extendleft(reversed(passed_over))
        return True

    def call_size(self, limit: int) -> int:
        """Return how many records the handler's next batch call may take, at most *limit*.

        Progress (what a shutdown without ``stop()`` and the exit hook wait on)
        is counted per call for a handler's own ``emit_batch`` or
        ``aemit_batch`` (the built-in paths count it per record: ``Steps``): a
        call as long as ``shutdown_timeout`` would look stuck however much it
        did. So a call takes as many records as the last
        one handled in ``call_budget`` seconds (a quarter of the listener's
        ``shutdown_timeout``, and of the exit's one-second look for progress
        after a stop gave up; under ``"block"`` at most an eighth of
        ``block_timeout``, a quarter of how long the listener waits for a full
        lane to move before passing it over). The first call takes one
        record, and none takes more than twice as many as the largest call
        before it: a handler's records do not all cost the same (a rotating
        file's that roll it over cost more), so a few cheap ones say little
        about the next. A fast handler gets whole batches after a few calls; a
        slow one, calls it finishes well within the bound.
        """
        budget, per_record = self.call_budget, self.per_record
        if budget is None or per_record <= 0.0:  # a clock too coarse to tell: any size
            return limit
        return max(1, min(limit, 2 * self.most_taken, int(budget / per_record)))

    def timed(self, seconds: float, count: int, *, completed: bool) -> None:
        """Note that a batch call on *count* records took *seconds* (see ``call_size``).

        The estimate rises at once and falls by at most a quarter a call. A
        call that did not complete (it raised, or was cancelled) only says
        that a record takes at least that long: it never lowers the estimate.
        """
        if count:
            rate = seconds / count
            before = self.per_record
            if completed and before != math.inf:
                # Up at once, down a quarter a call: a handler whose records
                # cost unevenly is sized for its costly ones, not the last call's.
                rate = max(rate, before * 0.75)
            self.per_record = rate if completed else max(before, rate)
            self.most_taken = max(self.most_taken, count)

    def _take(self, limit: int) -> list[Entry]:
        buffer = self.buffer
        popleft = buffer.popleft
        batch: list[Entry] = []
        append = batch.append
        try:
            for _ in range(min(len(buffer), limit)):
                append(popleft())
        except IndexError:  # a "drop_old" eviction raced us
            pass
        return batch

    def drop_summary(self) -> Entry | None:
        """Return a summary of the drops not reported yet, marking them reported.

        The entry carries the summary mark, so what the handler logs while
        handling it is never announced again, and no eviction removes it.
        """
        missed = self.dropped - self.drops_reported
        if not missed:
            return None
        self.drops_reported += missed
        record = own_record(
            logging.WARNING,
            "aioqlog dropped %d records for this handler: it fell behind (maxsize=%d, overflow=%r)",
            (missed, self.capacity, self.overflow),
        )
        return record, summary_context()

    def held_summaries(self) -> list[str]:
        """Return the text of each of aioqlog's summaries this lane holds undelivered.

        What a handler given up on never got to say: the drops it was to be
        told of, queued behind the record it is stuck on. Read from another
        thread while the worker is stuck (logging threads may still add to the
        buffer, so it is copied, again if it changed meanwhile).
        """
        batch, start = self.in_hand
        entries = list(batch[max(0, self.done_count + self.steps.finished - start) :])
        for _ in range(10):
            try:
                entries += self.buffer
                break
            except RuntimeError:  # changed while copied
                continue
        # Those in hand run a level deeper (see to_handle): at the mark or past it.
        return [
            record.getMessage() for record, ctx in entries if ctx.get(DEPTH, 0) >= SUMMARY_DEPTH
        ]

    # Progress notification: the worker tells the listener it finished a batch.

    def notify(self) -> None:
        """Wake whoever waits in ``wait_progress`` (the listener, while it stops)."""
        self._watch.wake()

    async def wait_progress(
        self, ready: Callable[[], bool], timeout: float | None, backend: Backend
    ) -> bool:
        """Return once *ready()* holds, the worker made progress, or *timeout* passed.

        Returns False when the timeout ended the wait. Awaited on *backend*'s loop.
        """
        return await self._watch.wait(ready, timeout, backend)

    def stats_name(self) -> str:
        """Return how the handler is named in stats and reports.

        Its name, or its repr when it has none; followed by `` #N``, its
        position among the listener's handlers (from 1), when another of them
        would be named alike (two unnamed handlers of one class).
        """
        try:
            name = self.handler.get_name() or repr(self.handler)
        except Exception:  # noqa: BLE001 - a repr that fails (it reads a broken level, say)
            name = f"<{type(self.handler).__qualname__}>"
        return name if self.position is None else f"{name} #{self.position}"

    # Interface of the concrete lanes.

    def put(
        self, record: logging.LogRecord, ctx: contextvars.Context, *, past_bound: bool = False
    ) -> None:
        """Take *record* for the handler: buffer it, handle it now, or drop it (by state)."""
        raise NotImplementedError

    def put_many(self, entries: list[Entry]) -> None:
        """Take *entries*, in order, as ``put`` would take each one.

        The listener's fan-out calls this once per batch for a lone handler.
        When the lane runs and has room for all of them (the common case), they
        join the buffer in one step and the worker is woken once.
        """
        if self._extend(entries):
            return
        put = self.put
        for record, ctx in entries:
            put(record, ctx)

    def _extend(self, entries: list[Entry]) -> bool:
        """Buffer *entries* in one step if the lane runs with room for all; say if it did."""
        if self.state == RUNNING and len(entries) <= self.capacity - self.pending:
            self.buffer.extend(entries)
            self.put_count += len(entries)
            self.wake_worker()
            return True
        return False

    def wake_worker(self) -> None:
        """Wake the worker if it sleeps waiting for records."""
        raise NotImplementedError

    def start(self, backend: Backend) -> int | None:
        """Begin serving on *backend*'s loop; return a worker thread id, if any."""
        raise NotImplementedError

    def stop_serving(self, *, gave_up: bool = False) -> None:
        """Stop taking records (the worker exits once done); become IDLE or DRAINING.

        *gave_up* says a ``stop()`` ran out of time waiting for this lane.
        """
        raise NotImplementedError

    async def finished(self, limit: float | None = None) -> bool:
        """Wait until the worker task (if any) has exited; False if not within *limit* s."""
        return True


class ThreadLane(Lane):
    """Feed a sync handler from a worker thread, a batch at a time."""

    def __init__(
        self, handler: logging.Handler, capacity: int, overflow: Overflow, *, copy_records: bool
    ):
        super().__init__(handler, capacity, overflow, copy_records=copy_records)
        self._parked: deque[bool] = deque()
        # A lock used as a binary semaphore: released once per claimed park.
        self._bell = threading.Lock()
        self._bell.acquire()
        # Orders the worker's exit against start() and puts made while DRAINING.
        self._lock = threading.Lock()
        self._closing = False
        # Drainers that lent the worker (see lend): it waits for their records.
        self._loans = 0
        self.thread: threading.Thread | None = None
        # done_count when a stop() ran out of time with records still here:
        # a worker that has not moved since may be stuck, not slow (see _at_exit).
        self.gave_up_at: int | None = None
        # Whether that stop took the handler off logging.shutdown's list.
        self.off_shutdown = False
        # Called (from the worker) once a draining lane has caught up and is idle.
        self.on_idle: Callable[[ThreadLane], None] | None = None
        # Given up on at exit: its worker is left behind, and nothing waits for it.
        self.abandoned = False
        # Set by the listener while the worker takes records off the queue itself.
        self.feed: Feed | None = None
        # How the worker hands the handler a batch (None: one by one).
        self.emit_batch: BatchEmit | None = None
        # While it drains: threads waiting for room, the progress() at which
        # such a wait last found the worker stuck, and how long a wait lasts
        # without progress (the queue's block_timeout; see _wait_for_room).
        self._room = threading.Condition(self._lock)
        self.room_waiters = 0
        self.room_waits_ended = 0
        self._room_stall: int | None = None
        self.room_patience = DEFAULT_BLOCK_TIMEOUT
        # The listener's task checks that the worker keeps up (keep_pace).
        self._pace = Pace()
        self._pace_next = Pace.OFF
        # The handler's lock while the forking thread holds it (see
        # hold_for_fork), and progress() when such a wait last ran out of time
        # (a lane that handles nothing keeps its progress: it is then only
        # looked at, until it handles a record).
        self._held_for_fork: threading.RLock | None = None
        self._fork_stall: int | None = None

    def put(
        self, record: logging.LogRecord, ctx: contextvars.Context, *, past_bound: bool = False
    ) -> None:
        state = self.state
        if state == RUNNING:
            if self._accept((record, ctx), past_bound=past_bound) and self._parked:
                self._ring()
            return
        if state == DRAINING:
            with self._lock:
                if (
                    self.state == DRAINING
                    and not past_bound
                    and self.pending >= self.capacity
                    and self._may_wait_for_room()
                ):
                    self._wait_for_room()
                if self.state == DRAINING:  # the worker may have caught up meanwhile
                    if self._accept((record, ctx), past_bound=past_bound) and self._parked:
                        self._ring()
                    return
        self.put_count += 1
        try:
            self._deliver_one(record, ctx)
        finally:
            # Also when interrupted (KeyboardInterrupt): the call is over, and
            # the listener gives the record back to the queue.
            self.done_count += 1

    def wake_worker(self) -> None:
        if self._parked:
            self._ring()

    def pace_with(self, workers: Sequence[ThreadLane]) -> None:
        """Start the checks of ``keep_pace``, counting the CPU of *workers*' threads too.

        The listener calls it once every lane of a run has started (and has its thread).
        """
        threads = {lane.thread.ident for lane in (self, *workers) if lane.thread is not None}
        self._pace.serve(self.capacity, self._taken(), (t for t in threads if t is not None))
        self._pace_next = self._pace.mark

    def keep_pace(self) -> None:
        """Leave the GIL to a starved worker (see ``Pace``): the listener's task, per batch."""
        pending = self.pending
        if pending >= self._pace_next:
            self._pace_next = self._pace.check(self._taken, lambda: self.pending)
        elif pending < self._pace.mark:
            self._pace_next = self._pace.mark

    def _taken(self) -> int:
        """Records the worker took from the buffer so far (and evictions)."""
        return self.put_count - len(self.buffer)

    def hold_for_fork(self, timeout: float) -> None:
        """Take the handler's lock before a fork, waiting at most *timeout* seconds.

        The worker writes under that lock, so while the forking thread holds it
        no write of the worker's spans the fork: the child never finds the
        stream's own lock (a file's buffer) held by a thread it does not have,
        which would hang its first write or flush for ever. A handler given up
        on at exit is not waited for, nor one whose lock a wait found held for
        all of its time, until it has moved since: a stuck handler delays one
        fork, not every fork.
        """
        lock = self.handler.lock
        if lock is None or self.abandoned:
            return
        if not self.moved_since(self._fork_stall):
            timeout = 0.0
        taken = lock.acquire(timeout=timeout) if timeout > 0.0 else lock.acquire(blocking=False)
        self._held_for_fork = lock if taken else None
        self._fork_stall = None if taken else self.progress()

    def release_after_fork(self) -> None:
        """Release what ``hold_for_fork`` took, in the parent or the child.

        In the child ``logging`` has made the handler's lock anew already
        (its hook runs first), unless the handler's lock is one of its own.
        """
        lock, self._held_for_fork = self._held_for_fork, None
        if lock is not None:
            try:
                lock.release()
            except RuntimeError:
                pass  # made anew in the child: not held

    def _may_wait_for_room(self) -> bool:
        """Return whether this thread may wait for room in the draining buffer.

        A logging thread may, as it would wait for the handler's lock without
        aioqlog; an event loop's thread and a lane's worker never do. Not once
        a wait found the worker stuck, until it moves again: a stuck handler
        then costs counted drops, not a wait in every log call.
        """
        if not self.moved_since(self._room_stall):
            return False
        return not loop_runs_here() and not on_handler_thread()

    def _wait_for_room(self) -> None:
        """With the lock held: wait while the buffer is full and the worker makes progress."""
        self.room_waiters += 1
        try:
            moved = wait_while_moving(
                self._room,
                lambda: self.state == DRAINING and self.pending >= self.capacity,
                self.progress,
                self.room_patience,
            )
        finally:
            # Counted ended before it stops being waited: a thread waiting for
            # room in the queue behind this one sees one or the other (see the
            # listener's _handled_so_far and _delivery_held_up).
            self.room_waits_ended += 1
            self.room_waiters -= 1
        if not moved:
            self._room_stall = self.progress()

    def _room_made(self) -> None:
        """Wake the threads waiting for room (the worker handled a batch)."""
        with self._lock:
            self._room.notify_all()

    def _ring(self) -> None:
        try:
            self._parked.pop()
        except IndexError:
            return  # the worker re-checked and reclaimed its token
        self._bell.release()

    def _deliver_one(self, record: logging.LogRecord, ctx: contextvars.Context) -> None:
        # In the caller while IDLE: errors are the handler's, as if attached
        # to the logger; KeyboardInterrupt and friends propagate as they would,
        # except in a helper thread of aioqlog's, where they are the handler's
        # errors too (as on a worker): nothing there would handle them.
        if self.copy_records:
            record = copy_record(record)
        try:
            handling(ctx, depth_of(record, ctx)).run(self.handler.handle, record)
        except Exception:  # noqa: BLE001
            self.errors += 1
            report_error(self.handler, record)
        except BaseException:
            if not delivering_for_others():
                raise
            self.errors += 1
            report_error(self.handler, record)
        else:
            self.handled += 1

    def start(self, backend: Backend) -> int | None:
        with self._lock:
            self._closing = False
            self.state = RUNNING
            self.stop_mark = None
            self.gave_up_at = None
            self.on_idle = None
            self._loop_thread = threading.get_ident()
            thread = self.thread or self._spawn_worker()
        # A worker still draining an earlier run's records serves this run too.
        self.wake_worker()
        return thread.ident

    def _spawn_worker(self) -> threading.Thread:
        """With the lock held: start the worker thread (RuntimeError if none can start)."""
        name = f"aioqlog-{self.handler.get_name() or type(self.handler).__name__}"
        self.emit_batch = batch_emitter(self.handler, self.steps)
        thread = self.thread = threading.Thread(target=self._work, name=name, daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self.thread = None  # the interpreter is exiting: no thread starts then
            raise
        return thread

    def lend(self) -> bool:
        """Have the worker handle what a drainer puts here, until ``end_loan()``; say if so.

        A thread delivering queued records while no listener runs (a drainer)
        puts them here instead of calling the handler itself. A handler stuck
        in its emit then holds up its own lane only: the drainer waits for
        room while it moves, then its records are dropped and counted (see
        ``put``), and the other handlers go on getting theirs. Not a lane
        that serves a run or was given up on, nor once no thread can start.
        """
        with self._lock:
            if self.state == RUNNING or self.abandoned:
                return False
            if self.thread is None:
                try:
                    self._spawn_worker()
                except RuntimeError:
                    return False
            self._loans += 1
            self._closing = False  # the worker waits for the drainer's records
            self.state = DRAINING
        return True

    def end_loan(self) -> None:
        """The drainer is done: the worker finishes what it holds, then exits (see ``lend``)."""
        with self._lock:
            self._loans -= 1
            if self._loans or self.state != DRAINING:
                return  # another drainer still puts, or a run took the lane meanwhile
            self._closing = True
        self.wake_worker()

    def stop_serving(self, *, gave_up: bool = False) -> None:
        """Stop taking records from the loop; the worker finishes what it holds.

        With *gave_up*, a ``stop()`` ran out of time waiting for this lane.
        """
        with self._lock:
            self._closing = True
            self.stop_mark = self.put_count
            busy = self.thread is not None and bool(self.pending)
            self.state = DRAINING if busy else IDLE
            if busy and gave_up:
                self.gave_up_at = self.done_count
                # Perhaps stuck in its emit, holding the handler's lock: a
                # logging.shutdown() meanwhile would wait for it for ever.
                # Back on the list once the worker moves (see _handle).
                self.off_shutdown = True
                _lifecycle.skip_at_shutdown(self.handler)
        self.wake_worker()

    def _work(self) -> None:
        # The worker thread: take what is buffered, handle it, park when empty,
        # exit once closing with nothing left.
        handler = self.handler
        emit_batch = self.emit_batch
        mark_handler_thread()
        self._serve(handler, emit_batch)
        if self._watch.slot:
            self.notify()

    def _serve(self, handler: logging.Handler, emit_batch: BatchEmit | None) -> None:
        buffer = self.buffer
        lines = self.lines
        write_lines = None if emit_batch is None else emit_batch.write_lines
        while True:
            if lines:  # taken before anything that is in the buffer now (see Feed)
                self._write(lines, handler, write_lines)
                continue
            size = WORKER_BATCH if emit_batch is None else self.call_size(WORKER_BATCH)
            batch = self._take(size)
            if batch:
                self._handle(to_handle(batch), handler, emit_batch)
                continue
            feed = self.feed
            if feed is not None:
                handed = feed.pull(self.room(), size)
                if handed is not None:
                    if handed:  # taken for this worker: the buffer was empty
                        self._handle(handed, handler, emit_batch)
                    del handed
                    continue
            if self._closing and self._caught_up():
                callback, self.on_idle = self.on_idle, None
                if callback is not None:
                    callback(self)
                break
            # Park: announce (here, and to the feed), re-check, then sleep until
            # rung. Either ring pops the one token, so the bell rings once.
            self._parked.append(True)
            listening = feed is not None and feed.listen(self._ring)
            # A feed set or ended since this worker read it rang before the
            # token was out: re-checking it here means no ring is missed.
            if (
                buffer
                or lines
                or self._closing
                or self.feed is not feed
                or (listening and feed is not None and feed.ready())
            ):
                if listening and feed is not None:
                    feed.unlisten()
                try:
                    self._parked.pop()
                except IndexError:
                    self._bell.acquire()  # claimed: consume the ring
                continue
            if listening and feed is not None:
                tick = feed.tick
                rung = self._bell.acquire(timeout=-1 if tick is None else tick)
                if not rung:
                    # The safety tick: look again, in case a wake-up was lost.
                    try:
                        self._parked.pop()
                    except IndexError:
                        self._bell.acquire()  # claimed just now: consume the ring
                feed.unlisten(timed_out=not rung)
                continue
            self._bell.acquire()

    def _handle(
        self, batch: list[Entry], handler: logging.Handler, emit_batch: BatchEmit | None
    ) -> None:
        """Hand *batch* (taken, its contexts marked: see ``to_handle``) to the handler."""
        if emit_batch is not None and not emit_batch.fits():
            emit_batch = None  # a method the path does the work of was replaced: one by one
        if self.copy_records:
            batch = [(copy_record(record), ctx) for record, ctx in batch]
        self.in_hand = (batch, self.done_count)
        if emit_batch is not None:
            started = time.monotonic()
            try:
                handled, errors = emit_batch(batch)
            except BaseException:  # noqa: BLE001 - the lane must outlive any handler
                handled, errors = 0, len(batch)
                report_error(handler, batch[0][0])
                completed = False
            else:
                completed = True
            self.timed(time.monotonic() - started, len(batch), completed=completed)
            self._count_call(handler, handled, errors, len(batch))
        else:
            started = time.monotonic()
            for record, ctx in batch:
                try:
                    ctx.copy().run(handler.handle, record)
                except BaseException:  # noqa: BLE001 - the lane must outlive any handler
                    self.errors += 1
                    report_error(handler, record)
                else:
                    self.handled += 1
                if self.off_shutdown:
                    self._moved_on(handler)
                self.done_count += 1
                if self._watch.slot:  # the listener waits for room (under "block")
                    self.notify()
            self.timed(time.monotonic() - started, len(batch), completed=True)
        # Hold no record (nor its context's values) once handled.
        self.in_hand = _EMPTY_HAND
        self._after_call()

    def _write(
        self,
        lines: deque[Lines],
        handler: logging.Handler,
        write_lines: Callable[[Lines], tuple[int, int]] | None,
    ) -> None:
        """Write the first of *lines* (formatted where they were logged) to the handler."""
        # Only a path that writes lines gets any (see _listener._OneHop).
        assert write_lines is not None
        first = self.lines_in_hand = lines[0]  # in hand before it leaves: see oldest_created
        lines.popleft()
        count = len(first.texts)
        try:
            handled, errors = write_lines(first)
        except BaseException:  # noqa: BLE001 - the lane must outlive any handler
            handled, errors = 0, count
            report_error(handler, first.stand_in(0))
        self._count_call(handler, handled, errors, count)
        self.lines_in_hand = None
        self._after_call()

    def _after_call(self) -> None:
        """After a batch is done: tell a watching listener, and threads waiting for room."""
        if self._watch.slot:
            self.notify()
        if self.room_waiters:
            self._room_made()

    def _count_call(self, handler: logging.Handler, handled: int, errors: int, count: int) -> None:
        """Count a batch call's *count* records as done: *handled*, and *errors*."""
        self._moved_on(handler)
        # The call's own counts go first: see unfinished() and counts().
        self.steps.finished = self.steps.failed = 0
        self.handled += handled
        self.errors += errors
        self.done_count += count

    def _moved_on(self, handler: logging.Handler) -> None:
        """After a call: a handler a stop took off logging.shutdown's list goes back on it."""
        if self.off_shutdown:  # it moved: not stuck
            self.off_shutdown = False
            _lifecycle.flush_at_shutdown(handler)

    def _caught_up(self) -> bool:
        """Leave DRAINING for IDLE if nothing is left; return whether the worker exits.

        Drops counted while draining (the listener was not there to report
        them) are reported to the handler first, by this worker, in order.
        """
        with self._lock:
            if not self._closing:
                return False  # started again meanwhile: keep serving
            if self.buffer or self.lines:
                return False
            if self.state == DRAINING:
                summary = self.drop_summary()
                if summary is not None:
                    self.buffer.append(summary)
                    self.put_count += 1
                    return False
                self.state = IDLE
                self._room.notify_all()  # a waiting thread delivers in the caller now
            self.thread = None
            return True


class TaskLane(Lane):
    """Await an async handler in a task on the loop, records in order."""

    handler: AsyncHandler

    def __init__(
        self, handler: AsyncHandler, capacity: int, overflow: Overflow, *, copy_records: bool
    ):
        super().__init__(handler, capacity, overflow, copy_records=copy_records)
        self.batching = overrides_batch(handler)
        # What the exit has already reported: records left unawaited, and
        # drops not announced to the handler.
        self.reported_left = (0, 0)
        self.task: Task | None = None
        # The loop it serves on (set by start()).
        self._backend: Backend | None = None
        self._waiter: Waiter | None = None
        self._closing = False
        self._abort = False
        # The listener gave up on a call that ignores its cancellation (see abandon()).
        self._given_up = False
        # What abandon() left: the records of the call given up on, and what
        # closing that call raised (it ignored GeneratorExit too), if anything.
        self.abandoned = 0
        self.abandon_error: BaseException | None = None
        # Entries put back once after a cancellation from outside (by id).
        self._redelivered: set[int] = set()
        # Whether the current task has run its first step (entered _run).
        self._entered = False
        # Whether this start() already replaced a task cancelled before its first step.
        self._respawned = False

    def put(
        self, record: logging.LogRecord, ctx: contextvars.Context, *, past_bound: bool = False
    ) -> None:
        # Kept as logged: the depth is marked on a copy of the context when
        # the record is handled (see _deliver), so a record given to the
        # handler again (after a cancellation) keeps its depth.
        # While IDLE the buffer keeps records for the next start.
        if (
            self._accept((record, ctx), past_bound=past_bound)
            and self.state == RUNNING
            and self._waiter is not None
        ):
            self.wake_worker()

    def wake_worker(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            backend = self._backend
            assert backend is not None  # a waiter exists only while serving
            backend.resolve(waiter)

    def discard_abandoned_task(self) -> None:
        """Close the coroutine of the task a closed loop abandoned; keep its records.

        Left alone, the task is reported when collected, somewhere unrelated
        ("coroutine ... was never awaited", or an ``aemit`` failing with
        ``GeneratorExit``). One that never ran is closed as it is. One stopped
        inside a call to the handler gives up on that call, as a stop that
        runs out of time does: its records go back in front of the buffer,
        for the next start (or the exit's report).
        """
        task, backend = self.task, self._backend
        if task is None or task.done() or backend is None or not backend.is_closed():
            return
        get_coro = getattr(task, "get_coro", None)  # asyncio's tasks (trio closes no loop)
        coro = get_coro() if get_coro is not None else None
        if coro is None:
            return
        given_up, self._given_up = self._given_up, True
        try:
            coro.close()
        except RuntimeError:
            pass  # the handler awaited again on GeneratorExit: nothing more to do
        finally:
            self._given_up = given_up

    def start(self, backend: Backend) -> int | None:
        self.discard_abandoned_task()  # left by a run whose loop closed under it
        self._backend = backend
        # A waiter left by a run whose loop closed under its task belongs to
        # that loop: resolving it would raise. The task is abandoned with it.
        self._waiter = None
        self._closing = False
        self._abort = False
        self._given_up = False
        self.abandoned = 0
        self.abandon_error = None
        self.state = RUNNING
        self._loop_thread = threading.get_ident()
        self._respawned = False
        self._spawn(backend)
        return None

    def _spawn(self, backend: Backend) -> None:
        self._entered = False
        task = self.task = backend.spawn(self._run, f"aioqlog-{self.stats_name()}")
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: Task) -> None:
        """Replace a task cancelled before its first step, once per start (on the loop).

        Such a task never runs ``_run``: ``asyncio.run`` ending right after
        ``start()``, with no await between, cancels it before the loop ever
        stepped it, so it cannot carry on delivering as a started task
        cancelled from outside does, and its records would wait for a task
        that is gone while the listener drains. The replacement is not in the
        set of tasks that ending cancels: it delivers while the listener
        waits on the lane's progress, and ends when the listener closes the
        lane (or aborts it, as a second cancellation does). Once per start: a
        loop that cancels every new task is not fought; the listener's bound
        then reports the records as undelivered.
        """
        if task is not self.task or self._entered or self._respawned or not task.cancelled():
            return
        backend = self._backend
        if self.state != RUNNING or self._closing or backend is None or backend.is_closed():
            return  # stopped meanwhile: the buffer keeps its records for the next start
        self._respawned = True
        self._spawn(backend)

    def stop_serving(self, *, gave_up: bool = False) -> None:
        self.state = IDLE
        self._closing = True
        if self.pending and self.task is not None:
            # Out of time: interrupt the handler; the rest stays buffered for
            # the next start (it is reported as undelivered now).
            self._abort = True
            self.task.cancel()
        self.wake_worker()

    async def finished(self, limit: float | None = None) -> bool:
        task = self.task
        if task is not None:
            assert self._backend is not None  # set with the task
            if not await self._backend.join(task, limit):
                return False
            self.task = None
        return True

    async def abandon(self, limit: float) -> bool:
        """Give up on a call that ignores its cancellation; False if the task runs on.

        For after ``stop_serving()`` cut the lane off and the handler's call
        swallowed that cancellation. The lane drives the call itself
        (``run_in_context``): told to give up, it throws nothing more into it,
        closes its coroutine, puts its records back in front of the buffer
        (kept for the next start, as a call cut off in time is), and the task
        ends at its next step. Only on asyncio: on trio a call ignores
        cancellation only inside a shielded await, where it is not even
        delivered.
        """
        task = self.task
        if task is None:
            return True
        self._given_up = True
        self._abort = True
        task.cancel()
        return await self.finished(limit)

    def _giving_up(self) -> bool:
        return self._given_up

    async def _run(self) -> None:
        self._entered = True
        backend = self._backend
        assert backend is not None  # set by start()
        cancelled = False
        while True:
            try:
                await self._serve(backend)
                break
            except backend.Cancelled:
                if self._abort:
                    raise
                # Cancelled from outside (asyncio.run() ending, or a blanket
                # cancel of all tasks): keep delivering until the listener
                # closes the lane; the listener bounds how long that takes.
                # (On trio the task runs shielded: only _abort cancels it.)
                cancelled = True
                backend.uncancel()
        if cancelled:
            raise backend.Cancelled

    async def _serve(self, backend: Backend) -> None:
        while True:
            if self.buffer:
                await self._deliver(backend)
                if self._given_up:
                    return
                if self._watch.slot:
                    self.notify()
                continue
            if self._closing:
                return
            waiter = backend.new_waiter()
            self._waiter = waiter
            await backend.wait(waiter, None)

    async def _deliver(self, backend: Backend) -> None:
        """Deliver the next record, or with ``aemit_batch`` the next run of records.

        One path for both: a run is the records logged in one context (a
        single record without ``aemit_batch``; with ``mix_contexts``, what is
        ready, at one depth); each passes the handler's filters in its own
        context, then the run is awaited inside its first record's context.
        Whatever a filter or the call raises, ``KeyboardInterrupt`` and
        ``SystemExit`` included, is the handler's error: the lane lives on.
        """
        buffer = self.buffer
        handler = self.handler
        first = buffer.popleft()
        ctx = first[1]
        depth = depth_of(first[0], ctx)
        entries = [first]
        if self.batching:
            # At most BATCH_LIMIT per call: filtering a run happens on the loop.
            mixing = handler.mix_contexts  # may hold several contexts' records
            limit = self.call_size(BATCH_LIMIT)
            while buffer and len(entries) < limit:
                record, record_ctx = buffer[0]
                if (record_ctx is not ctx and not mixing) or depth_of(record, record_ctx) != depth:
                    break
                entries.append(buffer.popleft())
        passed_entries: list[Entry] = []
        records: list[logging.LogRecord] = []
        # The call runs in the first passed record's context, the very copy its
        # filters ran in: what they set there, the handler reads.
        run_ctx: contextvars.Context | None = None
        if filters_nothing(handler):
            # No filter to run: every record passes as it is, and the loop is
            # spared a call per record in its context (a run of up to
            # BATCH_LIMIT records is filtered in one step).
            passed_entries = entries
            records = [
                copy_record(record) if self.copy_records else record for record, _ in entries
            ]
        else:
            for entry in entries:
                record, record_ctx = entry
                if self.copy_records:
                    record = copy_record(record)
                marked = handling(record_ctx, depth)
                try:
                    passed = marked.run(handler.filter, record)
                except BaseException:  # noqa: BLE001 - KeyboardInterrupt/SystemExit too
                    self._redelivered.discard(id(entry))
                    self.errors += 1
                    self.done_count += 1
                    report_error(handler, record)
                    continue
                if passed:
                    records.append(passed if isinstance(passed, logging.LogRecord) else record)
                    passed_entries.append(entry)
                    if run_ctx is None:
                        run_ctx = marked
                else:
                    self._redelivered.discard(id(entry))
                    self.handled += 1
                    self.done_count += 1
        if not records:
            return
        count = len(records)
        if self.batching:
            call, what = handler.aemit_batch(records), "aemit_batch()"
        else:
            call, what = handler.aemit(records[0]), "aemit()"
        started = backend.time()
        self.in_hand = (passed_entries, self.done_count)  # pending while awaited
        try:
            timeout = handler.timeout
            if run_ctx is None:
                run_ctx = handling(ctx, depth)
            completed = False
            try:
                if timeout is None:
                    await run_in_context(run_ctx, call, self._giving_up)
                else:
                    await backend.bounded(
                        run_in_context(run_ctx, call, self._giving_up), timeout, what
                    )
                completed = True
            finally:
                self.in_hand = _EMPTY_HAND
                self.timed(backend.time() - started, count, completed=completed)
        except backend.Cancelled:
            if self._given_up:
                self._abandoned(passed_entries, None)
                return
            if backend.cancel_requested():
                if self._redeliver(passed_entries):
                    raise
                self._forget(passed_entries)
                self.errors += count
                self.done_count += count
                raise
            # The handler cancelled itself: its error, not a stop.
            self.errors += count
            report_error(handler, records[0])
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit too: the lane lives on
            if self._given_up:
                self._abandoned(passed_entries, exc)
                return
            self.errors += count
            report_error(handler, records[0])
        else:
            self.handled += count
        self._forget(passed_entries)
        self.done_count += count

    def _abandoned(self, entries: list[Entry], error: BaseException | None) -> None:
        """Keep the records of a call given up on for the next start (see ``abandon``)."""
        self._redeliver(entries)  # aborted: back in front, reported as pending already
        self.abandoned += len(entries)
        self.abandon_error = error

    def _forget(self, entries: list[Entry]) -> None:
        """Forget that *entries* were put back once (they are done now)."""
        redelivered = self._redelivered
        if redelivered:
            for entry in entries:
                redelivered.discard(id(entry))

    def _redeliver(self, entries: list[Entry]) -> bool:
        """Put *entries* back in front after a cancellation; return whether it did.

        ``asyncio.run`` ending cancels every task, so an ``aemit`` in flight is
        interrupted however the lane is built. The handler sees the
        cancellation, then gets the same records again while the lane drains:
        at least once, rather than lost (once only: a second cancellation from
        outside means "now"). When the listener aborts the lane because
        ``stop()`` ran out of time, the records stay in front of the buffer,
        reported as pending, for the next start. (A handler that raised
        CancelledError by itself does not get here: that is its error.)
        """
        if self._abort:
            for entry in reversed(entries):
                self.buffer.appendleft(entry)
            return True
        if any(id(entry) in self._redelivered for entry in entries):
            return False
        for entry in reversed(entries):
            self._redelivered.add(id(entry))
            self.buffer.appendleft(entry)
        return True


def make_lane(
    handler: logging.Handler, capacity: int, overflow: Overflow, *, copy_records: bool
) -> Lane:
    """Return the lane that suits *handler*: a task for async ones, else a thread.

    With *copy_records* (several handlers share the records), the lane's handler
    formats a shallow copy of each: formatting writes ``message``, ``asctime``
    and ``exc_text`` on the record, and lanes run concurrently.
    """
    if isinstance(handler, AsyncHandler):
        return TaskLane(handler, capacity, overflow, copy_records=copy_records)
    return ThreadLane(handler, capacity, overflow, copy_records=copy_records)
