"""Adoption in one call: ``install()`` for logging set up in code, ``listening()`` for configs."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn

from ._backend import Task
from ._bridge import LogQueue
from ._diagnostics import check_seconds
from ._dictconfig import configured_listeners
from ._handler import QueueHandler
from ._lanes import DRAINING, ThreadLane
from ._listener import DEFAULT_SHUTDOWN_TIMEOUT, QueueListener
from ._stats import ListenerStats

__all__ = ["InstalledListener", "check_options", "install", "listening", "serving"]

# Loggers whose handlers sit behind aioqlog right now, and the listener that serves them.
_installed: weakref.WeakKeyDictionary[logging.Logger, InstalledListener] = (
    weakref.WeakKeyDictionary()
)


class InstalledListener(QueueListener):
    """The listener ``install()`` returns: it puts the logger's handlers back when stopped."""

    def __init__(
        self,
        logger: logging.Logger,
        queue: LogQueue,
        handlers: list[logging.Handler],
        *,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    ):
        # The handlers' levels filtered records before: keep it that way.
        super().__init__(
            queue, *handlers, respect_handler_level=True, shutdown_timeout=shutdown_timeout
        )
        self.logger = logger
        self.queue_handler = QueueHandler(queue)
        self._originals = handlers
        self._moved = False
        # Stopped, but a busy handler has not caught up yet: the handlers go
        # back to the logger once it has (see stop()).
        self.restore_pending = False
        # Moves and restores: from the loop's thread, a lane's worker when it
        # catches up, or a log call that delivers the last queued records.
        self._swap = threading.RLock()
        self._move()

    def _move(self) -> None:
        """Put the logger's handlers behind the queue (a single list assignment)."""
        with self._swap:
            if not self._moved:
                self._move_now()

    def _move_now(self) -> None:
        owner = _installed.get(self.logger)
        if owner is not None and owner is not self:
            raise RuntimeError(_twice(self.logger))
        current = self.logger.handlers
        if any(h not in current for h in self._originals):
            raise RuntimeError(
                f"the handlers aioqlog.install() moved were removed from "
                f"{_name(self.logger)} since; call aioqlog.install() again instead"
            )
        kept = [h for h in current if h not in self._originals]
        # One assignment: a concurrent log call sees the old list or the new one.
        self.logger.handlers = [*kept, self.queue_handler]
        _installed[self.logger] = self
        self._moved = True

    def _restore(self) -> None:
        """Give the logger its handlers back, keeping any added since.

        Unless the application reconfigured the logger meanwhile (``dictConfig``,
        ``basicConfig(force=True)``, ``removeHandler``): a logger without the
        queue handler keeps the handlers it was given, as it would without
        aioqlog, and the moved ones stay off it.
        """
        with self._swap:
            self.restore_pending = False
            if self._moved:
                self._restore_now()

    def _restore_now(self) -> None:
        current = self.logger.handlers
        if self.queue_handler in current:
            added = [h for h in current if h is not self.queue_handler]
            kept = [h for h in added if h not in self._originals]
            self.logger.handlers = [*self._originals, *kept]
        if _installed.get(self.logger) is self:
            del _installed[self.logger]
        self._moved = False

    def _after_fork_in_child(self) -> None:
        """In a forked child: stopped, with the logger's handlers given back to it.

        The install belonged to the parent's block, on the parent's loop: the
        child logs to its handlers directly, as before ``install()``, and may
        ``install()`` again on a loop of its own.
        """
        super()._after_fork_in_child()
        # The parent's other threads are gone: a lock one of them held stays held.
        self._swap = threading.RLock()
        self._restore()

    def start(self) -> None:
        """Start serving; moves the handlers behind the queue again after a ``stop()``.

        If the listener cannot start, the logger gets its handlers back: a
        failed start leaves nothing half-done.
        """
        with self._swap:  # no restore between the move and the start
            self._move()
            try:
                super().start()
            except BaseException:
                self._restore()
                raise

    def __enter__(self) -> NoReturn:
        """Refuse ``with`` (see ``QueueListener.__enter__``); the logger keeps its handlers."""
        if not self.running and not self.restore_pending:
            self._restore()  # install() moved them: nothing else will put them back
        raise TypeError(
            "aioqlog.install() returns an async context manager: write "
            "`async with aioqlog.install():` inside a coroutine"
        )

    def _after_drain(self) -> None:
        """The queue was emptied: the handlers go back if nothing else is on its way."""
        if self.restore_pending:
            with self._swap:
                if self.restore_pending and not self.running:
                    self._restore_when_idle()

    def _on_task_done(self, task: Task) -> None:
        """After the run, however it ended: the handlers go back as after ``stop()``.

        A loop that ends without ``stop()`` ends the run too; the next
        ``install()`` finds the logger as it was.
        """
        super()._on_task_done(task)
        if task is self._run_state.task:
            self._restore_when_idle()

    async def stop(self, timeout: float | None = None) -> ListenerStats:
        """Deliver everything logged so far, stop, and give the logger its handlers back.

        A handler still busy in its thread when a bounded stop gives up goes
        back to the logger once it has caught up: until then records keep
        going through the queue, behind the ones it still holds. Put back at
        once, the next log call would wait for the lock a stuck ``emit``
        holds, on the loop, or write ahead of the records still queued.
        """
        try:
            return await super().stop(timeout)
        finally:
            self._restore_when_idle()

    def _restore_when_idle(self) -> None:
        """Give the handlers back once nothing logged through the queue is on its way.

        Records still queued (logged while ``stop()`` ran, by threads that
        waited for room) or in a lane go first: a record logged straight to a
        handler put back now would be written ahead of them.
        """
        with self._swap:
            self._restore_or_wait()

    def _restore_or_wait(self) -> None:
        draining = [
            lane for lane in self._lanes if isinstance(lane, ThreadLane) and lane.state == DRAINING
        ]
        # Whoever empties the queue, a drainer or a log call, restores then
        # (_after_drain); a lane that catches up with the queue empty, now.
        # Pending before the look: a log call that delivers the last queued
        # records looks at it once done, so one of the two restores.
        self.restore_pending = True
        if not draining and not self._draining():
            self._restore()
            return
        if not draining:
            return
        waiting = {id(lane) for lane in draining}
        lock = threading.Lock()
        fired = [False]

        def caught_up(lane: ThreadLane) -> None:
            with lock:
                waiting.discard(id(lane))
                if waiting or fired[0]:
                    return
                fired[0] = True
            with self._swap:
                if self.restore_pending and not self.running and not self._draining():
                    self._restore()

        for lane in draining:
            lane.on_idle = caught_up
        for lane in draining:
            if lane.state != DRAINING:  # caught up before the callback was set
                lane.on_idle = None
                caught_up(lane)


def _name(logger: logging.Logger) -> str:
    return "the root logger" if logger is logging.getLogger() else f"logger {logger.name!r}"


def _twice(logger: logging.Logger) -> str:
    return (
        f"aioqlog is already installed on {_name(logger)}; stop that listener first "
        f"(await listener.stop(), or leave its `async with` block)"
    )


def install(
    logger: logging.Logger | str | None = None,
    *,
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT,
    **queue_options: Any,
) -> QueueListener:
    """Move a logger's handlers behind an aioqlog queue; return the listener.

    The logger (the root logger by default) keeps one ``QueueHandler``; its
    handlers move, unchanged, behind a ``LogQueue`` and a ``QueueListener``
    that respects their levels, so formatters, levels and filters work as
    before. Until the listener starts, records are handled in the logging
    thread as before; ``stop()`` drains and puts the handlers back.

    Args:
        logger: The logger, or its name; the root logger when omitted.
        shutdown_timeout: Seconds that leaving ``async with`` waits at most
            for the handlers (what is left is reported on stderr and in the
            stats); also the listener's bound when the loop ends without
            ``stop()``. ``None`` waits as long as it takes.
        **queue_options: ``LogQueue`` options: ``maxsize``, ``overflow``,
            ``block_timeout``.

    Returns:
        The listener, not started: use it as ``async with aioqlog.install():``,
        or call ``start()`` inside the running loop and ``await stop()``.

    Raises:
        RuntimeError: when aioqlog is already installed on that logger (a
            second install would queue the queue); stop the first listener.
        ValueError: when the logger has no handlers to move.

    Example:
        >>> async def main() -> None:
        ...     logging.basicConfig(level=logging.INFO)
        ...     async with aioqlog.install():
        ...         logging.getLogger("app").info("handled off the loop")

    Added in version 0.1.0.
    """
    queue = LogQueue(**queue_options)  # bad options fail first, with LogQueue's message
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    earlier = _installed.get(target)
    if earlier is not None:
        if earlier.running or not earlier.restore_pending:
            raise RuntimeError(_twice(target))
        # Stopped, still handing its last records to a busy handler: serve
        # the logger with it again, so that handler keeps one worker and its
        # records their order.
        if (earlier.queue.maxsize, earlier.queue.overflow, earlier.queue.block_timeout) != (
            queue.maxsize,
            queue.overflow,
            queue.block_timeout,
        ) or earlier.shutdown_timeout != shutdown_timeout:
            raise RuntimeError(
                f"aioqlog.install() on {_name(target)} stopped earlier, and a handler is "
                f"still catching up with its last records; install again with the same "
                f"options to go on with it, or wait until the handler has caught up"
            )
        return earlier
    handlers = list(target.handlers)
    queued = [h for h in handlers if isinstance(h, QueueHandler)]
    if queued:
        if any(h.listener is not None or h._pending is not None for h in queued):
            raise RuntimeError(
                f"{_name(target)} already logs through an aioqlog.QueueHandler from your "
                f"logging configuration; start its listener with aioqlog.listening() instead"
            )
        raise RuntimeError(
            f"{_name(target)} already logs through an aioqlog.QueueHandler; serve its "
            f"queue with a listener instead: "
            f"`async with aioqlog.QueueListener(queue_handler.queue, *your_handlers):`"
        )
    if not handlers:
        raise ValueError(
            f"{_name(target)} has no handlers to move behind aioqlog; configure them "
            f"first (for example with logging.basicConfig()), or pass the logger that has them"
        )
    return InstalledListener(target, queue, handlers, shutdown_timeout=shutdown_timeout)


@asynccontextmanager
async def listening(
    *listeners: QueueListener, timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT
) -> AsyncIterator[list[QueueListener]]:
    """Run listeners for the duration of an ``async with`` block.

    With no arguments, runs every listener that logging configuration set up
    (``dictConfig`` entries with ``"class": "aioqlog.QueueHandler"``): the
    configuration runs before any event loop exists, so this is where those
    listeners start. Leaving the block drains and stops the listeners it started.

    Args:
        *listeners: The listeners to run; the configured ones when omitted.
        timeout: Passed to each ``stop()`` on the way out: at most this many
            seconds for the handlers to finish (what is left is reported on
            stderr); ``None`` waits as long as it takes.

    Yields:
        The listeners, running.

    Raises:
        RuntimeError: when called with no arguments and logging configuration
            set up no aioqlog listener (the fix is in the message).

    Example:
        >>> async def main() -> None:
        ...     logging.config.dictConfig(CONFIG)  # with an aioqlog.QueueHandler
        ...     async with aioqlog.listening():
        ...         await serve()

    Added in version 0.1.0.
    """
    chosen = list(listeners) or configured_listeners()
    if not chosen:
        raise RuntimeError(
            "aioqlog.listening() found no listener to run: logging configuration set up "
            'no aioqlog.QueueHandler. Add one to your dictConfig ("class": '
            '"aioqlog.QueueHandler", "handlers": [...]); serve a QueueHandler made in code '
            "with `async with aioqlog.QueueListener(queue, *handlers):`, or pass its "
            "listener to aioqlog.listening(); or use aioqlog.install() to move a logger's "
            "handlers behind aioqlog"
        )
    started: list[QueueListener] = []
    try:
        for listener in chosen:
            if not listener.running:
                listener.start()
                started.append(listener)
        yield chosen
    finally:
        for listener in reversed(started):
            # Shielded, as QueueListener's own `async with` exit.
            with listener._shielded():
                await listener.stop(timeout)


def check_options(
    install_on: bool, shutdown_timeout: float | None, queue_options: dict[str, Any]
) -> None:
    """Check an integration's arguments when the app is created, not at startup."""
    check_seconds(shutdown_timeout, "shutdown_timeout", allow_none=True)
    if not isinstance(install_on, bool):
        raise TypeError(f"install must be True or False, got {install_on!r}")
    if queue_options and not install_on:
        raise TypeError(
            "queue options apply with install=True only; with logging configuration, "
            "set them under the aioqlog.QueueHandler's 'queue' key"
        )
    if install_on:
        LogQueue(**queue_options)  # a bad option fails here, with LogQueue's message


def serving(
    install_on: bool, shutdown_timeout: float | None, where: str, **queue_options: Any
) -> AbstractAsyncContextManager[object]:
    """Return what the framework integrations enter: ``install()`` or ``listening()``.

    *where* names the integration, for the error that says how to fix it.
    """
    if install_on:
        return install(shutdown_timeout=shutdown_timeout, **queue_options)
    if not configured_listeners():
        raise RuntimeError(
            f"{where}() found no aioqlog listener to run: logging configuration set up "
            f"no aioqlog.QueueHandler. Pass install=True ({where}(install=True)) to move "
            f"the root logger's handlers behind aioqlog, or add one to your dictConfig "
            f'("class": "aioqlog.QueueHandler", "handlers": [...])'
        )
    return listening(timeout=shutdown_timeout)
