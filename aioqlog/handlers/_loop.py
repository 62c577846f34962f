"""The two things the handlers need of the running loop that anyio does not offer.

Everything else the network handlers do (waits, timeouts, locks, sockets,
threads) goes through anyio, and so runs alike on asyncio, uvloop and trio.
Two things do not:

* A task that outlives the call that starts it. anyio starts tasks only in a
  task group, whose block must enclose them; a handler has none to hold: the
  lane awaits ``aemit_batch``, and the sender the first call starts keeps
  sending after it returns. So ``spawn`` starts it the way the loop itself
  offers: a task of the asyncio loop (cancelled when ``asyncio.run`` ends), or
  a system task of the trio run (cancelled when its main task returns).
* A wake-up of the loop from another thread that never blocks that thread and
  never fails once the loop is gone (``call_soon_threadsafe``): the handlers'
  own encoding thread settles its results this way.

Both are a few lines per backend; what runs in the task and on the loop is
one code path.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

try:
    import anyio
    import anyio.lowlevel
except ImportError:
    raise ImportError(
        "aioqlog.handlers needs anyio, which each handler's extra installs: "
        "pip install 'aioqlog[syslog]' (or aioqlog[http], aioqlog[smtp])"
    ) from None

__all__ = ["LoopTask", "call_soon_threadsafe", "current_loop", "on_trio", "spawn"]


def current_loop() -> Any:
    """Return the running event loop: the asyncio loop, or the trio run's token.

    Raises:
        RuntimeError: If no event loop that anyio knows runs in this thread.
    """
    return anyio.lowlevel.current_token().native_token


def on_trio() -> bool:
    """Return whether the running loop is trio's (anyio's only other backend)."""
    return not isinstance(current_loop(), asyncio.AbstractEventLoop)


class LoopTask:
    """A task started by ``spawn``: ask which loop it runs on, cancel it, await its end."""

    def __init__(self, loop: Any) -> None:
        #: The loop it runs on (see ``current_loop``).
        self.loop = loop
        self._scope = anyio.CancelScope()
        self._ended = anyio.Event()
        self._native: object = None  # asyncio keeps only a weak reference to its tasks

    def done(self) -> bool:
        """Return whether the task has ended."""
        return self._ended.is_set()

    def cancel(self) -> None:
        """Cancel the task (a no-op once it has ended)."""
        self._scope.cancel()

    async def wait(self) -> None:
        """Return once the task has ended."""
        await self._ended.wait()


def spawn(fn: Callable[[], Awaitable[None]], name: str) -> LoopTask:
    """Start ``fn()`` as a task of the running loop, in a copy of the current context.

    It runs until it returns or is cancelled (by ``LoopTask.cancel``, or by the
    loop's run ending). *fn* must not raise: on trio an exception from a
    system task ends the whole run.
    """
    loop = current_loop()
    task = LoopTask(loop)

    async def main() -> None:
        try:
            with task._scope:
                await fn()
        finally:
            task._ended.set()

    if isinstance(loop, asyncio.AbstractEventLoop):
        task._native = loop.create_task(main(), name=name)
    else:
        import trio  # noqa: PLC0415 - only ever on a loop trio runs

        # Unlike asyncio's, trio's system tasks start in an empty context.
        trio.lowlevel.spawn_system_task(main, name=name, context=contextvars.copy_context())
    return task


def call_soon_threadsafe(loop: Any, callback: Callable[[], None]) -> bool:
    """Schedule ``callback()`` on *loop* from any thread; return False if the loop is gone."""
    try:
        if isinstance(loop, asyncio.AbstractEventLoop):
            loop.call_soon_threadsafe(callback)
        else:
            loop.run_sync_soon(callback)  # a trio.lowlevel.TrioToken
    except RuntimeError:  # closed (trio.RunFinishedError is one too): nobody waits
        return False
    return True
