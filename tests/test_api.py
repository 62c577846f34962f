"""The public surface: names, signatures and the errors users see."""

from __future__ import annotations

import inspect
import logging
import logging.handlers
import queue

import anyio
import anyio.lowlevel
import pytest

import aioqlog


def test_all_is_pinned() -> None:
    """Every public name is a decision: adding one means changing this test."""
    assert aioqlog.__all__ == [
        "AsyncHandler",
        "HandlerStats",
        "ListenerStats",
        "LogQueue",
        "QueueHandler",
        "QueueListener",
        "install",
        "listening",
    ]
    for name in aioqlog.__all__:
        assert getattr(aioqlog, name).__module__.startswith("aioqlog.")


def test_the_handlers_module_is_pinned() -> None:
    """aioqlog.handlers' public names are decisions too; each is an AsyncHandler."""
    import aioqlog.handlers

    assert aioqlog.handlers.__all__ == [
        "AsyncHTTPHandler",
        "AsyncSMTPHandler",
        "AsyncSyslogHandler",
        "HTTPHandler",
        "SMTPHandler",
        "SocketHandler",
    ]
    for name in aioqlog.handlers.__all__:
        assert issubclass(getattr(aioqlog.handlers, name), aioqlog.AsyncHandler)


def test_async_handlers_take_a_timeout() -> None:
    """AsyncHandler(level, *, timeout=None): the per-call bound is keyword-only."""
    params = inspect.signature(aioqlog.AsyncHandler).parameters
    assert list(params) == ["level", "timeout"]
    assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["timeout"].default is None


def test_queue_handler_is_a_stdlib_queue_handler() -> None:
    """Users migrate by changing an import: isinstance checks keep working."""
    assert issubclass(aioqlog.QueueHandler, logging.handlers.QueueHandler)
    assert issubclass(aioqlog.AsyncHandler, logging.Handler)


def test_signatures_match_the_contract() -> None:
    """The constructor and method signatures that other code is written against."""
    q = inspect.signature(aioqlog.LogQueue)
    assert list(q.parameters) == ["maxsize", "overflow", "block_timeout"]
    assert q.parameters["overflow"].default == "drop_new"
    listener = inspect.signature(aioqlog.QueueListener)
    assert list(listener.parameters)[:3] == ["queue", "handlers", "respect_handler_level"]
    assert listener.parameters["respect_handler_level"].default is True
    stop = inspect.signature(aioqlog.QueueListener.stop)
    assert stop.parameters["timeout"].default is None
    assert inspect.iscoroutinefunction(aioqlog.QueueListener.stop)
    assert not inspect.iscoroutinefunction(aioqlog.QueueListener.start)
    for hook in ("dequeue", "prepare", "handle"):
        assert hasattr(aioqlog.QueueListener, hook)
    assert inspect.iscoroutinefunction(aioqlog.QueueListener.dequeue)
    for method in ("aemit", "aemit_batch", "aclose"):
        assert inspect.iscoroutinefunction(getattr(aioqlog.AsyncHandler, method))


def test_queue_is_bounded_by_default() -> None:
    """The default queue is bounded, with the documented size and policy."""
    q = aioqlog.LogQueue()
    assert q.maxsize == 50_000
    assert q.overflow == "drop_new"
    assert q.dropped == 0
    assert q.qsize() == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"maxsize": 0}, "maxsize must be a positive integer"),
        ({"maxsize": -5}, "maxsize must be a positive integer"),
        ({"maxsize": 1.5}, "maxsize must be a positive integer"),
        ({"maxsize": True}, "maxsize must be a positive integer"),
        ({"overflow": "drop"}, "overflow must be one of 'drop_new', 'drop_old', 'block'"),
        ({"block_timeout": 0}, "block_timeout must be a positive number"),
        ({"block_timeout": -1.0}, "block_timeout must be a positive number"),
    ],
)
def test_bad_queue_arguments_name_the_fix(kwargs: dict[str, object], fragment: str) -> None:
    """Bad arguments raise ValueError with a sentence that names the argument."""
    with pytest.raises(ValueError, match=fragment):
        aioqlog.LogQueue(**kwargs)  # type: ignore[arg-type]


def test_queue_handler_rejects_a_plain_queue() -> None:
    """A stdlib queue would silently lose the bridge: the error says what to pass."""
    with pytest.raises(TypeError, match=r"needs an aioqlog\.LogQueue, got _?queue\.SimpleQueue"):
        aioqlog.QueueHandler(queue.SimpleQueue())  # type: ignore[arg-type]


def test_queue_handler_makes_its_own_queue() -> None:
    """QueueHandler() with no queue gets a default LogQueue."""
    assert isinstance(aioqlog.QueueHandler().queue, aioqlog.LogQueue)


def test_listener_rejects_bad_arguments() -> None:
    """A listener needs a LogQueue and Handler instances."""
    with pytest.raises(TypeError, match=r"needs an aioqlog\.LogQueue"):
        aioqlog.QueueListener(queue.Queue())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"must be logging\.Handler instances"):
        aioqlog.QueueListener(aioqlog.LogQueue(), print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown_timeout must be a positive number"):
        aioqlog.QueueListener(aioqlog.LogQueue(), shutdown_timeout=0)
    for value in ("false", 0, None):
        with pytest.raises(TypeError, match="respect_handler_level must be True or False"):
            aioqlog.QueueListener(aioqlog.LogQueue(), respect_handler_level=value)  # type: ignore[arg-type]


def test_start_outside_a_loop_says_what_to_do() -> None:
    """start() is a plain call, but needs a running loop: the error says where to call it."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    with pytest.raises(RuntimeError, match="inside a running event loop"):
        listener.start()


@pytest.mark.anyio
async def test_start_twice_raises_with_a_fix() -> None:
    """Calling start() on a running listener raises; the message says to stop first."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    listener.start()
    try:
        with pytest.raises(RuntimeError, match=r"already running; call stop\(\) before start"):
            listener.start()
    finally:
        await listener.stop()


@pytest.mark.anyio
async def test_second_listener_on_a_served_queue_is_refused() -> None:
    """Two listeners must not compete for one queue: the second is refused."""
    q = aioqlog.LogQueue()
    async with aioqlog.QueueListener(q):
        with pytest.raises(RuntimeError, match="already served by a running QueueListener"):
            aioqlog.QueueListener(q)


@pytest.mark.anyio
async def test_stop_twice_is_a_no_op() -> None:
    """A second stop() returns the stats and changes nothing."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    listener.start()
    first = await listener.stop()
    second = await listener.stop()
    assert first == second
    assert not second.running


@pytest.mark.anyio
async def test_stop_before_start_is_a_no_op() -> None:
    """stop() on a listener that never ran just reports."""
    stats = await aioqlog.QueueListener(aioqlog.LogQueue()).stop()
    assert not stats.running


@pytest.mark.anyio
async def test_context_manager_returns_the_listener() -> None:
    """`async with` yields the running listener and stops it on exit."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    async with listener as entered:
        assert entered is listener
        assert listener.running
    assert not listener.running


@pytest.mark.anyio
async def test_stop_rejects_a_negative_timeout() -> None:
    """A negative timeout is a mistake, not an instant stop."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    with pytest.raises(ValueError, match="timeout must be a non-negative number"):
        await listener.stop(timeout=-1)


def test_restart_on_a_new_loop(anyio_backend: object) -> None:
    """A listener stopped on one loop can start again on another."""
    from support import run_on

    q = aioqlog.LogQueue()
    listener = aioqlog.QueueListener(q)

    async def cycle() -> bool:
        listener.start()
        await anyio.lowlevel.checkpoint()
        running = listener.running
        await listener.stop()
        return running

    assert run_on(anyio_backend, cycle)
    assert run_on(anyio_backend, cycle)
