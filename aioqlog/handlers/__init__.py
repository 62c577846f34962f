"""Async handlers for logs that leave the machine.

Each is an ``AsyncHandler``: serve it with a ``QueueListener``, which awaits it
on the loop. Their client libraries are optional extras, imported when a
handler is created, so ``import aioqlog`` stays dependency-free:

* ``AsyncHTTPHandler``: batches of records over HTTP(S) (``aioqlog[http]``).
* ``AsyncSMTPHandler``: digest mails, so an error storm is one mail (``aioqlog[smtp]``).
* ``AsyncSyslogHandler``: RFC 5424 over UDP, TCP or a unix socket (no extra).

And a drop-in twin of a stdlib handler, sending what it sends:

* ``HTTPHandler``: ``logging.handlers.HTTPHandler``'s requests (``aioqlog[http]``).
"""

from ._http import AsyncHTTPHandler as AsyncHTTPHandler
from ._http_twin import HTTPHandler as HTTPHandler
from ._smtp import AsyncSMTPHandler as AsyncSMTPHandler
from ._syslog import AsyncSyslogHandler as AsyncSyslogHandler

__all__ = ["AsyncHTTPHandler", "AsyncSMTPHandler", "AsyncSyslogHandler", "HTTPHandler"]
