"""trio: the same public API as on asyncio, from start() to the end of trio.run and exit.

Each test runs ``trio.run`` in a thread of its own, joined with a bound
(``run_trio``), so that a listener that never stopped fails the test instead
of hanging the suite.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import STALL, Gate, Recorder

import aioqlog

trio = pytest.importorskip("trio")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def run_trio(main: Callable[[], Awaitable[object]]) -> None:
    """Run ``trio.run(main)`` in a thread; fail (never hang) if it does not end in STALL s."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - relayed to the test
            failure.append(exc)

    thread = threading.Thread(target=target, name="trio-run", daemon=True)
    thread.start()
    thread.join(STALL)
    assert not thread.is_alive(), "trio.run did not return"
    if failure:
        raise failure[0]


class TrioRecorder(aioqlog.AsyncHandler):
    """An async handler that awaits trio itself, as a trio network client would."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.closed = 0

    async def aemit(self, record: logging.LogRecord) -> None:
        await trio.sleep(0.001)  # a real trio suspension, on a timer
        self.lines.append(f"{record.getMessage()} {REQUEST_ID.get()}")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self.closed += 1


class BatchTrioRecorder(TrioRecorder):
    """The same, handed runs of records (``aemit_batch``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        self.calls += 1
        async with trio.open_nursery() as nursery:  # a nursery inside works too
            nursery.start_soon(trio.sleep, 0)
        for record in records:
            self.lines.append(f"{record.getMessage()} {REQUEST_ID.get()}")


class RequestId(logging.Filter):
    """Stamp each record with the request id its log call saw."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


@pytest.fixture
def pair(logger: logging.Logger) -> tuple[logging.Logger, aioqlog.LogQueue]:
    """A logger feeding a fresh LogQueue, with no safety tick to hide a lost wake-up."""
    q = aioqlog.LogQueue()
    q._tick = None
    logger.addHandler(aioqlog.QueueHandler(q))
    return logger, q


def _recorder() -> Recorder:
    rec = Recorder()
    rec.addFilter(RequestId())
    rec.setFormatter(logging.Formatter("%(message)s %(request_id)s"))
    return rec


# ----------------------------------------------------------------- the API


def test_start_and_stop_from_a_task_deliver_everything(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """start() in a trio task serves the queue off the loop; await stop(timeout) drains it."""
    logger, q = pair
    rec = _recorder()
    listener = aioqlog.QueueListener(q, rec)
    seen: list[Any] = []

    async def main() -> None:
        listener.start()
        seen.append(listener.running)
        for i in range(300):
            logger.info("r%d", i)
        seen.append(await listener.stop(STALL))

    run_trio(main)
    assert seen[0] is True
    stats = seen[1]
    assert not stats.running
    assert (stats.handlers[0].handled, stats.undelivered) == (300, 0)
    assert rec.messages() == [f"r{i}" for i in range(300)]
    assert rec.threads == {"aioqlog-Recorder"}  # a worker thread, never the loop's


def test_async_with_and_an_async_handler_awaiting_trio(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """async with serves the queue; aemit and aemit_batch await trio.sleep and a nursery."""
    logger, q = pair
    single, batch = TrioRecorder(), BatchTrioRecorder()

    async def main() -> None:
        async with aioqlog.QueueListener(q, single, batch):
            for i in range(50):
                logger.info("r%d", i)
            await trio.sleep(0)
            logger.info("last")

    run_trio(main)
    expected = [f"r{i} -" for i in range(50)] + ["last -"]
    assert single.lines == expected
    assert batch.lines == expected
    assert batch.calls < len(expected)  # runs of records, not one call each
    assert (single.closed, batch.closed) == (1, 1)


def test_an_async_handler_timeout_is_a_trio_deadline(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """An aemit that outlives the handler's timeout is cut off and counted; the lane goes on."""
    logger, q = pair

    class Hanging(TrioRecorder):
        async def aemit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "hang":
                await trio.sleep_forever()
            await super().aemit(record)

        def handleError(self, record: logging.LogRecord) -> None:
            self.lines.append(f"error on {record.getMessage()}")

    handler = Hanging()
    handler.timeout = 0.05
    stats: list[aioqlog.ListenerStats] = []

    async def main() -> None:
        async with aioqlog.QueueListener(q, handler) as listener:
            logger.info("hang")
            logger.info("after")
        stats.append(listener.stats)

    run_trio(main)
    assert handler.lines == ["error on hang", "after -"]
    assert (stats[0].handlers[0].errors, stats[0].handlers[0].handled) == (1, 1)


def test_install_and_listening_under_trio(tmp_path: Path) -> None:
    """install() moves the root's handlers behind aioqlog and back; listening() runs dictConfig."""
    root = logging.getLogger()
    rec = _recorder()
    root.handlers[:] = [rec]
    root.setLevel(logging.INFO)

    async def installed() -> None:
        async with aioqlog.install():
            assert root.handlers != [rec]
            logging.getLogger("app").info("installed")

    run_trio(installed)
    assert root.handlers == [rec]
    assert rec.messages() == ["installed"]
    assert rec.threads == {"aioqlog-Recorder"}

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "recorder": {"()": "support.Recorder", "level": "INFO"},
                "queued": {"class": "aioqlog.QueueHandler", "handlers": ["recorder"]},
            },
            "root": {"level": "DEBUG", "handlers": ["queued"]},
        }
    )
    (queued,) = root.handlers
    assert isinstance(queued, aioqlog.QueueHandler)
    try:

        async def configured() -> None:
            async with aioqlog.listening() as listeners:
                assert all(listener.running for listener in listeners)
                logging.getLogger("app").info("configured")

        run_trio(configured)
        assert queued.listener is not None
        (target,) = queued.listener.handlers
        assert isinstance(target, Recorder)
        assert target.messages() == ["configured"]
        assert target.threads == {"aioqlog-recorder"}
    finally:
        root.removeHandler(queued)
        queued.close()


# --------------------------------------------------- where records come from


def test_records_from_before_threads_and_after_are_delivered_in_context(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """Before start, from trio.to_thread and a plain thread, and after trio.run: all delivered.

    Each with the context of its log call, tasks of one nursery each their own.
    """
    logger, q = pair
    logger.info("before the listener")
    rec, trio_rec = _recorder(), TrioRecorder()
    listener = aioqlog.QueueListener(q, rec, trio_rec)
    logger.info("before start")

    def in_a_thread(tag: str) -> None:
        for i in range(100):
            logger.info("%s %d", tag, i)

    async def request(rid: str) -> None:
        REQUEST_ID.set(rid)
        logger.info("request %s begins", rid)
        await trio.to_thread.run_sync(in_a_thread, rid)  # a thread sees the task's context
        logger.info("request %s ends", rid)

    async def main() -> None:
        listener.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(request, "a")
            nursery.start_soon(request, "b")
        assert await trio.to_thread.run_sync(rec.wait_for, 2 + 2 * 102, STALL / 4)
        for _ in range(10_000):  # let the listener park (bounded)
            if q._parked:
                break
            await trio.sleep(0)
        assert q._parked, "the listener should be parked"
        plain = threading.Thread(target=in_a_thread, args=("plain",))
        plain.start()
        await trio.to_thread.run_sync(plain.join)
        # Woken from the threads (TrioToken.run_sync_soon), not by stop(): all delivered.
        assert await trio.to_thread.run_sync(rec.wait_for, 2 + 2 * 102 + 100, STALL / 4)
        await listener.stop(STALL)

    run_trio(main)
    logger.info("after trio.run")
    lines = rec.lines
    assert lines[:2] == ["before the listener -", "before start -"]
    assert lines[-1] == "after trio.run -"
    for rid in ("a", "b"):
        mine = [line for line in lines if line.endswith(f" {rid}")]
        assert mine == [
            f"request {rid} begins {rid}",
            *(f"{rid} {i} {rid}" for i in range(100)),
            f"request {rid} ends {rid}",
        ]
    assert [line for line in lines if line.startswith("plain")] == [
        f"plain {i} -" for i in range(100)
    ]
    assert len(lines) == 2 + 2 * 102 + 100 + 1
    # The async handler awaited every record logged while its listener ran, in context.
    assert sorted(trio_rec.lines) == sorted(lines[:-1])


def test_a_trio_thread_never_waits_for_room_under_block(logger: logging.Logger) -> None:
    """Under "block", a full queue makes a thread running trio.run drop, never wait."""
    q = aioqlog.LogQueue(maxsize=2, overflow="block", block_timeout=STALL)
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate()
    listener = aioqlog.QueueListener(q, gate)
    full, done = threading.Event(), threading.Event()

    async def serve() -> None:
        listener.start()
        logger.info("r0")
        await trio.to_thread.run_sync(gate.entered.wait, STALL)
        logger.info("r1")  # the lane holds two now: full, and the listener waits for room
        full.set()
        await trio.to_thread.run_sync(done.wait, STALL)
        gate.opened.set()
        await listener.stop(STALL)

    async def log_from_another_run() -> float:
        started = trio.current_time()
        for i in range(5):
            logger.info("other %d", i)
        return float(trio.current_time() - started)

    server = threading.Thread(target=run_trio, args=(serve,), name="server")
    server.start()
    try:
        assert full.wait(STALL)
        elapsed = trio.run(log_from_another_run)
    finally:
        done.set()
        gate.opened.set()
        server.join(STALL)
    assert elapsed < STALL / 2
    assert q.dropped >= 3


# ---------------------------------------------------------- how a run ends


def test_the_end_of_trio_run_without_stop_delivers_everything(
    pair: tuple[logging.Logger, aioqlog.LogQueue], capsys: pytest.CaptureFixture[str]
) -> None:
    """The main task returns with every record still queued: trio.run returns once delivered."""
    logger, q = pair
    rec, trio_rec = _recorder(), TrioRecorder()
    listener = aioqlog.QueueListener(q, rec, trio_rec)

    async def main() -> None:
        listener.start()
        REQUEST_ID.set("main")
        for i in range(200):
            logger.info("r%d", i)
        # No checkpoint: the listener has not taken a record when the main task ends.

    run_trio(main)
    expected = [f"r{i} main" for i in range(200)]
    assert rec.lines == expected  # delivered before trio.run returned
    assert trio_rec.lines == expected  # awaited on trio, after the main task ended
    assert trio_rec.closed == 1
    assert not listener.running
    assert capsys.readouterr().err == ""
    logger.info("after")  # handled in the caller now
    assert rec.lines[-1] == "after -"


def test_a_cancelled_scope_ends_the_block_not_the_delivery(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """A cancelled block still stops the listener on leaving: both kinds of handler get it all.

    trio's cancellation is level-triggered: unshielded, the stop on leaving the
    block failed at its first await, and the end of the run that follows at
    once was taken for a second Ctrl-C (the async handler lost records).
    """
    logger, q = pair
    rec = _recorder()
    arec = TrioRecorder()
    listener = aioqlog.QueueListener(q, rec, arec)
    seen: list[tuple[bool, bool]] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with listener:
                for i in range(100):
                    logger.info("r%d", i)
                scope.cancel()
                await trio.sleep_forever()
        seen.append((scope.cancelled_caught, listener.running))
        # trio.run ends now: nothing else waits for the delivery.

    run_trio(main)
    assert seen == [(True, False)]
    assert rec.messages() == [f"r{i}" for i in range(100)]
    assert arec.lines == [f"r{i} -" for i in range(100)]


def test_a_start_refused_at_the_very_end_of_the_run_leaves_delivery_in_the_caller(
    pair: tuple[logging.Logger, aioqlog.LogQueue],
) -> None:
    """start() once trio takes no more system tasks raises, and records go to the handler anyway."""
    logger, q = pair
    rec = _recorder()
    listener = aioqlog.QueueListener(q, rec)
    refused: list[str] = []
    kept: list[AsyncIterator[None]] = []

    async def finalized_late() -> AsyncIterator[None]:
        try:
            yield
        finally:  # run by trio after the main task and the system tasks have ended
            try:
                listener.start()
            except RuntimeError as exc:
                refused.append(str(exc))
            logger.info("logged at the very end")

    async def main() -> None:
        generator = finalized_late()
        await generator.__anext__()
        kept.append(generator)  # alive past the main task: trio finalizes it last

    run_trio(main)
    assert refused == ["Nursery is closed to new arrivals"]
    assert rec.messages() == ["logged at the very end"]
    assert not listener.running


def test_a_stuck_handler_bounds_stop_and_is_reported(
    pair: tuple[logging.Logger, aioqlog.LogQueue], capsys: pytest.CaptureFixture[str]
) -> None:
    """stop(timeout) returns in time with a handler stuck in emit, and says what was left."""
    logger, q = pair
    gate = Gate()
    listener = aioqlog.QueueListener(q, gate)
    seen: list[aioqlog.ListenerStats] = []

    async def main() -> None:
        listener.start()
        for i in range(10):
            logger.info("r%d", i)
        await trio.to_thread.run_sync(gate.entered.wait, STALL)
        with trio.fail_after(STALL / 2):
            seen.append(await listener.stop(0.2))

    try:
        run_trio(main)
    finally:
        gate.opened.set()
    stats = seen[0]
    assert not stats.running
    assert stats.handlers[0].pending == 10
    assert "stop() ran out of time" in capsys.readouterr().err
    assert gate.wait_for(10)  # the worker goes on off the loop, in order
    assert gate.messages() == [f"r{i}" for i in range(10)]


def test_stop_returns_when_an_aemit_ignores_cancellation(
    pair: tuple[logging.Logger, aioqlog.LogQueue], capsys: pytest.CaptureFixture[str]
) -> None:
    """An aemit shielded from cancellation: stop(timeout) still returns, and says so."""
    logger, q = pair
    released: list[Any] = []  # the trio.Event made inside the run

    class Shielded(aioqlog.AsyncHandler):
        async def aemit(self, record: logging.LogRecord) -> None:
            with trio.CancelScope(shield=True):
                await released[0].wait()

    listener = aioqlog.QueueListener(q, Shielded())
    took: list[float] = []

    async def main() -> None:
        released.append(trio.Event())
        listener.start()
        logger.info("held")
        began = trio.current_time()
        with trio.fail_after(STALL / 2):
            await listener.stop(0.2)
        took.append(trio.current_time() - began)
        released[0].set()  # else the task, never ending, keeps trio.run from returning

    run_trio(main)
    assert took[0] < 0.2 + 1.0 + 1.0  # the deadline, the grace for the cancellation, slack
    assert "(its aemit ignores cancellation); left running" in capsys.readouterr().err


def _run_script(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import logging, sys, threading
        import trio
        import aioqlog

        logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
        log = logging.getLogger("app")
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=STALL * 2,
        check=False,
    )


def test_a_process_whose_trio_run_ended_without_stop_writes_every_line_and_exits() -> None:
    """trio.run ends without stop(), threads and the process log on: every line, a clean exit."""
    proc = _run_script(
        """
        listener = aioqlog.install()

        def burst(tag):
            for i in range(1000):
                log.info("%s %d", tag, i)

        async def main():
            listener.start()
            burst("main")
            await trio.to_thread.run_sync(burst, "worker")
            burst("tail")

        trio.run(main)
        late = threading.Thread(target=burst, args=("late",))
        late.start()
        late.join()
        burst("after")
        """
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    for tag in ("main", "worker", "tail", "late", "after"):
        assert [line for line in lines if line.startswith(f"{tag} ")] == [
            f"{tag} {i}" for i in range(1000)
        ]
    assert len(lines) == 5000


def test_a_trio_run_still_going_in_a_daemon_thread_is_stopped_at_exit() -> None:
    """At exit, a listener on a trio.run in another thread is stopped there: every line written.

    The async handler needs trio to deliver: only a stop() run on that loop gets them out.
    """
    proc = _run_script(
        """
        class Printer(aioqlog.AsyncHandler):
            async def aemit(self, record):
                await trio.sleep(0)
                print("async", record.getMessage(), flush=True)

        listener = aioqlog.QueueListener(queue := aioqlog.LogQueue(), Printer())
        log.handlers[:] = [aioqlog.QueueHandler(queue)]
        log.propagate = False
        started = threading.Event()

        async def serve():
            listener.start()
            started.set()
            await trio.sleep_forever()

        threading.Thread(target=trio.run, args=(serve,), daemon=True).start()
        started.wait(10)
        for i in range(1000):
            log.info("r %d", i)
        """
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [f"async r {i}" for i in range(1000)]


_NOTICE = "the event loop is ending without QueueListener.stop(); delivering"


def _ctrl_c_during_the_end_of_run(body: str) -> tuple[int, str, str, float]:
    """Run *body* in a process; Ctrl-C it once it says it delivers at the end of ``trio.run``.

    Returns the exit status, stdout, stderr and the seconds from the Ctrl-C to
    the exit. A process that has not exited ``STALL`` seconds after the Ctrl-C
    is killed, and the test fails.
    """
    script = textwrap.dedent(
        """
        import logging, signal, sys, threading
        import trio
        import aioqlog

        log = logging.getLogger()  # install() puts the root logger's handlers behind it
        log.setLevel(logging.INFO)
        """
    ) + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    noticed = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if _NOTICE in line:
                noticed.set()
        noticed.set()  # the process ended

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert noticed.wait(STALL), "".join(lines)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        try:
            proc.wait(STALL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Ctrl-C did not end the process:\n{''.join(lines)}")
        took = time.monotonic() - interrupted
        assert proc.stdout is not None
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(STALL)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return proc.returncode, out, "".join(lines), took


def test_ctrl_c_cuts_short_the_end_of_run_delivery_and_counts_what_is_left() -> None:
    """A Ctrl-C during the drain at trio.run's end stops it now: KeyboardInterrupt, a count.

    trio holds a Ctrl-C back once the main task has returned; the listener
    hears of it all the same. Nothing is lost silently: what the handler wrote
    and what stderr reports undelivered make up every record.
    """
    rc, out, err, took = _ctrl_c_during_the_end_of_run(
        """
        class Slow(aioqlog.AsyncHandler):
            async def aemit(self, record):
                await trio.sleep(0.05)
                print(record.getMessage(), flush=True)

        log.addHandler(Slow())

        async def main():
            aioqlog.install().start()
            for i in range(400):  # 20 s of delivery
                log.info("r %d", i)

        try:
            trio.run(main)
        except KeyboardInterrupt:
            restored = signal.getsignal(signal.SIGINT) is signal.default_int_handler
            print(f"KeyboardInterrupt; SIGINT handler restored: {restored}", file=sys.stderr)
            raise
        """
    )
    assert took < 5.0, err
    assert rc != 0, err
    assert "KeyboardInterrupt; SIGINT handler restored: True" in err
    found = re.search(r"(\d+) records for <Slow \(NOTSET\)> were never delivered", err)
    assert found is not None, err
    delivered = out.splitlines()
    assert delivered == [f"r {i}" for i in range(len(delivered))]
    assert len(delivered) + int(found[1]) == 400, err


def test_ctrl_c_ends_an_unbounded_end_of_run_wait_on_a_stuck_handler() -> None:
    """With shutdown_timeout=None, a Ctrl-C at trio.run's end gives up on a stuck handler."""
    rc, _, err, took = _ctrl_c_during_the_end_of_run(
        """
        entered = threading.Event()

        class Stuck(logging.Handler):
            def emit(self, record):
                entered.set()
                threading.Event().wait()

        log.addHandler(Stuck())

        async def main():
            aioqlog.install(shutdown_timeout=None).start()
            log.info("stuck")
            await trio.to_thread.run_sync(entered.wait)

        trio.run(main)
        """
    )
    assert took < 8.0, err  # a second's look at exit tells it is stuck
    assert rc != 0, err
    assert "KeyboardInterrupt" in err
    assert "exiting without flushing or closing it (1 records undelivered)" in err


def test_aioqlog_works_without_trio_installed() -> None:
    """With trio missing, aioqlog imports and serves asyncio, and never imports trio."""
    script = textwrap.dedent(
        """
        import asyncio, logging, sys
        sys.modules["trio"] = None  # import trio fails, as when it is not installed
        import aioqlog

        logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)

        async def main():
            async with aioqlog.install():
                logging.getLogger("app").info("served")

        asyncio.run(main())
        assert sys.modules["trio"] is None
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=STALL, check=False
    )
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", "served\n")


# ------------------------------------------------------ hypercorn's trio worker

_HYPERCORN_APP = """
    import logging
    from aioqlog.integrations.starlette import lifespan
    from fastapi import FastAPI

    logging.basicConfig(filename="app.log", format="%(message)s", level=logging.INFO)
    log = logging.getLogger("app")
    app = FastAPI(lifespan=lifespan(install=True))

    @app.get("/health")
    async def health():
        return {}

    @app.get("/items/{item}")
    async def read_item(item: int):
        log.info("served item %d", item)
        return {"item": item}
"""


@pytest.mark.slow
def test_the_starlette_lifespan_under_hypercorn_trio_writes_every_line(tmp_path: Path) -> None:
    """FastAPI + lifespan(install=True) on hypercorn -k trio: every request's line, then exit."""
    pytest.importorskip("hypercorn")
    from test_lifecycle import _free_port, _lines, _serve_then_sigterm

    (tmp_path / "trioapp.py").write_text(textwrap.dedent(_HYPERCORN_APP))
    port = _free_port()
    command = [sys.executable, "-m", "hypercorn", "-k", "trio", "--bind", f"127.0.0.1:{port}",
               "trioapp:app"]  # fmt: skip
    err = _serve_then_sigterm(command, tmp_path, port, requests=20, path=tmp_path)
    assert "aioqlog" not in err
    served = [line for line in _lines(tmp_path / "app.log") if line.startswith("served")]
    assert served == [f"served item {i}" for i in range(20)]
