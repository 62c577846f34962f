"""Async handlers for logs that leave the machine.

Each is an ``AsyncHandler``: serve it with a ``QueueListener``, which awaits it
on the loop. Their client libraries are optional extras, imported when a
handler is created, so ``import aioqlog`` stays dependency-free:

* ``AsyncHTTPHandler``: batches of records over HTTP(S) (``aioqlog[http]``).
"""

from ._http import AsyncHTTPHandler as AsyncHTTPHandler

__all__ = ["AsyncHTTPHandler"]
