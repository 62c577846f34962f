"""The bridge: ``LogQueue`` carries records from any thread into the event loop.

It knows no loop: the listener hands it the ``Backend`` (asyncio or trio) it
captured at ``start()``, and a parked consumer leaves the backend's bound
callables in its wake-up token.

Who may call what
-----------------
* Producers (any thread, including the loop's, including a signal handler):
  ``put_nowait`` only.
* The consumer (the listener's task, on the loop thread): the ``_``-prefixed
  consumer methods, while it holds the *delivery right*.
* A thread the consumer lends the right to (the one-hop path: its lone sync
  handler's worker takes records itself): ``_take``, ``_listen_in_thread``,
  ``_listen_again``, ``_stop_listening``, ``_ring_at_loop_turn`` and
  ``_left_before_stop``, while the consumer's task only waits; and, under
  the same lock as that thread, the loop's thread at its turn, which
  formats the records it logged itself (popping them off ``_items``, with
  their contexts, and counting them with ``_took``). The consumer takes the
  right back (the thread then stops taking) before it calls any other
  consumer method.
* A producer that finds no consumer attached borrows the delivery right and
  delivers queued records itself, in its own thread (``_drain_in_caller``).

The consumer protocol, by name. The listener (a ``Consumer``, bound once with
``_bind``) calls, on its loop thread: ``_attach`` then ``_acquire`` (take the
delivery right; ``start()`` tries ``_try_acquire`` first, which never waits),
``_add_nonblocking`` (its lanes' workers), ``_take`` and ``_wait`` (serve),
``_mark_stop``, ``_left_before_stop`` and ``_kick`` (stop), ``_release`` (hand
the right back), and ``_abandon_attach`` (cancelled before it got the right);
from a helper thread, ``_consumer_lost`` and ``_drain_in_caller`` (its task
ended without winding down). It reads, and never writes: ``_consumer`` and
``_attached`` (who serves), ``_items`` and ``_kicked`` (whether to serve),
``_enqueued``, ``_taken`` and ``_high_water`` (its stats), and ``_tick`` (the
safety tick, for the one-hop worker's park). The queue calls back
``Consumer._dispatch_idle`` to deliver in a producer's thread while no
consumer is attached, and ``Consumer._on_consumer_lost`` when the consumer's
loop closed under it. Outside the listener: ``QueueHandler`` reads
``_consumer`` (to finish the listener before it closes), the dictConfig
adoption calls ``_resolve_consumer``, and ``_lifecycle`` calls what its
``ExitQueue`` protocol names.

Why nothing is lost
-------------------
The put path takes no lock: ``deque.append``/``popleft``/``pop`` and ``len``
are atomic under the GIL. Two one-slot deques carry the hand-offs:

* ``_parked`` (the slot of a ``Parking``, the one park/wake hand-off that the
  lanes use too) holds a wake-up token while the consumer sleeps. The consumer
  appends its token, *then* re-checks the buffer before sleeping; a producer
  appends its record, *then* pops the token. Whatever the interleaving, either
  the consumer's re-check sees the record or the producer's pop sees the token.
  Exactly one popper wins the token, so a burst of records costs one
  cross-thread wake-up, however many producers race. A consumer thread parks
  the same way: its token (``_listen_in_thread``) rings its worker's bell
  instead of resolving a waiter on a loop. A producer on another thread rings
  at once; the loop's own thread defers the ring to the loop's next turn
  (``_defer_ring``), and lowers ``_limit`` to ``SPILL`` (or half the bound)
  so that the producer that queues that many records rings at once (``_past_limit``): the ring
  waits in ``_deferred``, a one-slot deque, so exactly one of the two rings.
  Either way the worker is rung once per park, and the safety tick below
  covers a loop that never turns again.
* ``_right`` holds the delivery right while nobody delivers. The attached
  consumer keeps it for its whole run. Without a consumer, a producer pops it,
  delivers everything queued, puts it back and re-checks the buffer: a record
  appended while the right was held is taken by the holder's re-check or by
  the next producer. One holder at a time keeps per-thread order.

Each record is queued on its own. One logged where no context variable is
set (most records of most programs) needs no context of its own: a record
with none beside it is delivered in the queue's one empty context
(``_blank``, replaced by a fresh one if a consumer's own code ever sets a
variable in it). Any other record's context waits beside it in
``_contexts``, keyed by the record (by identity): a ``(record, context)``
pair per record would be one more object for the garbage collector to track
for as long as the record waits, and records that wait across collections
make the process collect more often, and promote them to older generations.
A producer notes the context, *then* appends the record, so whoever pops
the record finds its context; the popper (the consumer, or a producer
evicting under ``"drop_old"``) removes it. A record already waiting with a
context when it is put again (a logger chain with two handlers on one
queue) is queued with its context, as a pair, and so is a record of a class
that hashes or compares records its own way: at most one copy of a record
with a noted context waits at a time, and its identity names that context.
Two puts of one record object that could pair with each other's context:
the same record put twice at once from two threads (one could find its
context taken, and is then delivered in an empty context, never lost), and
a record put where no variable is set that is put again, while it still
waits, from a context that has one (its first delivery gets the second's
context, and the second the empty one). Both need the application to hand
one record object to the queue twice, from two contexts.

A slow safety tick re-arms the consumer every ``_SAFETY_TICK`` seconds, so even
a wake-up lost to something outside this module (a dropped syscall) cannot
strand records; the stress tests run with the tick disabled.
"""

from __future__ import annotations

import contextvars
import functools
import gc
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, get_args

from . import _lifecycle
from ._backend import Backend, Waiter, loop_runs_here
from ._context import Entry, on_handler_thread
from ._diagnostics import check_positive, check_seconds

__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_BLOCK_TIMEOUT",
    "DEFAULT_MAXSIZE",
    "LogQueue",
    "Overflow",
    "Parking",
]

#: The overflow policies of a LogQueue.
Overflow = Literal["drop_new", "drop_old", "block"]

#: 50,000 records absorb a burst of tens of thousands of records logged while
#: the loop does not yield (a queued record with its context takes about 0.7 KB,
#: so a full queue holds about 36 MB; each lane holds at most as many again).
DEFAULT_MAXSIZE = 50_000

#: Seconds a non-loop thread waits for room under ``overflow="block"``.
DEFAULT_BLOCK_TIMEOUT = 1.0

#: Most records the consumer takes in one go: a batch is handed on in well
#: under a millisecond, so the loop's other work never waits long.
BATCH_LIMIT = 256

#: When more records wait, the listener's task takes half of them, up to this
#: many: a loop that logs more than ``BATCH_LIMIT`` records between two turns
#: would otherwise queue them faster than the task takes them, one batch a turn.
#: Past ``BATCH_LIMIT``, it takes no more than it hands on in as long as the
#: loop's thread worked elsewhere since its last batch: what threads log while
#: the loop idles is no reason to hold the loop longer (``QueueListener.dequeue``).
TURN_LIMIT = 4096

#: A burst logged on the loop's thread rings a parked consumer thread at the
#: loop's next turn, or once this many records are queued (at most half the
#: queue's bound, so that the thread has room to catch up), whichever comes
#: first: a service's short bursts are handed over when its loop yields, as on
#: the loop's path, and a long burst that never yields is drained meanwhile.
SPILL = 2048

#: While a consumer thread serves a buffer (the queue, on the one-hop path or
#: for the loop's thread on the path through the loop, or a sync handler's
#: lane), a producer that finds this many records waiting (at
#: most a quarter of the bound) leaves the GIL to the thread, and does so again
#: each ``PACE_STEP`` more records (see ``Pace``). Few: a record that waits
#: outlives the garbage collector's young collections, which walk it each time
#: and promote it to the older generations, whose collections cost more. Not
#: fewer: each pause costs system calls (at 256, they cost more than they saved).
PACE = 512
PACE_STEP = 256
#: Seconds a producer sleeps without the GIL at a time: long enough for the
#: thread waiting for it to wake and take it (a bare ``sleep(0)`` takes it back
#: first).
PAUSE = 0.0001
#: The most a producer sleeps at one check while the threads keep using the
#: CPU they are left: a switch interval.
PAUSE_LIMIT = 0.005
#: The most a producer waits for its turn to pause while others pause.
TURN_WAIT = 4 * PAUSE_LIMIT

_SAFETY_TICK: float | None = 0.25
_OVERFLOWS: tuple[str, ...] = get_args(Overflow)
_TOKEN = True

# Bound once: every log call uses them.
_copy_context = contextvars.copy_context
_weakref = weakref.ref
# What a Context refers to: its mapping of variables, an immutable object that
# an unchanged context keeps, and nothing else while it is not entered (when
# that differs, as on another interpreter, nothing is shared).
_referents = gc.get_referents


_LogRecord = logging.LogRecord
_object_hash = object.__hash__
_object_eq = object.__eq__


def _keyed_by_identity(kind: type[logging.LogRecord]) -> bool:
    """Return whether records of class *kind* hash and compare as objects (by identity).

    Only those are keys of ``_contexts``: a record class that hashes by its
    fields could change its hash while queued (another handler sets
    ``message`` on it), and its context would be lost, and kept for ever.
    """
    return kind.__hash__ is _object_hash and kind.__eq__ is _object_eq


def _no_context() -> contextvars.Context | None:
    """Stand in for a dead reference to the last context a record was logged in."""
    return None


#: A context offered for sharing (see ``LogQueue._share``): what returns it while
#: it may be shared, its variables, and the weak reference to it.
_Shared = tuple[Callable[[], contextvars.Context | None], object, object]

#: No context to share: variables that no context has.
_NOT_SHARED: _Shared = (_no_context, object(), None)


def _forget_shared(queue: Callable[[], LogQueue | None], dead: object) -> None:
    """Drop what a queue offers for sharing once *dead*, its weak reference, died."""
    owner = queue()
    if owner is not None and owner._shared[2] is dead:
        owner._shared = _NOT_SHARED


def _unchanged(
    ref: Callable[[], contextvars.Context | None], variables: object
) -> contextvars.Context | None:
    """Return the context *ref* names if it still refers to *variables* alone, else None."""
    ctx = ref()
    if ctx is None:
        return None
    theirs = _referents(ctx)
    return ctx if len(theirs) == 1 and theirs[0] is variables else None


def _ring_thread(_defer: Any, waiter: Any) -> None:
    """Ring a consumer thread's bell from a thread other than the loop's.

    Its token's "call soon", called with the token's waiter, ``(bell,
    is_closed)``. Raises RuntimeError, as a closed loop's call-soon does, once
    the loop the listener runs on has closed: the waker then takes the queue
    back.
    """
    bell, is_closed = waiter
    if is_closed():
        raise RuntimeError("the event loop is closed")
    bell()


#: A parked waiter's token: the loop's call-soon (from any thread), whether the
#: loop has closed, how to resolve the waiter, the loop's thread, the waiter.
_Parked = tuple[
    Callable[[Callable[[Any], None], Any], object],
    Callable[[], bool],
    Callable[[Any], None],
    int,
    Waiter,
]


def _ring_later(queue: LogQueue) -> None:
    """Ring a deferred consumer thread: the loop has turned (a callback on it)."""
    queue._ring_deferred()


class Pace:
    """Keep a consumer thread from starving behind a producer that holds the GIL.

    A thread waiting for the GIL asks for it after a switch interval (5 ms),
    but each time the holder drops it and takes it straight back (an event
    loop's poll on every turn, a socket write) the waiter wakes, finds it
    taken, and waits a whole interval again. A busy loop that does that
    every few hundred microseconds keeps a consumer thread from the GIL for
    as long as it stays busy (and a handler that makes a system call per
    record, such as a rotating file's size check, needs the GIL back after
    each), so the buffer between them fills up to its bound, then drops.

    So a producer that finds ``mark`` records waiting sleeps ``PAUSE`` seconds
    without the GIL, and again for as long as the consumer thread used at
    least half of that time on a CPU (it was waiting for the GIL, and ran),
    the records still waiting number ``mark`` or more, and ``PAUSE_LIMIT`` is
    not spent (with several consumer threads, such as the listener's lanes,
    what counts is the CPU they used together: the one behind may have to
    wait for the others' turns); the next check comes ``PACE_STEP`` records
    later, or a quarter of that if the limit ran out first. A consumer
    blocked in its handler's I/O uses no CPU: it costs the producer one
    ``PAUSE`` per check. Where a thread's CPU clock cannot be read, a check
    sleeps ``PAUSE`` once, and only if the consumer took no record since the
    last check. A handler's own thread never pauses, nor does a consumer
    that also produces (the loop's thread, on the path through the loop).

    Several producers (threads logging flat out) pause one at a time: the
    others wait for their turn (at most ``TURN_WAIT``) without the GIL, since
    one that kept running meanwhile would take the GIL the pause leaves.
    """

    __slots__ = ("_clocks", "_own", "_seen", "_turn", "mark")

    #: A mark no buffer reaches.
    OFF: int = 1 << 62

    def __init__(self) -> None:
        #: Where checks start; ``OFF`` while no consumer thread serves.
        self.mark = Pace.OFF
        self._seen = 0
        self._clocks: list[int] = []
        self._own = 0
        self._turn = threading.Lock()

    def serve(
        self, bound: int | None, taken: int, threads: Iterable[int] = (), *, own: int = 0
    ) -> None:
        """Check for a consumer thread serving a buffer of *bound* (None: stop checking).

        *threads* are the idents of the threads whose CPU use shows that
        leaving them the GIL helps: the consumer's, and any other consumer
        thread it competes with for the GIL. *own* is a consumer that also
        produces (an event loop's thread that logs): it never pauses, since
        what it waits for is itself.
        """
        self.mark = Pace.OFF if bound is None else min(max(1, bound // 4), PACE)
        self._seen = taken
        self._own = own
        # Anew for each run: one a thread held across a fork stays held in the child.
        self._turn = threading.Lock()
        self._clocks = []
        if bound is not None and _cpu_clock is not None:
            try:
                self._clocks = [_cpu_clock(ident) for ident in threads]
            except OSError:
                self._clocks = []

    def check(self, taken: Callable[[], int], waiting: Callable[[], int]) -> int:
        """Leave the GIL to the consumer thread; return where to check next.

        ``taken()`` counts the records the consumer took so far;
        ``waiting()``, the records waiting now.
        """
        step = PACE_STEP
        if not on_handler_thread() and threading.get_ident() != self._own:
            if self._clocks:
                # One producer pauses at a time, and the others wait for their
                # turn here, without the GIL: while one pauses, another that
                # kept running would take the GIL from the consumers. Not for
                # long: a check never holds a log call much past PAUSE_LIMIT.
                turn = self._turn
                if turn.acquire(timeout=TURN_WAIT):
                    try:
                        if waiting() >= self.mark and self._give_way(self._clocks, waiting):
                            step //= 4  # still behind, and working: the next turn comes sooner
                    finally:
                        turn.release()
            elif taken() == self._seen:
                time.sleep(PAUSE)
        self._seen = taken()
        return max(waiting(), self.mark) + step

    def _give_way(self, clocks: list[int], waiting: Callable[[], int]) -> bool:
        """Sleep without the GIL while the consumer threads run (see the class docstring).

        Returns whether ``PAUSE_LIMIT`` ran out with the threads still working
        and the records still waiting number ``mark`` or more.
        """
        try:
            started = time.monotonic()
            used = sum(map(time.clock_gettime, clocks))
            while True:
                before = time.monotonic()
                time.sleep(PAUSE)
                now = time.monotonic()
                cpu = sum(map(time.clock_gettime, clocks))
                if cpu - used < (now - before) / 2 or waiting() < self.mark:
                    return False
                if now - started >= PAUSE_LIMIT:
                    return True
                used = cpu
        except OSError:  # a thread is gone
            self._clocks = []
            return False


#: A thread's CPU clock, where the platform has one (``pthread_getcpuclockid``).
_cpu_clock: Callable[[int], int] | None = getattr(time, "pthread_getcpuclockid", None)


def wait_while_moving(
    room: threading.Condition,
    full: Callable[[], bool],
    progress: Callable[[], int],
    patience: float,
    *,
    quit_waiting: Callable[[], bool] = lambda: False,
    held_up: Callable[[], bool] = lambda: False,
) -> bool:
    """With *room*'s lock held, wait until ``full()`` is false; return whether it is.

    Room can come back slowly (a handler handles a record at a time), so the
    wait gives up only after *patience* seconds in which ``progress()`` (a
    count of records handled) did not move, or once ``quit_waiting()``. Those
    seconds do not run out while ``held_up()``: what makes the room is in a
    bounded wait of its own, and goes on once it ends. Whoever makes room
    notifies *room*.
    """
    deadline = time.monotonic() + patience
    moved = progress()
    while full():
        if quit_waiting():
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            now = progress()
            if now == moved and not held_up():
                return False
            moved, deadline = now, time.monotonic() + patience
            continue
        room.wait(remaining)
    return True


class Consumer(Protocol):
    """What a ``LogQueue`` needs of the listener that serves it.

    * ``running``: whether its task is serving the queue now.
    * ``handlers`` and ``respect_handler_level``: who gets the records (the
      ``QueueHandler`` reads them to render an exception at the call).
    * ``_dispatch_idle(batch)``: deliver *batch* in the calling thread, while
      no consumer is attached (before ``start()``, after ``stop()``).
    * ``_on_consumer_lost()``: the loop closed under the attached consumer.
    * ``_finish(when)``: deliver everything still on its way, now (the
      ``QueueHandler`` is being closed, as by ``logging.shutdown()``).
    * ``_handled_so_far()``: a count that grows while its handlers make
      progress (records finished, steps of a batch call, and the end of each
      bounded wait for room in a handler's buffer; read by a producer waiting
      for room, from its own thread, with the queue's lock held: it takes no
      lock).
    * ``_delivery_held_up()``: whether the thread delivering while no consumer
      is attached waits, for a bounded time, for room in a handler's buffer
      (read like ``_handled_so_far``).
    * ``_hand_off(drain)``: run ``drain(limit=...)`` in a helper thread of its
      own (here, if no thread can start: the interpreter is exiting).

    While attached, the consumer calls the queue's consumer methods (the
    ``_``-prefixed methods under "consumer" below) from its loop thread.
    """

    @property
    def running(self) -> bool: ...

    handlers: tuple[logging.Handler, ...]
    respect_handler_level: bool

    def _dispatch_idle(self, batch: list[Entry]) -> None: ...

    def _on_consumer_lost(self) -> None: ...

    def _finish(self, when: str) -> None: ...

    def _handled_so_far(self) -> int: ...

    def _delivery_held_up(self) -> bool: ...

    def _hand_off(self, drain: Callable[..., None]) -> None: ...


class Parking:
    """One waiter on an event loop, woken by any thread: the park/wake hand-off.

    The waiter appends a token to a one-slot deque, *then* re-checks its
    condition before sleeping; a waker changes the state, *then* pops the
    token. Whatever the interleaving, either the re-check sees the change or
    the pop sees the token, and exactly one popper wins it, so a burst of
    changes costs one wake-up (see the module docstring). The queue parks its
    consumer here, and each lane parks the listener waiting for its progress.

    Hot paths check ``slot`` (a plain deque) for a waiter before calling
    ``wake``: an emptiness check on a deque costs next to nothing.
    """

    __slots__ = ("slot",)

    def __init__(self) -> None:
        self.slot: deque[_Parked] = deque()

    def wake(self) -> bool:
        """Wake the waiter if this caller wins its token; False if its loop has closed."""
        try:
            call_soon, is_closed, resolve, loop_thread, waiter = self.slot.pop()
        except IndexError:
            return True  # nobody waits, or another waker claimed the token
        if threading.get_ident() == loop_thread:
            if is_closed():
                return False
            resolve(waiter)  # on the loop thread: no self-pipe write needed
            return True
        try:
            call_soon(resolve, waiter)
        except RuntimeError:
            return False  # the loop is closed: the waiter will never run again
        return True

    async def wait(
        self, ready: Callable[[], bool], timeout: float | None, backend: Backend
    ) -> bool:
        """Sleep on *backend*'s loop until woken, or *ready()* holds, or *timeout* passes.

        Returns False when the timeout ended the wait, True otherwise. It may
        return spuriously: callers re-check their condition in a loop.
        """
        # Precondition: one waiter at a time, on its loop's thread.
        waiter = backend.new_waiter()
        token: _Parked = (
            backend.call_soon_threadsafe,
            backend.is_closed,
            backend.resolve,
            threading.get_ident(),
            waiter,
        )
        slot = self.slot
        slot.append(token)
        if ready():  # re-check after announcing the park
            try:
                slot.pop()
            except IndexError:
                pass  # a waker claimed the token: its wake-up is on the way
            else:
                return True
        try:
            woken = await backend.wait(waiter, timeout)
        except BaseException:
            # Cancelled while parked: withdraw the token, or the next waker
            # would "wake" a dead waiter.
            try:
                slot.remove(token)
            except ValueError:
                pass
            raise
        if woken:
            return True
        try:
            slot.remove(token)
        except ValueError:
            return True  # a waker claimed it just now: its wake-up is on the way (harmless)
        return False


class LogQueue:
    """A bounded, thread-safe queue that carries log records into an event loop.

    Any thread may put records; one ``QueueListener`` task consumes them on its
    event loop. Putting never blocks the loop thread and never raises: when the
    queue is full, the overflow policy decides, and every drop is counted.

    Args:
        maxsize: The most records held at once (a positive int). Producers racing
            on a nearly full queue may overshoot it by at most one record each.
        overflow: What a full queue does with a new record: ``"drop_new"`` drops
            it, ``"drop_old"`` evicts the oldest queued record to make room,
            ``"block"`` makes the logging thread wait for room as long as the
            handlers make progress, and drop the record once they have
            handled nothing for *block_timeout* seconds; after such a wait,
            records that find the queue full are dropped without waiting
            until the handlers handle something again (a stuck handler, or a
            loop whose thread is busy in a long call, costs one wait, not one
            per log call). A thread running an event loop
            never waits, nor do the listener's own threads: there ``"block"``
            acts as ``"drop_new"``, since waiting would stall the very code
            that makes room.
        block_timeout: Seconds a producer waits under ``"block"`` while the
            handlers handle nothing.

    Example:
        >>> q = LogQueue(maxsize=50_000, overflow="drop_old")
        >>> q.maxsize, q.dropped
        (50000, 0)

    While no listener consumes the queue, records wait in it, or, once a
    ``QueueListener`` has been created for it, are handled in the logging thread
    by the listener's handlers (see ``QueueListener``).

    Added in version 0.1.0.
    """

    def __init__(
        self,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "drop_new",
        *,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
    ) -> None:
        check_positive(
            "LogQueue", "maxsize", maxsize, integer=True,
            hint=f"aioqlog queues are always bounded (the default is {DEFAULT_MAXSIZE})",
        )  # fmt: skip
        if overflow not in _OVERFLOWS:
            raise ValueError(
                f"LogQueue overflow must be one of {', '.join(map(repr, _OVERFLOWS))}, "
                f"got {overflow!r}"
            )
        seconds = check_seconds(block_timeout, "LogQueue block_timeout")
        assert seconds is not None
        self._maxsize = maxsize
        self._overflow: Overflow = overflow
        # Whether QueueHandler.handle may do put_nowait's work inline: not
        # where a subclass has a put_nowait of its own.
        self._put_inline = type(self).put_nowait is LogQueue.put_nowait
        self._block_timeout = seconds
        # The listener that serves this queue (set when it is created).
        self._consumer: Consumer | None = None
        # Resolves, on first need, the handler names that dictConfig had not
        # configured yet when the QueueHandler was built; returns whether the
        # queue has its listener now.
        self._resolve_consumer: Callable[[], bool] | None = None
        self._tick = _SAFETY_TICK
        self._start_afresh()
        _lifecycle.track_queue(self)

    def _start_afresh(self) -> None:
        """Set the records, counters and hand-offs to those of a new, empty queue."""
        # The records, oldest first. A record's context waits beside it, in
        # _contexts keyed by the record (see "Why nothing is lost"); a record
        # already queued when it is put again carries its own, as an Entry.
        self._items: deque[logging.LogRecord | Entry] = deque()
        self._contexts: dict[logging.LogRecord, contextvars.Context] = {}
        # The context of the latest log call, while a record still holds it (a
        # weak reference), and its variables: the next call with the very same
        # variables shares it (see _share).
        self._shared: _Shared = _NOT_SHARED
        # Called as that context dies: the variables are held no longer.
        self._forget = functools.partial(_forget_shared, weakref.ref(self))
        # The context of every record logged with no variable set (see "Why
        # nothing is lost").
        self._blank = contextvars.Context()
        # Whether a consumer lets code of its own enter the queued contexts
        # (QueueListener.dequeue overridden): then a shared context is checked
        # against its variables again before it is shared.
        self._exposed = False
        # The length at which put_nowait leaves its fast path: maxsize, or
        # SPILL while a consumer thread's ring waits for the loop's next turn,
        # or the next pace check while a consumer thread serves (_pace).
        self._limit = self._maxsize
        self._pace = Pace()
        # That ring (one slot: whoever pops it rings).
        self._deferred: deque[Callable[[], None]] = deque()

        # Counters. Drops are rare and come from any thread: a lock keeps them
        # exact; it is re-entrant because a signal handler may log mid-drop.
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        # Set at interpreter exit: no thread waits for room any more, and what
        # was queued then (up to _exit_mark taken) is all that is delivered.
        self._exiting = False
        self._exit_mark = 0
        self._dropped = 0
        self._evicted = 0
        self._blocked = 0
        # What the handlers had handled when a thread last gave up waiting for
        # room (None: none gave up). Until they move on from there, a thread
        # finding the queue full does not wait (see _stalled).
        self._stall: int | None = None
        # The threads waiting for room now.
        self._waiting: set[int] = set()
        # Written only by the holder of the delivery right.
        self._taken = 0
        self._high_water = 0

        # Hand-offs (see the module docstring). _parked is the parking's slot,
        # kept as an attribute for the hot path's emptiness check.
        self._parking = Parking()
        self._parked = self._parking.slot
        self._right: deque[bool] = deque([_TOKEN])
        self._attached = False
        self._kicked = False
        # _enqueued when the consumer began to stop (see _mark_stop).
        self._stop_mark = 0
        # The attached consumer's event loop.
        self._backend: Backend | None = None
        self._loop_thread = 0
        # Threads that must never wait under "block": the loop's and the lanes'.
        self._nonblocking: frozenset[int] = frozenset()
        # The thread delivering in the caller right now (0: none), and how
        # many records it has taken and not handed on yet.
        self._holder = 0
        self._in_hand = 0
        self._rescues = 0  # safety-tick wake-ups that found records waiting

    # ------------------------------------------------------------------ public

    @property
    def maxsize(self) -> int:
        """The most records the queue holds at once."""
        return self._maxsize

    @property
    def overflow(self) -> Overflow:
        """The overflow policy: ``"drop_new"``, ``"drop_old"`` or ``"block"``."""
        return self._overflow

    @property
    def block_timeout(self) -> float:
        """Seconds a producer thread waits for room under ``overflow="block"``."""
        return self._block_timeout

    @property
    def dropped(self) -> int:
        """Records dropped by the overflow policy so far (evictions included)."""
        return self._dropped

    def qsize(self) -> int:
        """Return the number of records waiting in the queue."""
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"<LogQueue maxsize={self._maxsize} overflow={self._overflow!r} "
            f"queued={len(self._items)} dropped={self._dropped}>"
        )

    def put_nowait(self, record: logging.LogRecord) -> None:
        """Enqueue *record* with the caller's context; never raises.

        Called by ``QueueHandler.enqueue`` on every log call, from any thread.
        It never blocks the event loop thread; only under ``overflow="block"``
        does a thread other than the loop's wait (at most *block_timeout*).
        """
        # Hot path: one length check, one emptiness check of the context, one
        # append, two emptiness checks. QueueHandler.handle does the same
        # steps inline (a call less on every log call): change both together
        # (tests/test_handler.py walks both through each state).
        items = self._items
        if len(items) >= self._limit and not self._past_limit():
            return
        ctx = _copy_context()
        if not ctx:
            # No variable set (most calls of most programs): the record goes
            # alone, and is delivered in the queue's empty context.
            items.append(record)
        else:
            self._put_in_context(record, ctx)
        if self._parked:  # the consumer sleeps: wake it (once per burst)
            self._wake()
        elif not self._attached:  # no consumer: deliver here (or wait for who does)
            self._drain_in_caller(share=True)

    def _put_in_context(self, record: logging.LogRecord, ctx: contextvars.Context) -> None:
        """Append *record*, logged in *ctx* (a variable set), with the context it is to have."""
        # The same variables as the last call's context (the same mapping, by
        # identity: no value is compared): share that context.
        ref, variables, _ = self._shared
        mine = _referents(ctx)
        if mine and mine[0] is variables:
            shared = ref()
            if shared is None:
                self._share(ctx, mine)
            else:
                ctx = shared
        else:
            self._share(ctx, mine)
        contexts = self._contexts
        if (type(record) is _LogRecord or _keyed_by_identity(type(record))) and (
            record not in contexts
        ):
            contexts[record] = ctx  # first: whoever takes the record finds its context
            self._items.append(record)
        else:
            # This very record waits here already (put twice), or its class
            # compares or hashes records its own way: it carries its context.
            self._items.append((record, ctx))

    def _expose_contexts(self) -> None:
        """Note that a consumer's own code may enter and change queued contexts."""
        self._exposed = True
        self._shared = _NOT_SHARED  # offered unchecked: offer it no more

    def _share(self, ctx: contextvars.Context, mine: list[Any]) -> None:
        """Offer *ctx*, whose referents are *mine*, to the next log calls to share.

        A later call whose context refers to the very same variables (by
        identity: no value is compared) gets *ctx* instead, while *ctx* lives.
        The variables are held here as long as *ctx* lives, so that their
        identity cannot pass to another mapping meanwhile. Nothing else enters
        or changes a queued context, so *ctx* keeps them; once a consumer lets
        its own code enter them (``_exposed``), a shared context is checked
        again before each share.
        """
        if len(mine) != 1:
            self._shared = _NOT_SHARED  # entered, or another interpreter: share nothing
            return
        variables = mine[0]
        weak = _weakref(ctx, self._forget)
        ref: Callable[[], contextvars.Context | None] = weak
        if self._exposed:
            ref = functools.partial(_unchanged, weak, variables)
        self._shared = (ref, variables, weak)

    # --------------------------------------------------------------- producers

    def _past_limit(self) -> bool:
        """Ring a deferred consumer thread, or apply the overflow policy.

        Returns whether to append the record.
        """
        n = len(self._items)
        if n < self._maxsize:
            if self._deferred:
                self._ring_deferred()  # a long burst on the loop: drain it meanwhile
            elif n >= self._pace.mark:
                # A consumer thread serves: leave it the GIL if it is starved.
                following = self._pace.check(self._taken_so_far, self._items.__len__)
                self._limit = min(self._maxsize, following)
            else:
                self._limit = self._base_limit()
            return True
        return self._make_room()

    def _taken_so_far(self) -> int:
        return self._taken

    def _base_limit(self) -> int:
        """Return ``_limit`` while no ring is deferred: the first pace check, or the bound."""
        return min(self._maxsize, self._pace.mark)

    def _serve_from(self, threads: Iterable[int] | None, *, own: int = 0) -> None:
        """Note which consumer threads take from the queue (None: none, see ``Pace``).

        Threads that log while the queue fills pause for them, counting the
        CPU that *threads* use: a lone handler's worker, or the loop's thread
        and the workers it hands records to. *own*, one of them that also logs
        (the loop's thread), never pauses: what it would wait for is itself.
        """
        # Precondition: no other thread calls this meanwhile (the consumer
        # attaching or detaching, or the holder of the delivery right).
        if threads is None:
            self._pace.serve(None, self._taken)
        else:
            self._pace.serve(self._maxsize, self._taken, threads, own=own)
        if not self._deferred:
            self._limit = self._base_limit()

    def _ring_deferred(self) -> None:
        """Ring the consumer thread whose ring waits for the loop's next turn, if any."""
        self._limit = self._base_limit()
        try:
            bell = self._deferred.pop()
        except IndexError:
            return  # rung already (by the loop's turn, or another producer)
        bell()

    def _defer_ring(self, waiter: tuple[Callable[[], None], Callable[[], bool]]) -> None:
        """Ring a consumer thread at the loop's next turn, or at SPILL queued records."""
        # On the loop's thread, with the consumer thread's token won.
        self._defer(waiter[0], on_loop=True)

    def _ring_at_loop_turn(self, bell: Callable[[], None]) -> None:
        """Have *bell* rung as the loop's thread rings a token it won: see ``_defer_ring``.

        From the consumer thread, with its token won back (see
        ``_listener._OneHop.ready``). Rung here, at once, if the loop has closed.
        """
        self._defer(bell, on_loop=False)

    def _defer(self, bell: Callable[[], None], *, on_loop: bool) -> None:
        backend = self._backend
        assert backend is not None  # attached
        self._deferred.append(bell)
        self._limit = min(max(1, self._maxsize // 2), SPILL)
        try:
            if on_loop:
                backend.call_soon(_ring_later, self)
            else:
                backend.call_soon_threadsafe(_ring_later, self)
        except RuntimeError:  # the loop is closing: ring now
            self._ring_deferred()

    def _make_room(self) -> bool:
        """Apply the overflow policy to a full queue; return whether to append."""
        backend = self._backend
        if self._attached and backend is not None and backend.is_closed():
            # The loop closed under a consumer that was between two batches
            # (not parked, so no producer could notice): nobody will take
            # these. Take the queue back and deliver here, as after close.
            self._consumer_lost()
            return True
        if not self._attached and self._right:
            # A listener exists but does not run (not started yet, or stopped):
            # what waits here is delivered in this thread, as every record
            # logged now is, and this one with it.
            self._drain_in_caller(share=True)
            if len(self._items) < self._maxsize:
                return True
        if self._attached:
            waits = self._overflow == "block" and self._may_wait()
        else:
            # Another thread delivers what is queued, in order, and this one
            # waits for its turn, as it would for the handler's lock without
            # aioqlog, under every policy (not for ever: see _stalled).
            waits = self._consumer is not None and self._may_wait()
        if waits and not self._stalled():
            if self._wait_for_room():
                return True
            self._stall = self._handled_so_far()
        if self._overflow == "drop_old":
            try:
                evicted = self._items.popleft()
            except IndexError:  # the consumer emptied it meanwhile
                return True
            if not isinstance(evicted, tuple):
                self._contexts.pop(evicted, None)
            with self._lock:
                self._dropped += 1
                self._evicted += 1
            self._pace_dropping()
            return True
        with self._lock:
            self._dropped += 1
        self._pace_dropping()
        return False

    def _pace_dropping(self) -> None:
        """Every ``PACE_STEP`` drops, leave the GIL to starved consumer threads (see ``Pace``).

        A thread that drops records runs several times faster than one that
        queues them, and takes the GIL as often: without a pause it would keep
        the consumers from it (the loop's thread, which takes the records on
        the path through the loop) just when they most need it, and a full
        queue would stay full for as long as it logs.
        """
        if self._dropped % PACE_STEP == 0 and self._pace.mark != Pace.OFF:
            self._pace.check(self._taken_so_far, self._items.__len__)

    def _may_wait(self) -> bool:
        """Return whether this thread may wait for room under "block"."""
        if self._past_exit_mark():
            return False  # the exit delivers no more: nothing waits for a handler now
        if loop_runs_here():
            return False  # an event loop runs here: waiting would stall it
        me = threading.get_ident()
        if me in self._nonblocking or me == self._holder or on_handler_thread():
            return False  # a lane's worker, or the thread that would make the room
        if me in self._waiting:
            return False  # a signal handler that logs while its thread waits here
        return self._attached or self._consumer is not None  # someone will make room

    def _stalled(self) -> bool:
        """Return whether a wait for room found the handlers stuck, and they have not moved since.

        A stuck handler, or a listener that cannot take records (its loop's
        thread busy in a long call), then costs drops (counted), not a
        *block_timeout* wait in every log call: one wait, until the handlers
        handle something again. Whether a listener runs or not.
        """
        stall = self._stall
        if stall is None:
            return False
        if self._handled_so_far() == stall:
            return True
        self._stall = None
        return False

    def _wait_for_room(self) -> bool:
        """Wait for room while the handlers make progress; return whether room came.

        Room can come back a batch at a time (a lane takes what it has room
        for, and frees the queue as it pulls again), so a slow but working
        handler may leave the queue full for longer than *block_timeout*:
        the wait gives up only after *block_timeout* seconds in which the
        handlers handled nothing.
        """
        items, maxsize = self._items, self._maxsize
        return self._wait_while(lambda: len(items) >= maxsize)

    def _wait_until_handed_on(self, mark: int) -> bool:
        """Wait while the thread delivering here has not handed on the first *mark* records queued.

        Returns False if the delivery right came back first (the caller takes
        it, and delivers what is left); True once they are handed on, or the
        wait gave up: bounded as a wait for room is (see ``_wait_while``).
        """

        def handed_on() -> int:
            return self._taken + self._evicted - self._in_hand

        moved = self._wait_while(lambda: handed_on() < mark and not self._right)
        return not moved or handed_on() >= mark

    def _wait_while(self, waiting: Callable[[], bool]) -> bool:
        """Wait on ``_room`` while ``waiting()`` and the handlers make progress; say if it ended.

        False once *block_timeout* seconds passed in which the handlers
        handled nothing, or at exit. Whoever changes what ``waiting()``
        reads notifies ``_room`` while ``_blocked`` (see ``_take`` and
        ``_right_back``).
        """
        me = threading.get_ident()
        with self._room:
            # The consumer pops, then reads _blocked: incrementing before the
            # check means it either sees us waiting or we see its pops.
            self._blocked += 1
            self._waiting.add(me)
            try:
                return wait_while_moving(
                    self._room,
                    waiting,
                    self._handled_so_far,
                    self._block_timeout,
                    quit_waiting=self._past_exit_mark,
                    held_up=self._delivery_held_up,
                )
            finally:
                self._waiting.discard(me)
                self._blocked -= 1

    def _right_back(self) -> None:
        """Wake the log calls waiting for their records to be handed on (the right is back)."""
        if self._blocked:
            with self._room:
                self._room.notify_all()

    def _stop_waiting(self) -> None:
        """Mark what is queued now as all that is delivered: the interpreter is exiting.

        A thread that logs on (a daemon's loop, say) would otherwise keep the
        exit busy for as long as it logs: what was queued by now is delivered,
        and once it has been taken, no thread waits for room any more, and
        what finds the queue full is dropped and counted, as under "drop_new".
        (Until then a thread may wait, which also leaves the delivery the
        processor time that a thread dropping record after record would take.)
        """
        with self._room:
            self._exit_mark = self._taken + len(self._items)
            self._exiting = True
            self._room.notify_all()

    def _exit_backlog(self) -> tuple[int, int]:
        """Return how many queued records were queued when the exit began, and how many since."""
        queued = len(self._items)
        before = min(queued, max(0, self._exit_mark - self._taken)) if self._exiting else queued
        return before, queued - before

    def _past_exit_mark(self) -> bool:
        """Return whether the interpreter is exiting and what was queued then is taken."""
        return self._exiting and self._taken >= self._exit_mark

    def _handled_so_far(self) -> int:
        """Return how many records the consumer's handlers have finished (0: no consumer)."""
        consumer = self._consumer
        return 0 if consumer is None else consumer._handled_so_far()

    def _delivery_held_up(self) -> bool:
        """Return whether the thread delivering here waits for room in a handler's buffer.

        That wait is bounded (``ThreadLane._wait_for_room``): a thread waiting
        for room in the queue behind it waits on, rather than giving up while it
        runs and dropping what the other handlers take once it ends.
        """
        consumer = self._consumer
        return consumer is not None and not self._attached and consumer._delivery_held_up()

    def _wake(self) -> None:
        """Wake the parked consumer, if this caller wins its token."""
        if not self._parking.wake():
            # The loop closed under the consumer parked on it: take the queue
            # back and deliver in the caller, as before a loop ran.
            self._consumer_lost()

    def _drain_in_caller(
        self,
        delivered: Callable[[int], None] | None = None,
        limit: int = BATCH_LIMIT,
        *,
        share: bool = False,
        owned: bool = False,
    ) -> None:
        """Deliver queued records in this thread while no consumer is attached.

        *delivered*, if given, is told how many records each batch held, once
        the batch has been delivered. A batch holds at most *limit* records
        (those taken and not yet handed on are counted nowhere). Once the
        interpreter is exiting, only what was queued when the exit began is
        delivered (see ``_stop_waiting``).

        With *share* (a log call), this thread delivers what was queued when
        it took the right, its own record last, and hands what other threads
        queued meanwhile to a helper thread, with the right: a thread that
        logs once is not kept delivering for threads that go on logging.
        *owned*: the caller holds the right already (handed off to it).
        """
        consumer = self._consumer
        if consumer is None:
            make = self._resolve_consumer
            if make is None or not make():
                if owned:
                    self._right.append(_TOKEN)
                return  # nobody serves this queue yet: records wait (bounded)
            consumer = self._consumer
            if consumer is None:
                if owned:
                    self._right.append(_TOKEN)
                return
        sink = consumer._dispatch_idle
        right = self._right
        mine = self._enqueued  # this log call's record is among these
        while True:
            if owned:
                owned = False
            else:
                try:
                    right.pop()
                except IndexError:
                    # The holder will see our record when it re-checks. A log
                    # call waits for it to be handed on: returned at once, the
                    # thread's next record could reach a handler first (one
                    # put back on its logger meanwhile, see install()).
                    if not (share and self._may_wait()) or self._wait_until_handed_on(mine):
                        return
                    continue  # the right came back with our record still queued
            self._holder = threading.get_ident()
            mark = self._taken + len(self._items) if share else 0
            try:
                while not self._attached and not self._past_exit_mark():
                    if share and self._taken >= mark and self._items:
                        self._holder = 0
                        consumer._hand_off(functools.partial(self._drain_in_caller, owned=True))
                        return  # the helper holds the right now, and re-checks
                    batch = self._take(limit)
                    if not batch:
                        break
                    self._in_hand = len(batch)
                    sink(batch)
                    self._in_hand = 0
                    self._right_back()  # and those whose records it held
                    if delivered is not None:
                        delivered(len(batch))
            except BaseException:
                self._in_hand = 0
                self._holder = 0
                right.append(_TOKEN)
                self._right_back()
                raise
            self._holder = 0
            right.append(_TOKEN)
            self._right_back()
            if self._parked:
                # A consumer attached meanwhile and waits for the right.
                self._wake()
                return
            if self._attached or not self._items or self._past_exit_mark():
                return

    def _consumer_lost(self, *, drain: bool = True, limit: int = BATCH_LIMIT) -> None:
        """Take back the delivery right from a consumer whose loop has closed.

        Then deliver what is queued in this thread (in batches of at most
        *limit*), unless *drain* is false (a new consumer is about to attach
        and take it).
        """
        if not self._detach():
            return
        consumer = self._consumer
        try:
            if consumer is not None:
                # First: a thread the consumer lent the right to stops taking.
                consumer._on_consumer_lost()
        finally:
            # A record put meanwhile found no right to take: drained just below.
            self._right.append(_TOKEN)
        if drain:
            self._drain_in_caller(limit=limit)

    # ---------------------------------------------------------------- consumer
    # All of these run on the loop thread of the attached listener.

    def _bind(self, consumer: Consumer) -> None:
        """Make *consumer* the queue's listener (it delivers while not running, too)."""
        self._consumer = consumer

    def _attach(self, backend: Backend, nonblocking: Iterable[int] = ()) -> None:
        """Mark a consumer as attached to *backend*'s loop (it still needs the right)."""
        self._backend = backend
        self._loop_thread = threading.get_ident()
        self._nonblocking = frozenset((self._loop_thread, *nonblocking))
        self._kicked = False
        self._attached = True
        # Threads that log pause for the loop's thread from here on (see Pace),
        # before the listener's task first runs too: the loop may stay busy
        # until then. The listener adds the threads it hands records to.
        self._serve_from((self._loop_thread,), own=self._loop_thread)

    def _add_nonblocking(self, thread_id: int) -> None:
        """Forbid *thread_id* (a lane's worker) to wait under ``"block"``."""
        self._nonblocking = self._nonblocking | {thread_id}

    def _try_acquire(self) -> bool:
        """Take the delivery right if nobody holds it; never wait."""
        try:
            self._right.pop()
        except IndexError:
            return False
        return True

    async def _acquire(self) -> None:
        """Take the delivery right, waiting for an in-caller delivery to finish."""
        while True:
            try:
                self._right.pop()
            except IndexError:
                await self._park(self._right, wake_on_kick=False)
            else:
                return

    def _abandon_attach(self, *, drain: bool = True) -> None:
        """Detach a consumer that was cancelled before it got the delivery right.

        With *drain*, deliver what is queued in this thread; otherwise the
        caller arranges it (``_drain_in_caller`` from a thread of its own).
        """
        self._detach()
        if drain:
            self._drain_in_caller()

    def _detach(self) -> bool:
        """Mark the consumer gone: nobody waits or pauses for it; False if none was attached."""
        with self._lock:
            if not self._attached:
                return False
            self._attached = False
            self._nonblocking = frozenset()
            self._room.notify_all()
        self._serve_from(None)  # no consumer to pause for
        return True

    async def _wait(self) -> None:
        """Sleep until a record arrives or ``_kick`` is called."""
        await self._park(self._items, wake_on_kick=True)

    def _mark_stop(self) -> None:
        """Remember how many records were accepted when the consumer began to stop."""
        self._stop_mark = self._enqueued

    def _left_before_stop(self) -> int:
        """Return how many records accepted before ``_mark_stop`` are still queued.

        Evictions count as taken: under ``"drop_old"`` they left the queue too.
        A mark made while a consumer thread was taking may count that thread's
        batch twice (see ``_take``): never more than what is queued, so that
        an empty queue always means nothing logged before the stop is left.
        """
        return min(self._stop_mark - self._taken - self._evicted, len(self._items))

    def _kick(self) -> None:
        """Wake the consumer so it re-reads its state (stop was requested)."""
        self._kicked = True
        self._wake()

    async def _park(
        self, ready: deque[logging.LogRecord | Entry] | deque[bool], *, wake_on_kick: bool
    ) -> None:
        # Precondition: on the loop thread; only the consumer parks. Returns
        # once *ready* is non-empty (or was kicked), or spuriously: callers loop.
        backend = self._backend
        assert backend is not None  # attached
        woken = await self._parking.wait(
            lambda: bool(ready) or (wake_on_kick and self._kicked), self._tick, backend
        )
        if not woken and self._items:
            self._rescues += 1  # the safety tick found records a wake-up missed

    def _take(self, limit: int) -> list[Entry]:
        """Pop up to *limit* queued records, oldest first."""
        # Precondition: the caller holds the delivery right.
        items = self._items
        n = len(items)
        if not n:
            return []
        self._high_water = max(self._high_water, n)
        popleft = items.popleft
        contexts = self._contexts
        context_of = contexts.pop
        blank = self._blank
        if blank:  # a consumer's own code set a variable in it (see _exposed)
            self._blank = blank = contextvars.Context()
        batch: list[Entry] = []
        append = batch.append
        count = min(n, limit)
        # Counted before the pops: a _mark_stop() on the loop while a consumer
        # thread takes may then count a record twice (the thread takes a little
        # past the mark), never miss one.
        self._taken += count
        try:
            for _ in range(count):
                item = popleft()
                if isinstance(item, tuple):
                    append(item)
                elif contexts:
                    append((item, context_of(item, blank)))
                else:  # no record queued with a variable set: none to look up
                    append((item, blank))
        except IndexError:  # a "drop_old" eviction raced us
            self._taken -= count - len(batch)
        self._room_made()
        return batch

    def _took(self, count: int) -> None:
        """Count *count* records the caller popped off ``_items`` itself, oldest first.

        For a consumer that takes records as it handles them, on the thread
        that logged them (see ``_listener._OneHop``): it popped each record's
        context from ``_contexts`` too.
        """
        # Precondition: the caller holds the delivery right, on the loop's thread.
        self._high_water = max(self._high_water, len(self._items) + count)
        self._taken += count
        self._room_made()

    def _room_made(self) -> None:
        """After records were taken: pace from the mark again, and wake threads waiting for room."""
        if self._limit > self._pace.mark and not self._deferred:
            self._limit = self._base_limit()
        if self._blocked:
            with self._room:
                self._room.notify_all()

    def _give_back(self, entries: list[Entry]) -> None:
        """Put *entries*, taken and not delivered, back at the head of the queue, in order."""
        # Precondition: the caller holds the delivery right (it took them).
        # Each carries its context: the queue holds such pairs as they are.
        self._items.extendleft(reversed(entries))
        self._taken -= len(entries)

    def _listen_in_thread(self, bell: Callable[[], None]) -> _Parked:
        """Announce that a consumer thread is about to sleep; return its token.

        The producer that wins the token calls *bell* in its own thread (as it
        would schedule a loop's waiter), once per park; or, if the consumer's
        loop has closed meanwhile, takes the queue back (``_consumer_lost``),
        as it would from a consumer parked on that loop. The thread re-checks
        ``_items`` and ``_kicked`` after this call, before sleeping, and
        withdraws the token with ``_stop_listening`` once awake.
        """
        # Precondition: called by the thread the consumer lent the right to.
        backend = self._backend
        assert backend is not None  # attached
        is_closed = backend.is_closed
        # From another thread, call_soon(resolve, waiter) rings now
        # (_ring_thread); on the loop's, resolve(waiter) defers the ring to
        # the loop's next turn (_defer_ring).
        token: _Parked = (
            _ring_thread,
            is_closed,
            self._defer_ring,
            self._loop_thread,
            (bell, is_closed),
        )
        self._parked.append(token)
        return token

    def _stop_listening(self, token: _Parked) -> bool:
        """Withdraw a consumer thread's token; False if a producer claimed it (its ring comes)."""
        try:
            self._parked.remove(token)
        except ValueError:
            return False
        return True

    def _listen_again(self, token: _Parked) -> None:
        """Put back *token*, from ``_listen_in_thread``, unless a ring of it waits for the loop.

        For a consumer thread whose token stays out between its wake-ups
        (see ``_listener._OneHop``): the slot holds one token at most, and a
        ring deferred to the loop's next turn puts it back from there.
        """
        # Precondition: the caller holds the delivery right, and no other
        # thread puts this token back meanwhile.
        if not self._parked and not self._deferred:
            self._parked.append(token)

    def _release(self) -> None:
        """Detach the consumer and hand the delivery right back to producers."""
        # Precondition: the consumer holds the right and its lanes deliver inline now.
        self._detach()
        self._right.append(_TOKEN)
        # Records still queued are the listener's to hand off (it must not
        # deliver them here, on the loop thread).

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, everything that belongs to the parent.

        The queued records are the parent's to deliver (the child would
        duplicate them); the wake-up token points at the parent's loop, whose
        self-pipe the child shares; the lock may have been held by a thread
        that does not exist in the child. The child starts empty, delivering in
        the caller until it starts a listener of its own.
        """
        # Precondition: only the forking thread exists, so nothing races us.
        # Its listener (_consumer) stays: the child delivers through it.
        self._start_afresh()

    def _oldest_created(self) -> float | None:
        """Return when the oldest queued record was logged (None if none is queued)."""
        try:
            oldest = self._items[0]
        except IndexError:  # empty, or emptied by another thread just now
            return None
        return (oldest[0] if isinstance(oldest, tuple) else oldest).created

    def _peek(self) -> list[Entry]:
        """Return the queued records with their contexts, oldest first, taking none."""
        contexts = self._contexts
        blank = self._blank
        return [
            item if isinstance(item, tuple) else (item, contexts.get(item, blank))
            for item in list(self._items)
        ]

    @property
    def _enqueued(self) -> int:
        """Records accepted so far (including any evicted later)."""
        return self._taken + self._evicted + len(self._items)

    def _has_listener(self) -> bool:
        """Return whether a listener was created for this queue (see ``_lifecycle.ExitQueue``)."""
        return self._consumer is not None
