"""The least a queue in front of a thread costs: a reference, not a usable design.

``BareQueue.handle`` appends the record to a deque and wakes the thread when
the deque was empty; the thread hands what it finds, as one list, to its
*deliver* function (``write_all``: format every record, then write and flush
them under the handler's lock in one call). No bound, no filters, no context,
no copy of mutable arguments, no error handling and no shutdown guarantee
(``close`` waits for the thread for ever): each is a promise aioqlog keeps and
pays for. Measured beside aioqlog in the same rounds, it shows what a queue in
front of a thread costs without those promises on the machine that runs the
benchmarks. It formats with the handler's own ``format``: aioqlog's batch path
formats a plain ``logging.Formatter``'s records to the same text in fewer
steps, which can take aioqlog's end-to-end ratios past it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: The most records the thread hands over in one call.
BATCH = 1024


class BareQueue(logging.Handler):
    """A deque and a thread that hands it over in batches (see the module docstring)."""

    def __init__(self, deliver: Callable[[list[logging.LogRecord]], None]) -> None:
        super().__init__()
        self.deliver = deliver
        self.records: deque[logging.LogRecord] = deque()
        self.bell = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self.work, name="bare-queue", daemon=True)
        self.thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue *record*; wake the thread if the queue was empty."""
        records = self.records
        records.append(record)
        if len(records) == 1:
            self.bell.set()
        return True

    def work(self) -> None:
        """The thread: hand over what is queued, a batch at a time, until closed."""
        records, bell, deliver = self.records, self.bell, self.deliver
        while True:
            bell.wait(0.1)
            bell.clear()
            while records:
                batch: list[logging.LogRecord] = []
                try:
                    while len(batch) < BATCH:
                        batch.append(records.popleft())
                except IndexError:
                    pass
                deliver(batch)
            if self.closing and not records:
                return

    def close(self) -> None:
        """Wait for the thread to hand over everything queued, then close."""
        self.closing = True
        self.bell.set()
        self.thread.join()
        super().close()


def write_all(handler: logging.StreamHandler[Any]) -> Callable[[list[logging.LogRecord]], None]:
    """Return a *deliver* that formats a batch, then writes and flushes it in one call."""
    fmt, terminator, lock = handler.format, handler.terminator, handler.lock
    assert lock is not None  # made by Handler.__init__

    def deliver(batch: list[logging.LogRecord]) -> None:
        text = "".join([fmt(record) + terminator for record in batch])
        with lock:
            handler.stream.write(text)
            handler.stream.flush()

    return deliver
