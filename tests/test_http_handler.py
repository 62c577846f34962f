"""AsyncHTTPHandler against a real aiohttp server on 127.0.0.1.

The server runs on an asyncio loop of its own, in a thread (aiohttp serves on
asyncio only), so that the tests run on asyncio, uvloop and trio. It can be
told to answer 500, to reject, to stall, to answer garbage, to stop
(connections refused) and to start again on the same port; it keeps every
request it accepted, decoded line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.client
import json
import logging
import logging.handlers
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
import trustme
from aiohttp import web
from support import STALL, bounded, in_thread, on_its_loop, run, served_in_a_thread

import aioqlog
from aioqlog.handlers import AsyncHTTPHandler


class Server:
    """A log collector: keeps each accepted request's lines; misbehaves on demand."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.raw: list[bytes] = []
        self.wire_sizes: list[int | None] = []
        self.fail_next = 0  # answer 500 to this many requests
        self.reject_next = 0  # answer 400 to this many requests
        self.stall_next = 0  # never answer this many requests
        self.delay_next = 0.0  # answer the next request after this many seconds
        self.keys: list[str] = []  # every request's Idempotency-Key, answered 2xx or not
        self.ssl_context: ssl.SSLContext | None = None  # serve HTTPS with it
        self.received = threading.Condition()
        self.port = _free_port()
        self.runner: web.AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's own
        self.stalled = threading.Event()

    async def serve(self) -> None:
        """Start serving (on the server's own loop)."""
        self.loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/ingest", self.ingest)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(
            self.runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.ssl_context
        ).start()

    async def close(self) -> None:
        """Stop serving: connections are refused (on the server's own loop)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def start(self) -> None:
        """Serve again, from a test on any backend."""
        await on_its_loop(self.loop, self.serve)

    async def stop(self) -> None:
        """Go away, from a test on any backend."""
        await on_its_loop(self.loop, self.close)

    @property
    def url(self) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}/ingest"

    async def ingest(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        if self.stall_next:
            self.stall_next -= 1
            self.stalled.set()
            await asyncio.Event().wait()  # until the client gives up
        if self.delay_next:
            delay, self.delay_next = self.delay_next, 0.0
            await asyncio.sleep(delay)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="database on fire")
        if self.reject_next:
            self.reject_next -= 1
            return web.Response(status=400, text="bad request")
        body = await request.read()
        self.raw.append(body)  # aiohttp has undone any Content-Encoding
        self.wire_sizes.append(request.content_length)
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        with self.received:
            self.headers.append(dict(request.headers))
            self.requests.append(lines)
            self.received.notify_all()
        return web.Response(text="ok")

    def lines(self) -> list[dict[str, Any]]:
        return [line for request in self.requests for line in request]

    def messages(self) -> list[str]:
        return [line["message"] for line in self.lines() if line["logger"] != "aioqlog"]

    async def wait_for_lines(self, count: int) -> None:
        """Await (in a thread of its own) *count* lines received."""

        def wait() -> bool:
            with self.received:
                return self.received.wait_for(lambda: len(self.lines()) >= count, STALL)

        assert await in_thread(wait), f"only {len(self.lines())} of {count} lines arrived"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[Server]:
    """A collector serving on a loop of its own, in a thread."""
    collector = Server()
    with served_in_a_thread(collector.serve, collector.close):
        yield collector


class Reported(AsyncHTTPHandler):
    """Keeps what handleError is given instead of printing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reported: list[str] = []
        self.news: anyio.Event | None = None  # made in a run: a handler may outlive one

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(record.getMessage())
        if self.news is not None:
            self.news.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait (bounded) until *predicate* holds, re-checked at each report."""

        async def wait() -> None:
            while not predicate():
                self.news = anyio.Event()  # anyio's events cannot be cleared: a fresh one
                await self.news.wait()

        await bounded(wait())


FAST_RETRY = {"backoff": 0.02, "backoff_max": 0.1, "request_timeout": 2.0}


def _serve(logger: logging.Logger, handler: aioqlog.AsyncHandler) -> aioqlog.QueueListener:
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    return aioqlog.QueueListener(q, handler)


@pytest.mark.anyio
async def test_records_go_in_batches_by_count(server: Server, logger: logging.Logger) -> None:
    """batch_size caps each request; stop() sends the remainder; order is kept."""
    handler = Reported(server.url, batch_size=10, batch_age=60)
    async with _serve(logger, handler):
        for i in range(25):
            logger.info("record %d", i)
        await server.wait_for_lines(20)
    assert [len(r) for r in server.requests] == [10, 10, 5]
    assert server.messages() == [f"record {i}" for i in range(25)]
    assert (handler.sent, handler.dropped, handler.reported) == (25, 0, [])
    first = server.lines()[0]
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"]) == ("INFO", logger.name)


@pytest.mark.anyio
async def test_a_partial_batch_goes_once_it_is_old_enough(
    server: Server, logger: logging.Logger
) -> None:
    """batch_age sends a batch that will not fill up, without waiting for stop()."""
    handler = Reported(server.url, batch_size=1000, batch_age=0.05)
    async with _serve(logger, handler):
        for i in range(3):
            logger.info("record %d", i)
        await server.wait_for_lines(3)
        assert server.messages() == ["record 0", "record 1", "record 2"]


@pytest.mark.anyio
async def test_gzip_headers_and_basic_auth(server: Server, logger: logging.Logger) -> None:
    """Bodies are gzip-compressed, and custom headers and basic auth are sent."""
    handler = Reported(
        server.url, gzip=True, headers={"X-Tenant": "shop"}, auth=("ops", "s3cret"), batch_age=60
    )
    async with _serve(logger, handler):
        for _ in range(50):
            logger.info("compressed")
    assert server.messages() == ["compressed"] * 50
    # What crossed the wire is gzip, far smaller than the body it decompressed to.
    (wire_size,) = server.wire_sizes
    assert wire_size is not None
    assert wire_size < len(server.raw[0]) / 5
    headers = server.headers[0]
    assert headers["Content-Encoding"] == "gzip"
    assert headers["X-Tenant"] == "shop"
    assert headers["Authorization"] == "Basic b3BzOnMzY3JldA=="
    assert headers["Content-Type"] == "application/x-ndjson"


@pytest.mark.anyio
async def test_server_errors_are_retried_and_nothing_is_lost(
    server: Server, logger: logging.Logger
) -> None:
    """Two 500s, then success: every record arrives once, the outage is reported once."""
    server.fail_next = 2
    handler = Reported(server.url, batch_age=60, **FAST_RETRY)
    async with _serve(logger, handler):
        for i in range(5):
            logger.info("record %d", i)
    assert server.messages() == [f"record {i}" for i in range(5)]
    assert handler.retries == 2
    assert handler.reported == [f"{handler!r}: a batch of 5 records could not be sent; retrying"]
    assert (handler.sent, handler.dropped) == (5, 0)


@pytest.mark.anyio
async def test_a_stalled_server_is_timed_out_and_retried(
    server: Server, logger: logging.Logger
) -> None:
    """A request that never gets an answer is cut off by request_timeout and retried."""
    server.stall_next = 1
    handler = Reported(server.url, batch_age=60, backoff=0.02, request_timeout=0.2)
    async with _serve(logger, handler):
        logger.info("patient")
    assert server.stalled.is_set()
    assert server.messages() == ["patient"]
    assert handler.retries == 1


@pytest.mark.anyio
async def test_nothing_is_lost_across_a_server_restart(
    server: Server, logger: logging.Logger
) -> None:
    """The collector goes away (connections refused) and comes back: every record arrives."""
    handler = Reported(server.url, batch_size=5, batch_age=0.02, **FAST_RETRY)
    async with _serve(logger, handler):
        logger.info("before 0")
        await server.wait_for_lines(1)
        await server.stop()
        for i in range(1, 12):
            logger.info("before %d", i)
        # Refused while it is down: wait for the report of the outage.
        await handler.until(lambda: bool(handler.reported))
        await server.start()
        await server.wait_for_lines(12)
    assert server.messages() == [f"before {i}" for i in range(12)]
    assert handler.dropped == 0
    assert handler.retries >= 1


@pytest.mark.anyio
async def test_an_outage_longer_than_the_budget_drops_counts_and_reports(
    server: Server, logger: logging.Logger
) -> None:
    """Past retry_budget the waiting records are dropped; the next batch says how many."""
    await server.stop()
    handler = Reported(server.url, batch_age=0.02, retry_budget=0.2, **FAST_RETRY)
    async with _serve(logger, handler):
        for i in range(4):
            logger.info("lost %d", i)
        await handler.until(lambda: handler.dropped >= 4)
        await server.start()
        logger.info("after")
        await server.wait_for_lines(2)
    lines = server.lines()
    assert lines[0]["logger"] == "aioqlog"
    assert lines[0]["message"].startswith(f"aioqlog dropped 4 records for <Reported {server.url}")
    assert server.messages() == ["after"]
    assert handler.reported[-1] == f"{handler!r}: a batch of 4 records were dropped: " + (
        "retry_budget ran out"
    )


@pytest.mark.anyio
async def test_a_rejected_batch_is_dropped_and_reported(
    server: Server, logger: logging.Logger
) -> None:
    """A 400 is not retried: the batch is dropped, counted and reported; the rest flows."""
    server.reject_next = 1
    handler = Reported(server.url, batch_size=2, batch_age=60, **FAST_RETRY)
    async with _serve(logger, handler):
        for i in range(4):
            logger.info("record %d", i)
    assert server.messages() == ["record 2", "record 3"]
    assert (handler.dropped, handler.retries) == (2, 0)
    assert handler.reported == [f"{handler!r}: a batch of 2 records were rejected"]
    assert server.lines()[0]["message"].startswith("aioqlog dropped 2 records")


@pytest.mark.anyio
async def test_a_full_buffer_drops_new_records_and_counts_them(
    server: Server, logger: logging.Logger
) -> None:
    """While the server stalls, the buffer holds buffer_size records; the rest are counted."""
    server.stall_next = 1
    handler = Reported(
        server.url, batch_size=5, buffer_size=5, batch_age=60, backoff=0.02, request_timeout=0.5
    )
    async with _serve(logger, handler):
        for i in range(5):
            logger.info("kept %d", i)
        assert await in_thread(lambda: server.stalled.wait(STALL))
        for i in range(3):
            logger.info("dropped %d", i)
    assert server.messages() == [f"kept {i}" for i in range(5)]
    assert handler.dropped == 3


@pytest.mark.anyio
async def test_a_record_that_fails_to_encode_is_reported_alone(
    server: Server, logger: logging.Logger
) -> None:
    """A mapping that raises for one record: handleError for it, the others are sent."""

    def mapping(record: logging.LogRecord) -> dict[str, Any]:
        if record.getMessage() == "poison":
            raise ValueError("cannot map this one")
        return {"logger": record.name, "message": record.getMessage()}

    handler = Reported(server.url, mapping=mapping, batch_age=60)
    async with _serve(logger, handler):
        for message in ("a", "poison", "b"):
            logger.info(message)
    assert server.messages() == ["a", "b"]
    assert handler.reported == ["poison"]


@pytest.mark.anyio
async def test_a_ten_megabyte_record_arrives_whole(server: Server, logger: logging.Logger) -> None:
    """A 10 MB message goes through intact, with the records around it."""
    big = "x" * (10 * 1024 * 1024)
    handler = Reported(server.url, batch_age=60)
    async with _serve(logger, handler):
        logger.info("before")
        logger.info(big)
        logger.info("after")
    assert server.messages() == ["before", big, "after"]


@pytest.mark.anyio
async def test_a_server_answering_garbage_is_an_outage(logger: logging.Logger) -> None:
    """A peer that is not HTTP: reported, retried within the budget, then dropped; no crash."""

    async def garbage(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.receive(100)
                await stream.send(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage\r\n\r\n")

    peer = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = peer.extra(anyio.abc.SocketAttribute.local_port)
    handler = Reported(
        f"http://127.0.0.1:{port}/ingest", batch_age=60, retry_budget=0.2, **FAST_RETRY
    )
    async with peer, anyio.create_task_group() as tg:
        tg.start_soon(peer.serve, garbage)
        async with _serve(logger, handler):
            logger.info("never accepted")
        tg.cancel_scope.cancel()
    assert handler.dropped == 1
    assert handler.retries >= 1
    assert handler.reported[0].endswith("could not be sent; retrying")


@pytest.mark.anyio
async def test_loki_and_elasticsearch_bodies(server: Server, logger: logging.Logger) -> None:
    """The presets shape the body as a Loki push and as an Elasticsearch bulk request."""
    loki = Reported(server.url, body="loki", labels={"app": "shop"}, batch_age=60)
    async with _serve(logger, loki):
        logger.info("to loki")
    push = json.loads(server.raw[-1])
    (stream,) = push["streams"]
    assert stream["stream"] == {"app": "shop"}
    ((ns, line),) = stream["values"]
    assert ns.isdigit()
    assert json.loads(line)["message"] == "to loki"

    elastic = Reported(server.url, body="elasticsearch", batch_age=60)
    logger.handlers.clear()
    async with _serve(logger, elastic):
        logger.info("to elastic")
    action, doc = server.raw[-1].decode().splitlines()
    assert json.loads(action) == {"index": {}}
    assert json.loads(doc)["message"] == "to elastic"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://example"}, "url must be an http:// or https:// URL"),
        ({"body": "xml"}, "body must be one of ndjson, loki, elasticsearch"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_age": -1}, "batch_age must be a positive number"),
        ({"buffer_size": 5, "batch_size": 10}, "buffer_size (5) must be at least batch_size"),
        ({"retry_budget": True}, "retry_budget must be a positive number"),
        ({"close_budget": -1}, "close_budget must be a non-negative number of seconds"),
        # Infinite durations would let a closing handler retry or wait for ever.
        ({"close_budget": float("inf")}, "close_budget must be a non-negative number of seconds"),
        ({"batch_age": float("inf")}, "batch_age must be a positive number (finite)"),
        ({"backoff_max": float("inf")}, "backoff_max must be a positive number (finite)"),
        ({"retry_budget": float("nan")}, "retry_budget must be a positive number"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(kwargs: dict[str, Any], message: str) -> None:
    """Each bad argument raises ValueError naming it."""
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:9/ingest", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AsyncHTTPHandler(**arguments)


def test_auth_and_mapping_types_are_checked() -> None:
    """auth must be a (user, password) pair and mapping a callable."""
    with pytest.raises(TypeError, match="auth must be a"):
        AsyncHTTPHandler("http://127.0.0.1:9/", auth="ops:secret")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mapping must be a callable"):
        AsyncHTTPHandler("http://127.0.0.1:9/", mapping={"a": 1})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_stop_does_not_wait_out_the_retry_budget(
    server: Server, logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """With the collector down, stop() gives up after close_budget and keeps the records."""
    await server.stop()

    handler = Reported(server.url, batch_age=60, retry_budget=600, close_budget=0.3, **FAST_RETRY)
    listener = _serve(logger, handler)
    listener.start()
    for i in range(3):
        logger.info("record %d", i)
    await bounded(listener.stop())
    assert handler.pending == 3
    assert handler.dropped == 0
    err = capfd.readouterr().err
    assert "3 records could not be sent (close_budget=0.3s)" in err
    assert "lost if the process exits before the listener is started again" in err
    # Back up and started again: they go out.
    await server.start()
    async with listener:
        pass
    assert server.messages() == [f"record {i}" for i in range(3)]


@pytest.fixture(scope="module")
def certificates() -> trustme.CA:
    """A throwaway certificate authority for 127.0.0.1."""
    return trustme.CA()


@pytest.mark.anyio
async def test_https_with_a_private_ca(certificates: trustme.CA, logger: logging.Logger) -> None:
    """Over TLS: with ssl= trusting the server's CA records arrive; without it, none do."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificates.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    certificates.configure_trust(client_ctx)
    server = Server()
    server.ssl_context = server_ctx
    with served_in_a_thread(server.serve, server.close):
        trusted = Reported(server.url, ssl=client_ctx, batch_age=60)
        async with _serve(logger, trusted):
            logger.info("secret")
        untrusted = Reported(server.url, batch_age=60, retry_budget=0.2, **FAST_RETRY)
        logger.handlers.clear()
        async with _serve(logger, untrusted):
            logger.info("exposed")
    assert server.messages() == ["secret"]
    assert (trusted.sent, untrusted.sent, untrusted.dropped) == (1, 0, 1)
    assert untrusted.reported[0].endswith("could not be sent; retrying")


@pytest.mark.anyio
async def test_a_batch_that_fails_to_render_is_dropped_and_reported(
    server: Server, logger: logging.Logger
) -> None:
    """render() raising for one batch: that batch is dropped and reported; the next goes."""

    class Picky(Reported):
        def render(self, lines: Sequence[tuple[int, str]]) -> bytes:
            if any("poison" in line for _, line in lines):
                raise ValueError("this body cannot be built")
            return super().render(lines)

    handler = Picky(server.url, batch_size=2, batch_age=60, **FAST_RETRY)
    async with _serve(logger, handler):
        for message in ("a", "poison", "b", "c"):
            logger.info(message)
    assert handler.reported == [f"{handler!r}: a batch of 2 records could not be sent"]
    assert handler.dropped == 2
    assert server.messages() == ["b", "c"]
    assert server.lines()[0]["message"].startswith("aioqlog dropped 2 records")


@pytest.mark.anyio
async def test_stop_cuts_a_backoff_short_within_close_budget(
    server: Server, logger: logging.Logger
) -> None:
    """With the collector down and close_budget=0.1, stop() does not wait out a 2 s backoff."""
    await server.stop()
    handler = Reported(server.url, batch_age=0.01, backoff=2.0, backoff_max=2.0, close_budget=0.1)
    listener = _serve(logger, handler)
    listener.start()
    logger.info("undeliverable")
    # The first attempt failed: the handler now waits 1-2 s before the next one.
    await handler.until(lambda: bool(handler.reported))
    started = time.monotonic()
    await bounded(listener.stop())
    assert time.monotonic() - started < 0.8
    assert handler.pending == 1


@pytest.mark.anyio
@pytest.mark.parametrize("body", ["ndjson", "loki", "elasticsearch", "otlp"])
@pytest.mark.parametrize("gzip", [False, True])
async def test_a_lone_surrogate_keeps_the_body_valid_utf8(
    server: Server, logger: logging.Logger, body: str, gzip: bool
) -> None:
    """A name os.fsdecode() could not decode is sent as JSON's escape: its batch still goes.

    Sent raw, the surrogate made the whole body invalid UTF-8, and a
    collector that checks (this one does) refused every record of the batch.
    """
    name = os.fsdecode(b"caf\xe9.txt")  # what os.listdir() gives for a Latin-1 file name
    handler = Reported(
        server.url,
        body=body,
        gzip=gzip,
        batch_age=60,
        close_budget=0.2,
        **FAST_RETRY,
    )
    async with _serve(logger, handler):
        logger.info("opened %s", name)
        logger.info("é and 😀 stay as they are")
    assert (handler.sent, handler.dropped, handler.reported) == (2, 0, [])
    sent = server.raw[0]
    sent.decode("utf-8")  # strict: valid UTF-8
    assert b"\\udce9" in sent
    assert "é and 😀 stay as they are".encode() in sent


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # it waits out 5.5 s: one backend
async def test_a_request_may_take_as_long_as_request_timeout(
    server: Server, logger: logging.Logger
) -> None:
    """A collector that answers in 5.5 s is not timed out with request_timeout=20.

    The HTTP client's own timeouts (5 s by default) used to cut the request
    first: it was retried, delivered several times, and never counted as sent.
    """
    server.delay_next = 5.5
    handler = Reported(server.url, batch_age=60, request_timeout=20)
    async with _serve(logger, handler):
        logger.info("slow but sure")
    assert server.messages() == ["slow but sure"]
    assert (handler.sent, handler.retries, handler.reported) == (1, 0, [])


@pytest.mark.anyio
async def test_close_budget_cuts_short_a_request_under_way(
    server: Server, logger: logging.Logger
) -> None:
    """A request waiting on a collector that never answers ends with close_budget, not later.

    request_timeout is 30 s; close_budget=0.3: stop() returns within the budget
    (give or take), and the record stays buffered for the next start.
    """
    server.stall_next = 1
    handler = Reported(server.url, batch_age=0.01, request_timeout=30, close_budget=0.3)
    listener = _serve(logger, handler)
    listener.start()
    logger.info("in flight")
    await in_thread(lambda: server.stalled.wait(STALL))
    started = time.monotonic()
    await bounded(listener.stop())
    assert time.monotonic() - started < 2.0
    assert (handler.pending, handler.sent, handler.dropped) == (1, 0, 0)
    # Started again, it goes out: the same batch, under the same key.
    async with listener:
        pass
    assert server.messages() == ["in flight"]
    assert server.keys[0] == server.keys[1]


class ThreadedCollector:
    """A collector on a loop of its own, in a thread: it outlives an ``asyncio.run``.

    It keeps each request's ``Idempotency-Key`` and messages, and holds its
    first answer back (after taking the body) until closed, so that a request
    is in flight, received, when the client's loop ends.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.requests: list[tuple[str | None, list[str]]] = []
        self.holding = threading.Event()
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._serving = served_in_a_thread(self._start, self._stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"

    async def _ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        lines = [json.loads(line)["message"] for line in body.decode().splitlines() if line]
        self.requests.append((request.headers.get("Idempotency-Key"), lines))
        if not self.holding.is_set():
            self.holding.set()
            assert self._release is not None
            await self._release.wait()
        return web.Response(text="ok")

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/ingest", self._ingest)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        assert self._release is not None
        assert self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    def __enter__(self) -> ThreadedCollector:
        self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)


def test_a_batch_cut_off_by_asyncio_run_is_resent_under_the_same_key(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], logger: logging.Logger
) -> None:
    """asyncio.run ending without stop(): every record arrives, a resent batch keeps its key."""
    with ThreadedCollector() as collector:

        async def main() -> None:
            handler = AsyncHTTPHandler(collector.url, batch_size=50, batch_age=0.01)
            _serve(logger, handler).start()

            async def produce(p: int) -> None:
                for i in range(1000):
                    logger.info("p%d-%d", p, i)
                    if not i % 10:
                        await asyncio.sleep(0)

            await asyncio.gather(*(produce(p) for p in range(3)))
            # The collector has taken a batch and not answered: stop() is forgotten.
            assert await in_thread(lambda: collector.holding.wait(STALL))

        run(main(), loop_factory)
    expected = {f"p{p}-{i}" for p in range(3) for i in range(1000)}
    received = [m for _, lines in collector.requests for m in lines]
    assert set(received) == expected
    keys: dict[str, set[str | None]] = {}
    bodies: dict[str | None, set[tuple[str, ...]]] = {}
    for key, lines in collector.requests:
        bodies.setdefault(key, set()).add(tuple(lines))
        for m in lines:
            keys.setdefault(m, set()).add(key)
    # A record that arrived twice came in one batch sent twice, whole, under one key.
    assert all(None not in k and len(k) == 1 for k in keys.values())
    assert all(len(b) == 1 for b in bodies.values())
    assert len(received) - len(expected) <= 50


@pytest.mark.anyio
async def test_records_the_handler_could_not_send_count_as_undelivered(
    server: Server, logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """Collector down: after stop(), stats.undelivered counts what the handler still holds."""
    await server.stop()
    handler = Reported(server.url, batch_age=60, close_budget=0.05, **FAST_RETRY)
    listener = _serve(logger, handler)
    listener.start()
    for i in range(7):
        logger.info("record %d", i)
    await bounded(listener.stop())
    stats = listener.stats
    assert handler.pending == 7
    assert [h.pending for h in stats.handlers] == [7]
    assert stats.undelivered == 7
    assert "kept for the next start" not in capfd.readouterr().err


SECRET = "hunter2-s3cret"


@pytest.mark.anyio
async def test_a_password_in_the_url_is_redacted_everywhere(
    server: Server, logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """user:password@ in the URL: used to log in, shown nowhere (repr, errors, stats, summary)."""
    url = server.url.replace("http://", f"http://ops:{SECRET}@")
    handler = AsyncHTTPHandler(url, batch_size=2, batch_age=60, backoff=0.02, backoff_max=0.1)
    assert SECRET not in repr(handler)
    assert "ops:***@127.0.0.1" in repr(handler)
    server.fail_next = 1  # reported through handleError, with its traceback
    server.reject_next = 1  # dropped: the next batch starts with a summary naming the handler
    listener = _serve(logger, handler)
    async with listener:
        for i in range(4):
            logger.info("record %d", i)
        assert SECRET not in listener.stats.handlers[0].name
    assert server.messages() == ["record 2", "record 3"]
    summary = server.lines()[0]["message"]
    assert summary.startswith("aioqlog dropped 2 records for <AsyncHTTPHandler http://ops:***@")
    assert not any(SECRET.encode() in body for body in server.raw)
    err = capfd.readouterr().err
    assert "HTTP 500 from http://127.0.0.1" in err  # handleError wrote the traceback
    assert SECRET not in err
    # The credentials still log in, as basic authentication.
    assert server.headers[0]["Authorization"] == "Basic b3BzOmh1bnRlcjItczNjcmV0"


def test_a_password_in_a_refused_url_is_redacted() -> None:
    """The error refusing a URL with credentials does not repeat the password."""
    with pytest.raises(ValueError, match="url must be an http") as refused:
        AsyncHTTPHandler(f"ftp://ops:{SECRET}@127.0.0.1/")
    assert SECRET not in str(refused.value)
    with pytest.raises(ValueError, match="in the url or in auth, not both") as both:
        AsyncHTTPHandler(f"http://ops:{SECRET}@127.0.0.1/", auth=("ops", SECRET))
    assert SECRET not in str(both.value)


def test_the_documented_client_filter_sample_runs(tmp_path: Path) -> None:
    """docs/handlers/http.md's sample keeping HTTP clients' records out runs as written."""
    page = (Path(__file__).parent.parent / "docs" / "handlers" / "http.md").read_text()
    (sample,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", page, re.S)
        if "not_from_an_http_client" in block
    ]
    script = tmp_path / "sample.py"
    script.write_text(sample)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=STALL, check=False
    )
    assert done.returncode == 0, done.stderr
    # The console got both lines (the sample asserts the collector got one).
    first, second = done.stderr.splitlines()
    assert first == "payment declined"
    assert second.startswith("HTTP Request: POST http://127.0.0.1:")


class RawServer:
    """An HTTP/1.1 server that keeps each request as it came: method, target, headers, body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.status = 200
        self.arrived = threading.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    @property
    def host(self) -> str:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # one kept-alive connection: request after request
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                start, *lines = head.split("\r\n")[:-2]
                method, target, _ = start.split(" ")
                headers = {k.lower(): v for k, _, v in (li.partition(": ") for li in lines)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((method, target, headers, body))
                self.arrived.set()
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % self.status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def seen(self) -> list[tuple[str, str, bytes, str | None, str | None]]:
        """Return what the stdlib twin must match: method, target, body and two headers."""
        return [
            (m, t, b, h.get("authorization"), h.get("content-type")) for m, t, h, b in self.requests
        ]


class StdlibHTTPHandler(logging.handlers.HTTPHandler):
    """The stdlib handler, closing the connections it leaves open (a ResourceWarning)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: list[http.client.HTTPConnection] = []

    def getConnection(self, host: str, secure: bool) -> http.client.HTTPConnection:
        connection = super().getConnection(host, secure)
        self.connections.append(connection)
        return connection

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        super().close()


def _records(logger: logging.Logger) -> list[logging.LogRecord]:
    try:
        raise KeyError("missing")
    except KeyError:
        exc_info = sys.exc_info()
    return [
        logger.makeRecord(logger.name, logging.INFO, "shop.py", 12, "paid %s", ("42",), None),
        logger.makeRecord(
            logger.name,
            logging.WARNING,
            "shop.py",
            13,
            "café & = ? %d%%",
            (5,),
            None,
            extra={"user": "ålice+bob"},
        ),
        logger.makeRecord(logger.name, logging.ERROR, "shop.py", 14, "failed", (), exc_info),
    ]


@pytest.mark.parametrize(("method", "url"), [("GET", "/log?app=shop"), ("POST", "/log")])
@pytest.mark.anyio
async def test_http_handler_sends_the_stdlib_requests(
    logger: logging.Logger, method: str, url: str
) -> None:
    """aioqlog.handlers.HTTPHandler sends what logging.handlers.HTTPHandler sends, byte for byte."""
    raw = RawServer()
    records = _records(logger)
    credentials = ("ops", "s3cret")
    with served_in_a_thread(raw.start, raw.stop):
        stdlib = StdlibHTTPHandler(raw.host, url, method, credentials=credentials)
        await in_thread(lambda: [stdlib.handle(record) for record in records])
        stdlib.close()
        expected = raw.seen()
        raw.requests.clear()
        twin = aioqlog.handlers.HTTPHandler(raw.host, url, method, credentials=credentials)
        await twin.aemit_batch(records)
        await bounded(twin.aclose())
    assert len(expected) == 3
    assert raw.seen() == expected
    assert (twin.sent, twin.dropped) == (3, 0)


@pytest.mark.anyio
async def test_http_handler_fields_survive_the_round_trip(logger: logging.Logger) -> None:
    """Behind a listener, a record's fields come back out of parse_qs; a 5xx is retried."""
    raw = RawServer()
    raw.status = 503
    with served_in_a_thread(raw.start, raw.stop):
        handler = aioqlog.handlers.HTTPHandler(raw.host, "/log", backoff=0.02, backoff_max=0.05)
        async with _serve(logger, handler):
            logger.warning("paid %s", "42", extra={"user": "ålice & bob"})
            assert await in_thread(lambda: raw.arrived.wait(STALL))  # answered 503: retried
            raw.status = 200
    method, target, _, _ = raw.requests[-1]
    fields = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    assert method == "GET"
    assert fields["msg"] == ["paid %s"]
    assert fields["args"] == ["('42',)"]
    assert fields["levelname"] == ["WARNING"]
    assert fields["name"] == [logger.name]
    assert fields["user"] == ["ålice & bob"]
    assert handler.retries >= 1
    assert (handler.sent, handler.dropped) == (1, 0)


@pytest.mark.anyio
async def test_the_loop_runs_while_a_large_batch_is_encoded(server: Server) -> None:
    """5,000 records with a slow formatter: the loop keeps running while they are encoded."""
    token = anyio.lowlevel.current_token()
    midway = anyio.Event()
    ticked = threading.Event()
    waited: list[bool] = []

    class Slow(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            busy_until = time.perf_counter() + 20e-6  # a formatter with much to do
            while time.perf_counter() < busy_until:
                pass
            if record.args == (2_500,):
                # Halfway through, hold the encoding until the loop has ticked:
                # encoding on the loop, it would never tick, and this would time out.
                anyio.from_thread.run_sync(midway.set, token=token)
                waited.append(ticked.wait(5.0))
            return super().format(record)

    async def ticker() -> None:
        await bounded(midway.wait())
        for _ in range(100):  # a task that needs the loop, again and again
            await anyio.lowlevel.checkpoint()
        ticked.set()

    handler = AsyncHTTPHandler(server.url, batch_size=5_000, batch_age=60)
    handler.setFormatter(Slow())
    records = [logging.makeLogRecord({"msg": "r%d", "args": (i,)}) for i in range(5_000)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)  # bounded itself
        await bounded(handler.aemit_batch(records))
    await bounded(handler.aclose())
    assert waited == [True]
    assert server.messages() == [f"r{i}" for i in range(5_000)]


@pytest.mark.anyio
async def test_formatters_see_the_log_calls_context(server: Server, logger: logging.Logger) -> None:
    """Encoded off the loop, each record still sees the context variables of its log call."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

    class WithRequest(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{request_id.get()} {super().format(record)}"

    handler = AsyncHTTPHandler(server.url, batch_age=60)
    handler.setFormatter(WithRequest())

    async def serve_request(name: str) -> None:
        request_id.set(name)
        logger.info("handled")

    async with _serve(logger, handler):
        for name in ("a", "b", "c"):
            async with anyio.create_task_group() as tg:  # a task: a context of its own
                tg.start_soon(serve_request, name)
        logger.info("outside")
    assert sorted(server.messages()) == ["- outside", "a handled", "b handled", "c handled"]


@pytest.mark.anyio
async def test_the_encoding_thread_ends_at_aclose(server: Server) -> None:
    """The handler's own encoding thread starts with the first record and ends at aclose()."""
    handler = AsyncHTTPHandler(server.url, batch_age=60)
    before = set(threading.enumerate())
    await bounded(handler.aemit_batch([logging.makeLogRecord({"msg": "one"})]))
    (encoder,) = set(threading.enumerate()) - before
    assert encoder.name == "aioqlog-encode-AsyncHTTPHandler"
    await bounded(handler.aclose())
    await in_thread(lambda: encoder.join(STALL))
    assert not encoder.is_alive()
    assert server.messages() == ["one"]


@pytest.mark.anyio
async def test_a_batch_is_rendered_in_the_encoding_thread(server: Server) -> None:
    """render() (joining, compressing a batch's lines) runs in the encoding thread."""
    rendered_on: list[str] = []

    class Watched(AsyncHTTPHandler):
        def render(self, lines: Sequence[tuple[int, str]]) -> bytes:
            rendered_on.append(threading.current_thread().name)
            return super().render(lines)

    handler = Watched(server.url, gzip=True, batch_age=60)
    await bounded(handler.aemit_batch([logging.makeLogRecord({"msg": "one"})]))
    await bounded(handler.aclose())
    assert rendered_on == ["aioqlog-encode-Watched"]
    assert server.messages() == ["one"]


# ------------------------------------------------------- driven as a lane drives it


def _made(logger: logging.Logger, texts: Sequence[str]) -> list[logging.LogRecord]:
    return [
        logger.makeRecord(logger.name, logging.INFO, __file__, 1, text, (), None) for text in texts
    ]


@pytest.mark.anyio
async def test_a_retried_batch_keeps_its_key_and_its_headers(
    server: Server, logger: logging.Logger
) -> None:
    """gzip, basic auth from the url, one Idempotency-Key per batch, kept by its retry."""
    server.fail_next = 1
    url = server.url.replace("http://", "http://shop:s3cret@")
    handler = Reported(url, gzip=True, batch_size=2, batch_age=60, **FAST_RETRY)
    with anyio.fail_after(STALL):
        await handler.aemit_batch(_made(logger, ["a", "b", "c"]))
        await handler.aclose()
    assert server.messages() == ["a", "b", "c"]
    first, retried, last = server.keys  # the 500, its retry, then the last batch
    assert first == retried != last
    assert {h["Content-Encoding"] for h in server.headers} == {"gzip"}
    assert {h["Authorization"] for h in server.headers} == {"Basic c2hvcDpzM2NyZXQ="}
    assert (handler.sent, handler.retries, handler.pending) == (3, 1, 0)
    assert handler.reported[0].endswith("could not be sent; retrying")
    assert not any("s3cret" in text for text in [repr(handler), *handler.reported])


@pytest.mark.anyio
async def test_the_handlers_own_request_lines_are_not_shipped(
    server: Server, logger: logging.Logger
) -> None:
    """httpx's line about each of the handler's own requests goes nowhere, not even next time."""
    q = aioqlog.LogQueue()
    queue_handler = aioqlog.QueueHandler(q)
    logger.addHandler(queue_handler)
    client_logger = logging.getLogger("httpx")  # its lines go to the same queue
    client_logger.addHandler(queue_handler)
    level = client_logger.level
    client_logger.setLevel(logging.INFO)
    console = logging.handlers.BufferingHandler(1000)
    handler = Reported(server.url, batch_age=60, batch_size=1)
    try:
        async with aioqlog.QueueListener(q, handler, console):
            logger.info("first")
            await server.wait_for_lines(1)
            logger.info("second")
            await server.wait_for_lines(2)
    finally:
        client_logger.removeHandler(queue_handler)
        client_logger.setLevel(level)
    assert server.messages() == ["first", "second"]
    assert [r.getMessage() for r in console.buffer] == ["first", "second"]
    # The application's own requests still log theirs.
    line = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: GET", (), None)
    assert logging.getLogger("httpx").filter(line)


@pytest.fixture
def root_at_debug() -> Iterator[aioqlog.LogQueue]:
    """The root logger at DEBUG behind an aioqlog QueueHandler, as in development."""
    root = logging.getLogger()
    q = aioqlog.LogQueue()
    queue_handler = aioqlog.QueueHandler(q)
    level = root.level
    root.addHandler(queue_handler)
    root.setLevel(logging.DEBUG)
    try:
        yield q
    finally:
        root.removeHandler(queue_handler)
        root.setLevel(level)


@pytest.mark.anyio
async def test_at_debug_the_clients_lines_about_its_requests_are_not_shipped(
    server: Server, root_at_debug: aioqlog.LogQueue
) -> None:
    """With the root at DEBUG, httpcore's lines about each request are not shipped for ever.

    Only httpx's INFO line was kept out: httpcore's DEBUG lines (connect,
    send headers, receive body...) came back to the handler, each request
    shipping those of the one before.
    """
    app = logging.getLogger("app.debugging")
    handler = Reported(server.url, batch_age=0.01)
    listener = aioqlog.QueueListener(root_at_debug, handler)
    async with listener:
        app.info("first")
        await server.wait_for_lines(1)
        app.info("second")
        await server.wait_for_lines(2)
        stats = listener.stats
    # Closing the client at stop() logs too: none of it waits in the queue
    # (stderr would call it undelivered at exit), nor ships at the next start.
    assert root_at_debug.qsize() == 0
    async with listener:
        app.info("third")
        await server.wait_for_lines(3)
    shipped = [line["logger"] for line in server.lines()]
    assert [name for name in shipped if name.startswith("app.")] == ["app.debugging"] * 3
    assert not [name for name in shipped if name.startswith(("httpx", "httpcore"))]
    assert stats.recursion_dropped == 0  # kept out where they are logged, not dropped later


@pytest.mark.anyio
async def test_what_a_sender_logs_is_counted_not_shipped(
    server: Server, root_at_debug: aioqlog.LogQueue
) -> None:
    """What a handler's sender logs (a client of unknown loggers, an override) is not shipped.

    Shipped, each request would log about itself in the next, for ever: it
    is dropped as the handlers' own logging is, and counted.
    """

    class Chatty(Reported):
        async def send(self, items: list[tuple[int, str]], batch_id: str) -> None:
            logging.getLogger("chatty.client").debug("sending %d records", len(items))
            await super().send(items, batch_id)

    app = logging.getLogger("app.chatty")
    handler = Chatty(server.url, batch_age=0.01)
    async with aioqlog.QueueListener(root_at_debug, handler) as listener:
        app.info("first")
        await server.wait_for_lines(1)
        app.info("second")
        await server.wait_for_lines(2)
    stats = listener.stats
    shipped = [line["logger"] for line in server.lines()]
    assert [name for name in shipped if name.startswith("app.")] == ["app.chatty"] * 2
    assert "chatty.client" not in shipped
    assert stats.recursion_dropped == len(server.requests) >= 2  # one line a request, counted


@pytest.mark.anyio
async def test_a_cancelled_aemit_batch_buffers_nothing(server: Server) -> None:
    """Cancelled while its encoding thread works (the run ending), aemit_batch buffers nothing."""
    handler = AsyncHTTPHandler(server.url, batch_age=60)
    records = [logging.makeLogRecord({"msg": f"r{i}"}) for i in range(40)]
    with anyio.CancelScope() as scope:
        scope.cancel()  # at its first wait: for the encoding thread
        await handler.aemit_batch(records)
    assert scope.cancelled_caught
    # The lane hands the same records over again: had some stayed, they would go twice.
    assert handler.pending == 0
    with anyio.fail_after(STALL):
        await handler.aclose()


def test_without_httpx_the_handlers_name_their_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx, each HTTP handler's constructor says to install aioqlog[http]."""
    from aioqlog.handlers import HTTPHandler

    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed
    fix = r"needs httpx: pip install 'aioqlog\[http\]'"
    with pytest.raises(ImportError, match=f"AsyncHTTPHandler {fix}"):
        AsyncHTTPHandler("http://127.0.0.1:9/ingest")
    with pytest.raises(ImportError, match=f"^HTTPHandler {fix}"):
        HTTPHandler("127.0.0.1:9", "/log")


@pytest.mark.anyio
async def test_a_listener_ships_what_the_task_and_a_thread_log(
    server: Server, logger: logging.Logger
) -> None:
    """Through a QueueListener: what the task and a thread log arrives once."""
    handler = Reported(server.url, batch_size=10, batch_age=0.05)
    queue = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(queue))

    def from_a_thread() -> None:
        for i in range(20):
            logger.info("thread %d", i)

    with anyio.fail_after(STALL):
        async with aioqlog.QueueListener(queue, handler):
            for i in range(20):
                logger.info("task %d", i)
            await anyio.to_thread.run_sync(from_a_thread)
    expected = [f"task {i}" for i in range(20)] + [f"thread {i}" for i in range(20)]
    assert sorted(server.messages()) == sorted(expected)
    assert (handler.sent, handler.pending, handler.reported) == (40, 0, [])


def test_on_trio_the_end_of_the_run_without_stop_sends_everything(
    server: Server, logger: logging.Logger
) -> None:
    """trio.run ending without stop(): what was logged is shipped before it returns, once.

    trio cancels its system tasks when the main task ends, and a task started
    after that at once: the sender must be told, not cancelled.
    """
    import trio

    handler = Reported(server.url, batch_size=50, batch_age=60)
    queue = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(queue))
    listener = aioqlog.QueueListener(queue, handler)

    async def main() -> None:
        listener.start()
        for i in range(300):
            logger.info("r %d", i)
            if i % 50 == 0:
                await trio.sleep(0.001)

    trio.run(main)
    assert sorted(server.messages()) == sorted(f"r {i}" for i in range(300))
    assert (handler.sent, handler.pending) == (300, 0)


@pytest.mark.anyio
async def test_a_batch_is_encoded_in_place_when_no_thread_may_start(
    server: Server, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At interpreter exit (Python 3.12+ starts no thread), a batch is encoded on the loop."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    handler = Reported(server.url, batch_age=60)
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        await handler.aemit_batch(_made(logger, ["last"]))
    with anyio.fail_after(STALL):
        await handler.aclose()
    assert server.messages() == ["last"]
    assert handler.reported == []


_DAEMON_LOOP_AT_EXIT = """
import logging, sys, threading, time
import aioqlog
from aioqlog.handlers import AsyncHTTPHandler

backend, url = sys.argv[1], sys.argv[2]
q = aioqlog.LogQueue()
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(aioqlog.QueueHandler(q))
listener = aioqlog.QueueListener(q, AsyncHTTPHandler(url, batch_size=500, batch_age=5.0))
served = threading.Event()

async def main(forever):
    listener.start()
    for i in range(300):
        log.info("rec %d", i)
    served.set()
    await forever()

if backend == "trio":
    import trio
    target = lambda: trio.run(main, trio.sleep_forever)
else:
    import asyncio
    target = lambda: asyncio.run(main(lambda: asyncio.Event().wait()))
threading.Thread(target=target, daemon=True).start()
served.wait(30)
time.sleep(0.5)  # the program runs a while: the handler's sender is up when it ends
for i in range(300, 400):
    log.info("rec %d", i)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_loop_in_a_daemon_thread_ships_everything_at_exit(server: Server, backend: str) -> None:
    """The loop runs in a daemon thread as the program ends: every record is shipped, at once.

    The exit stops that listener while executors still take work (a
    connection's DNS lookup needs one): later, each try failed until the
    10 s bound and the records were lost.
    """
    for attempt in range(3):  # the lost records depended on timing: a few runs show it
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _DAEMON_LOOP_AT_EXIT, backend, server.url],
            capture_output=True,
            text=True,
            timeout=STALL * 2,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        shipped = sorted(server.messages())
        assert shipped == sorted([f"rec {i}" for i in range(400)] * (attempt + 1)), done.stderr
        assert time.monotonic() - began < 8, done.stderr  # well within the 10 s bound


_FIRST_RECORD_IMPORTS = """
import json, logging, sys, threading, time
backend, url = sys.argv[1], sys.argv[2]
if backend == "trio":
    import trio  # the application's own import, before it sets logging up
import aioqlog
from aioqlog.handlers import AsyncHTTPHandler

# Set-up, as an application does it: the handler is made before the loop runs.
handler = AsyncHTTPHandler(url, batch_age=0.01)
q = aioqlog.LogQueue()
log = logging.getLogger("app")
log.addHandler(aioqlog.QueueHandler(q))
log.setLevel(logging.INFO)
log.propagate = False

on_the_loop = []
watching = threading.Event()
loop_thread = threading.get_ident()

def audit(event, args):
    if event == "import" and watching.is_set():
        where = "loop" if threading.get_ident() == loop_thread else "thread"
        on_the_loop.append(f"{args[0]} ({where})")

sys.addaudithook(audit)

async def main(sleep):
    async with aioqlog.QueueListener(q, handler):
        watching.set()
        log.info("first")
        deadline = time.monotonic() + 20
        while handler.sent < 1 and time.monotonic() < deadline:
            await sleep(0.005)
        watching.clear()
    print(json.dumps({"sent": handler.sent, "imports": on_the_loop}))

if backend == "trio":
    trio.run(main, trio.sleep)
else:
    import asyncio
    asyncio.run(main(asyncio.sleep))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_first_record_imports_nothing(server: Server, backend: str) -> None:
    """A handler made at set-up ships its first record without an import, on any thread.

    anyio imports its backend at the first event it makes: on the loop, at
    the first record, a stall of tens of milliseconds in a serving app. The
    encoding thread made the HTTP client at the first batch, importing some
    160 modules beside the serving loop: stalls of 5-9 ms waiting for the GIL.
    """
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_RECORD_IMPORTS, backend, server.url],
        capture_output=True,
        text=True,
        timeout=STALL * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"sent": 1, "imports": []}, done.stderr
