"""install(): a logger's handlers move behind aioqlog in one call, and come back."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import pathlib
import threading
import time

import pytest
from support import STALL, Recorder, in_thread, join_all, run_on

import aioqlog


class OnlyEven(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return int(record.getMessage().split()[-1]) % 2 == 0


@pytest.mark.anyio
async def test_install_moves_the_handlers_and_leaving_restores_them(
    logger: logging.Logger,
) -> None:
    """Inside the block the logger has one QueueHandler; afterwards its own handlers again."""
    first, second = Recorder(), Recorder()
    logger.addHandler(first)
    logger.addHandler(second)
    async with aioqlog.install(logger) as listener:
        (queue_handler,) = logger.handlers
        assert isinstance(queue_handler, aioqlog.QueueHandler)
        assert listener.queue is queue_handler.queue
        logger.info("served")
    assert logger.handlers == [first, second]
    for recorder in (first, second):
        assert recorder.messages() == ["served"]
        assert all(name.startswith("aioqlog-") for name in recorder.threads)


@pytest.mark.anyio
async def test_levels_filters_and_formatters_keep_working(logger: logging.Logger) -> None:
    """Existing config stays the source of truth: a handler's level, filter and formatter."""
    warnings, evens = Recorder(level=logging.WARNING), Recorder()
    evens.addFilter(OnlyEven())
    evens.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logger.addHandler(warnings)
    logger.addHandler(evens)
    async with aioqlog.install(logger):
        for i in range(4):
            logger.info("info %d", i)
        logger.warning("warning 5")
    assert warnings.messages() == ["warning 5"]
    assert evens.lines == ["INFO|info 0", "INFO|info 2"]


@pytest.mark.anyio
async def test_records_before_start_are_handled_in_the_caller(logger: logging.Logger) -> None:
    """Between install() and start(), records are not lost: handled as before."""
    recorder = Recorder()
    logger.addHandler(recorder)
    listener = aioqlog.install(logger)
    logger.info("before start")
    assert recorder.threads == {threading.current_thread().name}
    async with listener:
        logger.info("served")
    assert recorder.messages() == ["before start", "served"]


@pytest.mark.anyio
async def test_installing_twice_is_an_error_until_stopped(logger: logging.Logger) -> None:
    """A second install would queue the queue: refused, with the fix; fine after stop()."""
    logger.addHandler(Recorder())
    listener = aioqlog.install(logger)
    with pytest.raises(RuntimeError, match=r"already installed.*stop that listener first"):
        aioqlog.install(logger)
    await listener.stop()
    async with aioqlog.install(logger):
        pass


def test_a_logger_without_handlers_is_refused(logger: logging.Logger) -> None:
    """Nothing to move: a ValueError that says to configure handlers first."""
    with pytest.raises(ValueError, match=r"has no handlers.*logging.basicConfig"):
        aioqlog.install(logger)


def test_a_logger_already_behind_aioqlog_is_refused(logger: logging.Logger) -> None:
    """A configured aioqlog.QueueHandler is started with listening(), not installed over."""
    logger.addHandler(aioqlog.QueueHandler(handlers=[Recorder()]))
    with pytest.raises(RuntimeError, match=r"aioqlog.listening\(\)"):
        aioqlog.install(logger)


@pytest.mark.anyio
async def test_a_queue_handler_made_in_code_is_served_with_a_listener_as_both_errors_say(
    logger: logging.Logger,
) -> None:
    """Neither install() nor listening() sends the user to the other one for a hand-made pair."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    with pytest.raises(RuntimeError, match=r"aioqlog\.QueueListener\(") as installing:
        aioqlog.install(logger)
    assert "listening()" not in str(installing.value)
    with pytest.raises(RuntimeError, match=r"aioqlog\.QueueListener\(queue, \*handlers\)"):
        async with aioqlog.listening():
            pass
    recorder = Recorder()
    async with aioqlog.QueueListener(q, recorder):
        logger.info("served")
    assert recorder.messages() == ["served"]


def test_a_plain_with_is_refused_and_leaves_the_handlers_where_they_were(
    logger: logging.Logger,
) -> None:
    """`with install():` names `async with`; the logger keeps its handlers, install works after."""
    recorder = Recorder()
    logger.addHandler(recorder)
    refused = pytest.raises(TypeError, match=r"async with aioqlog\.install\(\)")
    with refused, aioqlog.install(logger):
        pass  # pragma: no cover - never entered
    assert logger.handlers == [recorder]
    listener = aioqlog.QueueListener(aioqlog.LogQueue(), Recorder())
    with pytest.raises(TypeError, match=r"QueueListener is an async context manager"), listener:
        pass  # pragma: no cover - never entered
    installed = aioqlog.install(logger)  # not refused as "already installed"
    assert isinstance(logger.handlers[0], aioqlog.QueueHandler)
    with pytest.raises(TypeError), installed:
        pass  # pragma: no cover - never entered
    assert logger.handlers == [recorder]


def test_a_loop_that_ends_without_stop_gives_the_handlers_back(
    logger: logging.Logger, anyio_backend: object
) -> None:
    """No stop(): once the run has delivered what was logged, the logger is as before."""
    recorder = Recorder()
    logger.addHandler(recorder)

    async def forgets_stop() -> None:
        aioqlog.install(logger).start()
        logger.info("in the run")

    run_on(anyio_backend, forgets_stop)
    assert logger.handlers == [recorder]
    logger.info("after the run")

    async def again() -> None:
        async with aioqlog.install(logger):
            logger.info("in the next run")

    run_on(anyio_backend, again)
    assert logger.handlers == [recorder]
    assert recorder.messages() == ["in the run", "after the run", "in the next run"]


@pytest.mark.anyio
async def test_a_logger_reconfigured_inside_the_block_keeps_its_new_handlers(
    logger: logging.Logger,
) -> None:
    """Handlers replaced while installed (as basicConfig(force=True) does) are not undone.

    The moved handlers are not put back beside the new ones, which would write
    every record twice; what was logged before the change still reaches them.
    """
    old, new = Recorder(), Recorder()
    logger.addHandler(old)
    stderr = io.StringIO()
    async with aioqlog.install(logger):
        logger.info("before the change")
        (queue_handler,) = logger.handlers
        with contextlib.redirect_stderr(stderr):
            logger.removeHandler(queue_handler)
            queue_handler.close()
        logger.addHandler(new)
        logger.info("after the change")
    assert logger.handlers == [new]
    logger.info("after the block")
    assert old.messages() == ["before the change"]
    assert new.messages() == ["after the change", "after the block"]
    assert "Stop the listener before reconfiguring logging" in stderr.getvalue()


def test_queue_options_reach_the_queue(logger: logging.Logger) -> None:
    """install(**queue_options) builds the LogQueue with them; bad ones fail clearly."""
    logger.addHandler(Recorder())
    listener = aioqlog.install(logger, maxsize=5, overflow="drop_old")
    assert (listener.queue.maxsize, listener.queue.overflow) == (5, "drop_old")
    with pytest.raises(RuntimeError):
        aioqlog.install(logger)
    with pytest.raises(ValueError, match="overflow must be one of"):
        aioqlog.install(logging.getLogger("aioqlog.tests.other"), overflow="sometimes")


@pytest.mark.anyio
async def test_the_root_logger_by_default_and_handlers_added_meanwhile_stay(
    logger: logging.Logger,
) -> None:
    """install() takes root; a handler added while installed is kept on restore."""
    root = logging.getLogger()
    root.handlers[:] = [original := Recorder()]
    added = Recorder()
    async with aioqlog.install():
        root.addHandler(added)
        logger.propagate = True
        logger.info("through root")
    assert root.handlers == [original, added]
    assert [r.getMessage() for r in original.records if r.name == logger.name] == ["through root"]


@pytest.mark.anyio
async def test_restart_moves_the_handlers_again(logger: logging.Logger) -> None:
    """start() after stop() puts the handlers behind the queue again; stop() restores."""
    recorder = Recorder()
    logger.addHandler(recorder)
    listener = aioqlog.install(logger)
    for round_ in range(2):
        listener.start()
        assert isinstance(logger.handlers[0], aioqlog.QueueHandler)
        logger.info("round %d", round_)
        await listener.stop()
        assert logger.handlers == [recorder]
    assert recorder.messages() == ["round 0", "round 1"]


class _Yielding(Recorder):
    """A recorder that lets other threads run before each record, as a write does."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.0005)
        super().emit(record)


@pytest.mark.anyio
async def test_leaving_the_block_keeps_each_threads_order_under_block(
    logger: logging.Logger,
) -> None:
    """Threads waiting for room as the block ends: what they queued is written first.

    The handler goes back on the logger only once nothing logged through the
    queue is on its way, or a thread's next record would pass its queued ones.
    """
    recorder = _Yielding()
    logger.addHandler(recorder)
    threads = [threading.Thread(target=_log_tagged, args=(logger, f"t{k}", 300)) for k in range(4)]
    async with aioqlog.install(logger, overflow="block", maxsize=50, block_timeout=5):
        for thread in threads:
            thread.start()
        await in_thread(lambda: recorder_has(recorder, 100))
    await in_thread(lambda: join_all(threads))
    # The last ones may still be in the lane's worker, behind the ones it holds.
    await in_thread(lambda: recorder_has(recorder, 1200))
    summaries = [m for m in recorder.messages() if m.startswith("aioqlog")]
    assert not summaries, summaries
    for k in range(4):
        seen = [int(m.split()[1]) for m in recorder.messages() if m.startswith(f"t{k} ")]
        assert seen == sorted(seen), f"t{k} out of order"
        assert seen == list(range(300))
    await in_thread(lambda: handlers_back(logger, recorder))
    assert logger.handlers == [recorder]


@pytest.mark.anyio
async def test_threads_logging_on_keep_their_order_as_the_block_comes_and_goes(
    logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    """Threads logging flat out to a file while install() is entered and left again and again.

    A log call caught between the two (it queued its record as the handler
    went back, while another thread delivered what was queued) returns only
    once that record is handed on: its thread's next record, straight to the
    handler, would pass it.
    """
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    logger.addHandler(handler)
    done = threading.Event()
    logged = [0]

    def log_on(tag: str) -> None:
        i = 0
        while not done.is_set():
            logger.info("%s %d", tag, i)
            i += 1
            logged[0] += 1

    def logged_past(count: int) -> None:
        deadline = time.monotonic() + STALL
        while logged[0] < count and time.monotonic() < deadline:
            time.sleep(0.001)

    threads = [threading.Thread(target=log_on, args=(f"t{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(12):
            async with aioqlog.install(logger):
                await in_thread(functools.partial(logged_past, logged[0] + 2000))
            await in_thread(functools.partial(logged_past, logged[0] + 2000))
    finally:
        done.set()
        await in_thread(lambda: join_all(threads))
    await in_thread(lambda: handlers_back(logger, handler))
    handler.close()
    lines = [line.split() for line in path.read_text().splitlines()]
    for k in range(4):
        seen = [int(words[1]) for words in lines if words[0] == f"t{k}"]
        assert len(seen) > 1000
        assert seen == sorted(set(seen)), f"t{k} out of order"


def _log_tagged(logger: logging.Logger, tag: str, count: int) -> None:
    for i in range(count):
        logger.info("%s %d", tag, i)


def recorder_has(recorder: Recorder, count: int) -> None:
    """Wait (in a thread) until *recorder* holds *count* records."""
    deadline = time.monotonic() + STALL
    while len(recorder.records) < count and time.monotonic() < deadline:
        time.sleep(0.001)


def handlers_back(logger: logging.Logger, handler: logging.Handler) -> None:
    """Wait (in a thread) until *handler* is back on *logger*."""
    deadline = time.monotonic() + STALL
    while handler not in logger.handlers and time.monotonic() < deadline:
        time.sleep(0.001)
