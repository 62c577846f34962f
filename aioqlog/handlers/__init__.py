"""Async handlers for logs that leave the machine.

Each is an ``AsyncHandler``: serve it with a ``QueueListener``, which awaits it
on the loop. They run on anyio, and their client libraries are optional
extras (each brings anyio), imported when a handler is created, so ``import
aioqlog`` stays dependency-free:

* ``AsyncHTTPHandler``: batches of records over HTTP(S) (``aioqlog[http]``;
  asyncio, uvloop and trio).
* ``AsyncSMTPHandler``: digest mails, so an error storm is one mail
  (``aioqlog[smtp]``; asyncio and uvloop).
* ``AsyncSyslogHandler``: RFC 5424 over UDP, TCP (optionally TLS) or a unix
  socket (``aioqlog[syslog]``; asyncio, uvloop and trio).

And drop-in twins of the stdlib's network handlers, each taking its
original's constructor and sending what it sends:

* ``HTTPHandler``: ``logging.handlers.HTTPHandler``'s requests (``aioqlog[http]``;
  asyncio, uvloop and trio).
* ``SMTPHandler``: ``logging.handlers.SMTPHandler``'s mails (``aioqlog[smtp]``;
  asyncio and uvloop).
* ``SocketHandler``: ``logging.handlers.SocketHandler``'s pickles
  (``aioqlog[syslog]``; asyncio, uvloop and trio).
"""

# First: without anyio, its ImportError says which extra to install.
from . import _base  # noqa: F401
from ._http import AsyncHTTPHandler as AsyncHTTPHandler
from ._http_twin import HTTPHandler as HTTPHandler
from ._smtp import AsyncSMTPHandler as AsyncSMTPHandler
from ._smtp_twin import SMTPHandler as SMTPHandler
from ._socket_twin import SocketHandler as SocketHandler
from ._syslog import AsyncSyslogHandler as AsyncSyslogHandler

__all__ = [
    "AsyncHTTPHandler",
    "AsyncSMTPHandler",
    "AsyncSyslogHandler",
    "HTTPHandler",
    "SMTPHandler",
    "SocketHandler",
]
