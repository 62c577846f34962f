"""The twins of the stdlib's network handlers: SocketHandler, and all three in dictConfig.

``aioqlog.handlers.SocketHandler`` is tested against the logging cookbook's
socket server, running in a thread on 127.0.0.1: it reads a 4-byte length,
then unpickles the record's dict (here, in the test, never in aioqlog) and
makes a record of it with ``logging.makeLogRecord``. The HTTP and SMTP twins
have their own byte-for-byte tests beside their native handlers; here, each
of the three is configured by changing ``logging.handlers.`` to
``aioqlog.handlers.`` in a dictConfig entry, behind ``aioqlog.QueueHandler``.
"""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import pickle
import socket
import socketserver
import struct
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from support import STALL, a_peer_that_never_reads, bounded, in_thread, served_in_a_thread
from test_http_handler import RawServer
from test_smtp_handler import Server as SMTPServer

import aioqlog
from aioqlog.handlers import SocketHandler

# ---------------------------------------------------------------- the cookbook's server


class _RecordStream(socketserver.StreamRequestHandler):
    """The cookbook's handler: length-prefixed pickles, each made back into a record."""

    server: _Receiving

    def handle(self) -> None:
        self.server.connections.add(self.connection)
        while True:
            chunk = self.connection.recv(4)
            if len(chunk) < 4:
                break
            length = struct.unpack(">L", chunk)[0]
            chunk = self.connection.recv(length)
            while len(chunk) < length:
                more = self.connection.recv(length - len(chunk))
                if not more:
                    return
                chunk += more
            self.server.keep(logging.makeLogRecord(pickle.loads(chunk)))  # the test's own receiver


class _Receiving(socketserver.BaseServer):
    """What the cookbook's servers keep: the records, and the connections to drop."""

    connections: set[socket.socket]
    records: list[logging.LogRecord]
    changed: threading.Condition
    thread: threading.Thread

    def _serve_in_a_thread(self) -> None:
        self.connections = set()
        self.records = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self.serve_forever, name="cookbook-server")
        self.thread.start()

    def keep(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.records) >= count, STALL)

    def stop(self) -> None:
        """Stop listening and drop every connection, as a server going away does."""
        self.shutdown()
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self.thread.join(STALL)


class CookbookServer(_Receiving, socketserver.ThreadingTCPServer):
    """The cookbook's socket server on 127.0.0.1; it can be stopped and started on its port."""

    allow_reuse_address = True
    daemon_threads = False  # server_close() joins the connection threads

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _RecordStream)
        self.port: int = self.server_address[1]
        self._serve_in_a_thread()


@pytest.fixture
def cookbook() -> Iterator[CookbookServer]:
    server = CookbookServer()
    yield server
    server.stop()


#: Fields that say when a record was made: they differ between two calls.
WHEN = {"created", "msecs", "relativeCreated"}


def _log_calls(logger: logging.Logger) -> None:
    """Log the same calls for each handler, from the same lines."""
    logger.info("paid %s", "42", extra={"user": "ålice"})
    logger.warning("an object %r", {"a": object.__name__})
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception("failed")


def _fields(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.__dict__.items() if k not in WHEN} for r in records]


@pytest.mark.anyio
async def test_socket_handler_sends_the_stdlib_records_across_a_restart(
    cookbook: CookbookServer, logger: logging.Logger
) -> None:
    """The cookbook server gets the stdlib SocketHandler's records, before and after a restart."""
    stdlib = logging.handlers.SocketHandler("127.0.0.1", cookbook.port)
    logger.addHandler(stdlib)
    _log_calls(logger)  # (it blocks the loop on the connection: the test can wait)
    logger.removeHandler(stdlib)
    stdlib.close()
    assert await in_thread(lambda: cookbook.wait_for(3))
    expected = _fields(cookbook.records)
    assert expected[2]["exc_text"].endswith("KeyError: 'missing'")
    cookbook.records.clear()

    handler = SocketHandler("127.0.0.1", cookbook.port, retryStart=0.02, retryMax=0.05)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    restarted: CookbookServer | None = None
    try:
        async with aioqlog.QueueListener(q, handler):
            _log_calls(logger)
            assert await in_thread(lambda: cookbook.wait_for(3))
            await in_thread(cookbook.stop)
            restarted = await in_thread(lambda: CookbookServer(cookbook.port))
            _log_calls(logger)
        assert await in_thread(lambda: restarted is not None and restarted.wait_for(3))
    finally:
        if restarted is not None:
            restarted.stop()
    assert restarted is not None
    assert _fields(cookbook.records) == expected
    assert _fields(restarted.records) == expected
    assert (handler.sent, handler.dropped, handler.reconnects) == (6, 0, 1)


class Buffering(SocketHandler):
    """Says when it has been handed 5 records; keeps its reports to itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.all_in = anyio.Event()
        self.handed = 0

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        await super().aemit_batch(records)
        self.handed += len(records)
        if self.handed == 5:
            self.all_in.set()

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # "could not be sent; reconnecting": expected here


@pytest.mark.anyio
async def test_socket_handler_buffers_while_the_server_is_away_and_counts_drops(
    logger: logging.Logger,
) -> None:
    """No server yet: 2 records wait in the buffer, 3 are dropped and counted, then all told."""
    with socket.socket() as probe:  # a free port, nobody listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Buffering("127.0.0.1", port, buffer_size=2, retryStart=0.02, retryMax=0.05)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    server: CookbookServer | None = None
    try:
        async with aioqlog.QueueListener(q, handler):
            for i in range(5):
                logger.error("record %d", i)
            await bounded(handler.all_in.wait())
            server = await in_thread(lambda: CookbookServer(port))
            assert await in_thread(lambda: server is not None and server.wait_for(3))
    finally:
        if server is not None:
            server.stop()
    messages = [r.getMessage() for r in server.records]
    assert (
        messages[0]
        == f"aioqlog dropped 3 records for {handler!r}: its buffer was full (buffer_size=2)"
    )
    assert messages[1:] == ["record 0", "record 1"]
    assert (handler.sent, handler.dropped) == (2, 3)


@pytest.mark.anyio
async def test_socket_handler_resolves_the_host_off_the_loop(
    cookbook: CookbookServer, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that hangs does not hold the loop: it keeps running until the name resolves."""
    token = anyio.lowlevel.current_token()
    resolving = anyio.Event()
    resolved = threading.Event()
    waited: list[bool] = []
    real = socket.getaddrinfo

    def slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "logs.test":
            anyio.from_thread.run_sync(resolving.set, token=token)
            waited.append(resolved.wait(5.0))  # on the loop, this would never be set
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    handler = SocketHandler("logs.test", cookbook.port)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler):
        logger.info("resolved")
        await bounded(resolving.wait())
        for _ in range(100):  # the loop keeps running other tasks meanwhile
            await anyio.lowlevel.checkpoint()
        resolved.set()
    assert waited == [True]
    assert await in_thread(lambda: cookbook.wait_for(1))
    assert [r.getMessage() for r in cookbook.records] == ["resolved"]


class UnixCookbookServer(_Receiving, socketserver.ThreadingUnixStreamServer):
    """The cookbook's server on a unix socket."""

    daemon_threads = False

    def __init__(self, path: str) -> None:
        super().__init__(path, _RecordStream)
        self._serve_in_a_thread()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets here")
@pytest.mark.anyio
async def test_socket_handler_over_a_unix_socket(logger: logging.Logger, tmp_path: Path) -> None:
    """port=None: host is a unix socket path, as for the stdlib handler."""
    path = str(tmp_path / "log.sock")
    server = UnixCookbookServer(path)
    handler = SocketHandler(path, None)
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    try:
        async with aioqlog.QueueListener(q, handler):
            logger.warning("over %s", "unix")
        assert await in_thread(lambda: server.wait_for(1))
    finally:
        await in_thread(server.stop)
    assert [r.getMessage() for r in server.records] == ["over unix"]
    assert (handler.sent, handler.dropped) == (1, 0)


def test_socket_handler_takes_the_stdlib_constructor() -> None:
    """host and port, positionally or by name; port None means a unix socket path."""
    handler = SocketHandler("127.0.0.1", 9020)
    assert (handler.host, handler.port, handler.address) == ("127.0.0.1", 9020, ("127.0.0.1", 9020))
    assert (handler.retryStart, handler.retryFactor, handler.retryMax) == (1.0, 2.0, 30.0)
    unix = SocketHandler(host="/run/log.sock", port=None)
    assert unix.address == "/run/log.sock"
    assert handler._delay(0) == 1.0
    assert handler._delay(3) == 8.0
    assert handler._delay(10) == 30.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connect_timeout": float("inf")}, "connect_timeout must be a positive number (finite)"),
        ({"retryFactor": float("inf")}, "retryFactor must be a positive number (finite)"),
        ({"retryMax": float("inf")}, "backoff_max must be a positive number (finite)"),
        ({"close_budget": float("inf")}, "close_budget must be a non-negative number of seconds"),
    ],
)
def test_socket_handler_refuses_infinite_durations(kwargs: dict[str, Any], message: str) -> None:
    """An infinite timeout, backoff or close budget is refused at once, naming the argument.

    Accepted, it would let the handler wait or reconnect for ever at close.
    """
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SocketHandler("127.0.0.1", 9020, **kwargs)


def test_make_pickle_is_the_stdlib_wire_format(logger: logging.Logger) -> None:
    """makePickle gives the stdlib's bytes for the same record."""
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logger.makeRecord(logger.name, logging.ERROR, "x.py", 1, "n=%d", (3,), exc_info)
    ours = SocketHandler("127.0.0.1", 9020).makePickle(logging.makeLogRecord(record.__dict__))
    theirs = logging.handlers.SocketHandler("127.0.0.1", 9020).makePickle(record)
    assert ours == theirs


# ---------------------------------------------------------------- dictConfig


@pytest.fixture
def configured(logger: logging.Logger) -> Iterator[logging.Logger]:
    """Close what dictConfig set up on *logger*, so no configured listener outlives the test."""
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def _entry_config(logger: logging.Logger, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {
            "net": entry,
            "queued": {"class": "aioqlog.QueueHandler", "handlers": ["net"]},
        },
        "loggers": {logger.name: {"level": "INFO", "handlers": ["queued"]}},
    }


async def _configure_and_log(logger: logging.Logger, entry: dict[str, Any]) -> logging.Handler:
    """Configure the stdlib *entry* with aioqlog.handlers in its class, and log two records."""
    stdlib_class = entry["class"]
    assert stdlib_class.startswith("logging.handlers.")
    twin = {**entry, "class": stdlib_class.replace("logging.handlers.", "aioqlog.handlers.")}
    logging.config.dictConfig(_entry_config(logger, twin))
    async with aioqlog.listening() as listeners:
        (listener,) = listeners
        (handler,) = listener.handlers
        logger.error("first %s", "error")
        logger.critical("second")
    assert isinstance(handler, aioqlog.AsyncHandler)
    assert type(handler).__name__ == stdlib_class.rpartition(".")[2]
    return handler


@pytest.mark.anyio
async def test_dictconfig_http_handler(configured: logging.Logger) -> None:
    """logging.handlers.HTTPHandler's entry, with aioqlog.handlers in its class, works."""
    raw = RawServer()
    with served_in_a_thread(raw.start, raw.stop):  # asyncio's streams, on a loop of their own
        entry = {
            "class": "logging.handlers.HTTPHandler",
            "host": raw.host,
            "url": "/log",
            "method": "POST",
            "credentials": ["ops", "s3cret"],
            "level": "ERROR",
        }
        handler = await _configure_and_log(configured, entry)
    bodies = [urllib.parse.parse_qs(body.decode()) for _, _, _, body in raw.requests]
    assert [b["msg"] for b in bodies] == [["first %s"], ["second"]]
    assert {r[2]["authorization"] for r in raw.requests} == {"Basic b3BzOnMzY3JldA=="}
    assert (handler.sent, handler.dropped) == (2, 0)  # type: ignore[attr-defined]


@pytest.mark.asyncio  # aiosmtplib is asyncio-only: the twin's trio refusal is tested below
async def test_dictconfig_smtp_handler(configured: logging.Logger) -> None:
    """logging.handlers.SMTPHandler's entry, with aioqlog.handlers in its class, works."""
    server = SMTPServer()
    server.start()
    try:
        entry = {
            "class": "logging.handlers.SMTPHandler",
            "mailhost": ["127.0.0.1", server.port],
            "fromaddr": "app@example.com",
            "toaddrs": ["oncall@example.com"],
            "subject": "Application error",
            "formatter": "plain",
        }
        handler = await _configure_and_log(configured, entry)
    finally:
        await in_thread(server.stop)
    mails = server.mailbox.mails
    assert [m["Subject"] for m in mails] == ["Application error"] * 2
    assert server.mailbox.bodies() == ["ERROR first error\n", "CRITICAL second\n"]
    assert (handler.sent, handler.dropped) == (2, 0)  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_dictconfig_socket_handler(
    configured: logging.Logger, cookbook: CookbookServer
) -> None:
    """logging.handlers.SocketHandler's entry, with aioqlog.handlers in its class, works."""
    entry = {"class": "logging.handlers.SocketHandler", "host": "127.0.0.1", "port": cookbook.port}
    handler = await _configure_and_log(configured, entry)
    assert await in_thread(lambda: cookbook.wait_for(2))
    assert [r.getMessage() for r in cookbook.records] == ["first error", "second"]
    assert (handler.sent, handler.dropped) == (2, 0)  # type: ignore[attr-defined]


def test_the_smtp_twin_refuses_trio_with_the_fix(logger: logging.Logger) -> None:
    """Under trio (aiosmtplib needs asyncio), the SMTP twin says to serve the stdlib original."""
    import trio

    from aioqlog.handlers import SMTPHandler

    arguments = ("127.0.0.1", "shop@example.com", ["ops@example.com"], "down")
    fix = r"not on trio: .*serve the stdlib's logging\.handlers\.SMTPHandler"
    made_before = SMTPHandler(*arguments)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "down", (), None)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=fix):
            SMTPHandler(*arguments)
        with pytest.raises(RuntimeError, match=fix):
            await made_before.aemit_batch([record])

    trio.run(main)
    assert made_before.pending == 0


@pytest.mark.anyio
async def test_socket_handler_close_budget_bounds_a_write_to_a_peer_that_stopped_reading(
    logger: logging.Logger,
) -> None:
    """The receiver takes the connection and never reads: stop() ends with close_budget."""
    with a_peer_that_never_reads() as port:
        handler = SocketHandler("127.0.0.1", port, close_budget=0.5)
        q = aioqlog.LogQueue()
        logger.addHandler(aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, handler)
        listener.start()
        for i in range(3_000):  # about 12 MB of pickles: more than the socket buffers hold
            logger.info("record %d %s", i, "x" * 4_000)
        started = anyio.current_time()
        await bounded(listener.stop())
        assert anyio.current_time() - started < 3.0
    assert handler.pending > 0
    assert handler.sent + handler.pending + handler.dropped == 3_000
