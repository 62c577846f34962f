"""What the socket handlers (syslog, ``SocketHandler``) share about anyio's sockets."""

from __future__ import annotations

import socket

import anyio
import anyio.abc

__all__ = ["SOCKET_ERRORS", "close_quietly", "peer_closed"]

#: What a socket raises when the peer is gone or refuses (anyio wraps some).
SOCKET_ERRORS = (
    OSError,
    EOFError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    # A loop or socket refusing the address.
    ValueError,
    TypeError,
)

#: Seconds a look at what a server sent may take (it is there already).
_LOOK = 0.05

#: Seconds closing a socket may take (a TLS goodbye to a peer that is gone).
_CLOSE = 1.0


async def peer_closed(stream: anyio.abc.ByteStream) -> bool:
    """Return whether the server closed *stream*, for a protocol where it never writes.

    Written to a closed connection, the next records would be taken by the
    socket and lost. When there is something to read, it is the end of the
    stream, or, over TLS, what TLS sends after the handshake (session
    tickets), taken in here.
    """
    fd = stream.extra(anyio.abc.SocketAttribute.raw_socket).fileno()
    # A look through a socket object of our own on the same descriptor: not
    # every loop's socket object can recv (asyncio's and uvloop's cannot).
    peek = socket.socket(fileno=fd)
    try:
        peek.setblocking(False)  # as it already is, for the loop
        peek.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False  # nothing to read: the connection is open
    finally:
        peek.detach()  # the descriptor stays open: it is the stream's
    # Data is there: reading returns at once, unless TLS took it all in and
    # waits for more (a ticket), which ends the look.
    with anyio.move_on_after(_LOOK):
        try:
            await stream.receive()
        except SOCKET_ERRORS:  # the end of the stream (EndOfStream), a reset
            return True
    return False


async def close_quietly(resource: anyio.abc.AsyncResource) -> None:
    """Close *resource* (a socket), even when cancelled, within a second, raising nothing.

    Closing a socket whose peer is gone may fail, or wait for a TLS goodbye
    that never comes: it is closed either way.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE):
        try:
            await resource.aclose()
        except SOCKET_ERRORS:
            pass
