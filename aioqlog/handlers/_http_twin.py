"""``HTTPHandler``: ``logging.handlers.HTTPHandler``'s requests, sent from the loop.

A drop-in twin of the stdlib handler: the same constructor, the same
overridable ``mapLogRecord``, and the same request for each record (method,
path, query or form body, ``Authorization``), so the receiving side stays as
it is. What differs is how it is sent: from the event loop over a kept-alive
connection, through ``BatchSender``'s bounded buffer, retries, counted drops
and bounded close, one record per request.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._base import BatchSender
from ._http import Session, basic_auth, client_library, request

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["HTTPHandler"]


class HTTPHandler(BatchSender[str]):
    """Send each record as ``logging.handlers.HTTPHandler`` does, without blocking the loop.

    Change ``logging.handlers.HTTPHandler`` to ``aioqlog.handlers.HTTPHandler``
    and serve it with a ``QueueListener``: the server receives the same
    requests. Each record is ``mapLogRecord(record)`` (by default the
    record's ``__dict__``), URL-encoded: the query string of a GET, or the
    form body (``application/x-www-form-urlencoded``) of a POST, with basic
    authentication when *credentials* are given. Needs ``httpx``
    (``pip install aioqlog[http]``), imported when the handler is created;
    runs on asyncio, uvloop and trio.

    Unlike the stdlib handler, which tries each record once and hands a
    failure to ``handleError``, it retries a refused or dropped connection, a
    timeout and a 5xx, 408, 425 or 429 answer with backoff for up to
    *retry_budget* seconds, buffering up to *buffer_size* records meanwhile;
    a 4xx answer drops the record. Every drop is counted in ``dropped`` and
    reported, first to ``handleError``, then in a WARNING record sent ahead
    of the next record that gets through. A 1xx, 2xx or 3xx answer counts as
    delivered, as any answer does for the stdlib handler.

    Args:
        host: ``"host"`` or ``"host:port"``.
        url: The path (with a query string, if any) to send to.
        method: ``"GET"`` or ``"POST"``.
        secure: Use HTTPS.
        credentials: ``(user, password)`` for basic authentication.
        context: An ``ssl.SSLContext`` for HTTPS (only with *secure*).
        level: The handler's level.
        request_timeout: Seconds allowed per request, connection included.
        retry_budget: Seconds an outage may last before the records waiting
            for it are dropped (counted and reported).
        backoff: First retry delay in seconds; doubles up to *backoff_max*,
            with jitter.
        backoff_max: Longest delay between retries.
        buffer_size: The most records held while retrying; more are dropped,
            counted and reported.
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps retrying a
            failing server before it leaves the rest buffered.
        timeout: As for every ``AsyncHandler``: a bound on each call.

    Attributes:
        sent: Records the server answered.
        dropped: Records dropped (buffer full, outage past the budget, or a
            4xx answer).
        retries: Requests that were retried.

    Example:
        >>> handler = HTTPHandler("logs.example.com", "/log", method="POST")  # doctest: +SKIP

    ``mapLogRecord`` and the URL encoding run in a thread of the handler's
    own, not on the loop, in the log call's context.

    Added in version 0.1.0.
    """

    encode_in_thread = True

    def __init__(  # noqa: PLR0917 - the stdlib's positional parameters
        self,
        host: str,
        url: str,
        method: str = "GET",
        secure: bool = False,
        credentials: tuple[str, str] | None = None,
        context: _ssl.SSLContext | None = None,
        *,
        level: int = logging.NOTSET,
        request_timeout: float = 10.0,
        retry_budget: float = 60.0,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        buffer_size: int = 10_000,
        close_budget: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        # The stdlib's checks, with its messages: a dictConfig entry that it
        # refuses is refused the same way.
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError("method must be GET or POST")
        if not secure and context is not None:
            raise ValueError("context parameter only makes sense with secure=True")
        super().__init__(
            level=level,
            timeout=timeout,
            batch_size=1,  # one request per record, as the stdlib sends
            batch_age=1.0,  # (unused: a batch of one is always full)
            retry_budget=retry_budget,
            backoff=backoff,
            backoff_max=backoff_max,
            buffer_size=buffer_size,
            close_budget=close_budget,
        )
        self.retryable = client_library(type(self).__qualname__, request_timeout)
        self.host = host
        self.url = url
        self.method = method
        self.secure = secure
        self.credentials = credentials
        self.context = context
        self.request_timeout = request_timeout
        verify = (context if context is not None else True) if secure else False
        self._session = Session(verify=verify, off_loop=self.off_loop)

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.method} {scheme}://{self.host}{self.url} ({level})>"

    def mapLogRecord(self, record: logging.LogRecord) -> Mapping[str, Any]:
        """Return the fields to send for *record*: its ``__dict__`` (override to choose)."""
        return record.__dict__

    def encode(self, record: logging.LogRecord) -> str:
        """Return *record* URL-encoded, as the stdlib handler encodes it."""
        return urllib.parse.urlencode(self.mapLogRecord(record))

    async def aclose_client(self) -> None:
        """Close the HTTP client; a later start opens a new one."""
        await self._session.close()

    async def send(self, items: list[str], batch_id: str) -> None:
        """Send each of *items* (a record, after any drop summary) in a request of its own."""
        await self.send_each(items, batch_id, self._send_one)

    async def _send_one(self, data: str) -> None:
        """Send one URL-encoded record as the stdlib's ``HTTPHandler.emit`` does."""
        url = self.url
        headers: dict[str, str] = {}
        body: bytes | None = None
        if self.method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{data}"
        else:
            headers["Content-type"] = "application/x-www-form-urlencoded"
            headers["Content-length"] = str(len(data))
            body = data.encode("utf-8")
        if self.credentials:
            headers["Authorization"] = basic_auth(*self.credentials)
        scheme = "https" if self.secure else "http"
        await request(
            await self._session.get(),
            self.method,
            f"{scheme}://{self.host}{url}",
            data=body,
            headers=headers,
            seconds=self.request_timeout,
            shown=f"{scheme}://{self.host}{self.url}",
            accept=lambda status: status < 400,
        )
