"""aiohttp: a ``cleanup_ctx`` entry that runs aioqlog for the application's lifetime.

Example:
    >>> from aiohttp import web
    >>> from aioqlog.integrations.aiohttp import cleanup_ctx
    >>> app = web.Application()
    >>> app.cleanup_ctx.append(cleanup_ctx())

Append it first, so that logging starts before the other contexts and stops
(draining every record) after them.

Added in version 0.1.0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .._install import check_options, serving
from .._listener import DEFAULT_SHUTDOWN_TIMEOUT

_WHERE = "aioqlog.integrations.aiohttp.cleanup_ctx"

__all__ = ["cleanup_ctx"]


def cleanup_ctx(
    *,
    install: bool = False,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    **queue_options: Any,
) -> Callable[[Any], AsyncIterator[None]]:
    """Return a ``cleanup_ctx`` entry: listeners run from startup to cleanup.

    Args:
        install: ``False`` (the default) runs the listeners your logging
            configuration set up (``aioqlog.listening()``); ``True`` moves the
            root logger's handlers behind aioqlog (``aioqlog.install()``).
        shutdown_timeout: Seconds the shutdown waits at most for the handlers
            to finish (10 by default); what is left is reported on stderr, and
            a handler that never returns cannot keep the app from exiting.
            ``None`` waits as long as it takes.
        **queue_options: ``LogQueue`` options, with ``install=True``.

    Returns:
        An async generator function taking the application, for
        ``app.cleanup_ctx.append(...)``.

    Added in version 0.1.0.
    """
    check_options(install, shutdown_timeout, queue_options)

    async def aioqlog_ctx(app: Any) -> AsyncIterator[None]:
        async with serving(
            install, shutdown_timeout, "aioqlog.integrations.aiohttp.cleanup_ctx", **queue_options
        ):
            yield

    return aioqlog_ctx
