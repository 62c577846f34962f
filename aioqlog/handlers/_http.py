"""``AsyncHTTPHandler``: ship records in batches over HTTP(S), retrying through outages.

Data path: ``aemit_batch`` encodes each record (in its log call's context)
into one line of JSON and appends it to a bounded buffer; a sender task on
the loop takes up to *batch_size* lines once that many are waiting or the
oldest has waited *batch_age* seconds, renders the request body (NDJSON, a
Loki push or an Elasticsearch bulk body), and POSTs it. A failed request is
retried with exponential backoff and jitter while the buffer keeps
accepting records; what does not fit is dropped, counted, and reported in
the next batch that gets through, like the queue's own summaries.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import asyncio
import base64
import gzip as _gzip
import io
import json
import logging
import random
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from .._async_handler import AsyncHandler
from .._lifecycle import write_stderr

if TYPE_CHECKING:
    import ssl as _ssl

    import aiohttp

__all__ = ["AsyncHTTPHandler"]

Body = Literal["ndjson", "loki", "elasticsearch"]
_BODIES = ("ndjson", "loki", "elasticsearch")
_CONTENT_TYPES = {
    "ndjson": "application/x-ndjson",
    "loki": "application/json",
    "elasticsearch": "application/x-ndjson",
}
#: Statuses worth retrying: the server may answer differently later.
_RETRY_STATUSES = frozenset({408, 425, 429})

#: Records encoded between two yields to the loop (a fraction of a millisecond).
_YIELD_EVERY = 16

# A buffered record: (loop time it arrived, its creation time in ns, its JSON line).
_Line = tuple[float, int, str]


class _Rejected(Exception):
    """The server refused the batch for good (a 4xx other than 408/425/429)."""


def _positive(owner: str, name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{owner} {name} must be {what}, got {value!r}")


class AsyncHTTPHandler(AsyncHandler):
    """Send records to an HTTP endpoint in batches, retrying through outages.

    Needs ``aiohttp`` (``pip install aioqlog[http]``), imported when the
    handler is created. Serve it with a ``QueueListener``; ``stop()`` sends what is buffered
    (awaiting ``aclose()``) and closes the client.

    Each record becomes one JSON object: by default ``time`` (ISO 8601, UTC),
    ``level``, ``logger`` and ``message`` (the handler's formatter output,
    traceback included); pass *mapping* to choose the fields yourself.

    Args:
        url: ``http://`` or ``https://`` URL to send to.
        level: The handler's level.
        method: The HTTP method (``POST`` by default).
        headers: Extra request headers (an API key, a tenant id).
        auth: ``(user, password)`` for HTTP basic authentication.
        ssl: An ``ssl.SSLContext`` for HTTPS (a private CA, client
            certificates), or ``False`` to skip certificate checks.
        body: ``"ndjson"`` (one JSON object per line), ``"loki"`` (a Loki
            push: one stream with *labels*, each line a JSON object) or
            ``"elasticsearch"`` (a bulk body of ``index`` actions).
        mapping: ``mapping(record) -> dict`` of the fields to send; it must
            return something ``json.dumps`` accepts (``default=str`` is used).
        labels: The Loki stream labels (``body="loki"``); default
            ``{"source": "aioqlog"}``.
        gzip: Compress request bodies (``Content-Encoding: gzip``).
        batch_size: Send once this many records wait.
        batch_age: Send once the oldest waiting record is this many seconds old.
        request_timeout: Seconds allowed per request, connection included.
        retry_budget: Seconds an outage may last before the records waiting
            for it are dropped (counted and reported); new records start over.
        backoff: First retry delay in seconds; each retry doubles it (up to
            *backoff_max*), with random jitter of up to half of it.
        backoff_max: Longest delay between retries.
        buffer_size: The most records held while waiting or retrying; more
            are dropped, counted and reported.
        timeout: As for every ``AsyncHandler``: a bound on each call
            (including ``aclose``, the final send).

    Attributes:
        sent: Records the server accepted.
        dropped: Records dropped: the buffer was full, the outage outlasted
            *retry_budget*, or the server rejected their batch.
        retries: Requests that were retried.

    Example:
        >>> handler = AsyncHTTPHandler(  # doctest: +SKIP
        ...     "https://logs.example.com/ingest", headers={"Authorization": "Bearer ..."}
        ... )
        >>> listener = QueueListener(queue, handler)  # doctest: +SKIP

    Added in version 0.1.0.
    """

    def __init__(
        self,
        url: str,
        *,
        level: int = logging.NOTSET,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        body: Body = "ndjson",
        mapping: Callable[[logging.LogRecord], Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
        gzip: bool = False,
        batch_size: int = 500,
        batch_age: float = 1.0,
        request_timeout: float = 10.0,
        retry_budget: float = 60.0,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        buffer_size: int = 10_000,
        timeout: float | None = None,
    ) -> None:
        super().__init__(level, timeout=timeout)
        owner = type(self).__qualname__
        try:
            _aiohttp()  # here, at set-up: importing it takes the loop for a while
        except ImportError:
            raise ImportError(f"{owner} needs aiohttp: pip install 'aioqlog[http]'") from None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{owner} url must be an http:// or https:// URL, got {url!r}")
        if body not in _BODIES:
            raise ValueError(f"{owner} body must be one of {', '.join(_BODIES)}, got {body!r}")
        if mapping is not None and not callable(mapping):
            raise TypeError(f"{owner} mapping must be a callable taking a record, got {mapping!r}")
        if auth is not None and not (
            isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
        ):
            raise TypeError(f"{owner} auth must be a (user, password) tuple of str")
        _positive(owner, "batch_size", batch_size, integer=True)
        _positive(owner, "buffer_size", buffer_size, integer=True)
        for name, value in (
            ("batch_age", batch_age),
            ("request_timeout", request_timeout),
            ("retry_budget", retry_budget),
            ("backoff", backoff),
            ("backoff_max", backoff_max),
        ):
            _positive(owner, name, value)
        if buffer_size < batch_size:
            raise ValueError(
                f"{owner} buffer_size ({buffer_size}) must be at least batch_size ({batch_size})"
            )
        self.url = url
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.auth = auth
        self.ssl = ssl
        self.body: Body = body
        self.mapping = mapping
        self.labels = dict(labels or {"source": "aioqlog"})
        self.gzip = gzip
        self.batch_size = batch_size
        self.batch_age = batch_age
        self.request_timeout = request_timeout
        self.retry_budget = retry_budget
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.buffer_size = buffer_size
        self.sent = 0
        self.dropped = 0
        self.retries = 0
        self._dropped_reported = 0
        self._buffer: deque[_Line] = deque()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._sender: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._outage_since: float | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} ({logging.getLevelName(self.level)})>"

    @property
    def pending(self) -> int:
        """Records buffered: waiting for their batch, or for a retry."""
        return len(self._buffer)

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
                line = self.encode(record)
            except Exception:  # noqa: BLE001 - one bad record must not cost the others
                self.handleError(record)
                continue
            if len(buffer) >= self.buffer_size:
                self.dropped += 1
                continue
            buffer.append((now, int(record.created * 1e9), line))
        self._ensure_sender(loop)
        assert self._wake is not None
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is buffered (retrying within the budget), then close the client.

        Bounded by the handler's *timeout* and by ``stop(timeout)``. Records
        that could not be sent by then stay buffered for the next start and
        are reported on stderr.
        """
        sender = self._sender
        if sender is not None and not sender.done():
            self._closing = True
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
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self._buffer:
            write_stderr(
                f"{self!r}: {len(self._buffer)} records not sent yet; they are kept for "
                f"the next start of the listener"
            )

    # ------------------------------------------------------------------ encoding

    def encode(self, record: logging.LogRecord) -> str:
        """Return *record* as one line of JSON (override to change the encoding)."""
        if self.mapping is not None:
            fields = self.mapping(record)
        else:
            fields = {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname,
                "logger": record.name,
                "message": self.format(record),
            }
        return json.dumps(fields, default=str, ensure_ascii=False)

    def render(self, lines: Sequence[tuple[int, str]]) -> bytes:
        """Return the request body for *lines* (each ``(created_ns, json_line)``)."""
        if self.body == "loki":
            payload = {
                "streams": [
                    {
                        "stream": self.labels,
                        "values": [[str(ns), line] for ns, line in lines],
                    }
                ]
            }
            data = json.dumps(payload, ensure_ascii=False)
        elif self.body == "elasticsearch":
            data = "".join(f'{{"index":{{}}}}\n{line}\n' for _, line in lines)
        else:
            data = "".join(f"{line}\n" for _, line in lines)
        raw = data.encode("utf-8", "surrogatepass")
        return _gzip.compress(raw) if self.gzip else raw

    # ------------------------------------------------------------------ sending

    def _ensure_sender(self, loop: asyncio.AbstractEventLoop) -> None:
        sender = self._sender
        if sender is not None and not sender.done() and sender.get_loop() is loop:
            return
        if self._session is not None and self._session_loop is not loop:
            self._session = None  # made on an earlier loop, now gone
        self._wake = asyncio.Event()
        self._sender = loop.create_task(self._run(), name=f"aioqlog-http-{self.url}")

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            await self._deliver(batch)

    async def _next_batch(self) -> list[_Line] | None:
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
        return [buffer[i] for i in range(min(self.batch_size, len(buffer)))]

    def _summary_line(self) -> tuple[int, str] | None:
        """Encode a WARNING about unreported drops, or return None if there are none."""
        unreported = self.dropped - self._dropped_reported
        if not unreported:
            return None
        record = logging.getLogRecordFactory()(
            "aioqlog",
            logging.WARNING,
            __file__,
            0,
            "aioqlog dropped %d records for %s: its buffer was full, the server was "
            "unreachable for longer than retry_budget=%ss, or it rejected them",
            (unreported, self.url, self.retry_budget),
            None,
            "AsyncHTTPHandler",
        )
        try:
            return int(record.created * 1e9), self.encode(record)
        except Exception:  # noqa: BLE001
            return None

    async def _deliver(self, batch: list[_Line]) -> None:
        """Send *batch*, retrying within the budget; then take it off the buffer."""
        loop = asyncio.get_running_loop()
        lines = [(ns, line) for _, ns, line in batch]
        summary = self._summary_line()
        reported = self.dropped
        if summary is not None:
            lines.insert(0, summary)
        try:
            data = self.render(lines)
        except Exception:  # noqa: BLE001
            self._give_up(len(batch), "could not be encoded")
            return
        attempt = 0
        while True:
            try:
                await self._post(data)
            except _Rejected:
                self._give_up(len(batch), "were rejected")
                return
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, _client_errors()):
                if self._outage_since is None:
                    self._outage_since = loop.time()
                    self._report(len(batch), "could not be sent; retrying")
                if loop.time() - self._outage_since >= self.retry_budget:
                    # The outage outlasted the budget: drop what waits for it.
                    self._outage_since = None
                    self._give_up(len(self._buffer), "were dropped: retry_budget ran out")
                    return
                delay = min(self.backoff_max, self.backoff * 2**attempt)
                attempt += 1
                self.retries += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter
                continue
            except Exception:  # noqa: BLE001 - a bug in a hook: report, do not retry forever
                self._give_up(len(batch), "could not be sent")
                return
            break
        self._outage_since = None
        self._dropped_reported = max(self._dropped_reported, reported)
        for _ in batch:
            self._buffer.popleft()
        self.sent += len(batch)

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
            "AsyncHTTPHandler",
        )
        try:
            self.handleError(record)
        except Exception:  # noqa: BLE001 - reporting must not stop the sender
            pass

    async def _post(self, data: bytes) -> None:
        session = await self._client()
        aiohttp = _aiohttp()
        headers = {"Content-Type": _CONTENT_TYPES[self.body], **self.headers}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        if self.auth is not None:
            user, password = self.auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        async with session.request(
            self.method,
            self.url,
            data=io.BytesIO(data),  # streamed: a large body must not be written in one go
            headers=headers,
            ssl=True if self.ssl is None else self.ssl,
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
        ) as response:
            # Not response.text(): guessing a charset imports a detector on the loop.
            text = (await response.read()).decode("utf-8", "replace")
            status = response.status
        if 200 <= status < 300:
            return
        if status >= 500 or status in _RETRY_STATUSES:
            raise OSError(f"HTTP {status} from {self.url}: {text[:200]}")
        raise _Rejected(f"HTTP {status} from {self.url}: {text[:200]}")

    async def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = _aiohttp().ClientSession()
            self._session_loop = asyncio.get_running_loop()
        return session


def _aiohttp() -> Any:
    """Import aiohttp: an optional extra, imported when a handler is created."""
    import aiohttp  # noqa: PLC0415

    return aiohttp


def _client_errors() -> type[Exception]:
    """Return aiohttp's base client error (or OSError before aiohttp is imported)."""
    aiohttp = sys.modules.get("aiohttp")
    errors: type[Exception] = OSError if aiohttp is None else aiohttp.ClientError
    return errors
