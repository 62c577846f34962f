"""The event loop under the engine: asyncio (uvloop included) or trio, chosen once.

Everything that differs between the two lives here, behind one small object,
a ``Backend``, that ``QueueListener.start()`` captures from the running loop
(``running_backend()``) and hands to the bridge and the lanes. The engine
calls only what it offers: the thread-safe call-soon, the loop's clock,
whether the loop has ended, spawning the listener's and the lanes' tasks and
waiting for them, the park/wake waiter, the cancellation exception, a
checkpoint, and a timeout. Nothing here is looked up per record: the hot path
(``LogQueue.put_nowait``) sees only the bound callables a parked consumer left
in its wake-up token.

trio is imported only when the running loop is trio's: aioqlog imports and
works without it.

On trio, the listener's task has no nursery to live in (``start()`` is a plain
call), so it is a *system task* (``trio.lowlevel.spawn_system_task``), run in a
copy of the caller's context, as ``asyncio.create_task`` would. trio cancels
system tasks when the main task ends, level-triggered, and a system task that
raises crashes ``trio.run``. So the tasks run shielded and never raise; a
small watcher task, not shielded, sees the end of the run and tells the
listener once, which then drains as it does when ``asyncio.run`` cancels its
task. ``trio.run`` waits for system tasks, so it returns once the records are
delivered (within the listener's ``shutdown_timeout``).

In the second layer: it imports nothing from aioqlog but ``_diagnostics``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import math
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from ._diagnostics import write_stderr

if TYPE_CHECKING:
    from types import FrameType

    import trio

__all__ = [
    "AsyncioBackend",
    "Backend",
    "Task",
    "TrioBackend",
    "Waiter",
    "backend_of",
    "call_soon_threadsafe",
    "loop_runs_here",
    "on_trio",
    "running_backend",
    "running_loop",
]

_T = TypeVar("_T")

#: What a parked task waits on: an ``asyncio.Future`` or a ``trio.Event``.
Waiter = Any


class Task(Protocol):
    """What the engine asks of a task it spawned (an ``asyncio.Task`` provides it)."""

    def done(self) -> bool:
        """Return whether the task has ended."""
        ...

    def cancel(self) -> Any:
        """Interrupt the task at its next await (on the loop's thread)."""
        ...

    def cancelled(self) -> bool:
        """Return whether the task ended by being cancelled."""
        ...

    def exception(self) -> BaseException | None:
        """Return what the task raised, if it ended by raising."""
        ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        """Call ``fn(task)`` on the loop once the task has ended."""
        ...


class Backend:
    """One running event loop, as the engine uses it.

    The attributes are bound once, at ``QueueListener.start()``: a parked
    consumer puts ``call_soon_threadsafe``, ``is_closed`` and ``resolve`` in its
    wake-up token, so a waking producer calls them without a lookup.
    """

    #: The loop's name: ``"asyncio"`` or ``"trio"``.
    name: str
    #: The exception a cancelled task sees.
    Cancelled: type[BaseException]
    #: Run ``fn(arg)`` on the loop soon; from any thread. Raises ``RuntimeError``
    #: once the loop has closed (trio's ``RunFinishedError`` is one).
    call_soon_threadsafe: Callable[[Callable[[Any], None], Any], object]
    #: The same, called on the loop's own thread: asyncio's skips the self-pipe
    #: write that wakes a loop from another thread.
    call_soon: Callable[[Callable[[Any], None], Any], object]
    #: Complete a waiter (on the loop's thread); a second call is harmless.
    resolve: Callable[[Any], None]
    #: The loop's clock, in seconds (on the loop's thread).
    time: Callable[[], float]
    #: Return whether the loop has ended: nothing will run on it again (any thread).
    is_closed: Callable[[], bool]
    #: Let the loop's other tasks run (a coroutine function).
    checkpoint: Callable[[], Awaitable[None]]

    def runs_here(self) -> bool:
        """Return whether the calling code runs on this loop, in its thread, now."""
        raise NotImplementedError

    def shielded(self) -> contextlib.AbstractContextManager[object]:
        """Return a block that the caller's cancellation does not interrupt.

        For a bounded wait that must finish while its caller unwinds (leaving
        ``async with`` because the block was cancelled). asyncio delivers a
        cancellation once, so the unwinding code's awaits work: nothing to do.
        trio's cancellation is level-triggered: every await inside a cancelled
        scope fails at once, unless shielded.
        """
        return contextlib.nullcontext()

    def new_waiter(self) -> Waiter:
        """Return a fresh waiter for ``wait`` (on the loop's thread)."""
        raise NotImplementedError

    async def wait(self, waiter: Waiter, limit: float | None) -> bool:
        """Wait until *waiter* is resolved or *limit* seconds pass; False when they did."""
        raise NotImplementedError

    async def bounded(self, coro: Coroutine[Any, Any, _T], limit: float | None, what: str) -> _T:
        """Await *coro*, cancelling it after *limit* seconds (``None``: no bound).

        Raises:
            TimeoutError: naming *what* and the bound, when time ran out.
        """
        raise NotImplementedError

    def spawn(
        self,
        fn: Callable[[], Coroutine[Any, Any, None]],
        name: str,
        on_run_ending: Callable[[], None] | None = None,
    ) -> Task:
        """Run ``fn()`` in a new task on the loop; the caller's context is copied.

        The task outlives the call that starts it (on trio, a system task, run
        shielded: the end of the run does not interrupt it). *on_run_ending* is
        called (on trio) when the run's main task ends with this task still
        running, or at once for a task started after that, and again at each
        Ctrl-C until the task ends; on asyncio the task is cancelled then, and
        sees ``Cancelled`` instead (a Ctrl-C there ends the loop itself).
        """
        raise NotImplementedError

    async def join(self, task: Task, limit: float | None = None) -> bool:
        """Wait until *task* has ended, without cancelling it when cancelled ourselves.

        Returns False if it still runs after *limit* seconds (``None``: no bound).
        """
        raise NotImplementedError

    def cancel_requested(self) -> bool:
        """Return whether the current task is being cancelled from outside (vs by itself)."""
        raise NotImplementedError

    def uncancel(self) -> None:
        """Withdraw the cancellation the current task just caught (to work on after it)."""

    def submit(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> concurrent.futures.Future[_T]:
        """Run ``fn(*args)`` on the loop from another thread; return its future.

        Raises:
            RuntimeError: when the loop does not run (anymore).
        """
        raise NotImplementedError


# ------------------------------------------------------------------- asyncio


def resolve(waiter: asyncio.Future[None]) -> None:
    """Complete *waiter*; a stale or duplicate wake-up is harmless (it may be done)."""
    if not waiter.done():
        waiter.set_result(None)


async def _sleep0() -> None:
    await asyncio.sleep(0)


class AsyncioBackend(Backend):
    """An asyncio event loop (uvloop's too)."""

    name = "asyncio"
    Cancelled = asyncio.CancelledError

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.call_soon_threadsafe = loop.call_soon_threadsafe
        self.call_soon = loop.call_soon
        self.resolve = resolve
        self.time = loop.time
        self.is_closed = loop.is_closed
        self.checkpoint = _sleep0

    def runs_here(self) -> bool:
        return asyncio._get_running_loop() is self.loop

    def new_waiter(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    async def wait(self, waiter: asyncio.Future[None], limit: float | None) -> bool:
        if limit is None:
            await waiter
            return True
        expired = False

        def expire() -> None:
            nonlocal expired
            if not waiter.done():
                expired = True
                waiter.set_result(None)

        timer = self.loop.call_later(max(limit, 0.0), expire)
        try:
            await waiter
        finally:
            timer.cancel()
        return not expired

    async def bounded(self, coro: Coroutine[Any, Any, _T], limit: float | None, what: str) -> _T:
        if limit is None:
            return await coro
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(limit):
                    return await coro
            return await asyncio.wait_for(coro, limit)
        except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
            raise TimeoutError(f"{what} did not finish within timeout={limit}s") from None

    def spawn(
        self,
        fn: Callable[[], Coroutine[Any, Any, None]],
        name: str,
        on_run_ending: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        return self.loop.create_task(fn(), name=name)

    async def join(self, task: Task, limit: float | None = None) -> bool:
        future = cast("asyncio.Future[None]", task)  # what spawn() made
        await asyncio.wait({future}, timeout=limit)
        return future.done()

    def cancel_requested(self) -> bool:
        # A CancelledError that nobody requested was raised by the handler itself.
        if sys.version_info >= (3, 11):
            task = asyncio.current_task()
            return task is not None and task.cancelling() > 0
        return True  # Python 3.10 cannot tell: assume it was

    def uncancel(self) -> None:
        # Python 3.11+: so that timeouts used afterwards count cancellations right.
        if sys.version_info >= (3, 11):
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    def submit(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> concurrent.futures.Future[_T]:
        loop = self.loop
        if loop.is_closed() or not loop.is_running():
            # Checked before making the coroutine: one never awaited warns.
            raise RuntimeError("the event loop does not run")

        async def run() -> _T:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), loop)


# ---------------------------------------------------------------------- trio


def _set(event: trio.Event) -> None:
    event.set()


def _nothing() -> None:
    pass


class _TrioTask:
    """A system task spawned by ``TrioBackend.spawn``, as the engine sees it."""

    def __init__(self) -> None:
        import trio  # noqa: PLC0415 - optional: imported only once it runs

        # Cancelled by cancel(): the task's own interruption.
        self.scope = trio.CancelScope()
        # Cancelled once the task ends: retires the watcher of the run's end.
        self.watch = trio.CancelScope()
        self.ended = trio.Event()
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[Any], object]] = []

    def done(self) -> bool:
        return self.ended.is_set()

    def cancel(self) -> None:
        self.scope.cancel()

    def cancelled(self) -> bool:
        return self.scope.cancelled_caught

    def exception(self) -> BaseException | None:
        return self.error

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        self.callbacks.append(fn)

    def finish(self) -> None:
        self.ended.set()
        self.watch.cancel()
        for callback in self.callbacks:
            try:
                callback(self)
            except Exception as exc:  # noqa: BLE001 - a system task must never raise
                write_stderr(f"a callback of an aioqlog task raised {exc!r}")


class TrioBackend(Backend):
    """A ``trio.run``, reached through its ``TrioToken``."""

    name = "trio"

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        import trio  # noqa: PLC0415 - optional: imported only once it runs

        self._trio = trio
        self.token = token
        self.Cancelled = trio.Cancelled
        self.call_soon_threadsafe = self.call_soon = token.run_sync_soon
        self.resolve = _set
        self.time = trio.current_time
        self.checkpoint = trio.lowlevel.checkpoint

    def _current_token(self) -> trio.lowlevel.TrioToken | None:
        try:
            return self._trio.lowlevel.current_trio_token()
        except RuntimeError:  # another thread, or no run in this one
            return None

    def runs_here(self) -> bool:
        return self._current_token() is self.token

    def shielded(self) -> contextlib.AbstractContextManager[object]:
        return self._trio.CancelScope(shield=True)

    def is_closed(self) -> bool:
        if self.runs_here():
            return False
        try:
            # Coalesced (idempotent): asking often costs trio one wake-up at most.
            self.token.run_sync_soon(_nothing, idempotent=True)
        except RuntimeError:  # trio.RunFinishedError
            return True
        return False

    def new_waiter(self) -> trio.Event:
        return self._trio.Event()

    async def wait(self, waiter: trio.Event, limit: float | None) -> bool:
        if limit is None:
            await waiter.wait()
            return True
        with self._trio.move_on_after(max(limit, 0.0)):
            await waiter.wait()
            return True
        return False

    async def bounded(self, coro: Coroutine[Any, Any, _T], limit: float | None, what: str) -> _T:
        if limit is None:
            return await coro
        with self._trio.move_on_after(limit):
            return await coro
        raise TimeoutError(f"{what} did not finish within timeout={limit}s")

    def spawn(
        self,
        fn: Callable[[], Coroutine[Any, Any, None]],
        name: str,
        on_run_ending: Callable[[], None] | None = None,
    ) -> _TrioTask:
        spawn = self._trio.lowlevel.spawn_system_task
        task = _TrioTask()
        # A system task: start() is a plain call, with no nursery to start a task
        # in; it gets the caller's context, as asyncio.create_task gives.
        spawn(self._run, fn, task, name=name, context=contextvars.copy_context())
        if on_run_ending is not None:
            spawn(
                self._watch,
                task,
                on_run_ending,
                name=f"{name}-watch",
                context=contextvars.copy_context(),
            )
        return task

    async def _run(self, fn: Callable[[], Coroutine[Any, Any, None]], task: _TrioTask) -> None:
        try:
            # Shielded: the end of the run does not interrupt delivery (the
            # watcher tells the listener, which bounds its drain); only the
            # task's own scope (cancel()) does.
            with self._trio.CancelScope(shield=True), task.scope:
                await fn()
        except BaseException as exc:  # noqa: BLE001 - raising would crash trio.run
            task.error = exc
        finally:
            task.finish()

    async def _watch(self, task: _TrioTask, on_run_ending: Callable[[], None]) -> None:
        try:
            with task.watch:
                await self._trio.sleep_forever()
        except self._trio.Cancelled:
            # Not the task's own retirement: the system nursery is cancelled,
            # the run's main task has ended.
            if task.done():
                return

            def run_ending() -> None:
                if task.done():
                    return
                try:
                    on_run_ending()
                except Exception as exc:  # noqa: BLE001 - raising would crash trio.run
                    write_stderr(f"aioqlog could not begin to stop at the end of trio.run: {exc!r}")

            run_ending()
            # Shielded: the run is ending, and this waits for the task only to
            # hand Ctrl-C on to it meanwhile (trio.run waits for the task anyway).
            with self._trio.CancelScope(shield=True), self._ctrl_c_also_calls(run_ending):
                await task.ended.wait()

    @contextlib.contextmanager
    def _ctrl_c_also_calls(self, callback: Callable[[], None]) -> Iterator[None]:
        """Make Ctrl-C also call *callback* on the loop, in the ``with`` block.

        Once the run's main task has returned, trio holds a Ctrl-C back until
        ``trio.run`` is about to return: the listener, still delivering what
        is left, would never hear of it. So, where a Python handler of SIGINT
        can be set (the main thread, with one set already), one is chained in
        front: it tells the listener to stop now (*callback*, on the loop),
        then calls the one it replaced (trio's, which still raises
        ``KeyboardInterrupt`` out of ``trio.run`` at the end). A handler that
        someone else set meanwhile is left in place.
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers are the main thread's
            return
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):
            yield  # ignored (SIG_IGN), deadly (SIG_DFL) or not Python's: nothing to add
            return
        run_sync_soon = self.token.run_sync_soon

        def on_sigint(signum: int, frame: FrameType | None) -> Any:
            with contextlib.suppress(RuntimeError):  # trio.RunFinishedError: it has ended
                run_sync_soon(callback)
            return previous(signum, frame)

        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGINT) is on_sigint:
                signal.signal(signal.SIGINT, previous)

    async def join(self, task: Task, limit: float | None = None) -> bool:
        assert isinstance(task, _TrioTask)
        with self._trio.move_on_after(math.inf if limit is None else limit):
            await task.ended.wait()
        return task.done()

    def cancel_requested(self) -> bool:
        # The tasks run shielded: a Cancelled reaching the engine is its own.
        return True

    def submit(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> concurrent.futures.Future[_T]:
        trio = self._trio
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        async def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = await fn(*args)
            except BaseException as exc:  # noqa: BLE001 - a system task must never raise
                future.set_exception(exc)
            else:
                future.set_result(result)

        def start() -> None:
            try:
                trio.lowlevel.spawn_system_task(run, name="aioqlog-submitted")
            except RuntimeError as exc:  # the run is ending: no new system task
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)

        self.token.run_sync_soon(start)  # RunFinishedError (a RuntimeError) once ended
        return future


# ----------------------------------------------------------------- detection


def _trio_token() -> trio.lowlevel.TrioToken | None:
    """Return the token of the ``trio.run`` in this thread, if any (without importing trio)."""
    module = sys.modules.get("trio")
    if module is None:
        return None
    try:
        token: trio.lowlevel.TrioToken = module.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return token


def running_backend() -> Backend | None:
    """Return the event loop running in this thread, or None when none runs."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return AsyncioBackend(loop)
    token = _trio_token()
    if token is not None:
        return TrioBackend(token)
    return None


def running_loop() -> object | None:
    """Return what identifies the loop running in this thread, or None when none runs.

    The asyncio loop, or the trio run's token: the same object for as long as
    that loop runs, so that code which outlives one run can tell a new one.
    """
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop
    return _trio_token()


def backend_of(loop: object) -> Backend:
    """Return the ``Backend`` of *loop*, as ``running_loop()`` returned it."""
    if isinstance(loop, asyncio.AbstractEventLoop):
        return AsyncioBackend(loop)
    return TrioBackend(cast("trio.lowlevel.TrioToken", loop))


def on_trio() -> bool:
    """Return whether the loop running in this thread is trio's."""
    return asyncio._get_running_loop() is None and _trio_token() is not None


def call_soon_threadsafe(loop: object, callback: Callable[[], None]) -> bool:
    """Run ``callback()`` on *loop* soon, from any thread; False if that loop has ended."""
    try:
        if isinstance(loop, asyncio.AbstractEventLoop):
            loop.call_soon_threadsafe(callback)
        else:
            cast("trio.lowlevel.TrioToken", loop).run_sync_soon(callback)
    except RuntimeError:  # closed (trio.RunFinishedError is one too): nobody waits
        return False
    return True


def loop_runs_here() -> bool:
    """Return whether this thread runs an event loop now (so it must never wait)."""
    return asyncio._get_running_loop() is not None or _trio_token() is not None
