"""What every network handler shares: a bounded buffer, a sender task and one backoff.

``BufferedSender`` is the base of every network handler. ``aemit_batch``
encodes each record (in its log call's context: on the loop, yielding every
few records, or in the handler's own thread) and appends it to a bounded
buffer; what does not fit is dropped and counted. A sender task, started on
the loop at the first record and again on a new loop after a restart,
empties the buffer its own way (``_run``).
``aclose()`` lets it finish what is buffered, then releases the client.
Records enter the buffer all at once, after the last of a call is encoded: a
call cancelled midway (``asyncio.run`` ending) buffers nothing, so the lane's
redelivery of the same records adds no duplicates.

Every handler waits between attempts with the same ``_backoff``: exponential,
with jitter, and cut short when ``aclose()`` begins. While closing, a failing
destination is retried for at most *close_budget* seconds; what could not be
sent by then stays buffered (counted in ``pending``) and is reported on stderr.

``BatchSender`` adds batches by count and age for the handlers that send
records in batches (HTTP, SMTP), and a retry budget: an outage longer than
*retry_budget* drops what waits for it, and a ``Rejected`` batch is dropped at
once. Every drop is counted, and the next batch that gets through starts with
an item saying how many were dropped.

Each batch gets an id when it is made, and keeps it, with the same items, until
it leaves the buffer: every retry, including the one after a send cut off by
``asyncio.run`` ending (the server may have taken it), carries the same id, so
a receiver can drop a batch it already has (the HTTP handler sends it as an
``Idempotency-Key`` header).

Everything here runs alike on asyncio, uvloop and trio: waits, timeouts and
events are anyio's; the sender task (which outlives the ``aemit_batch`` call
that starts it: anyio starts tasks only in a task group) and the encoding
thread's wake-up of the loop come from the engine's ``_backend``, the two
things anyio does not offer. Times are
``time.monotonic()``: trio's clock starts at a random offset in each run, and
a buffer may outlive a run.

A handler may set ``encode_in_thread``: its records are then encoded in a
thread of its own (``EncodeThread``), not on the loop, under a copy of the
context ``aemit_batch`` runs in (the records' log call's), so a formatter
still sees the call's context variables. The loop only waits for the result.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import logging
import math
import queue
import random
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

try:
    import anyio
    import anyio.lowlevel
except ImportError:
    raise ImportError(
        "aioqlog.handlers needs anyio, which each handler's extra installs: "
        "pip install 'aioqlog[syslog]' (or aioqlog[http], aioqlog[smtp])"
    ) from None

from .._async_handler import AsyncHandler
from .._backend import Backend, Task, backend_of, call_soon_threadsafe, on_trio, running_loop
from .._context import DEPTH, SUMMARY_DEPTH
from .._diagnostics import check_positive, check_seconds, report_error, write_stderr
from .._records import own_record

__all__ = [
    "YIELD_EVERY",
    "Batch",
    "BatchSender",
    "BufferedSender",
    "EncodeThread",
    "Rejected",
    "sending",
]

T = TypeVar("T")  # what encode() makes of a record
E = TypeVar("E")  # what the buffer holds
R = TypeVar("R")  # what a job in the encoding thread returns

#: Records encoded between two yields to the loop (a fraction of a millisecond).
YIELD_EVERY = 16

#: Seconds the encoding thread works before it lets the loop's thread run:
#: each time the loop's thread drops the GIL (its poll, a socket write), this
#: thread may take it, and the loop then waits out the rest of the slice.
SLICE = 0.00005
#: Seconds it then sleeps without the GIL. A bare ``sleep(0)`` is not enough:
#: it drops the GIL and takes it back before the waiting loop thread wakes,
#: and that waiter then waits out a whole switch interval (5 ms) again.
PAUSE = 0.0001


class Rejected(Exception):
    """The destination refused a batch for good: drop it, do not retry."""


class EncodeThread:
    """A thread of a handler's own that runs its encoding jobs, one at a time.

    Started at the first job and stopped by ``stop()`` (the handler's
    ``aclose()``), or when the handler is collected; the next job starts a
    new one, on whichever loop runs it. Not the loop's default executor: the
    application may keep that busy. A job works in slices of ``SLICE``
    seconds (``pause()`` between records), so that the loop's thread never
    waits long for the GIL.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: _Jobs | None = None
        self._thread: threading.Thread | None = None

    async def run(self, job: Callable[[], R]) -> R:
        """Return ``job()``, run in the thread; the loop goes on meanwhile.

        Cancelled, the call returns at once; the job finishes in the thread
        and its result is dropped.
        """
        loop = running_loop()
        done = _Result[R]()
        jobs = self._jobs
        thread = self._thread
        if jobs is None or thread is None or not thread.is_alive():  # (dead after a fork)
            jobs = self._jobs = queue.SimpleQueue()
            # The thread holds the queue, not this object: collected, it says stop.
            thread = self._thread = threading.Thread(
                target=_work, args=(jobs,), name=self.name, daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # The interpreter is exiting (Python 3.12+ starts no thread
                # then): the last batches are encoded here, on the loop.
                self._jobs = self._thread = None
                return job()
            weakref.finalize(self, jobs.put, None)
        jobs.put((job, loop, done))
        await done.settled.wait()
        value, error = done.value, done.error
        del done  # raised, the error's traceback holds this frame: no cycle through it
        if error is not None:
            raise error
        return cast(R, value)  # set along with settled

    def stop(self) -> None:
        """Let the thread end once the jobs it was given are done; never wait for it."""
        jobs, self._jobs, self._thread = self._jobs, None, None
        if jobs is not None:
            jobs.put(None)

    @staticmethod
    def pause() -> None:
        """Sleep a moment without the GIL once the current slice is spent (in the thread)."""
        now = time.perf_counter()
        end = getattr(_slice, "end", 0.0)
        if now >= end:
            if end:
                time.sleep(PAUSE)
            _slice.end = time.perf_counter() + SLICE


@dataclass
class _Sender:
    """A handler's sender task, the loop it runs on, and how to wait for it."""

    task: Task
    #: What ``running_loop()`` returned when it started.
    loop: object
    backend: Backend

    def done(self) -> bool:
        """Return whether the sender has ended."""
        return self.task.done()

    def cancel(self) -> None:
        """Interrupt the sender at its next await (on its loop)."""
        self.task.cancel()

    async def wait(self) -> None:
        """Return once the sender has ended."""
        await self.backend.join(self.task)


class _Result(Generic[R]):
    """A job's result, settled on the loop by the encoding thread."""

    __slots__ = ("error", "settled", "value")

    def __init__(self) -> None:
        self.settled = anyio.Event()
        self.value: R | None = None
        self.error: BaseException | None = None


_Jobs = queue.SimpleQueue[tuple[Callable[[], Any], Any, _Result[Any]] | None]
_slice = threading.local()  # when the running slice of an encoding thread ends


def _work(jobs: _Jobs) -> None:
    """Run *jobs* until told to stop, settling each one's future on its loop."""
    while True:
        item = jobs.get()
        if item is None:
            return
        job, loop, done = item
        _slice.end = 0.0
        result: Any = None
        error: BaseException | None = None
        try:
            result = job()
        except BaseException as exc:  # noqa: BLE001 - relayed to the waiting coroutine
            error = exc
        # (False: the loop closed meanwhile, and nobody waits.)
        call_soon_threadsafe(loop, functools.partial(_settle, done, result, error))
        del item, job, done, result, error  # hold nothing while idle


def _settle(done: _Result[Any], result: Any, error: BaseException | None) -> None:
    # On the loop. A waiter cancelled meanwhile is gone: nobody reads these.
    done.value = result
    done.error = error
    done.settled.set()


class BufferedSender(AsyncHandler, Generic[T, E]):
    """Base of the network handlers (see the module doc).

    Subclasses implement ``encode(record)``, ``_entry(item, now)`` (what the
    buffer keeps of an encoded record), ``async _run()`` (the sender: return
    once ``_closing`` is set and nothing more can be sent, waiting between
    attempts with ``_backoff``), and may override ``aclose_client()`` and
    ``_on_new_loop()``, and set ``encode_in_thread``.
    """

    #: Encode in a thread of the handler's own (``EncodeThread``), not on the loop.
    encode_in_thread = False

    #: For a handler whose client library runs only on asyncio (and uvloop):
    #: a sentence saying what to use on trio instead. It is refused there, by
    #: the constructor when a trio run is already on, else by the first call.
    trio_instead: str | None = None

    def __init__(
        self,
        *,
        level: int,
        timeout: float | None,
        buffer_size: int,
        backoff: float,
        backoff_max: float,
        close_budget: float,
    ) -> None:
        super().__init__(level, timeout=timeout)
        owner = type(self).__qualname__
        # Made before the loop (the usual case), the first call checks instead.
        self._refuse_trio()
        _load_anyio_backend()
        check_positive(owner, "buffer_size", buffer_size, integer=True)
        for name, value in (("backoff", backoff), ("backoff_max", backoff_max)):
            check_positive(owner, name, value)
        check_seconds(close_budget, f"{owner} close_budget", allow_zero=True)
        self.buffer_size = int(buffer_size)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.close_budget = close_budget
        self.sent = 0
        self.dropped = 0
        self._dropped_reported = 0
        self._buffer: deque[E] = deque()
        self._sender: _Sender | None = None
        # Made with each sender, on its loop (anyio's events need one running).
        self._wake: anyio.Event | None = None  # set when records arrive, and to close
        self._closed: anyio.Event | None = None  # set by aclose(): cuts a backoff short
        self._closing = False
        self._close_by = 0.0  # monotonic time at which closing gives up on a failing peer
        self._attempt: anyio.CancelScope | None = None  # the attempt under way (see _attempting)
        self._encoder = EncodeThread(f"aioqlog-encode-{type(self).__name__}")

    @property
    def pending(self) -> int:
        """Return how many records are buffered, waiting to be sent (see ``AsyncHandler``)."""
        return len(self._buffer)

    # ------------------------------------------------------------ to implement

    def encode(self, record: logging.LogRecord) -> T:
        """Return what the sender needs of *record*."""
        raise NotImplementedError

    def _entry(self, item: T, now: float) -> E:
        """Return what the buffer keeps of an encoded record, arrived at *now* (monotonic)."""
        raise NotImplementedError

    async def _run(self) -> None:
        """Send what is buffered until closing (the sender task's body)."""
        raise NotImplementedError

    async def aclose_client(self) -> None:
        """Release the client once the last records are sent (a session, a socket)."""

    def _on_new_loop(self) -> None:
        """Forget what belonged to an earlier loop (a connection), before a new sender."""

    # ------------------------------------------------------------ the lane's side

    async def aemit(self, record: logging.LogRecord) -> None:
        """Buffer one record."""
        await self.aemit_batch([record])

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        """Buffer *records*; a record that fails to encode is reported alone."""
        if self.trio_instead is not None:
            self._refuse_trio()
        now = time.monotonic()
        items: list[T] = []
        if self.encode_in_thread:
            # The thread runs the formatters in the log call's context, as here.
            ctx = contextvars.copy_context()
            encoded, failed = await self._encoder.run(lambda: ctx.run(self._encode_all, records))
            items = encoded
            for record, error in failed:
                try:  # handleError reports the exception being handled, here on the loop
                    raise error
                except Exception:  # noqa: BLE001 - reported, not raised
                    report_error(self, record)
            del failed
        else:
            for n, record in enumerate(records, 1):
                if not n % YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()  # encoding runs on the loop: let it breathe
                try:
                    items.append(self.encode(record))
                except Exception:  # noqa: BLE001 - one bad record must not cost the others
                    report_error(self, record)
        # No await from here on: cancelled above, the call buffered nothing,
        # and the lane hands the same records over again.
        buffer = self._buffer
        room = self.buffer_size - len(buffer)
        if len(items) > room:
            self.dropped += len(items) - max(room, 0)
            del items[max(room, 0) :]
        buffer.extend(self._entry(item, now) for item in items)
        self._ensure_sender().set()

    def _encode_all(
        self, records: Sequence[logging.LogRecord]
    ) -> tuple[list[T], list[tuple[logging.LogRecord, Exception]]]:
        """Encode *records* in the encoding thread; return the items and the failures."""
        items: list[T] = []
        failed: list[tuple[logging.LogRecord, Exception]] = []
        pause = self._encoder.pause
        for record in records:
            pause()
            try:
                items.append(self.encode(record))
            except Exception as exc:  # noqa: BLE001 - reported on the loop, alone
                failed.append((record, exc))
        return items, failed

    async def off_loop(self, job: Callable[[], R]) -> R:
        """Return ``job()``, run in the encoding thread (rendering a batch, say)."""
        return await self._encoder.run(job)

    async def aclose(self) -> None:
        """Send what is buffered, then release the client.

        A failing destination is retried for at most *close_budget* seconds;
        the whole call is bounded by the handler's *timeout* and by
        ``stop(timeout)``. Records that could not be sent stay buffered
        (counted in ``pending``, and so in the listener's ``stats``) and are
        reported on stderr.
        """
        if self.trio_instead is not None:
            self._refuse_trio()
        if self._buffer:
            # Left from an earlier run, with nothing logged since: send it now.
            self._ensure_sender()
        sender = self._sender
        if sender is not None and not sender.done() and sender.loop is running_loop():
            assert self._wake is not None
            assert self._closed is not None
            self._begin_closing()
            self._wake.set()
            self._closed.set()
            try:
                await sender.wait()
            finally:
                if not sender.done():
                    # This call was cancelled (its timeout, stop() out of
                    # time): so is the send under way, and its end is awaited.
                    sender.cancel()
                    with anyio.CancelScope(shield=True):
                        await sender.wait()
                self._closing = False
        self._sender = None
        try:
            # Closing the client logs too (httpcore: "close.started").
            with self._as_sender():
                await self.aclose_client()
        finally:
            self._encoder.stop()
        if self._buffer:
            # Nothing here knows whether the process is about to exit: say both.
            write_stderr(
                f"{self!r}: {len(self._buffer)} records could not be sent "
                f"(close_budget={self.close_budget}s); they stay in its buffer, counted "
                f"as undelivered in the listener's stats, and are lost if the process "
                f"exits before the listener is started again"
            )

    def _refuse_trio(self) -> None:
        """Raise RuntimeError, naming what to use instead, if this handler cannot run here."""
        if self.trio_instead is not None and on_trio():
            raise RuntimeError(
                f"{type(self).__qualname__} runs on asyncio and uvloop, not on trio: "
                f"{self.trio_instead}"
            )

    # ------------------------------------------------------------ for the sender

    def _begin_closing(self) -> None:
        """Start closing: *close_budget* seconds from now, for the attempt under way too."""
        self._closing = True
        self._close_by = time.monotonic() + self.close_budget
        attempt = self._attempt
        if attempt is not None and self.close_budget > 0:
            # Cut short with the budget: a request waiting on a collector that
            # never answers would otherwise hold stop() for its request_timeout.
            attempt.deadline = min(attempt.deadline, anyio.current_time() + self.close_budget)

    @contextlib.contextmanager
    def _attempting(self) -> Iterator[anyio.CancelScope]:
        """Bound one attempt to send by what is left of *close_budget*, once closing.

        Closing begins during the attempt or before it: either way, the
        attempt ends when the budget does (its ``cancelled_caught`` says so),
        except with ``close_budget=0``, which lets one last attempt run (bounded
        by the handler's own request timeout).
        """
        scope = anyio.CancelScope()
        if self._closing and self.close_budget > 0:
            scope.deadline = anyio.current_time() + max(0.0, self._close_by - time.monotonic())
        self._attempt = scope
        try:
            with scope:
                yield scope
        finally:
            self._attempt = None

    async def _backoff(self, attempt: int) -> bool:
        """Wait before retry *attempt* (0 for the first); return False to give up.

        The delay (``_delay``) doubles from *backoff* up to *backoff_max*, with
        jitter (half of it to all of it). ``aclose()`` cuts a wait under way short, so the
        closing sender tries once more at once; while closing, each wait is cut
        to what is left of *close_budget*, and once that is spent this returns
        False: the sender stops, leaving the rest buffered.
        """
        delay = self._delay(attempt)
        if not self._closing:
            closed = self._closed
            assert closed is not None  # made with the sender that calls this
            with anyio.move_on_after(delay):
                await closed.wait()
            return True
        left = self._close_by - time.monotonic()
        if left <= 0:
            return False
        await anyio.sleep(min(delay, left))
        return True

    def _delay(self, attempt: int) -> float:
        """Return the wait before retry *attempt*: doubling from *backoff*, with jitter."""
        return float(min(self.backoff_max, self.backoff * 2**attempt) * random.uniform(0.5, 1.0))

    def _drop_causes(self) -> str:
        """Say what makes this handler drop records, for the drop summary."""
        return f"its buffer was full (buffer_size={self.buffer_size})"

    def _summary(self) -> T | None:
        """Encode a WARNING about drops not reported yet; None if there are none.

        It goes out ahead of the next records, so the destination itself shows
        the gap. The caller marks the drops reported once it is sent.
        """
        unreported = self.dropped - self._dropped_reported
        if not unreported:
            return None
        record = own_record(
            logging.WARNING,
            "aioqlog dropped %d records for %r: %s",
            (unreported, self, self._drop_causes()),
            "BufferedSender",
        )
        try:
            return self.encode(record)
        except Exception:  # noqa: BLE001 - the count stays and goes with the next send
            return None

    def _ensure_sender(self) -> anyio.Event:
        """Start the sender on the running loop unless it runs; return its wake-up event."""
        loop = running_loop()
        sender = self._sender
        if sender is not None and not sender.done() and sender.loop is loop:
            assert self._wake is not None  # made with the sender
            return self._wake
        if sender is None or sender.loop is not loop:
            self._on_new_loop()
        # Fresh events for each sender: anyio's belong to the loop that makes them.
        wake = self._wake = anyio.Event()
        self._closed = anyio.Event()
        if sender is not None and sender.loop is not loop:
            self._closing = False  # a run that ended without aclose() left it set
        backend = backend_of(loop)
        # On asyncio, the end of asyncio.run cancels the sender, and the
        # listener's drain starts a new one. On trio, a task started once the
        # run is ending would be cancelled at once: the sender is shielded, and
        # told instead, to send what it holds within close_budget, as aclose().
        task = backend.spawn(self._serve, f"aioqlog-{self!r}", on_run_ending=self._run_ending)
        self._sender = _Sender(task, loop, backend)
        return wake

    def _run_ending(self) -> None:
        """Begin closing (trio: the run's main task has ended): send what is held, then end."""
        if not self._closing:
            self._begin_closing()
        if self._wake is not None:
            self._wake.set()

    async def _sleep_until_woken(self, seconds: float = math.inf) -> None:
        """Wait until records arrive or closing begins, for at most *seconds*.

        For the sender, once it has seen nothing to do: with no await between
        that look and this call, a record buffered after it sets the new event.
        """
        # An anyio event cannot be cleared: each wait gets a new one.
        wake = self._wake = anyio.Event()
        with anyio.move_on_after(seconds):
            await wake.wait()

    @contextlib.contextmanager
    def _as_sender(self) -> Iterator[None]:
        """Run the block as this handler's sender: what it logs is never shipped.

        ``sending()`` is true there (the HTTP clients' loggers filter on it),
        and anything else logged reads as logged while handling aioqlog's own
        summary records: dropped and counted (``recursion_dropped``), since
        each request would otherwise ship lines about the one before, for
        ever; and not announced, since the announcement would be shipped too.
        """
        sending, depth = _SENDING.set(self), DEPTH.set(SUMMARY_DEPTH)
        try:
            yield
        finally:
            _SENDING.reset(sending)
            DEPTH.reset(depth)

    async def _serve(self) -> None:
        """Run ``_run`` as the sender task (see ``_as_sender``): report what it raises."""
        try:
            with self._as_sender():
                await self._run()
        except Exception:  # noqa: BLE001 - a broken override; on trio it would end the run
            report_error(
                self,
                own_record(
                    logging.ERROR,
                    "%s: its sender failed; the next record starts a new one",
                    (repr(self),),
                    "BufferedSender",
                ),
            )


#: The handler whose sender task runs in this context: set there, and so in
#: the context of every record logged from it.
_SENDING: contextvars.ContextVar[BufferedSender[Any, Any] | None] = contextvars.ContextVar(
    "aioqlog_sending", default=None
)


def _load_anyio_backend() -> None:
    """Import anyio's backends for the loops this handler may run on, now.

    anyio imports one at the first event or checkpoint: on the loop, at the
    handler's first record, a stall of tens of milliseconds. A handler is
    usually made at set-up, where an import costs the loop nothing. The
    asyncio one (uvloop's too) unless made in a trio run; trio's once the
    application has imported trio, with the codec trio's connections encode
    host names with.
    """
    modules = [] if on_trio() else ["anyio._backends._asyncio"]
    if "trio" in sys.modules:
        modules += ["anyio._backends._trio", "encodings.idna"]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # another anyio layout: it imports at the first record, as before
            pass


def sending() -> bool:
    """Return whether this runs in a network handler's sender (its client logging, say)."""
    return _SENDING.get() is not None


@dataclass
class Batch(Generic[T]):
    """A batch in hand: sent, retried and resent as it was made, under one id."""

    id: str  # the same on every attempt: a receiver drops a batch it already has
    items: list[T]  # what is sent: the drop summary, if any, then the records
    count: int  # the buffered records it carries (the first ones)
    reported: int  # self.dropped when it was made: the drops its summary reports


class BatchSender(BufferedSender[T, tuple[float, T]], Generic[T]):
    """Base of the handlers that send records in batches and retry (see the module doc).

    Subclasses implement ``encode(record) -> T`` and ``async send(items,
    batch_id)``, set ``retryable`` (the exceptions worth a retry) and may
    override ``aclose_client()``.
    """

    #: Exceptions from ``send`` that mean "try again later".
    retryable: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(
        self,
        *,
        level: int,
        timeout: float | None,
        batch_size: int,
        batch_age: float,
        retry_budget: float,
        backoff: float,
        backoff_max: float,
        buffer_size: int,
        close_budget: float,
    ) -> None:
        super().__init__(
            level=level,
            timeout=timeout,
            buffer_size=buffer_size,
            backoff=backoff,
            backoff_max=backoff_max,
            close_budget=close_budget,
        )
        owner = type(self).__qualname__
        check_positive(owner, "batch_size", batch_size, integer=True)
        check_positive(owner, "batch_age", batch_age)
        check_positive(owner, "retry_budget", retry_budget)
        if buffer_size < batch_size:
            raise ValueError(
                f"{owner} buffer_size ({buffer_size}) must be at least batch_size ({batch_size})"
            )
        self.batch_size = batch_size
        self.batch_age = batch_age
        self.retry_budget = retry_budget
        self.retries = 0
        self._outage_since: float | None = None
        # The batch being sent: kept until its records leave the buffer, so
        # that a send cut off by a cancellation goes again as it was.
        self._in_hand: Batch[T] | None = None
        self._done_of_batch = ("", 0)  # (batch id, items of it sent, for send_each)

    # ------------------------------------------------------------ to implement

    async def send(self, items: list[T], batch_id: str) -> None:
        """Send *items* (oldest first); raise ``Rejected`` or a ``retryable`` error.

        *batch_id* is the same on every attempt to send these items: pass it
        on where the receiver can drop a batch it already has.
        """
        raise NotImplementedError

    async def send_each(
        self, items: list[T], batch_id: str, send_one: Callable[[T], Awaitable[None]]
    ) -> None:
        """Send *items* one at a time with *send_one* (a request or a mail each).

        For the twins of the stdlib handlers, which send a record at a time: a
        retry of the same batch skips the items already sent.
        """
        done_id, done = self._done_of_batch
        start = done if done_id == batch_id else 0
        for n in range(start, len(items)):
            await send_one(items[n])
            self._done_of_batch = (batch_id, n + 1)

    def _entry(self, item: T, now: float) -> tuple[float, T]:
        return (now, item)  # the arrival time decides when a batch is old enough

    async def _run(self) -> None:
        while True:
            # A batch still in hand was cut off (or given up at close) after
            # it may have reached the destination: it goes again, as it was.
            batch = self._in_hand or await self._next_batch()
            if batch is None or not await self._deliver(batch):
                return

    async def _next_batch(self) -> Batch[T] | None:
        """Wait until a batch is due (full, old enough, or closing); None when done."""
        buffer = self._buffer
        while True:
            wait = math.inf
            if buffer:
                if len(buffer) >= self.batch_size or self._closing:
                    break
                wait = buffer[0][0] + self.batch_age - time.monotonic()
                if wait <= 0:
                    break
            elif self._closing:
                return None
            await self._sleep_until_woken(wait)
        records = [buffer[i][1] for i in range(min(self.batch_size, len(buffer)))]
        summary = self._summary()
        items = records if summary is None else [summary, *records]
        return Batch(str(uuid.uuid4()), items, len(records), self.dropped)

    def _drop_causes(self) -> str:
        return (
            f"its buffer was full, the destination was unreachable for longer than "
            f"retry_budget={self.retry_budget}s, or it rejected them"
        )

    async def _deliver(self, batch: Batch[T]) -> bool:
        """Send *batch*, retrying within the budget, then take it off the buffer.

        Return False when closing and the destination still fails after the
        close budget: the batch (still in hand) and the rest stay buffered.
        """
        self._in_hand = batch
        count = batch.count
        attempt = 0
        while True:
            try:
                with self._attempting() as scope:
                    await self.send(batch.items, batch.id)
                if scope.cancelled_caught:
                    # Cut off by close_budget: the batch (it may have arrived)
                    # stays in hand, and goes again, as it was, at the next start.
                    return False
            except Rejected:
                self._give_up(count, "were rejected")
                return True
            except self.retryable:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self._report(count, "could not be sent; retrying")
                if time.monotonic() - self._outage_since >= self.retry_budget:
                    # The outage outlasted the budget: drop what waits for it.
                    self._outage_since = None
                    self._give_up(len(self._buffer), "were dropped: retry_budget ran out")
                    return True
                if not await self._backoff(attempt):
                    return False
                attempt += 1
                self.retries += 1
                continue
            except Exception:  # noqa: BLE001 - a broken encoder or hook: report, do not retry
                self._give_up(count, "could not be sent")
                return True
            break
        self._outage_since = None
        self._in_hand = None
        self._dropped_reported = max(self._dropped_reported, batch.reported)
        for _ in range(count):
            self._buffer.popleft()
        self.sent += count
        return True

    def _give_up(self, count: int, why: str) -> None:
        """Drop the first *count* buffered records, count them and report why."""
        self._in_hand = None  # what it carried is gone (the first records, or all)
        for _ in range(count):
            self._buffer.popleft()
        self.dropped += count
        self._report(count, why)

    def _report(self, count: int, why: str) -> None:
        """Report the exception being handled through handleError, naming the batch."""
        message = "%s: a batch of %d records %s"
        report_error(
            self, own_record(logging.ERROR, message, (repr(self), count, why), "BufferedSender")
        )
