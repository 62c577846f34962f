"""``AsyncSyslogHandler``: RFC 5424 messages over UDP, TCP or a unix socket.

Data path: ``aemit_batch`` formats each record (in its log call's context)
into an RFC 5424 message and appends it to a bounded buffer; a sender task
on the loop writes what is buffered: one datagram per message over UDP or a
unix datagram socket, octet-counted frames (RFC 6587) over TCP, optionally
in TLS (RFC 5425). A message leaves the buffer once written (for TCP, once
the socket took all of it). The sockets are anyio's: the handler runs on
asyncio, uvloop and trio alike. When
the peer goes away the sender reconnects with exponential backoff while the
buffer keeps accepting records; what does not fit is dropped, counted, and
reported in a message of its own once the peer is back.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc

from .._diagnostics import check_positive, report_error
from .._records import own_record
from ._base import BufferedSender
from ._sockets import SOCKET_ERRORS, close_quietly, peer_closed

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["AsyncSyslogHandler"]

Transport = Literal["udp", "tcp", "unix"]
_TRANSPORTS = ("udp", "tcp", "unix")

#: RFC 5424 severities by logging level (the nearest at or below).
_SEVERITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG = 7


def severity(levelno: int) -> int:
    """Return the RFC 5424 severity for a logging level number."""
    for level, code in _SEVERITIES:
        if levelno >= level:
            return code
    return _DEBUG


def _header_field(value: str, limit: int) -> str:
    """Return *value* as an RFC 5424 header field: printable ASCII, no spaces, or "-"."""
    cleaned = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return cleaned or "-"


class AsyncSyslogHandler(BufferedSender[bytes, bytes]):
    """Send records to a syslog server (rsyslog, syslog-ng) as RFC 5424 messages.

    Runs on asyncio, uvloop and trio (its sockets are anyio's). Serve it
    with a ``QueueListener``. Each
    record becomes ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``,
    MSG being the handler's formatter output (``%(message)s`` by default).

    Args:
        address: ``(host, port)`` for UDP and TCP; a path for a unix socket.
        transport: ``"udp"`` (a datagram per message), ``"tcp"`` (octet-counted
            frames, RFC 6587) or ``"unix"`` (a datagram socket such as
            ``/dev/log``).
        ssl: With ``transport="tcp"``: ``True`` to speak TLS (RFC 5425,
            usually port 6514) checking the server's certificate against the
            system's CAs, or an ``ssl.SSLContext`` (a private CA, a client
            certificate). ``False`` (the default): plain TCP.
        facility: A ``logging.handlers.SysLogHandler.LOG_*`` facility number.
        app_name: APP-NAME; by default the program's name.
        hostname: HOSTNAME; by default ``socket.gethostname()``.
        level: The handler's level.
        max_message: Bytes per message; longer ones are cut there (counted
            in ``truncated``), on every transport: servers drop or mishandle
            longer ones (rsyslog's default limit is 8 KiB; a longer TCP frame
            breaks its stream).
        backoff: First delay before reconnecting; doubles up to *backoff_max*,
            with jitter.
        backoff_max: Longest delay between reconnection attempts.
        buffer_size: The most messages held while the peer is away; more are
            dropped, counted and reported.
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps reconnecting
            to a server that is away, or writing to one that stopped reading,
            before it leaves the rest buffered; the default ``0`` makes one
            last attempt.
        timeout: As for every ``AsyncHandler``: a bound on each call.

    Attributes:
        sent: Messages written to the socket.
        dropped: Messages dropped because the buffer was full.
        truncated: Messages cut to *max_message* bytes.
        reconnects: Connections (re)opened after a failure.

    Example:
        >>> handler = AsyncSyslogHandler(("127.0.0.1", 514), transport="tcp")  # doctest: +SKIP

    Added in version 0.1.0.
    """

    def __init__(
        self,
        address: tuple[str, int] | str = ("127.0.0.1", 514),
        *,
        transport: Transport = "udp",
        ssl: _ssl.SSLContext | bool = False,
        facility: int = 1,  # LOG_USER
        app_name: str | None = None,
        hostname: str | None = None,
        level: int = logging.NOTSET,
        max_message: int = 8192,
        backoff: float = 0.2,
        backoff_max: float = 10.0,
        buffer_size: int = 10_000,
        close_budget: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            level=level,
            timeout=timeout,
            buffer_size=buffer_size,
            backoff=backoff,
            backoff_max=backoff_max,
            close_budget=close_budget,
        )
        owner = type(self).__qualname__
        if transport not in _TRANSPORTS:
            raise ValueError(
                f"{owner} transport must be one of {', '.join(_TRANSPORTS)}, got {transport!r}"
            )
        if transport == "unix":
            if not isinstance(address, str):
                raise TypeError(f"{owner} with transport='unix' needs a socket path as address")
        elif not (
            isinstance(address, tuple)
            and len(address) == 2
            and isinstance(address[0], str)
            and isinstance(address[1], int)
        ):
            raise TypeError(
                f"{owner} with transport={transport!r} needs a (host, port) address, "
                f"got {address!r}"
            )
        if ssl is not False and transport != "tcp":
            raise ValueError(f"{owner} ssl needs transport='tcp', got transport={transport!r}")
        if not isinstance(ssl, bool) and not _is_ssl_context(ssl):
            raise TypeError(f"{owner} ssl must be True, False or an ssl.SSLContext, got {ssl!r}")
        if isinstance(facility, bool) or not isinstance(facility, int) or not 0 <= facility < 24:
            raise ValueError(f"{owner} facility must be an int from 0 to 23, got {facility!r}")
        check_positive(owner, "max_message", max_message, integer=True)
        self.address = address
        self.transport: Transport = transport
        self.ssl = ssl
        self.facility = facility
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        self.app_name = _header_field(app_name if app_name is not None else program, 48)
        self.hostname = _header_field(
            hostname if hostname is not None else socket.gethostname(), 255
        )
        self.max_message = int(max_message)
        self.truncated = 0
        self.reconnects = 0
        self._stream: anyio.abc.ByteStream | None = None
        self._datagram: anyio.abc.UnreliableObjectStream[bytes] | None = None
        self._failures = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.transport}:{self.address} "
            f"({logging.getLevelName(self.level)})>"
        )

    # ------------------------------------------------------------ the lane's side

    def encode(self, record: logging.LogRecord) -> bytes:
        """Return *record* as one RFC 5424 message (override to change the format)."""
        pri = self.facility * 8 + severity(record.levelno)
        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat()
        msgid = _header_field(record.name, 32)
        header = f"<{pri}>1 {stamp} {self.hostname} {self.app_name} {record.process or '-'} "
        text = self.format(record)
        return f"{header}{msgid} - {text}".encode("utf-8", "backslashreplace")

    def _entry(self, item: bytes, now: float) -> bytes:
        return item

    async def aclose_client(self) -> None:
        """Close the socket."""
        await self._disconnect()

    def _on_new_loop(self) -> None:
        self._stream = None  # made on an earlier loop, now gone
        self._datagram = None

    async def _run(self) -> None:
        while True:
            if not self._buffer:
                if self._closing:
                    return
                await self._sleep_until_woken()
                continue
            try:
                with self._attempting() as scope:
                    await self._connect()
                    await self._write_buffered()
                if scope.cancelled_caught:
                    # Cut off by close_budget (a server that stopped reading):
                    # the connection may hold half a frame; the rest stays buffered.
                    await self._disconnect()
                    return
            except SOCKET_ERRORS:
                await self._disconnect()
                self._failures += 1
                if self._failures == 1:
                    self._report("could not be sent; reconnecting")
                if not await self._backoff(self._failures - 1):
                    return  # close_budget spent: what is left stays buffered (aclose says so)
            else:
                self._failures = 0

    async def _write_buffered(self) -> None:
        """Write everything buffered; raise one of ``SOCKET_ERRORS`` if the peer is gone."""
        buffer = self._buffer
        summary = self._summary()
        reported = self.dropped
        if self.transport == "tcp":
            stream = self._stream
            assert stream is not None
            if await peer_closed(stream):
                raise EOFError("the syslog server closed the connection")
            messages = list(buffer) if summary is None else [summary, *buffer]
            await stream.send(b"".join(b"%d %s" % (len(m), m) for m in map(self._cut, messages)))
            self._dropped_reported = max(self._dropped_reported, reported)
            # Records buffered during send() stay: only what was written leaves.
            for _ in range(len(messages) - (summary is not None)):
                buffer.popleft()
                self.sent += 1
            return
        datagram = self._datagram
        assert datagram is not None
        if summary is not None:
            await datagram.send(self._cut(summary))
            self._dropped_reported = max(self._dropped_reported, reported)
        while buffer:
            # Each send lets the loop run (an anyio checkpoint) before it sends.
            await datagram.send(self._cut(buffer[0]))
            buffer.popleft()
            self.sent += 1

    def _cut(self, message: bytes) -> bytes:
        """Return *message* cut to max_message bytes at most (counted when cut).

        Cut between two characters: a UTF-8 sequence the limit falls inside
        is left out whole, so the server gets valid UTF-8.
        """
        end = self.max_message
        if len(message) <= end:
            return message
        self.truncated += 1
        # A continuation byte (0b10xxxxxx) at the cut: back up to the byte
        # that begins its sequence (three at most), and cut before it.
        for _ in range(3):
            if message[end] & 0xC0 != 0x80:
                break
            end -= 1
        return message[:end]

    async def _connect(self) -> None:
        if self.transport == "tcp":
            if self._stream is not None:
                return
            assert isinstance(self.address, tuple)
            host, port = self.address
            ssl = self.ssl
            if ssl is False:
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
            else:
                stream = await anyio.connect_tcp(
                    host, port, tls=True, ssl_context=None if ssl is True else ssl
                )
            self._stream = stream
        else:
            if self._datagram is not None:
                return
            if self.transport == "unix":
                assert isinstance(self.address, str)
                # Connected here: anyio's own connect leaks the socket when it fails.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.connect(self.address)
                except OSError:
                    sock.close()
                    raise
                self._datagram = await anyio.abc.ConnectedUNIXDatagramSocket.from_socket(sock)
            else:
                assert isinstance(self.address, tuple)
                host, port = self.address
                self._datagram = await anyio.create_connected_udp_socket(host, port)
        if self._failures:
            self.reconnects += 1

    async def _disconnect(self) -> None:
        stream, self._stream = self._stream, None
        datagram, self._datagram = self._datagram, None
        for sock in (stream, datagram):
            if sock is not None:
                await close_quietly(sock)

    def _report(self, why: str) -> None:
        """Report the exception being handled through handleError."""
        message = "%s: %d buffered messages %s"
        report_error(
            self,
            own_record(
                logging.ERROR, message, (repr(self), len(self._buffer), why), "BufferedSender"
            ),
        )


def _is_ssl_context(value: object) -> bool:
    import ssl  # noqa: PLC0415 - not imported by a handler without TLS

    return isinstance(value, ssl.SSLContext)
