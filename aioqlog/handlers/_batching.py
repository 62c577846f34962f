"""What the batching handlers share: batches by count and age, and retries.

On top of ``BufferedSender`` (the bounded buffer and the sender task), the
sender takes up to *batch_size* items once that many wait or the oldest has
waited *batch_age* seconds, and hands them to the subclass's ``send``. A
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
from typing import Generic, TypeVar

from .._lanes import report_error
from ._buffered import BufferedSender, check_positive, own_record

__all__ = ["BatchSender", "Rejected", "check_positive"]

T = TypeVar("T")


class Rejected(Exception):
    """The destination refused a batch for good: drop it, do not retry."""


class BatchSender(BufferedSender[T, tuple[float, T]], Generic[T]):
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
        super().__init__(level=level, timeout=timeout, buffer_size=buffer_size)
        owner = type(self).__qualname__
        check_positive(owner, "batch_size", batch_size, integer=True)
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
        self.retries = 0
        self._close_by = 0.0
        self._outage_since: float | None = None

    # ------------------------------------------------------------ to implement

    async def send(self, items: list[T]) -> None:
        """Send *items* (oldest first); raise ``Rejected`` or a ``retryable`` error."""
        raise NotImplementedError

    def _entry(self, item: T, now: float) -> tuple[float, T]:
        return (now, item)  # the arrival time decides when a batch is old enough

    def _begin_close(self, loop: asyncio.AbstractEventLoop) -> None:
        self._close_by = loop.time() + self.close_budget

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None or not await self._deliver(batch):
                return

    async def _next_batch(self) -> list[T] | None:
        """Wait until a batch is due (full, old enough, or closing); None when done."""
        loop = asyncio.get_running_loop()
        wake = self._wake
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

    def _drop_causes(self) -> str:
        return (
            f"its buffer was full, the destination was unreachable for longer than "
            f"retry_budget={self.retry_budget}s, or it rejected them"
        )

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
        message = "%s: a batch of %d records %s"
        report_error(self, own_record(logging.ERROR, message, (repr(self), count, why)))
