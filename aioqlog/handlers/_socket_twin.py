"""``SocketHandler``: ``logging.handlers.SocketHandler``'s pickles, sent from the loop.

A drop-in twin of the stdlib handler: the same constructor, the same
``makePickle`` and the same bytes on the wire (a 4-byte big-endian length,
then the pickled dict of the record, its message rendered and its traceback
turned into text), so the logging cookbook's socket server receives the same
records. What differs is how they are sent: from the event loop, through
``BufferedSender``'s bounded buffer and counted drops, reconnecting with the
stdlib's backoff (``retryStart``, ``retryFactor``, ``retryMax``) while
records wait in the buffer. The host name is resolved in the handler's own
thread, never on the loop nor in its default executor.

aioqlog only ever pickles (``pickle.dumps``); the receiver unpickles, which
runs whatever the bytes say: keep it on a trusted network.

Data path: ``aemit_batch`` pickles each record (in its log call's context,
in the handler's thread) into the buffer; the sender task writes what is
buffered, up to ``WRITE_SIZE`` bytes at a time, and takes it off the buffer
once the socket took it. Before each write it looks whether the server
closed the connection, so that records logged after that wait for the next
connection instead of going into a dead socket. The sockets are anyio's: it
runs on asyncio, uvloop and trio alike.
"""

from __future__ import annotations

import logging
import pickle
import socket
import struct

import anyio
import anyio.abc

from .._diagnostics import check_positive, report_error
from .._records import own_record
from ._base import BufferedSender
from ._sockets import SOCKET_ERRORS, close_quietly, peer_closed

__all__ = ["SocketHandler"]

#: Bytes written per step: a backlog goes out in bounded steps.
WRITE_SIZE = 256 * 1024


class SocketHandler(BufferedSender[bytes, bytes]):
    """Send records as ``logging.handlers.SocketHandler`` does, without blocking the loop.

    Change ``logging.handlers.SocketHandler`` to ``aioqlog.handlers.SocketHandler``
    and serve it with a ``QueueListener``: the receiving end (the logging
    cookbook's socket server, ``logging.makeLogRecord(pickle.loads(...))``)
    gets the same records. No extra dependency.

    Unlike the stdlib handler, which drops each record logged while it cannot
    connect (and waits on DNS and the connection in the logging call), it
    keeps up to *buffer_size* records while the server is away and sends
    them once it is back, reconnecting after ``retryStart`` seconds, then
    ``retryFactor`` times longer each time, up to ``retryMax`` (the stdlib's
    attributes, which may be set after construction as for the stdlib).
    What does not fit is dropped, counted in ``dropped`` and reported, first
    to ``handleError``, then in a record of its own sent ahead of the next.

    The receiver unpickles what it is sent: run it on a trusted network only.

    Args:
        host: The server's host name or address; or a unix socket path with
            *port* ``None``.
        port: The server's port, or ``None`` for a unix socket.
        level: The handler's level.
        connect_timeout: Seconds allowed to connect (the stdlib's is 1).
        buffer_size: The most records held while the server is away; more
            are dropped, counted and reported.
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps reconnecting
            to a server that is away, or writing to one that stopped reading,
            before it leaves the rest buffered.
        retryStart: Seconds before the first reconnection attempt.
        retryFactor: How much longer each next wait is.
        retryMax: The longest wait between attempts.
        timeout: As for every ``AsyncHandler``: a bound on each call.

    Attributes:
        sent: Records written to the socket.
        dropped: Records dropped because the buffer was full.
        reconnects: Connections opened again, after the server closed one or
            a send failed.

    Example:
        >>> handler = SocketHandler("logs.internal", 9020)  # doctest: +SKIP

    Added in version 0.1.0.
    """

    encode_in_thread = True

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        level: int = logging.NOTSET,
        connect_timeout: float = 1.0,
        buffer_size: int = 10_000,
        close_budget: float = 10.0,
        retryStart: float = 1.0,
        retryFactor: float = 2.0,
        retryMax: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            level=level,
            timeout=timeout,
            buffer_size=buffer_size,
            backoff=retryStart,
            backoff_max=retryMax,
            close_budget=close_budget,
        )
        owner = type(self).__qualname__
        check_positive(owner, "connect_timeout", connect_timeout)
        check_positive(owner, "retryFactor", retryFactor)
        if port is None and not isinstance(host, str):
            raise TypeError(f"{owner} with port=None needs a unix socket path as host")
        # The stdlib's attributes, as it sets them.
        self.host = host
        self.port = port
        self.address: str | tuple[str, int] = host if port is None else (host, port)
        self.retryStart = retryStart
        self.retryFactor = retryFactor
        self.retryMax = retryMax
        self.connect_timeout = connect_timeout
        self.reconnects = 0
        self._stream: anyio.abc.ByteStream | None = None
        self._failures = 0
        self._connections = 0

    def __repr__(self) -> str:
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"<{type(self).__name__} {where} ({logging.getLevelName(self.level)})>"

    # ------------------------------------------------------------ encoding

    def makePickle(self, record: logging.LogRecord) -> bytes:
        """Return *record* as the stdlib's ``SocketHandler.makePickle`` does.

        A 4-byte big-endian length, then ``pickle.dumps`` (protocol 1) of the
        record's dict, with ``msg`` the rendered message, ``args`` and
        ``exc_info`` None, and the traceback (made by the handler's
        formatter) in ``exc_text``.
        """
        if record.exc_info:
            self.format(record)  # to put the traceback's text into record.exc_text
        # Objects in msg or args may not exist at the receiving end: send text.
        d = dict(record.__dict__)
        d["msg"] = record.getMessage()
        d["args"] = None
        d["exc_info"] = None
        d.pop("message", None)  # redundant with msg
        s = pickle.dumps(d, 1)
        return struct.pack(">L", len(s)) + s

    def encode(self, record: logging.LogRecord) -> bytes:
        """Return ``makePickle(record)``."""
        return self.makePickle(record)

    def _entry(self, item: bytes, now: float) -> bytes:
        return item

    # ------------------------------------------------------------ sending

    def _delay(self, attempt: int) -> float:
        """Return the stdlib's wait before reconnection *attempt* (0 for the first)."""
        return float(min(self.retryMax, self.retryStart * self.retryFactor**attempt))

    async def aclose_client(self) -> None:
        """Close the connection."""
        await self._disconnect()

    def _on_new_loop(self) -> None:
        self._stream = None  # made on an earlier loop, now gone

    async def _run(self) -> None:
        buffer = self._buffer
        while True:
            if not buffer:
                if self._closing:
                    return
                await self._sleep_until_woken()
                continue
            try:
                with self._attempting() as scope:
                    stream = await self._connect()
                    summary = self._summary()
                    reported = self.dropped
                    chunks = [] if summary is None else [summary]
                    size = 0
                    for item in buffer:  # (no await in here: the buffer stays as it is)
                        chunks.append(item)
                        size += len(item)
                        if size >= WRITE_SIZE:
                            break  # a bounded step on the loop; the rest goes next
                    count = len(chunks) - (summary is not None)
                    await stream.send(b"".join(chunks))
                if scope.cancelled_caught:
                    # Cut off by close_budget (a peer that stopped reading): the
                    # connection may hold half a record; the rest stays buffered.
                    await self._disconnect()
                    return
            except SOCKET_ERRORS:
                await self._disconnect()
                self._failures += 1
                if self._failures == 1:
                    self._report("could not be sent; reconnecting")
                if not await self._backoff(self._failures - 1):
                    return  # close_budget spent: the rest stays buffered (aclose says so)
                continue
            self._failures = 0
            self._dropped_reported = max(self._dropped_reported, reported)
            # Records buffered during send() stay: only what was written leaves.
            for _ in range(count):
                buffer.popleft()
            self.sent += count

    async def _connect(self) -> anyio.abc.ByteStream:
        """Return the connection, opening one if there is none (or the server closed it)."""
        current = self._stream
        if current is not None and not await peer_closed(current):
            return current
        await self._disconnect()
        if self.port is None:
            with anyio.fail_after(self.connect_timeout):
                stream: anyio.abc.ByteStream = await anyio.connect_unix(self.host)
        else:
            stream = await self._open_tcp(self.host, self.port, self.connect_timeout)
        self._stream = stream
        if self._connections:
            self.reconnects += 1
        self._connections += 1
        return stream

    async def _open_tcp(self, host: str, port: int, seconds: float) -> anyio.abc.ByteStream:
        """Connect to *host*, resolved in the handler's thread, trying each address."""
        infos = await self.off_loop(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        error: OSError = OSError(f"{host!r} resolved to no address")
        for _family, _type, _proto, _name, address in infos:
            ip = address[0]
            if not isinstance(ip, str):
                continue
            try:
                # A numeric address: the loop connects without resolving again.
                with anyio.fail_after(seconds):
                    return await anyio.connect_tcp(ip, port)
            except TimeoutError:
                error = OSError(f"connecting to {ip} port {port} timed out")
            except OSError as exc:
                error = exc
        raise error

    async def _disconnect(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await close_quietly(stream)

    def _report(self, why: str) -> None:
        """Report the exception being handled through handleError."""
        message = "%s: %d buffered records %s"
        report_error(
            self,
            own_record(
                logging.ERROR, message, (repr(self), len(self._buffer), why), "BufferedSender"
            ),
        )
