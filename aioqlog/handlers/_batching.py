"""What the batching handlers share: a bounded buffer, a sender task, retries.

``aemit_batch`` encodes each record (in its log call's context, yielding to
the loop every few records) and appends it to a bounded buffer. A sender task
on the loop takes up to *batch_size* items once that many wait or the oldest
has waited *batch_age* seconds, and hands them to the subclass's ``send``. A
failure the subclass calls retryable is retried with exponential backoff and
jitter while the buffer keeps accepting records; an outage longer than
*retry_budget* drops what waits for it, and a ``Rejected`` batch is dropped
at once. Every drop is counted, and the next batch that gets through starts
with an item saying how many were dropped.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from .._async_handler import AsyncHandler
from .._lanes import report_error
from .._lifecycle import write_stderr

__all__ = ["BatchSender", "Rejected", "check_positive"]

T = TypeVar("T")

#: Records encoded between two yields to the loop (a fraction of a millisecond).
_YIELD_EVERY = 16


class Rejected(Exception):
    """The destination refused a batch for good: drop it, do not retry."""


def check_positive(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    """Raise ValueError naming *name* unless *value* is a positive number (or integer)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{owner} {name} must be {what}, got {value!r}")


class BatchSender(AsyncHandler, Generic[T]):
    """Base of the handlers that send records in batches and retry (see the module doc).

    Subclasses implement ``encode(record) -> T`` and ``async send(items)``,
    set ``retryable`` (the exceptions worth a retry) and may override
    ``aclose_client()``.
    """

    #: Exceptions from ``send`` that mean "try again later".
    retryable: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)

    #: Seconds ``aclose()`` keeps retrying a failing destination before it
    #: leaves the rest buffered (and says so): a stop is not held up for the
    #: whole retry budget.
    close_budget: float = 10.0

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
    ) -> None:
        super().__init__(level, timeout=timeout)
        owner = type(self).__qualname__
        check_positive(owner, "batch_size", batch_size, integer=True)
        check_positive(owner, "buffer_size", buffer_size, integer=True)
        for name, value in (
            ("batch_age", batch_age),
            ("retry_budget", retry_budget),
            ("backoff", backoff),
            ("backoff_max", backoff_max),
        ):
            check_positive(owner, name, value)
        if buffer_size < batch_size:
            raise ValueError(
                f"{owner} buffer_size ({buffer_size}) must be at least batch_size ({batch_size})"
            )
        self.batch_size = batch_size
        self.batch_age = batch_age
        self.retry_budget = retry_budget
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.buffer_size = buffer_size
        self.sent = 0
        self.dropped = 0
        self.retries = 0
        self._dropped_reported = 0
        # (loop time it arrived, encoded item)
        self._buffer: deque[tuple[float, T]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._close_by = 0.0
        self._outage_since: float | None = None

    @property
    def pending(self) -> int:
        """Records buffered: waiting for their batch, or for a retry."""
        return len(self._buffer)

    # ------------------------------------------------------------ to implement

    def encode(self, record: logging.LogRecord) -> T:
        """Return what ``send`` needs of *record*."""
        raise NotImplementedError

    async def send(self, items: list[T]) -> None:
        """Send *items* (oldest first); raise ``Rejected`` or a ``retryable`` error."""
        raise NotImplementedError

    async def aclose_client(self) -> None:
        """Release the client once the last batch is sent (a session, a connection)."""

    # ------------------------------------------------------------ the lane's side

    async def aemit(self, record: logging.LogRecord) -> None:
        """Buffer one record for the next batch."""
        await self.aemit_batch([record])

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        """Buffer *records* for the next batches; a record that fails to encode is reported."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        buffer = self._buffer
        for n, record in enumerate(records, 1):
            if not n % _YIELD_EVERY:
                await asyncio.sleep(0)  # encoding runs on the loop: let it breathe
            try:
                item = self.encode(record)
            except Exception:  # noqa: BLE001 - one bad record must not cost the others
                report_error(self, record)
                continue
            if len(buffer) >= self.buffer_size:
                self.dropped += 1
                continue
            buffer.append((now, item))
        self._ensure_sender(loop)
        assert self._wake is not None
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is buffered (retrying within the budget), then close the client.

        Bounded by the handler's *timeout* and by ``stop(timeout)``. Records
        that could not be sent by then stay buffered for the next start and
        are reported on stderr.
        """
        if self._buffer:
            # Left from an earlier run, with nothing logged since: send it now.
            self._ensure_sender(asyncio.get_running_loop())
        sender = self._sender
        if sender is not None and not sender.done():
            self._closing = True
            self._close_by = asyncio.get_running_loop().time() + self.close_budget
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.shield(sender)
            finally:
                if not sender.done():
                    sender.cancel()
                    await asyncio.wait({sender})
                self._closing = False
        self._sender = None
        await self.aclose_client()
        if self._buffer:
            write_stderr(
                f"{self!r}: {len(self._buffer)} records not sent yet; they are kept for "
                f"the next start of the listener"
            )

    # ------------------------------------------------------------------ sending

    def _ensure_sender(self, loop: asyncio.AbstractEventLoop) -> None:
        sender = self._sender
        if sender is not None and not sender.done() and sender.get_loop() is loop:
            return
        self._wake = asyncio.Event()
        self._sender = loop.create_task(self._run(), name=f"aioqlog-{self!r}")

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None or not await self._deliver(batch):
                return

    async def _next_batch(self) -> list[T] | None:
        """Wait until a batch is due (full, old enough, or closing); None when done."""
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        buffer = self._buffer
        while True:
            wait: float | None = None
            if buffer:
                if len(buffer) >= self.batch_size or self._closing:
                    break
                wait = buffer[0][0] + self.batch_age - loop.time()
                if wait <= 0:
                    break
            elif self._closing:
                return None
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
        return [buffer[i][1] for i in range(min(self.batch_size, len(buffer)))]

    def _summary(self) -> T | None:
        """Encode a WARNING about drops not reported yet; None if there are none."""
        unreported = self.dropped - self._dropped_reported
        if not unreported:
            return None
        record = logging.getLogRecordFactory()(
            "aioqlog",
            logging.WARNING,
            __file__,
            0,
            "aioqlog dropped %d records for %r: its buffer was full, the destination was "
            "unreachable for longer than retry_budget=%ss, or it rejected them",
            (unreported, self, self.retry_budget),
            None,
            type(self).__name__,
        )
        try:
            return self.encode(record)
        except Exception:  # noqa: BLE001 - the count stays and goes with the next batch
            return None

    async def _deliver(self, batch: list[T]) -> bool:
        """Send *batch*, retrying within the budget, then take it off the buffer.

        Return False when closing and the destination still fails after the
        close budget: the batch and the rest stay buffered.
        """
        loop = asyncio.get_running_loop()
        summary = self._summary()
        reported = self.dropped
        items = batch if summary is None else [summary, *batch]
        attempt = 0
        while True:
            try:
                await self.send(items)
            except Rejected:
                self._give_up(len(batch), "were rejected")
                return True
            except asyncio.CancelledError:
                raise
            except self.retryable:
                if self._outage_since is None:
                    self._outage_since = loop.time()
                    self._report(len(batch), "could not be sent; retrying")
                if loop.time() - self._outage_since >= self.retry_budget:
                    # The outage outlasted the budget: drop what waits for it.
                    self._outage_since = None
                    self._give_up(len(self._buffer), "were dropped: retry_budget ran out")
                    return True
                if self._closing and loop.time() >= self._close_by:
                    return False
                delay = min(self.backoff_max, self.backoff * 2**attempt)
                attempt += 1
                self.retries += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter
                continue
            except Exception:  # noqa: BLE001 - a broken encoder or hook: report, do not retry
                self._give_up(len(batch), "could not be sent")
                return True
            break
        self._outage_since = None
        self._dropped_reported = max(self._dropped_reported, reported)
        for _ in batch:
            self._buffer.popleft()
        self.sent += len(batch)
        return True

    def _give_up(self, count: int, why: str) -> None:
        """Drop the first *count* buffered records, count them and report why."""
        for _ in range(count):
            self._buffer.popleft()
        self.dropped += count
        self._report(count, why)

    def _report(self, count: int, why: str) -> None:
        """Report the exception being handled through handleError, naming the batch."""
        record = logging.getLogRecordFactory()(
            "aioqlog",
            logging.ERROR,
            __file__,
            0,
            "%s: a batch of %d records %s",
            (repr(self), count, why),
            None,
            type(self).__name__,
        )
        report_error(self, record)
