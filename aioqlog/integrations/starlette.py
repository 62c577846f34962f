"""Starlette and FastAPI: a lifespan that runs aioqlog around the app's own.

Example:
    >>> from contextlib import asynccontextmanager
    >>> from fastapi import FastAPI
    >>> from aioqlog.integrations.starlette import lifespan
    >>> @asynccontextmanager
    ... async def app_lifespan(app):
    ...     yield {"db": "..."}
    >>> app = FastAPI(lifespan=lifespan(app_lifespan))

Added in version 0.1.0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from .._install import check_options, serving
from .._listener import DEFAULT_SHUTDOWN_TIMEOUT

_WHERE = "aioqlog.integrations.starlette.lifespan"

__all__ = ["lifespan"]

App = TypeVar("App")
Lifespan = Callable[[App], AbstractAsyncContextManager[Any]]


def lifespan(
    app_lifespan: Lifespan[App] | None = None,
    *,
    install: bool = False,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    **queue_options: Any,
) -> Lifespan[App]:
    """Return a lifespan that runs aioqlog's listeners around *app_lifespan*.

    Logging starts before the app's own startup and stops (draining every
    record) after its shutdown, so both are logged through aioqlog. The
    state the app's lifespan yields is passed on unchanged.

    Args:
        app_lifespan: The app's own lifespan (a callable taking the app and
            returning an async context manager), or ``None``.
        install: ``False`` (the default) runs the listeners your logging
            configuration set up (``aioqlog.listening()``); ``True`` moves the
            root logger's handlers behind aioqlog for the app's lifetime
            (``aioqlog.install()``).
        shutdown_timeout: Seconds the shutdown waits at most for the handlers
            to finish (10 by default); what is left is reported on stderr, and
            a handler that never returns cannot keep the app from exiting.
            ``None`` waits as long as it takes.
        **queue_options: ``LogQueue`` options, with ``install=True``.

    Returns:
        A lifespan for ``Starlette(lifespan=...)`` or ``FastAPI(lifespan=...)``.

    Added in version 0.1.0.
    """
    check_options(install, shutdown_timeout, queue_options)

    @asynccontextmanager
    async def run(app: App) -> AsyncIterator[Any]:
        async with serving(
            install, shutdown_timeout, "aioqlog.integrations.starlette.lifespan", **queue_options
        ):
            if app_lifespan is None:
                yield None
            else:
                async with app_lifespan(app) as state:
                    yield state

    return run
