"""Shutdown without loss: stop(), timeouts, asyncio.run endings, idle records, exit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import anyio
import anyio.abc
import pytest
from support import (
    STALL,
    AsyncRecorder,
    Gate,
    Recorder,
    bounded,
    in_thread,
    join_all,
    run,
    run_on,
    stop_behind,
)

import aioqlog

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class Slow(Recorder):
    """A handler that takes a little while per record, so its lane backs up."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.0005)
        super().emit(record)


def _produce(logger: logging.Logger, tag: str, count: int) -> None:
    for i in range(count):
        logger.info("%s %d", tag, i)


@pytest.mark.anyio
async def test_stop_delivers_everything_logged_before_it(logger: logging.Logger) -> None:
    """Records from the loop and from threads, queued or backed up in lanes: all arrive."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    slow, fast, awaited = Slow(), Recorder(), AsyncRecorder()
    listener = aioqlog.QueueListener(q, slow, fast, awaited)
    listener.start()
    threads = [threading.Thread(target=_produce, args=(logger, f"t{n}", 300)) for n in range(2)]
    for t in threads:
        t.start()
    _produce(logger, "loop", 300)
    await in_thread(lambda: join_all(threads))
    stats = await bounded(listener.stop())
    for handler in (slow, fast, awaited):
        assert len(handler.records) == 900
    assert stats.undelivered == 0
    assert not stats.running


@pytest.mark.anyio
async def test_stop_with_a_timeout_returns_and_reports(logger: logging.Logger) -> None:
    """A handler hangs: stop(timeout) returns and says what is undelivered.

    Until the stuck handler catches up, its records wait behind it in its lane
    (bounded), and the other handlers go on in the caller.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    hung, fast = Gate(name="smtp"), Recorder(name="console")
    listener = aioqlog.QueueListener(q, hung, fast)
    listener.start()
    _produce(logger, "before", 5)
    await in_thread(lambda: hung.entered.wait(STALL))
    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        stats = await listener.stop(timeout=0.1)
    assert time.monotonic() - started < STALL / 2
    assert "stop() ran out of time; still being delivered" in stderr.getvalue()
    assert "5 for smtp" in stderr.getvalue()
    assert [h.pending for h in stats.handlers] == [5, 0]
    assert stats.undelivered == 5
    assert len(fast.records) == 5
    # Stopped: the console handles in the caller, the stuck handler's lane keeps it.
    worker = listener._lanes[0].thread  # type: ignore[attr-defined]
    logger.info("after")
    assert fast.messages()[-1] == "after"
    assert (listener.stats.handlers[0].pending, listener.stats.handlers[0].dropped) == (6, 0)
    # Once unstuck, its worker finishes what it held and the lane is usable again.
    hung.opened.set()
    assert hung.wait_for(6)
    await in_thread(lambda: worker.join(STALL))
    logger.info("later")
    assert hung.messages() == [f"before {i}" for i in range(5)] + ["after", "later"]
    assert hung.threads >= {threading.current_thread().name}


@pytest.mark.anyio
async def test_an_async_call_cut_off_by_stop_keeps_its_records(logger: logging.Logger) -> None:
    """stop(timeout) cancels an aemit in flight: its record stays for the next start."""

    class Stalled(AsyncRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.entered = anyio.Event()
            self.proceed = anyio.Event()

        async def aemit(self, record: logging.LogRecord) -> None:
            self.entered.set()
            await self.proceed.wait()
            await super().aemit(record)

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Stalled()
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    _produce(logger, "r", 3)
    await bounded(handler.entered.wait())
    with contextlib.redirect_stderr(io.StringIO()):
        stats = await bounded(listener.stop(timeout=0.05))
    assert (stats.handlers[0].pending, stats.handlers[0].errors) == (3, 0)
    handler.proceed.set()
    async with listener:
        pass
    assert handler.messages() == ["r 0", "r 1", "r 2"]
    stats = listener.stats
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (3, 0)


# asyncio.run's ending, on asyncio and uvloop; trio's run ending is in tests/test_trio.py.
def test_asyncio_run_ending_without_stop_delivers_the_queue(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """The app forgets stop(): asyncio.run cancels the listener, which still delivers."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    slow, awaited = Slow(), AsyncRecorder()
    listener = aioqlog.QueueListener(q, slow, awaited)

    async def main() -> None:
        listener.start()
        await asyncio.sleep(0)
        _produce(logger, "r", 400)

    run(main(), loop_factory)
    assert len(slow.records) == 400
    assert len(awaited.records) == 400
    assert awaited.closed == 1
    assert not listener.running


# asyncio.run's ending, on asyncio and uvloop; trio's run ending is in tests/test_trio.py.
def test_the_first_record_after_an_implicit_stop_is_delivered_in_the_caller(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """asyncio.run cancels the listener while it waits for records: the next one still goes out.

    The cancellation reaches the listener parked on the queue; the queue must
    forget that park, or the next record would only "wake" the dead listener.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = Recorder()
    listener = aioqlog.QueueListener(q, handler)

    async def main() -> None:
        listener.start()
        logger.info("in the loop")
        await handler.arrived(1)  # the listener has delivered it and waits for more

    run(main(), loop_factory)
    logger.info("after the loop")
    assert handler.messages() == ["in the loop", "after the loop"]
    assert q.qsize() == 0


# asyncio.run's ending, on asyncio and uvloop; trio's run ending is in tests/test_trio.py.
def test_shutdown_timeout_bounds_an_implicit_stop(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """A hung handler cannot hang the end of asyncio.run beyond shutdown_timeout."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    hung = Gate(name="hung")
    listener = aioqlog.QueueListener(q, hung, shutdown_timeout=0.1)

    async def main() -> None:
        listener.start()
        logger.info("stuck forever")
        await in_thread(lambda: hung.entered.wait(STALL))

    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        run(main(), loop_factory)
    assert time.monotonic() - started < STALL / 2
    assert "the event loop ended before the handlers caught up" in stderr.getvalue()
    assert "1 for hung" in stderr.getvalue()
    hung.opened.set()


def test_records_before_start_are_not_lost(anyio_backend: object, logger: logging.Logger) -> None:
    """Before start: sync handlers handle in the caller; async ones get them on start."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec, awaited = Recorder(), AsyncRecorder()
    listener = aioqlog.QueueListener(q, rec, awaited)
    logger.info("at import time")
    assert rec.messages() == ["at import time"]
    assert rec.threads == {threading.current_thread().name}
    assert awaited.records == []

    async def main() -> None:
        async with listener:
            logger.info("served")

    run_on(anyio_backend, main)
    assert awaited.messages() == ["at import time", "served"]


def test_a_listener_made_on_the_loop_leaves_the_backlog_to_its_lanes(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """Records logged before any listener are not handled on the loop that makes one.

    The handler hangs until the gate opens: had the listener delivered the
    backlog while it was made, the loop would have waited on it.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    for i in range(3):
        logger.info("early %d", i)

    async def main() -> None:
        listener = aioqlog.QueueListener(q, gate)
        assert not gate.entered.is_set()  # nothing was handled on the loop
        async with listener:
            logger.info("served")
            await anyio.to_thread.run_sync(gate.entered.wait, STALL)
            gate.opened.set()

    run_on(anyio_backend, main)
    assert gate.messages() == ["early 0", "early 1", "early 2", "served"]
    assert threading.current_thread().name not in gate.threads


def test_a_backlog_left_by_a_listener_never_started_comes_with_the_next_record(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """A listener made on a loop and never started: the backlog is handled in order later."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    logger.info("early")

    async def main() -> aioqlog.QueueListener:
        return aioqlog.QueueListener(q, rec)

    listener = run_on(anyio_backend, main)
    assert rec.messages() == []
    logger.info("after the run")
    assert rec.messages() == ["early", "after the run"]
    assert rec.threads == {threading.current_thread().name}
    assert listener.stats.handlers[0].handled == 2


def test_a_full_queue_behind_a_listener_not_running_is_delivered_not_dropped(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """The queue filled before any listener existed; the next record delivers them all.

    The listener was made on a loop and never started: a record logged while
    it does not run is handled in the caller, the queued ones before it.
    """
    q = aioqlog.LogQueue(maxsize=5)
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    for i in range(5):
        logger.info("early %d", i)

    async def main() -> None:
        aioqlog.QueueListener(q, rec)
        logger.info("on the loop")

    run_on(anyio_backend, main)
    assert rec.messages() == [f"early {i}" for i in range(5)] + ["on the loop"]
    assert q.dropped == 0


def _stop_behind_a_held_record(
    anyio_backend: object, logger: logging.Logger, timeout: float
) -> str:
    """Stop a listener whose handler holds a record, with *timeout*; return its stderr."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    stderr = io.StringIO()

    async def main() -> None:
        listener = aioqlog.QueueListener(q, gate)
        listener.start()
        logger.info("held")
        with contextlib.redirect_stderr(stderr):
            await listener.stop(timeout=timeout)  # the notice comes after a second

    try:
        run_on(anyio_backend, main)
    finally:
        gate.opened.set()
    return stderr.getvalue()


def test_a_stop_notice_offers_ctrl_c_only_where_ctrl_c_skips(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """Where the application handles SIGINT itself (uvicorn does), Ctrl-C is not offered.

    A server's own SIGINT handler shuts the server down its way, and does not
    cut the stop short: "press Ctrl-C to skip" would send the user astray.
    """
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # the server's own
    try:
        said = _stop_behind_a_held_record(anyio_backend, logger, 2.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "stopping: waiting for the handlers to deliver 1 records (up to 1s more)" in said
    assert "Ctrl-C" not in said


def test_a_stop_bound_under_two_seconds_still_gives_the_notice(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """Any stop that waits on the handlers for over a second says so, however little is left."""
    said = _stop_behind_a_held_record(anyio_backend, logger, 1.5)
    assert re.search(
        r"stopping: waiting for the handlers to deliver 1 records \(up to 0\.\ds more", said
    ), said


def test_records_after_stop_wait_for_the_next_start(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """After stop: sync handlers handle in the caller; async ones on the next start."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec, awaited = Recorder(), AsyncRecorder()
    listener = aioqlog.QueueListener(q, rec, awaited)

    async def serve(message: str) -> None:
        async with listener:
            logger.info(message)

    run_on(anyio_backend, functools.partial(serve, "first run"))
    logger.info("between runs")
    assert rec.messages() == ["first run", "between runs"]
    assert awaited.messages() == ["first run"]
    run_on(anyio_backend, functools.partial(serve, "second run"))
    assert awaited.messages() == ["first run", "between runs", "second run"]
    assert awaited.closed == 2


@pytest.mark.anyio
async def test_logging_while_stopping_loses_nothing(logger: logging.Logger) -> None:
    """A thread logs through the whole stop: stop returns; every record arrives in order.

    Under "block" nothing is dropped; records after stop are handled in the caller.
    """
    q = aioqlog.LogQueue(maxsize=200, overflow="block", block_timeout=STALL)
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Slow()
    listener = aioqlog.QueueListener(q, rec)
    listener.start()
    keep_going = threading.Event()
    keep_going.set()
    sent = [0]

    def flood() -> None:
        while keep_going.is_set() or sent[0] < 2000:
            logger.info("%d", sent[0])
            sent[0] += 1

    thread = threading.Thread(target=flood)
    thread.start()
    await in_thread(lambda: rec.wait_for(100))
    await bounded(listener.stop())
    keep_going.clear()
    await in_thread(lambda: thread.join(STALL))
    assert rec.wait_for(sent[0])
    assert [r.args for r in rec.records] == [(i,) for i in range(sent[0])]


@pytest.mark.anyio
async def test_a_cancelled_stop_still_finishes_the_shutdown(logger: logging.Logger) -> None:
    """Cancelling the task awaiting stop() does not abandon delivery."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    listener = aioqlog.QueueListener(q, gate)
    listener.start()
    logger.info("in flight")
    await in_thread(lambda: gate.entered.wait(STALL))
    stopping = anyio.CancelScope()

    async def stop(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with stopping:
            task_status.started()  # then stop() runs on, up to its first wait
            await listener.stop()
            raise AssertionError("stop() returned though its task was cancelled")

    async with anyio.create_task_group() as tg:
        await tg.start(stop)
        stopping.cancel()
    assert stopping.cancelled_caught
    assert listener.running
    gate.opened.set()
    stats = await bounded(listener.stop())
    assert gate.messages() == ["in flight"]
    assert not stats.running


def test_stop_on_another_loop_is_refused(anyio_backend: object) -> None:
    """stop() must be awaited on the listener's own loop: the error says so (from any backend)."""
    listener = aioqlog.QueueListener(aioqlog.LogQueue())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(_start(listener), loop).result(STALL)

        async def stop_here() -> None:
            await listener.stop()

        with pytest.raises(RuntimeError, match="on the event loop the listener runs on"):
            run_on(anyio_backend, stop_here)
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(STALL)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STALL)
        loop.close()


async def _start(listener: aioqlog.QueueListener) -> None:
    listener.start()


# Interpreter exit, in a child process of its own.

_EXIT_SCRIPT = """
import asyncio, logging, sys, threading, time
import aioqlog

class Slow(logging.StreamHandler):
    def emit(self, record):
        time.sleep(0.001)
        super().emit(record)

class Stuck(logging.StreamHandler):
    # Hangs for good on the record "stuck"; writes the others.
    def emit(self, record):
        if record.getMessage() == "stuck":
            threading.Event().wait()
        super().emit(record)

log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)

def backlog(*messages):
    # A queue behind "app", with *messages* logged before any listener exists.
    q = aioqlog.LogQueue()
    log.addHandler(aioqlog.QueueHandler(q))
    for message in messages:
        log.info(message)
    return q

def stuck_beside_stdout(q):
    # A listener whose first handler hangs on "stuck", the second writes to stdout.
    return aioqlog.QueueListener(
        q, Stuck(sys.stderr), logging.StreamHandler(sys.stdout), shutdown_timeout=0.5
    )

def interrupted_in_its_first_step(listener):
    # Python 3.10's default SIGINT handler: KeyboardInterrupt as the task opens the lanes.
    opened = listener._open_lanes

    def interrupted(backend):
        opened(backend)
        raise KeyboardInterrupt

    listener._open_lanes = interrupted
    return listener
{body}
"""


def _run_script(body: str, loop: str = "asyncio") -> subprocess.CompletedProcess[str]:
    script = _EXIT_SCRIPT.format(body=textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-c", script, loop],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_loop_left_behind_is_drained_at_exit(loop: str) -> None:
    """The loop stops with the listener inside it and the program exits: nothing lost."""
    result = _run_script(
        """
        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, Slow(sys.stdout))
        if sys.argv[1] == "uvloop":
            import uvloop
            event_loop = uvloop.new_event_loop()
        else:
            event_loop = asyncio.new_event_loop()

        async def main():
            listener.start()
            await asyncio.sleep(0)
            for i in range(200):
                log.info("record %d", i)

        event_loop.run_until_complete(main())
        # No stop(), no close(): the program just ends.
        """,
        loop,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"record {i}" for i in range(200)]


def test_logging_shutdown_after_a_stop_gave_up_on_a_stuck_handler_returns() -> None:
    """A program's own logging.shutdown() after stop() gave up on a handler stuck in emit.

    It flushes and closes every handler on its list, taking each one's lock:
    the stuck emit holds that lock for good, so the handler is off the list.
    """
    result = _run_script(
        """
        q = backlog()
        listener = aioqlog.QueueListener(q, Stuck(sys.stderr))

        async def main():
            listener.start()
            log.info("stuck")
            await listener.stop(timeout=0.5)

        asyncio.run(main())
        logging.shutdown()
        print("shutdown returned", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["shutdown returned"]
    assert "1 records undelivered" in result.stderr


def test_a_handler_given_up_on_that_moves_again_is_closed_by_logging_shutdown() -> None:
    """Held in emit when stop() gave up, then let go: it goes back on logging.shutdown's list."""
    result = _run_script(
        """
        class Held(logging.StreamHandler):
            go = threading.Event()

            def emit(self, record):
                self.go.wait()
                super().emit(record)

            def close(self):
                print("closed", flush=True)
                super().close()

        q = backlog()
        held = Held(sys.stdout)
        listener = aioqlog.QueueListener(q, held)

        def listed():
            return any(ref() is held for ref in logging._handlerList)

        async def main():
            listener.start()
            log.info("held")
            await listener.stop(timeout=0.5)

        asyncio.run(main())
        print("listed while held:", listed(), flush=True)
        Held.go.set()
        deadline = time.monotonic() + 10
        while not listed() and time.monotonic() < deadline:
            time.sleep(0.001)
        logging.shutdown()
        """
    )
    assert result.returncode == 0, result.stderr
    # (The interpreter's exit calls logging.shutdown() again: closed twice, as ever.)
    assert result.stdout.splitlines()[:3] == ["listed while held: False", "held", "closed"]


def test_logging_shutdown_before_os_exit_writes_what_threads_logged_after_stop() -> None:
    """After stop(), threads log at once, then shutdown() and os._exit(): every line written.

    Most of those records wait for the thread or the helper that is delivering;
    ``os._exit()`` skips the interpreter's exit, and ``logging.shutdown()`` is
    what waits for them (docs/guarantees.md).
    """
    result = _run_script(
        """
        import os
        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))
        handler = Slow(sys.stdout)

        async def main():
            async with aioqlog.QueueListener(q, handler):
                pass

        asyncio.run(main())

        def burst(tag):
            for i in range(500):
                log.info("%s %d", tag, i)

        threads = [threading.Thread(target=burst, args=(tag,)) for tag in "AB"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for tag in "AB":
        written = [line for line in lines if line.startswith(tag)]
        assert written == [f"{tag} {i}" for i in range(500)]


def test_records_no_listener_ever_served_are_reported_at_exit() -> None:
    """Records put on a queue that no listener ever served are reported, not lost silently."""
    result = _run_script(
        """
        log.addHandler(aioqlog.QueueHandler(aioqlog.LogQueue()))
        for i in range(3):
            log.info("nobody listens")
        """
    )
    assert result.returncode == 0
    assert "aioqlog: 3 records were logged to a LogQueue that no QueueListener served" in (
        result.stderr
    )


def test_a_handler_stuck_on_a_backlog_left_for_exit_cannot_hang_it() -> None:
    """A listener made on a loop, never started, its handler stuck at exit: the exit ends.

    The backlog is delivered at exit from a thread of aioqlog's own, given up
    on once it makes no progress for shutdown_timeout, and what it could not
    deliver is reported: the record in the stuck emit and the one still queued.
    """
    result = _run_script(
        """
        q = backlog("first", "stuck", "last")

        async def main():
            aioqlog.QueueListener(q, Stuck(sys.stdout), shutdown_timeout=0.5)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first"]
    assert "is still busy (it handled nothing for 0.5s at exit)" in result.stderr
    assert "(1 records undelivered)" in result.stderr
    assert result.stderr.count("1 records queued at exit were not delivered") == 1


def test_drops_on_a_queue_no_listener_ever_served_are_reported_at_exit() -> None:
    """A full queue that no listener served: what it dropped is said beside what it holds."""
    result = _run_script(
        """
        log.addHandler(aioqlog.QueueHandler(aioqlog.LogQueue(maxsize=5)))
        for i in range(20):
            log.info("nobody listens")
        """
    )
    assert result.returncode == 0
    assert (
        "aioqlog: 5 records were logged to a LogQueue that no QueueListener served; they were "
        "not delivered (15 more were dropped: the queue was full, maxsize=5, "
        "overflow='drop_new')"
    ) in result.stderr


def test_drops_behind_a_handler_given_up_on_at_exit_are_reported() -> None:
    """A stuck handler's lane overflows after the run: the exit says what it dropped too.

    Its drop summary would reach it only once it caught up, which it never does.
    """
    result = _run_script(
        """
        q = aioqlog.LogQueue(maxsize=10)
        log.addHandler(aioqlog.QueueHandler(q))

        async def main():
            listener = aioqlog.QueueListener(q, Stuck(), shutdown_timeout=0.5)
            listener.start()
            log.info("stuck")
            await asyncio.sleep(0)

        asyncio.run(main())
        for i in range(50):
            log.info("after the run %d", i)
        """
    )
    assert result.returncode == 0, result.stderr
    assert (
        "(10 records undelivered, and 41 more were dropped: its lane was full, maxsize=10)"
    ) in result.stderr, result.stderr


def test_a_backlog_delivered_at_exit_comes_before_its_drop_summary() -> None:
    """The queue filled and dropped before the listener existed: its summary comes last."""
    result = _run_script(
        """
        q = aioqlog.LogQueue(maxsize=5)
        log.addHandler(aioqlog.QueueHandler(q))
        for i in range(20):
            log.info("early %d", i)

        async def main():
            aioqlog.QueueListener(q, logging.StreamHandler(sys.stdout))

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"early {i}" for i in range(5)] + [
        "aioqlog dropped 15 records: the queue was full (maxsize=5, overflow='drop_new')"
    ]


def test_records_a_drainer_has_not_handed_on_are_counted_when_it_is_stuck() -> None:
    """Records logged while stop() runs go to a drainer; a handler sticks on the first.

    The drainer takes one record at a time, so the two behind the stuck one
    are still queued at exit, and reported, not lost in its hands.
    """
    result = _run_script(
        """
        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))

        async def main():
            listener = aioqlog.QueueListener(
                q, logging.StreamHandler(sys.stdout), Stuck(sys.stdout), shutdown_timeout=0.5
            )
            listener.start()
            log.info("before")

            async def while_stopping():
                await asyncio.sleep(0)  # stop() has begun
                for message in ("stuck", "x1", "x2"):
                    log.info(message)

            task = asyncio.create_task(while_stopping())
            await listener.stop(timeout=1)
            await task

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert (
        "stop() ran out of time; 3 records still queued (logged while it ran) are being "
        "delivered from a helper thread"
    ) in result.stderr
    assert "(it handled nothing for 0.5s at exit)" in result.stderr
    assert "(1 records undelivered)" in result.stderr
    assert "2 records queued at exit were not delivered" in result.stderr


@pytest.mark.xfail(
    sys.version_info[:2] == (3, 12),
    reason="Python 3.12 starts no thread at exit: the handlers' own threads cannot serve it",
    strict=True,
)
def test_a_handler_stuck_at_exit_does_not_keep_the_others_from_the_backlog() -> None:
    """A backlog no listener took, delivered at exit: the healthy handler gets all of it.

    The exit's helper thread hands the records to each handler's worker, so
    the one stuck on the first record holds up its own lane only.
    """
    result = _run_script(
        """
        q = backlog("stuck", "a", "b")

        async def main():
            stuck_beside_stdout(q)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["stuck", "a", "b"], result.stderr
    assert "(it handled nothing for 0.5s at exit)" in result.stderr
    assert "(3 records undelivered)" in result.stderr


def test_a_listener_made_behind_a_backlog_is_not_held_by_a_stuck_handler() -> None:
    """Made where no loop runs, it delivers the backlog through the workers: it returns.

    The handler stuck on the first record holds up its own lane only; the
    other writes the whole backlog, and the exit reports the stuck one.
    """
    result = _run_script(
        """
        stuck_beside_stdout(backlog("stuck", "a", "b"))
        print("made", file=sys.stderr)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["stuck", "a", "b"], result.stderr
    assert "made" in result.stderr
    assert "(3 records undelivered)" in result.stderr


def test_a_task_interrupted_in_its_first_step_leaves_no_handler_starved() -> None:
    """Python 3.10's Ctrl-C ends the listener's task as it opens the lanes, records queued.

    (Simulated on every version: Python 3.11+ cancels the main task instead.)
    The queue is taken back and drained through the lanes' workers: the
    handler stuck on the first record does not keep the other from them.
    """
    result = _run_script(
        """
        q = backlog("stuck", "a", "b")

        async def main():
            interrupted_in_its_first_step(stuck_beside_stdout(q)).start()
            await asyncio.sleep(3600)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["stuck", "a", "b"], result.stderr
    assert "(3 records undelivered)" in result.stderr


@pytest.mark.parametrize("listener", ["QueueListener", "Preparing"])
def test_an_interrupt_in_the_middle_of_a_batch_loses_none_of_it(listener: str) -> None:
    """A KeyboardInterrupt ends the listener's task while it hands a batch on: all delivered.

    Python 3.10's Ctrl-C (and 3.11+'s second) lands wherever the loop's
    thread is; here, as the task reads the fifth record's handler level.
    The records of the batch not handed on yet still reach both handlers,
    also through a listener whose ``prepare`` is its own.
    """
    result = _run_script(
        """
        class Preparing(aioqlog.QueueListener):
            def prepare(self, record):
                return record

        class Interrupting(logging.StreamHandler):
            reads = 0

            @property
            def level(self):
                Interrupting.reads += 1
                if Interrupting.reads == 5:
                    raise KeyboardInterrupt
                return logging.NOTSET

            @level.setter
            def level(self, value):
                pass

        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))

        async def main():
            listener = LISTENER(
                q,
                Interrupting(sys.stdout),
                logging.StreamHandler(sys.stdout),
                respect_handler_level=True,
            )
            listener.start()
            for i in range(10):
                log.info("record %d", i)
            await asyncio.sleep(3600)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        """.replace("LISTENER", f"aioqlog.{listener}" if listener == "QueueListener" else listener)
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(2 * [f"record {i}" for i in range(10)])


def test_an_interrupt_as_a_stop_out_of_time_takes_the_queue_back_loses_none_of_it() -> None:
    """A lone handler's worker serving the queue is stuck; the stop runs out; Ctrl-C lands.

    The listener's task takes back what was logged before the stop and hands
    it to the lane: an interrupt there (as it reads the third record's
    handler level) leaves the records not handed on yet with the lane too,
    and the worker delivers every one once the handler moves again.
    """
    result = _run_script(
        """
        entered, opened = threading.Event(), threading.Event()

        class Interrupting(logging.StreamHandler):
            armed = False
            reads = 0

            @property
            def level(self):
                if Interrupting.armed and threading.current_thread() is threading.main_thread():
                    Interrupting.reads += 1
                    if Interrupting.reads == 3:
                        raise KeyboardInterrupt
                return logging.NOTSET

            @level.setter
            def level(self, value):
                pass

            def emit(self, record):
                if record.getMessage() == "record 0":
                    entered.set()
                    opened.wait(30)
                super().emit(record)

        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))

        async def main():
            listener = aioqlog.QueueListener(
                q, Interrupting(sys.stdout), respect_handler_level=True
            )
            listener.start()
            log.info("record 0")
            await asyncio.to_thread(entered.wait, 30)
            assert listener._one_hop is not None, "the worker serves the queue"
            for i in range(1, 10):
                log.info("record %d", i)
            Interrupting.armed = True
            await listener.stop(timeout=0.2)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        opened.set()
        """
    )
    assert "interrupted" in result.stderr, result.stderr
    assert result.stdout.splitlines() == [f"record {i}" for i in range(10)], result.stderr


def test_an_interrupt_in_a_handler_called_in_the_caller_gives_the_rest_back() -> None:
    """No listener runs: a KeyboardInterrupt in a handler ends the delivery, not the records.

    The thread delivering a backlog in the caller is interrupted in the
    handler's emit: what it had not handed on goes back to the queue, and
    the next log call delivers it (the record under way too); the exit
    finds nothing busy.
    """
    result = _run_script(
        """
        class Interrupting(logging.StreamHandler):
            fired = False

            def emit(self, record):
                if record.getMessage() == "boom" and not Interrupting.fired:
                    Interrupting.fired = True
                    raise KeyboardInterrupt
                super().emit(record)

        q = backlog("a", "boom", "b", "c")
        try:
            # Made where no loop runs: it delivers the backlog in this thread.
            aioqlog.QueueListener(q, Interrupting(sys.stdout))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        log.info("d")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "interrupted\n"
    assert result.stdout.splitlines() == ["a", "boom", "b", "c", "d"]


def test_a_handler_interrupting_a_helper_thread_goes_to_its_handle_error() -> None:
    """A backlog delivered at exit by a helper thread: KeyboardInterrupt in emit is an error.

    The helper is aioqlog's own thread: the exception goes to the handler's
    ``handleError``, as on a lane's worker, and the records after it are
    delivered, not left queued with nothing to deliver them.
    """
    result = _run_script(
        """
        class Interrupting(logging.StreamHandler):
            def emit(self, record):
                if record.getMessage() == "boom":
                    raise KeyboardInterrupt
                super().emit(record)

        q = backlog("a", "boom", "b", "c")

        async def main():
            aioqlog.QueueListener(q, Interrupting(sys.stdout))

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a", "b", "c"], result.stderr
    assert result.stderr.count("--- Logging error ---") == 1, result.stderr
    assert "KeyboardInterrupt" in result.stderr


def test_a_program_ending_on_ctrl_c_does_not_wait_on_what_a_stop_gave_up_on() -> None:
    """KeyboardInterrupt ends the program after a stop() ran out of time: the exit looks, no more.

    The slow handler still moves (5 ms a record, 10 s of work left), but a
    stop already spent its bound on it and the user pressed Ctrl-C: the exit
    reports what it leaves instead of waiting for it.
    """
    result = _run_script(
        """
        class Slower(logging.Handler):
            def emit(self, record):
                time.sleep(0.005)

        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))

        async def main():
            listener = aioqlog.QueueListener(
                q, logging.StreamHandler(sys.stdout), Slower()
            )
            listener.start()
            for i in range(2000):
                log.info("record %d", i)
            await listener.stop(timeout=0.5)

        asyncio.run(main())
        raise KeyboardInterrupt  # the program ends on Ctrl-C
        """
    )
    assert "KeyboardInterrupt" in result.stderr
    assert len(result.stdout.splitlines()) == 2000
    assert (
        "is still busy (Ctrl-C ended the program after its stop ran out of time; 1s more at exit)"
        in result.stderr
    ), result.stderr


def test_after_ctrl_c_another_handlers_progress_does_not_lengthen_the_look() -> None:
    """The program ends on a KeyboardInterrupt: a stuck handler gets the short look only.

    The healthy handler moves for about a second after the exit began; the
    stuck one is given up on a second after that, not ``shutdown_timeout``.
    """
    result = _run_script(
        """
        q = backlog("stuck", *(f"record {i}" for i in range(400)))

        class Slower(Slow):
            def emit(self, record):
                time.sleep(0.002)
                super().emit(record)

        async def main():
            listener = aioqlog.QueueListener(
                q, Stuck(sys.stderr), Slower(sys.stdout), shutdown_timeout=30
            )
            interrupted_in_its_first_step(listener).start()
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    assert "KeyboardInterrupt" in result.stderr
    assert len(result.stdout.splitlines()) == 401, result.stderr
    assert "(it handled nothing for 1s at exit)" in result.stderr, result.stderr


def test_records_for_async_handlers_never_served_are_reported_at_exit() -> None:
    """An async handler's backlog that no listener will await is reported at exit, once."""
    result = _run_script(
        """
        class Shipper(aioqlog.AsyncHandler):
            async def aemit(self, record):
                pass

        q = aioqlog.LogQueue()
        log.addHandler(aioqlog.QueueHandler(q))
        handler = Shipper()
        handler.set_name("shipper")
        aioqlog.QueueListener(q, handler)
        log.info("never shipped")
        """
    )
    assert result.returncode == 0
    assert result.stderr.count("aioqlog: 1 records for shipper were never delivered") == 1


def test_what_an_unserved_async_handler_drops_is_in_the_exit_report() -> None:
    """Past its lane's bound, what it drops is named at exit beside what it holds."""
    result = _run_script(
        """
        class Shipper(aioqlog.AsyncHandler):
            async def aemit(self, record):
                pass

        q = aioqlog.LogQueue(maxsize=10)
        log.addHandler(aioqlog.QueueHandler(q))
        handler = Shipper()
        handler.set_name("shipper")
        aioqlog.QueueListener(q, handler)
        for i in range(25):
            log.info("never shipped")
        """
    )
    assert result.returncode == 0
    assert (
        result.stderr.count(
            "aioqlog: 10 records for shipper were never delivered (15 more were dropped: its lane "
            "was full, maxsize=10)"
        )
        == 1
    )


_STUBBORN = """
import uvloop

class Stubborn(aioqlog.AsyncHandler):
    async def aemit(self, record):
        if sys.argv[2] == "aemit":
            await self.forever()

    async def aclose(self):
        if sys.argv[2] == "aclose":
            await self.forever()

    async def forever(self):
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except {swallowed}:
                    pass  # a retry loop that catches too much
        finally:
            print("finally ran", flush=True)

q = aioqlog.LogQueue()
log.addHandler(aioqlog.QueueHandler(q))
handler = Stubborn()
handler.set_name("stubborn")

async def main():
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=0.2)
    async with listener:
        for i in range(3):
            log.info("record %d", i)
    stats = listener.stats.handlers[0]
    print(f"stopped: errors={{stats.errors}} pending={{stats.pending}}", flush=True)

loop = uvloop.new_event_loop() if sys.argv[1] == "uvloop" else asyncio.new_event_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(main())
# What asyncio.run does next: it waits for every task it cancels.
tasks = asyncio.all_tasks(loop)
for task in tasks:
    task.cancel()
if tasks:
    loop.run_until_complete(asyncio.wait(tasks, timeout=5))
print(f"tasks left: {{sum(not task.done() for task in tasks)}}", flush=True)
"""


def _run_stubborn(loop: str, where: str, swallowed: str) -> subprocess.CompletedProcess[str]:
    script = _EXIT_SCRIPT.format(body=_STUBBORN.format(swallowed=swallowed))
    return subprocess.run(
        [sys.executable, "-c", script, loop, where],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_aemit_that_swallows_cancellation_leaves_no_task_behind(loop: str) -> None:
    """An aemit ignoring its cancellation is closed after the grace: no task outlives the stop."""
    result = _run_stubborn(loop, "aemit", "asyncio.CancelledError")
    assert result.returncode == 0, result.stderr
    # Its record in hand is kept with the other two, counted once: not an error too.
    assert result.stdout.splitlines() == [
        "finally ran",
        "stopped: errors=0 pending=3",
        "tasks left: 0",
    ], result.stderr
    err = result.stderr
    assert "stop() ran out of time; kept for the next start: 3 for stubborn" in err
    assert (
        "stubborn did not end within 1s of being cancelled (its aemit ignores cancellation); "
        "gave up on its call: closed it; the 1 records it had are among those kept above"
    ) in err
    assert "left running" not in err
    assert err.count("aioqlog: 3 records for stubborn were never delivered") == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_aemit_that_ignores_being_closed_too_leaves_no_task_behind(loop: str) -> None:
    """An aemit that swallows GeneratorExit as well is given up on, and that is reported."""
    result = _run_stubborn(loop, "aemit", "BaseException")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["stopped: errors=0 pending=3", "tasks left: 0"]
    err = result.stderr
    assert (
        "gave up on its call: closed it, which it ignored too (RuntimeError('coroutine ignored "
        "GeneratorExit'): its finally blocks did not run); the 1 records it had are among "
        "those kept above"
    ) in err
    assert err.count("aioqlog: 3 records for stubborn were never delivered") == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_aclose_that_swallows_cancellation_leaves_no_task_behind(loop: str) -> None:
    """An aclose ignoring its cancellation is closed after the grace: no task outlives the stop."""
    result = _run_stubborn(loop, "aclose", "asyncio.CancelledError")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "finally ran",
        "stopped: errors=0 pending=0",
        "tasks left: 0",
    ], result.stderr
    err = result.stderr
    assert (
        "stubborn.aclose() did not end within 1s of being cancelled (it ignores cancellation); "
        "gave up on it: closed it"
    ) in err
    assert err.count("stubborn.aclose() was cut off: stop()'s time ran out") == 1
    assert "left running" not in err
    assert "never delivered" not in err


_STUCK_BEHIND_DROPS = """
class StuckAsync(aioqlog.AsyncHandler):
    async def aemit(self, record):
        if record.getMessage() == "stuck":
            await asyncio.Event().wait()

class Held(Stuck):
    # Holds "held" until opened, so that what is queued meanwhile comes in one batch.
    entered, opened = threading.Event(), threading.Event()

    def emit(self, record):
        if record.getMessage() == "held":
            self.entered.set()
            self.opened.wait()
        super().emit(record)

q = aioqlog.LogQueue(maxsize=10)
log.addHandler(aioqlog.QueueHandler(q))
handler = {"sync": Stuck, "async": StuckAsync, "in hand": Held}[sys.argv[1]]()

async def main():
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=0.5)
    async with listener:
        if isinstance(handler, Held):
            log.info("held")
            await asyncio.to_thread(handler.entered.wait)
        log.info("stuck")
        for i in range(50):
            log.info("behind %d", i)
            if not isinstance(handler, Held):
                await asyncio.sleep(0)
        if isinstance(handler, Held):
            handler.opened.set()  # it takes the queue's ten and their summary at once
    stats = listener.stats
    print(stats.dropped + stats.handlers[0].dropped)

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["sync", "async", "in hand"])
def test_the_drops_a_stuck_handler_was_to_be_told_of_are_said_at_exit(kind: str) -> None:
    """A handler stuck for good never gets the drop summaries queued behind its record.

    Those drops were counted as reported once their summary was queued for
    it: the exit's report of what it left undelivered names them, whether
    they wait in its lane or came in the same batch as the record it is
    stuck on ("in hand").
    """
    result = _run_script(_STUCK_BEHIND_DROPS, kind)
    assert result.returncode == 0, result.stderr
    dropped = int(result.stdout.split()[-1])
    assert dropped > 0
    said = re.findall(r"dropped (\d+) records|(\d+) more were dropped", result.stderr)
    # Or in a summary the handler wrote before it got stuck.
    written = re.findall(r"^aioqlog dropped (\d+) records", result.stdout, re.MULTILINE)
    told = [int(a or b) for a, b in said] + [int(n) for n in written]
    assert sum(told) == dropped, (result.stdout, result.stderr)


def test_the_exit_notice_names_the_threads_it_waits_for_once_nothing_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no record left, a notice that the exit takes a while names who it waits for.

    It used to say "delivering 0 records at exit".
    """
    from aioqlog import _listener

    listener = aioqlog.QueueListener(aioqlog.LogQueue(), Recorder())
    release = threading.Event()
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        release.set()  # the thread finishes once the notice is out

    drainer = threading.Thread(target=release.wait, args=(STALL,), name="aioqlog-drain")
    drainer.start()
    listener._drainers.append(drainer)
    monkeypatch.setattr(_listener, "_NOTICE_AFTER", 0.0)
    monkeypatch.setattr(_listener, "_stderr", say)
    try:
        assert listener._wait_for_threads("at exit")
    finally:
        release.set()
        drainer.join()
    assert said, "no notice"
    assert said[0].startswith("waiting at exit for aioqlog-drain to finish"), said


def test_once_the_others_are_done_a_handler_a_stop_gave_up_on_gets_the_short_look(
    monkeypatch: pytest.MonkeyPatch, logger: logging.Logger
) -> None:
    """A helper thread still delivering when the exit begins does not lengthen the look.

    The stop gave up on the stuck handler, which has not moved since: once
    the helper is done, the exit gives it the one-second look, not
    ``shutdown_timeout`` after the helper's end.
    """
    from aioqlog import _listener

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, healthy = Gate(name="stuck"), Recorder(name="healthy")
    listener = aioqlog.QueueListener(q, stuck, healthy, shutdown_timeout=STALL)
    said: list[str] = []
    helper_done = threading.Event()
    helper = threading.Thread(target=helper_done.wait, args=(STALL,), name="aioqlog-drain")
    try:
        stop_behind(listener, logger, "first", held=(stuck,))
        monkeypatch.setattr(_listener, "_stderr", said.append)
        helper.start()
        listener._drainers.append(helper)  # still delivering as the exit begins
        threading.Timer(0.2, helper_done.set).start()
        began = time.monotonic()
        assert not listener._wait_for_threads("at exit")
        assert time.monotonic() - began < STALL / 2
    finally:
        helper_done.set()
        stuck.opened.set()
    assert any("(it handled nothing for 1s at exit)" in line for line in said), said


def test_the_exit_notice_says_what_each_handler_holds_not_a_sum_of_them(
    monkeypatch: pytest.MonkeyPatch, logger: logging.Logger
) -> None:
    """With two handlers, the records each still holds are said apart.

    Summed, two records waiting for two handlers read "delivering 4 records".
    """
    from aioqlog import _listener

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    one, two = Gate(name="one"), Gate(name="two")
    listener = aioqlog.QueueListener(q, one, two)
    said: list[str] = []
    try:
        stop_behind(listener, logger, "a", "b", held=(one, two))
        monkeypatch.setattr(_listener, "_stderr", said.append)
        listener._say_what_the_exit_waits_for("at exit", [])
    finally:
        one.opened.set()
        two.opened.set()
    assert said[0].startswith("delivering at exit: 2 for one, 2 for two"), said


def test_two_unnamed_handlers_of_one_class_are_told_apart_on_stderr_and_in_stats(
    monkeypatch: pytest.MonkeyPatch, logger: logging.Logger
) -> None:
    """Named by their repr alone, both would read "<Gate (NOTSET)>": each gets its position."""
    from aioqlog import _listener

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    one, two = Gate(), Gate()
    listener = aioqlog.QueueListener(q, one, two, logging.NullHandler())
    said: list[str] = []
    try:
        stop_behind(listener, logger, "a", held=(one, two))
        monkeypatch.setattr(_listener, "_stderr", said.append)
        listener._say_what_the_exit_waits_for("at exit", [])
    finally:
        one.opened.set()
        two.opened.set()
    assert said[0].startswith(
        "delivering at exit: 1 for <Gate (NOTSET)> #1, 1 for <Gate (NOTSET)> #2"
    ), said
    assert [h.name for h in listener.stats.handlers] == [
        "<Gate (NOTSET)> #1",
        "<Gate (NOTSET)> #2",
        "<NullHandler (NOTSET)>",
    ]
