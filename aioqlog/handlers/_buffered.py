"""What every network handler shares: a bounded buffer and a sender task on the loop.

``aemit_batch`` encodes each record (in its log call's context, yielding to
the loop every few records) and appends it to a bounded buffer; what does
not fit is dropped and counted. A sender task, started on the loop at the
first record and again on a new loop after a restart, empties the buffer its
own way (``_run``). ``aclose()`` lets it finish what is buffered, then
releases the client; what could not be sent stays buffered for the next
start and is reported on stderr.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from .._async_handler import AsyncHandler
from .._lanes import report_error
from .._lifecycle import write_stderr

__all__ = ["YIELD_EVERY", "BufferedSender", "check_positive", "own_record"]

T = TypeVar("T")  # what encode() makes of a record
E = TypeVar("E")  # what the buffer holds

#: Records encoded between two yields to the loop (a fraction of a millisecond).
YIELD_EVERY = 16


def check_positive(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    """Raise ValueError naming *name* unless *value* is a positive number (or integer)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{owner} {name} must be {what}, got {value!r}")


def own_record(level: int, message: str, args: tuple[object, ...]) -> logging.LogRecord:
    """Make one of aioqlog's own records (a drop summary, an error report)."""
    factory = logging.getLogRecordFactory()
    return factory("aioqlog", level, __file__, 0, message, args, None, "BufferedSender")


class BufferedSender(AsyncHandler, Generic[T, E]):
    """Base of the network handlers (see the module doc).

    Subclasses implement ``encode(record)``, ``_entry(item, now)`` (what the
    buffer keeps of an encoded record), ``async _run()`` (the sender: return
    once ``_closing`` is set and nothing more can be sent), and may override
    ``aclose_client()`` and ``_on_new_loop()``.
    """

    def __init__(self, *, level: int, timeout: float | None, buffer_size: int) -> None:
        super().__init__(level, timeout=timeout)
        check_positive(type(self).__qualname__, "buffer_size", buffer_size, integer=True)
        self.buffer_size = int(buffer_size)
        self.sent = 0
        self.dropped = 0
        self._dropped_reported = 0
        self._buffer: deque[E] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set when records arrive, and to close
        self._closed = asyncio.Event()  # set by aclose(): cuts a backoff short
        self._closing = False

    @property
    def pending(self) -> int:
        """Records buffered, waiting to be sent."""
        return len(self._buffer)

    # ------------------------------------------------------------ to implement

    def encode(self, record: logging.LogRecord) -> T:
        """Return what the sender needs of *record*."""
        raise NotImplementedError

    def _entry(self, item: T, now: float) -> E:
        """Return what the buffer keeps of an encoded record, arrived at loop time *now*."""
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
        loop = asyncio.get_running_loop()
        now = loop.time()
        buffer = self._buffer
        for n, record in enumerate(records, 1):
            if not n % YIELD_EVERY:
                await asyncio.sleep(0)  # encoding runs on the loop: let it breathe
            try:
                item = self.encode(record)
            except Exception:  # noqa: BLE001 - one bad record must not cost the others
                report_error(self, record)
                continue
            if len(buffer) >= self.buffer_size:
                self.dropped += 1
                continue
            buffer.append(self._entry(item, now))
        self._ensure_sender(loop)
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is buffered, then release the client.

        Bounded by the handler's *timeout* and by ``stop(timeout)``. Records
        that could not be sent stay buffered for the next start and are
        reported on stderr.
        """
        loop = asyncio.get_running_loop()
        if self._buffer:
            # Left from an earlier run, with nothing logged since: send it now.
            self._ensure_sender(loop)
        sender = self._sender
        if sender is not None and not sender.done():
            self._closing = True
            self._begin_close(loop)
            self._wake.set()
            self._closed.set()
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
        )
        try:
            return self.encode(record)
        except Exception:  # noqa: BLE001 - the count stays and goes with the next send
            return None

    def _begin_close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note that closing starts now (for a subclass that bounds the final send)."""

    def _ensure_sender(self, loop: asyncio.AbstractEventLoop) -> None:
        sender = self._sender
        if sender is not None and not sender.done() and sender.get_loop() is loop:
            return
        if sender is None or sender.get_loop() is not loop:
            self._on_new_loop()
            # Events bind to the loop that first waits on them.
            self._wake = asyncio.Event()
            self._closed = asyncio.Event()
        self._closed.clear()
        self._sender = loop.create_task(self._run(), name=f"aioqlog-{self!r}")
