"""Handlers and helpers the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
import logging
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel

import aioqlog

T = TypeVar("T")

#: A loose bound for "did not stall": waits that should take milliseconds.
STALL = 20.0


class Recorder(logging.Handler):
    """Keep every record and its formatted line; thread-safe; can be awaited."""

    def __init__(self, level: int = logging.NOTSET, name: str | None = None) -> None:
        super().__init__(level)
        if name is not None:
            self.set_name(name)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._changed:
            self.records.append(record)
            self.lines.append(line)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def wait_for(self, count: int, timeout: float = STALL) -> bool:
        """Block until *count* records arrived; False if the wait stalled."""
        return self.wait_until(lambda: len(self.records) >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = STALL) -> bool:
        """Block until *predicate()* holds, re-checked at each record; False if it stalled."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    async def arrived(self, count: int) -> None:
        """Await (in a thread of its own, not the busy executor) *count* records."""
        assert await in_thread(lambda: self.wait_for(count)), (
            f"only {len(self.records)} of {count} records arrived"
        )


class Gate(Recorder):
    """A recorder whose emit blocks until the gate opens (an SMTP server that hangs)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.entered = threading.Event()
        self.opened = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        if not self.opened.wait(STALL):
            self.opened.set()  # a failed test must not wait this long per record
        super().emit(record)


class Gates(Recorder):
    """A recorder whose emit of a named message blocks until that message's gate opens."""

    def __init__(self, *messages: str) -> None:
        super().__init__()
        self.entered = {m: threading.Event() for m in messages}
        self.opened = {m: threading.Event() for m in messages}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message in self.opened:
            self.entered[message].set()
            self.opened[message].wait(STALL)
        super().emit(record)


class AsyncRecorder(aioqlog.AsyncHandler):
    """An async handler that keeps what it is awaited with."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.closed = 0

    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.lowlevel.checkpoint()  # a real suspension, as a network write has
        self.records.append(record)
        self.lines.append(self.format(record))

    async def aclose(self) -> None:
        self.closed += 1

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


class OnTheLoop(aioqlog.QueueListener):
    """A listener whose records all pass through its task on the loop.

    With a lone sync handler and no hook overridden, the handler's worker takes
    records off the queue itself (the one-hop path); overriding ``dequeue``
    keeps them on the loop's path, for the tests of that path.
    """

    async def dequeue(self) -> list[tuple[logging.LogRecord, contextvars.Context]]:
        return await super().dequeue()


def run(coro: Coroutine[Any, Any, T], loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> T:
    """``asyncio.run(coro)`` on a loop from *loop_factory*, on every Python."""
    if sys.version_info >= (3, 12):
        return asyncio.run(coro, loop_factory=loop_factory)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)
    # 3.10: asyncio.run() always makes a default loop; emulate its shutdown.
    loop = loop_factory()
    try:
        asyncio.set_event_loop(loop)
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def in_thread(fn: Callable[[], T], timeout: float = STALL) -> T:  # noqa: ASYNC109
    """Run *fn* in a new thread (not an executor) and await its result (at most *timeout* s).

    It works on every backend (asyncio, uvloop, trio).
    """
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - relayed to the awaiting test
            outcome.append((False, exc))
        with contextlib.suppress(RuntimeError):  # the test gave up, and its run ended
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=target, name="producer").start()
    with anyio.fail_after(timeout):
        await done.wait()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def bounded(awaitable: Awaitable[T]) -> T:
    """Await *awaitable*, failing the test if it stalls for seconds (on every backend)."""
    with anyio.fail_after(STALL):
        return await awaitable


async def on_its_loop(
    loop: asyncio.AbstractEventLoop | None, fn: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Await ``fn()`` on *loop*, a server's asyncio loop in another thread, from any backend."""
    assert loop is not None, "the server never started"
    await in_thread(lambda: asyncio.run_coroutine_threadsafe(fn(), loop).result(STALL))


def backend_parts(backend: object) -> tuple[str, dict[str, Any]]:
    """Split an ``anyio_backend`` fixture's value into anyio's name and options."""
    if isinstance(backend, str):
        return backend, {}
    return cast("tuple[str, dict[str, Any]]", backend)


def run_on(backend: object, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` in a run of its own on *backend*, an ``anyio_backend`` fixture's value."""
    name, options = backend_parts(backend)
    return anyio.run(fn, backend=name, backend_options=options)


def join_all(threads: list[threading.Thread]) -> None:
    """Join every thread in *threads*."""
    for t in threads:
        t.join()


@contextlib.contextmanager
def served_in_a_thread(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> Iterator[None]:
    """Run an asyncio server's *start* and *stop* on a loop of its own, in a thread.

    It then serves a test running on any backend (trio included) in the main thread.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="server-loop")
    thread.start()

    async def call(fn: Callable[[], Awaitable[None]]) -> None:
        await fn()

    try:
        asyncio.run_coroutine_threadsafe(call(start), loop).result(STALL)
        yield
    finally:
        try:
            asyncio.run_coroutine_threadsafe(call(stop), loop).result(STALL)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STALL)
            loop.close()


@contextlib.contextmanager
def a_peer_that_never_reads() -> Iterator[int]:
    """Yield the port of a TCP server on 127.0.0.1 that takes connections and never reads.

    Its receive buffer is as small as the system allows, so that a client's
    writes soon block: a collector that hung with its connections open.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes the handshakes; nobody accepts or reads
        yield server.getsockname()[1]
    finally:
        server.close()


def stop_behind(
    listener: aioqlog.QueueListener, logger: logging.Logger, *messages: str, held: tuple[Gate, ...]
) -> None:
    """Start *listener*, log *messages*, and stop it while each of *held* holds a record.

    The stop's timeout runs out with those handlers stuck in their emit: it
    gives up on them, and their lanes drain off the loop.
    """

    async def stopped() -> None:
        listener.start()
        for message in messages:
            logger.info(message)
        for gate in held:
            await in_thread(functools.partial(gate.entered.wait, STALL))
        with contextlib.redirect_stderr(io.StringIO()):
            await listener.stop(timeout=0.05)

    asyncio.run(stopped())
