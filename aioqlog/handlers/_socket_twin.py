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
once ``drain()`` returned. A
task per connection watches for the server closing it, so that records
logged after that wait for the next connection instead of going into a dead
socket.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import struct

from .._diagnostics import check_positive, report_error
from .._records import own_record
from ._base import BufferedSender

__all__ = ["SocketHandler"]

#: Bytes written per step (then ``drain()``): a backlog goes out in bounded steps.
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
            to a server that is away before it leaves the rest buffered.
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

    # Its connection is an asyncio stream.
    trio_instead = (
        "on trio, serve the stdlib's logging.handlers.SocketHandler itself with "
        "aioqlog.QueueListener: it sends from the listener's worker thread, never from the loop"
    )
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
        self._writer: asyncio.StreamWriter | None = None
        self._watcher: asyncio.Task[None] | None = None
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
        self._writer = None  # made on an earlier loop, now gone
        self._watcher = None

    async def _run(self) -> None:
        buffer = self._buffer
        while True:
            if not buffer:
                if self._closing:
                    return
                await self._sleep_until_woken()
                continue
            try:
                writer = await self._connect()
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
                writer.write(b"".join(chunks))
                await writer.drain()
            except (OSError, EOFError, asyncio.TimeoutError, ValueError, TypeError):
                # (ValueError/TypeError: a loop or socket refusing the address.)
                await self._disconnect()
                self._failures += 1
                if self._failures == 1:
                    self._report("could not be sent; reconnecting")
                if not await self._backoff(self._failures - 1):
                    return  # close_budget spent: the rest stays buffered (aclose says so)
                continue
            self._failures = 0
            self._dropped_reported = max(self._dropped_reported, reported)
            # Records buffered during drain() stay: only what was written leaves.
            for _ in range(count):
                buffer.popleft()
            self.sent += count

    async def _connect(self) -> asyncio.StreamWriter:
        """Return the connection, opening one if there is none (or it was closed)."""
        current = self._writer
        if current is not None and not current.is_closing():
            return current
        await self._disconnect()
        timeout = self.connect_timeout
        if self.port is None:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.host), timeout
            )
        else:
            reader, writer = await self._open_tcp(self.host, self.port, timeout)
        self._writer = writer
        self._watcher = asyncio.get_running_loop().create_task(self._watch(reader, writer))
        if self._connections:
            self.reconnects += 1
        self._connections += 1
        return writer

    async def _open_tcp(
        self, host: str, port: int, timeout: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to *host*, resolved in the handler's thread, trying each address."""
        infos = await self.off_loop(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        error: OSError = OSError(f"{host!r} resolved to no address")
        for _family, _type, _proto, _name, address in infos:
            ip = address[0]
            if not isinstance(ip, str):
                continue
            try:
                # A numeric address: the loop connects without resolving again.
                return await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
            except asyncio.TimeoutError:
                error = OSError(f"connecting to {ip} port {port} timed out")
            except OSError as exc:
                error = exc
        raise error

    async def _watch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close *writer* once the server closes the connection (it never sends anything)."""
        try:
            await reader.read()  # returns at EOF
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        writer.close()
        if self._buffer and self._wake is not None:
            self._wake.set()

    async def _disconnect(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, RuntimeError):
                pass

    def _report(self, why: str) -> None:
        """Report the exception being handled through handleError."""
        message = "%s: %d buffered records %s"
        report_error(
            self,
            own_record(
                logging.ERROR, message, (repr(self), len(self._buffer), why), "BufferedSender"
            ),
        )
