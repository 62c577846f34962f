"""``AsyncSyslogHandler``: RFC 5424 messages over UDP, TCP or a unix socket.

Data path: ``aemit_batch`` formats each record (in its log call's context)
into an RFC 5424 message and appends it to a bounded buffer; a sender task
on the loop writes what is buffered: one datagram per message over UDP or a
unix datagram socket, octet-counted frames (RFC 6587) over TCP. A message
leaves the buffer once written (for TCP, once ``drain()`` returned). When
the peer goes away the sender reconnects with exponential backoff while the
buffer keeps accepting records; what does not fit is dropped, counted, and
reported in a message of its own once the peer is back.

Only the loop thread touches the buffer and the counters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from datetime import datetime, timezone
from typing import Literal

from .._diagnostics import check_positive, report_error
from .._records import own_record
from ._base import YIELD_EVERY, BufferedSender

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

    Pure asyncio: no extra dependency. Serve it with a ``QueueListener``. Each
    record becomes ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``,
    MSG being the handler's formatter output (``%(message)s`` by default).

    Args:
        address: ``(host, port)`` for UDP and TCP; a path for a unix socket.
        transport: ``"udp"`` (a datagram per message), ``"tcp"`` (octet-counted
            frames, RFC 6587) or ``"unix"`` (a datagram socket such as
            ``/dev/log``).
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
            to a server that is away before it leaves the rest buffered; the
            default ``0`` makes one last attempt.
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
        if isinstance(facility, bool) or not isinstance(facility, int) or not 0 <= facility < 24:
            raise ValueError(f"{owner} facility must be an int from 0 to 23, got {facility!r}")
        check_positive(owner, "max_message", max_message, integer=True)
        self.address = address
        self.transport: Transport = transport
        self.facility = facility
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        self.app_name = _header_field(app_name if app_name is not None else program, 48)
        self.hostname = _header_field(
            hostname if hostname is not None else socket.gethostname(), 255
        )
        self.max_message = int(max_message)
        self.truncated = 0
        self.reconnects = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._datagram: asyncio.DatagramTransport | None = None
        self._broken = False  # a datagram error was reported by the transport
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
        self._writer = self._reader = None  # made on an earlier loop, now gone
        self._datagram = None

    async def _run(self) -> None:
        wake = self._wake
        while True:
            if not self._buffer:
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
                continue
            try:
                await self._connect()
                await self._write_buffered()
            except (OSError, EOFError, asyncio.TimeoutError, ValueError, TypeError):
                # (ValueError/TypeError: a loop or socket refusing the address.)
                await self._disconnect()
                self._failures += 1
                if self._failures == 1:
                    self._report("could not be sent; reconnecting")
                if not await self._backoff(self._failures - 1):
                    return  # close_budget spent: what is left stays buffered (aclose says so)
            else:
                self._failures = 0

    async def _write_buffered(self) -> None:
        """Write everything buffered; raise OSError/EOFError if the peer is gone."""
        buffer = self._buffer
        summary = self._summary()
        reported = self.dropped
        if self.transport == "tcp":
            writer, reader = self._writer, self._reader
            assert writer is not None
            assert reader is not None
            if reader.at_eof():
                raise EOFError("the syslog server closed the connection")
            messages = list(buffer) if summary is None else [summary, *buffer]
            writer.write(b"".join(b"%d %s" % (len(m), m) for m in map(self._cut, messages)))
            await writer.drain()
            self._dropped_reported = max(self._dropped_reported, reported)
            # Records buffered during drain() stay: only what was written leaves.
            for _ in range(len(messages) - (summary is not None)):
                buffer.popleft()
                self.sent += 1
            return
        if summary is not None:
            self._send_datagram(summary)
            self._dropped_reported = max(self._dropped_reported, reported)
        sent = 0
        while buffer:
            self._send_datagram(buffer[0])
            buffer.popleft()
            self.sent += 1
            sent += 1
            if not sent % YIELD_EVERY:
                await asyncio.sleep(0)

    def _send_datagram(self, message: bytes) -> None:
        datagram = self._datagram
        if datagram is None or self._broken:
            raise OSError("the syslog socket reported an error")
        datagram.sendto(self._cut(message))

    def _cut(self, message: bytes) -> bytes:
        """Return *message* cut to max_message bytes (counted when cut)."""
        if len(message) <= self.max_message:
            return message
        self.truncated += 1
        return message[: self.max_message]

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "tcp":
            if self._writer is not None:
                return
            assert isinstance(self.address, tuple)
            host, port = self.address
            self._reader, self._writer = await asyncio.open_connection(host, port)
        else:
            if self._datagram is not None:
                return
            self._broken = False
            handler = self

            class Protocol(asyncio.DatagramProtocol):
                def error_received(self, exc: Exception) -> None:
                    handler._broken = True

                def connection_lost(self, exc: Exception | None) -> None:
                    handler._broken = True

            if self.transport == "unix":
                # A connected socket of our own: not every loop (uvloop) takes a
                # path as remote_addr.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.connect(str(self.address))
                except OSError:
                    sock.close()
                    raise
                transport, _ = await loop.create_datagram_endpoint(Protocol, sock=sock)
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    Protocol, remote_addr=self.address
                )
            self._datagram = transport
        if self._failures:
            self.reconnects += 1

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, RuntimeError):
                pass
        datagram, self._datagram = self._datagram, None
        if datagram is not None:
            datagram.close()

    def _report(self, why: str) -> None:
        """Report the exception being handled through handleError."""
        message = "%s: %d buffered messages %s"
        report_error(
            self,
            own_record(
                logging.ERROR, message, (repr(self), len(self._buffer), why), "BufferedSender"
            ),
        )
