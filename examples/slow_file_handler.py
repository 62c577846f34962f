"""A file handler that takes ~50 ms per record, like an SMTP or HTTP handler."""

from __future__ import annotations

import logging
import time


class SlowFileHandler(logging.FileHandler):
    """Write each record to a file after blocking for *latency* seconds (a network round trip)."""

    def __init__(self, filename: str, latency: float = 0.05, **kwargs: object) -> None:
        super().__init__(filename, **kwargs)  # type: ignore[arg-type]
        self.latency = latency

    def emit(self, record: logging.LogRecord) -> None:
        """Block for the latency, then write the record."""
        time.sleep(self.latency)  # what a synchronous network handler costs per record
        super().emit(record)
