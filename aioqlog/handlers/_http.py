"""``AsyncHTTPHandler``: ship records in batches over HTTP(S), retrying through outages.

Each record is encoded (in its log call's context) into one line of JSON; the
batching, the retries and the drop accounting are ``BatchSender``'s. A batch
is rendered as NDJSON, a Loki push or an Elasticsearch bulk body, optionally
gzip-compressed, and POSTed with httpx.

One client on every backend: httpx runs on anyio, so on asyncio, uvloop and
trio alike, and this module never hands the client to the user, so nothing
else ties the handler to one library (aiohttp, its client before, runs on
asyncio only).
"""

from __future__ import annotations

import base64
import gzip as _gzip
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import anyio

from .._backend import loop_runs_here, running_loop
from .._diagnostics import check_positive
from ._base import BatchSender, Rejected, sending

if TYPE_CHECKING:
    import ssl as _ssl

    import httpx

__all__ = ["AsyncHTTPHandler", "Session", "basic_auth", "client_library", "request"]

Body = Literal["ndjson", "loki", "elasticsearch", "otlp"]
_BODIES = ("ndjson", "loki", "elasticsearch", "otlp")
_CONTENT_TYPES = {
    "ndjson": "application/x-ndjson",
    "loki": "application/json",
    "elasticsearch": "application/x-ndjson",
    "otlp": "application/json",
}
#: One encoder for every record: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
#: The loggers httpx and httpcore log each request to (a logger's filters
#: see only what is logged to that very logger, not to its children).
_CLIENT_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.connection_pool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
#: A code point UTF-8 cannot encode: half of a surrogate pair, alone.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: Statuses worth retrying: the server may answer differently later.
_RETRY_STATUSES = frozenset({408, 425, 429})

# An encoded record: (its creation time in ns, its JSON line).
_Line = tuple[int, str]


class AsyncHTTPHandler(BatchSender[_Line]):
    """Send records to an HTTP endpoint in batches, retrying through outages.

    Needs ``httpx`` (``pip install aioqlog[http]``), imported when the
    handler is created; runs on asyncio, uvloop and trio. Serve it with a
    ``QueueListener``; ``stop()`` sends what is buffered (awaiting
    ``aclose()``) and closes the client.

    Each record becomes one JSON object: by default ``time`` (ISO 8601, UTC),
    ``level``, ``logger`` and ``message`` (the handler's formatter output,
    traceback included); pass *mapping* to choose the fields yourself.

    Delivery is at least once: a request cut off after the server may have
    taken it (``asyncio.run`` ending without ``stop()`` cancels it) is sent
    again. Every request carries an ``Idempotency-Key`` header, a UUID that
    is the same on each attempt to send the same batch, with the same body:
    a collector that drops a key it has seen stores each record once.

    Args:
        url: ``http://`` or ``https://`` URL to send to. Credentials in it
            (``https://user:password@host/``) are sent as basic
            authentication, like *auth*, and shown nowhere: the ``url``
            attribute, ``repr()`` and every report leave them out.
        level: The handler's level.
        method: The HTTP method (``POST`` by default).
        headers: Extra request headers (an API key, a tenant id).
        auth: ``(user, password)`` for HTTP basic authentication.
        ssl: An ``ssl.SSLContext`` for HTTPS (a private CA, client
            certificates), or ``False`` to skip certificate checks.
        body: ``"ndjson"`` (one JSON object per line), ``"loki"`` (a Loki
            push: one stream with *labels*, each line a JSON object) or
            ``"elasticsearch"`` (a bulk body of ``index`` actions), or
            ``"otlp"`` (an OpenTelemetry ``ExportLogsServiceRequest`` in OTLP's
            JSON encoding, for an OTLP/HTTP receiver's ``/v1/logs``: see
            ``encode_otlp``).
        mapping: ``mapping(record) -> dict`` of the fields to send; it must
            return something ``json.dumps`` accepts (``default=str`` is used).
        labels: The Loki stream labels (``body="loki"``); default
            ``{"source": "aioqlog"}``.
        resource: The OTLP resource attributes (``body="otlp"``), such as
            ``{"service.name": "checkout"}``; default
            ``{"service.name": "unknown_service"}``.
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
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps retrying a
            failing collector before it leaves the rest buffered; ``0`` makes
            one last attempt.
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

    Records are encoded, and batches rendered, in a thread of the handler's
    own (started at the first record, stopped by ``aclose()``), not on the
    loop: the formatter, *mapping* and ``encode`` run there, in the log
    call's context; filters run on the loop, as for every ``AsyncHandler``.

    Added in version 0.1.0.
    """

    encode_in_thread = True

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
        resource: Mapping[str, object] | None = None,
        gzip: bool = False,
        batch_size: int = 500,
        batch_age: float = 1.0,
        request_timeout: float = 10.0,
        retry_budget: float = 60.0,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        buffer_size: int = 10_000,
        close_budget: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            level=level,
            timeout=timeout,
            batch_size=batch_size,
            batch_age=batch_age,
            retry_budget=retry_budget,
            backoff=backoff,
            backoff_max=backoff_max,
            buffer_size=buffer_size,
            close_budget=close_budget,
        )
        owner = type(self).__qualname__
        self.retryable = client_library(owner, request_timeout)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            shown = _redact(url) if isinstance(url, str) else url
            raise ValueError(f"{owner} url must be an http:// or https:// URL, got {shown!r}")
        if body not in _BODIES:
            raise ValueError(f"{owner} body must be one of {', '.join(_BODIES)}, got {body!r}")
        if mapping is not None and not callable(mapping):
            raise TypeError(f"{owner} mapping must be a callable taking a record, got {mapping!r}")
        if auth is not None and not (
            isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
        ):
            raise TypeError(f"{owner} auth must be a (user, password) tuple of str")
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            if auth is not None:
                raise ValueError(
                    f"{owner}: give the credentials in the url or in auth, not both "
                    f"(url {_redact(url)!r})"
                )
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
            url = _with_userinfo(parts, "")
        #: Where records go, without credentials (they travel as basic auth).
        self.url = url
        self._shown_url = _redact_parts(parts)
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.auth = auth
        self.ssl = ssl
        self.body: Body = body
        self.mapping = mapping
        self.labels = dict(labels or {"source": "aioqlog"})
        self.resource = dict(resource or {"service.name": "unknown_service"})
        self.gzip = gzip
        self.request_timeout = request_timeout
        self._session = Session(verify=True if ssl is None else ssl, off_loop=self.off_loop)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._shown_url} ({logging.getLevelName(self.level)})>"

    async def aclose_client(self) -> None:
        """Close the HTTP client; a later start opens a new one."""
        await self._session.close()

    # ------------------------------------------------------------------ encoding

    def encode(self, record: logging.LogRecord) -> _Line:
        """Return *record* as ``(created_ns, json_line)`` (override to change the encoding)."""
        if self.body == "otlp":
            return self.encode_otlp(record)
        if self.mapping is not None:
            fields = self.mapping(record)
        else:
            fields = {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname,
                "logger": record.name,
                "message": self.format(record),
            }
        return int(record.created * 1e9), _JSON.encode(fields)

    def encode_otlp(self, record: logging.LogRecord) -> _Line:
        """Return *record* as one OTLP ``LogRecord`` (JSON encoding), with its scope.

        The fields: ``timeUnixNano`` (the log call's time),
        ``observedTimeUnixNano`` (now), ``severityNumber`` and
        ``severityText``, ``body`` (the handler's formatter output),
        ``attributes`` (``code.filepath``, ``code.function``, ``code.lineno``,
        ``thread.id``, ``thread.name``, and for an exception
        ``exception.type``, ``exception.message`` and
        ``exception.stacktrace``, plus *mapping*'s fields when given), and the
        ``traceId`` and ``spanId`` of the span active at the log call (read
        with ``opentelemetry-api``, when installed: records are encoded in
        their log call's context). The scope is the logger's name.
        """
        created = int(record.created * 1e9)
        attributes: dict[str, object] = {
            "code.filepath": record.pathname,
            "code.function": record.funcName,
            "code.lineno": record.lineno,
            "thread.id": record.thread,
            "thread.name": record.threadName,
        }
        if record.exc_info and record.exc_info[0] is not None:
            attributes["exception.type"] = record.exc_info[0].__name__
            attributes["exception.message"] = str(record.exc_info[1])
            attributes["exception.stacktrace"] = logging.Formatter().formatException(
                record.exc_info
            )
        if self.mapping is not None:
            attributes.update(self.mapping(record))
        entry: dict[str, object] = {
            "timeUnixNano": str(created),
            "observedTimeUnixNano": str(time.time_ns()),
            "severityNumber": otlp_severity(record.levelno),
            "severityText": record.levelname,
            "body": {"stringValue": self.format(record)},
            "attributes": otlp_attributes(attributes),
        }
        span = _current_span_ids()
        if span is not None:
            entry["traceId"], entry["spanId"], entry["flags"] = span
        # The scope (the logger's name) rides before a tab, which JSON never
        # holds unescaped: render() groups records by it.
        return created, f"{_JSON.encode(record.name)}\t{_JSON.encode(entry)}"

    def render(self, lines: Sequence[tuple[int, str]]) -> bytes:
        """Return the request body for *lines* (each ``(created_ns, json_line)``)."""
        if self.body == "otlp":
            return self._finish(self._render_otlp(lines))
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
        return self._finish(data)

    def _finish(self, data: str) -> bytes:
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (a file name that os.fsdecode() could not
            # decode, say) has no UTF-8: JSON's escape for it keeps the body
            # valid, and decodes to the same text. (Surrogates appear only in
            # JSON strings: the rest of a body is ASCII.)
            raw = _LONE_SURROGATE.sub(_json_escape, data).encode("utf-8")
        return _gzip.compress(raw) if self.gzip else raw

    def _render_otlp(self, lines: Sequence[tuple[int, str]]) -> str:
        scopes: dict[str, list[str]] = {}
        for _, line in lines:
            scope, entry = line.split("\t", 1)
            scopes.setdefault(scope, []).append(entry)
        scope_logs = ",".join(
            f'{{"scope":{{"name":{scope}}},"logRecords":[{",".join(entries)}]}}'
            for scope, entries in scopes.items()
        )
        resource = _JSON.encode({"attributes": otlp_attributes(self.resource)})
        return f'{{"resourceLogs":[{{"resource":{resource},"scopeLogs":[{scope_logs}]}}]}}'

    # ------------------------------------------------------------------ sending

    async def send(self, items: list[_Line], batch_id: str) -> None:
        """Render *items* into one request body and send it, with *batch_id* as its key."""
        # In the encoding thread: joining (and compressing) a batch's lines
        # is the longest stretch of work a send would do on the loop.
        await self._post(await self.off_loop(lambda: self.render(items)), batch_id)

    async def _post(self, data: bytes, batch_id: str) -> None:
        headers = {
            "Content-Type": _CONTENT_TYPES[self.body],
            "Idempotency-Key": batch_id,  # the same on every retry of this batch
            **self.headers,
        }
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        if self.auth is not None:
            headers["Authorization"] = basic_auth(*self.auth)
        await request(
            await self._session.get(),
            self.method,
            self.url,
            data=data,
            headers=headers,
            seconds=self.request_timeout,
        )


class Session:
    """An httpx client for each loop it runs on.

    One per loop: its connections belong to the loop that opened them. The
    first is made with the session, at set-up (unless a loop runs in this
    thread then): making one imports some 160 modules and loads the system's
    CAs, and in a thread beside a serving loop that holds the GIL for
    milliseconds at a time. Later ones are made when first needed, off the loop.

    Args:
        verify: ``True`` to check servers' certificates against the system's
            CAs, an ``ssl.SSLContext`` of the caller's, or ``False``.
        off_loop: Runs a function in a thread and returns its result (the
            handler's ``off_loop``): loading the system's CAs takes a while.
    """

    def __init__(
        self,
        *,
        verify: _ssl.SSLContext | bool,
        off_loop: Callable[[Callable[[], httpx.AsyncClient]], Awaitable[httpx.AsyncClient]],
    ) -> None:
        self.verify = verify
        self._off_loop = off_loop
        self._client: httpx.AsyncClient | None = None
        self._loop: object = None
        #: Made at set-up, for the first loop that asks (see the class doc).
        self._first = None if loop_runs_here() else self._make()

    async def get(self) -> httpx.AsyncClient:
        """Return the client for the running loop, making one if needed."""
        client = self._client
        loop = running_loop()
        if client is None or client.is_closed or self._loop is not loop:
            # (One made on an earlier loop, now gone, is left for the collector.)
            first, self._first = self._first, None
            client = first if first is not None else await self._off_loop(self._make)
            self._client = client
            self._loop = loop
        return client

    def _make(self) -> httpx.AsyncClient:
        # trust_env=False: no proxy or CA file from the environment, as before.
        client: httpx.AsyncClient = _httpx().AsyncClient(verify=self.verify, trust_env=False)
        return client

    async def close(self) -> None:
        """Close the client; a later ``get()`` makes a new one."""
        client, self._client = self._client, None
        if client is not None and self._loop is running_loop():
            await client.aclose()


def basic_auth(user: str, password: str) -> str:
    """Return the ``Authorization`` header value for HTTP basic authentication."""
    token = base64.b64encode(f"{user}:{password}".encode()).strip().decode("ascii")
    return f"Basic {token}"


def client_library(owner: str, request_timeout: float) -> tuple[type[BaseException], ...]:
    """Import httpx for an HTTP handler, check its *request_timeout*; return what to retry.

    At set-up, not on the loop: importing httpx takes a while. The errors
    worth a retry: a connection refused or reset, no answer in time, a peer
    that does not speak HTTP (httpx's ``TransportError``), and ``OSError``
    (``request`` raises it for an answer worth a retry).
    """
    try:
        httpx = _httpx()
    except ImportError:
        raise ImportError(f"{owner} needs httpx: pip install 'aioqlog[http]'") from None
    check_positive(owner, "request_timeout", request_timeout)
    for name in _CLIENT_LOGGERS:
        client_logger = logging.getLogger(name)
        if _not_while_sending not in client_logger.filters:
            client_logger.addFilter(_not_while_sending)
    return (OSError, TimeoutError, httpx.TransportError)


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    data: bytes | None,
    headers: Mapping[str, str],
    seconds: float,
    shown: str | None = None,
    accept: Callable[[int], bool] = lambda status: 200 <= status < 300,
) -> None:
    """Send one request; raise OSError (retry) or ``Rejected`` (drop) unless accepted.

    *seconds* bound the whole request, connection included (TimeoutError).
    A 5xx, 408, 425 or 429 answer is worth a retry: the server may answer
    differently later. Errors name the URL as *shown* (without credentials).
    """
    with anyio.fail_after(seconds):
        # httpx's own timeouts (5 s per phase by default) get the same bound:
        # *seconds* is the request's, whatever it is.
        response = await client.request(method, url, content=data, headers=headers, timeout=seconds)
    # Not response.text: guessing a charset may import a detector on the loop.
    text = response.content.decode("utf-8", "replace")
    status = response.status_code
    if accept(status):
        return
    where = shown if shown is not None else url
    if status >= 500 or status in _RETRY_STATUSES:
        raise OSError(f"HTTP {status} from {where}: {text[:200]}")
    raise Rejected(f"HTTP {status} from {where}: {text[:200]}")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _not_while_sending(record: logging.LogRecord) -> bool:
    """Drop what httpx and httpcore log for a handler's own request (``HTTP Request: POST ...``).

    Shipped, each request's lines would go out in the next request, for ever;
    the application's own requests still log theirs.
    """
    return not sending()


def _httpx() -> Any:
    """Import httpx: an optional extra, imported when a handler is created."""
    import httpx  # noqa: PLC0415

    return httpx


def _with_userinfo(parts: SplitResult, userinfo: str) -> str:
    """Return the URL *parts* with *userinfo* (``"user:pw@"``, or ``""``) before the host."""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=userinfo + host).geturl()


def _redact_parts(parts: SplitResult) -> str:
    """Return the URL *parts* with its password (or a lone user, often a token) masked."""
    if parts.password is not None:
        return _with_userinfo(parts, f"{parts.username}:***@")
    if parts.username is not None:
        return _with_userinfo(parts, "***@")
    return parts.geturl()


def _redact(url: str) -> str:
    """Return *url* with any credentials in it masked; never raise."""
    try:
        return _redact_parts(urlsplit(url))
    except ValueError:  # not even a URL: say nothing of it
        return "<a malformed URL>"


def otlp_severity(levelno: int) -> int:
    """Return the OTLP ``SeverityNumber`` for a ``logging`` level.

    DEBUG is 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21; levels in between
    take the next numbers of their band (up to 3 more), below DEBUG is TRACE (1).
    """
    if levelno <= logging.NOTSET:
        return 0
    if levelno < logging.DEBUG:
        return 1
    band = min(levelno, logging.CRITICAL + 9) // 10  # 1 (DEBUG) .. 5 (CRITICAL)
    return (band - 1) * 4 + 5 + min(3, levelno % 10)


def otlp_attributes(values: Mapping[str, object]) -> list[dict[str, object]]:
    """Return *values* as OTLP ``KeyValue`` objects (JSON encoding)."""
    return [{"key": str(key), "value": _any_value(value)} for key, value in values.items()]


def _any_value(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # a 64-bit integer: a string in JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": otlp_attributes(value)}}
    return {"stringValue": str(value)}


def _current_span_ids() -> tuple[str, str, int] | None:
    """Return the hex trace id, span id and flags of the current span, if any."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None  # nothing imported OpenTelemetry: no span can be active
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags)
