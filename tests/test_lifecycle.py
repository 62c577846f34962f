"""Lifecycle paths as users meet them: bounded shutdown, forgotten stop(), exit, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from support import (
    STALL,
    AsyncRecorder,
    Gate,
    Gates,
    Recorder,
    bounded,
    in_thread,
    join_all,
    run,
    run_on,
    stop_behind,
)

import aioqlog

ROOT = Path(__file__).resolve().parent.parent
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class Slow(Recorder):
    """A handler that takes *latency* seconds per record."""

    def __init__(self, latency: float, name: str | None = None) -> None:
        super().__init__(name=name)
        self.latency = latency

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(self.latency)
        super().emit(record)


def _script(source: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run *source* in a fresh interpreter (aioqlog importable); return what it did."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ------------------------------------------------------- bounded by default


@pytest.mark.anyio
async def test_async_with_a_listener_is_bounded_by_shutdown_timeout(
    logger: logging.Logger,
) -> None:
    """Leaving `async with` cannot hang on a stuck handler: it stops within the bound."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    hung = Gate(name="hung")
    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        async with aioqlog.QueueListener(q, hung, shutdown_timeout=0.2) as listener:
            logger.info("stuck")
            await in_thread(lambda: hung.entered.wait(STALL))
    assert time.monotonic() - started < STALL / 2
    assert "1 for hung" in stderr.getvalue()
    assert listener.stats.undelivered == 1
    hung.opened.set()


@pytest.mark.anyio
async def test_install_is_bounded_by_its_shutdown_timeout() -> None:
    """Leaving `async with install(shutdown_timeout=...)` cannot hang on a stuck handler."""
    root = logging.getLogger()
    hung = Gate(name="hung")
    root.handlers[:] = [hung]
    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        async with aioqlog.install(shutdown_timeout=0.2) as listener:
            logging.getLogger("app").warning("stuck")
            await in_thread(lambda: hung.entered.wait(STALL))
    assert time.monotonic() - started < STALL / 2
    assert "1 for hung" in stderr.getvalue()
    assert listener.stats.undelivered == 1
    # The stuck handler stays behind the queue until it catches up: a log call
    # now neither waits for the lock its emit holds nor overtakes "stuck".
    started = time.monotonic()
    logging.getLogger("app").warning("after the block")
    assert time.monotonic() - started < 1.0
    assert hung.messages() == []
    worker = listener._lanes[0].thread  # type: ignore[attr-defined]
    hung.opened.set()
    await in_thread(lambda: worker.join(STALL))
    assert root.handlers == [hung]
    assert hung.messages() == ["stuck", "after the block"]
    logging.getLogger("app").warning("direct again")
    assert hung.messages()[-1] == "direct again"
    assert hung.threads >= {threading.current_thread().name}


@pytest.mark.anyio
async def test_handlers_go_back_once_a_log_call_delivers_what_was_queued_as_they_caught_up() -> (
    None
):
    """A handler catching up while records wait in the queue is restored by whoever empties it.

    Here a log call does: it delivers what waits, then the logger has its
    handler back, in order, and later records go straight to it.
    """
    root = logging.getLogger()
    hung = Gate(name="hung")
    root.handlers[:] = [hung]
    with contextlib.redirect_stderr(io.StringIO()):
        async with aioqlog.install(shutdown_timeout=0.1) as listener:
            logging.getLogger("app").warning("stuck")
            await in_thread(lambda: hung.entered.wait(STALL))
    q = listener.queue
    # Another thread is mid-delivery (it holds the right to deliver): a
    # record logged now waits in the queue for it.
    token = q._right.pop()
    logging.getLogger("app").warning("queued")
    assert q.qsize() == 1
    worker = listener._lanes[0].thread  # type: ignore[attr-defined]
    hung.opened.set()
    await in_thread(lambda: worker.join(STALL))
    assert root.handlers != [hung]  # caught up, but "queued" is still on its way
    q._right.append(token)  # the delivering thread is done
    logging.getLogger("app").warning("delivers both")
    worker = listener._lanes[0].thread  # type: ignore[attr-defined]
    if worker is not None:  # the lane's worker took the two records
        await in_thread(lambda: worker.join(STALL))
    assert root.handlers == [hung]
    logging.getLogger("app").warning("direct again")
    assert hung.messages() == ["stuck", "queued", "delivers both", "direct again"]
    assert q.qsize() == 0


@pytest.mark.anyio
async def test_listening_is_bounded_by_its_timeout(logger: logging.Logger) -> None:
    """Leaving `async with listening(timeout=...)` cannot hang on a stuck handler."""
    hung = Gate(name="hung")
    q = aioqlog.LogQueue()
    listener = aioqlog.QueueListener(q, hung)
    logger.addHandler(aioqlog.QueueHandler(q))
    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        async with aioqlog.listening(listener, timeout=0.2):
            logger.warning("stuck")
            await in_thread(lambda: hung.entered.wait(STALL))
    assert time.monotonic() - started < STALL / 2
    assert "1 for hung" in stderr.getvalue()
    assert listener.stats.undelivered == 1
    hung.opened.set()


def test_the_integrations_default_to_a_bound() -> None:
    """lifespan() and cleanup_ctx() take shutdown_timeout, checked when the app is built."""
    from aioqlog.integrations.aiohttp import cleanup_ctx
    from aioqlog.integrations.starlette import lifespan

    for make in (lifespan, cleanup_ctx):
        with pytest.raises(ValueError, match="shutdown_timeout must be a positive number"):
            make(install=True, shutdown_timeout=float("inf"))
        make(install=True, shutdown_timeout=None)
    assert aioqlog.QueueListener(aioqlog.LogQueue()).shutdown_timeout == 10.0


_STUCK_APP = """
    import logging, threading
    from aioqlog.integrations.starlette import lifespan
    from fastapi import FastAPI

    class StuckFile(logging.FileHandler):
        # A socket with no timeout: one record never returns.
        def emit(self, record):
            if record.getMessage() == "stuck here":
                threading.Event().wait()
            super().emit(record)

    logging.config.dictConfig({
        "version": 1,
        "handlers": {
            "file": {"()": StuckFile, "filename": "app.log"},
            "queue": {"class": "aioqlog.QueueHandler", "handlers": ["file"]},
        },
        "loggers": {"app": {"handlers": ["queue"], "level": "INFO"}},
    })
    log = logging.getLogger("app")
    app = FastAPI(lifespan=lifespan(shutdown_timeout=1.0))

    @app.get("/health")
    async def health():
        return {}

    @app.get("/items/{item}")
    async def read_item(item: int):
        log.info("served item %d", item)
        if item == 5:
            log.info("stuck here")
        return {"item": item}
"""


@pytest.mark.slow
def test_a_stuck_handler_cannot_keep_uvicorn_from_exiting_on_sigterm(tmp_path: Path) -> None:
    """FastAPI + dictConfig + lifespan() on uvicorn, a handler stuck forever: SIGTERM ends it.

    Every line logged before the stuck one is in the file; stderr says what was
    left undelivered.
    """
    (tmp_path / "stuckapp.py").write_text("import logging.config\n" + textwrap.dedent(_STUCK_APP))
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "stuckapp:app", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    err = _serve_then_sigterm(command, tmp_path, port, requests=10, path=tmp_path)
    assert [line for line in _lines(tmp_path / "app.log")] == [f"served item {i}" for i in range(6)]
    # uvicorn re-raises SIGTERM once shut down, so no exit hook runs after this.
    assert "stop() ran out of time; still being delivered" in err
    assert "5 for file" in err


def _serve_then_sigterm(
    command: list[str], cwd: Path, port: int, *, requests: int, path: Path | None = None
) -> str:
    """Start a server, GET /items/0.. on it, SIGTERM it: it must exit within 15 s. Return stderr.

    *path* goes on PYTHONPATH beside the project (for an app module written there).
    """
    import httpx

    extra = f"{os.pathsep}{path}" if path is not None else ""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{extra}"}
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_serving(proc, base)
        with httpx.Client(base_url=base, timeout=STALL) as client:
            for i in range(requests):
                assert client.get(f"/items/{i}").status_code == 200
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until_serving(proc: subprocess.Popen[str], base: str) -> None:
    import httpx

    deadline = time.monotonic() + STALL
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the server exited early: {err}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # polling a process we cannot await
    raise AssertionError("the server did not start serving")


_AIOHTTP_STUCK = """
    import logging, sys, threading
    from aiohttp import web
    from aioqlog.integrations.aiohttp import cleanup_ctx

    class StuckFile(logging.FileHandler):
        def emit(self, record):
            if record.getMessage() == "stuck here":
                threading.Event().wait()
            super().emit(record)

    handler = StuckFile("app.log")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def item(request):
        n = int(request.match_info["n"])
        logging.getLogger("app").info("served item %d", n)
        if n == 2:
            logging.getLogger("app").info("stuck here")
        return web.json_response({"item": n})

    async def health(request):
        return web.json_response({})

    app = web.Application()
    app.cleanup_ctx.append(cleanup_ctx(install=True, shutdown_timeout=1.0))
    app.router.add_get("/health", health)
    app.router.add_get("/items/{n}", item)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@pytest.mark.slow
def test_a_stuck_handler_cannot_keep_aiohttp_from_exiting_on_sigterm(tmp_path: Path) -> None:
    """aiohttp with cleanup_ctx(install=True), a handler stuck forever: SIGTERM ends it."""
    port = _free_port()
    command = [sys.executable, "-c", textwrap.dedent(_AIOHTTP_STUCK), str(port)]
    err = _serve_then_sigterm(command, tmp_path, port, requests=5)
    assert _lines(tmp_path / "app.log") == [f"served item {i}" for i in range(3)]
    assert "stop() ran out of time" in err


# ------------------------------------------------------ forgetting stop()


# asyncio.run's ending, on asyncio and uvloop; trio's run ending is in tests/test_trio.py.
def test_forgetting_stop_delivers_everything_while_the_handler_progresses(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """asyncio.run ends with a backlog behind a slow handler: the wait follows progress.

    The backlog takes several times shutdown_timeout to deliver, and all of it
    is delivered (the bound is on a handler that makes no progress); nothing
    claims the user called stop(), and a notice says what the wait is for.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    slow = Slow(0.005, name="slow")
    listener = aioqlog.QueueListener(q, slow, shutdown_timeout=0.3)

    async def main() -> None:
        listener.start()
        await asyncio.sleep(0)
        for i in range(300):
            logger.info("r %d", i)

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        run(main(), loop_factory)
    assert slow.messages() == [f"r {i}" for i in range(300)]
    assert "stop()" not in stderr.getvalue().replace("without QueueListener.stop()", "")
    assert "the event loop is ending without QueueListener.stop(); delivering" in (
        stderr.getvalue()
    )


def _handlers_of(kind: str) -> list[logging.Handler]:
    """Return an async handler, a sync one, or both, as *kind* says."""
    handlers: list[logging.Handler] = []
    if kind in ("async", "both"):
        handlers.append(AsyncRecorder())
    if kind in ("sync", "both"):
        handlers.append(Recorder())
    return handlers


# Every backend: asyncio cancels the lanes' tasks, trio's run tells the listener once.
@pytest.mark.parametrize("how", ["listener", "install"])
@pytest.mark.parametrize("kind", ["async", "sync", "both"])
def test_a_run_that_ends_right_after_start_delivers_everything(
    anyio_backend: object, logger: logging.Logger, kind: str, how: str
) -> None:
    """The run ends right after start(), with no await between: every record is delivered.

    On asyncio, the run's end cancels an async handler's lane task before its
    first step; the lane still delivers while the listener drains, as it does
    when the run ends after an await.
    """
    handlers = _handlers_of(kind)
    if how == "listener":
        q = aioqlog.LogQueue()
        logger.addHandler(aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, *handlers, shutdown_timeout=STALL)
    else:
        for handler in handlers:
            logger.addHandler(handler)
        listener = aioqlog.install(logger, shutdown_timeout=STALL)

    async def main() -> None:
        listener.start()
        for i in range(20):
            logger.info("m%d", i)

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        run_on(anyio_backend, main)
    for handler in handlers:
        assert isinstance(handler, Recorder | AsyncRecorder)
        assert handler.messages() == [f"m{i}" for i in range(20)], stderr.getvalue()
    assert listener.stats.undelivered == 0
    assert "lost at exit" not in stderr.getvalue()
    # The queue is handed back: what is logged from now on is delivered in the
    # caller, not left to a worker of a run that has ended.
    assert not listener.queue._attached


# asyncio.run's ending, on asyncio and uvloop: trio tells the listener of the run's end once.
def test_a_second_cancellation_cuts_short_a_lane_started_late(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """asyncio.run ends right after start(); cancelled again, the listener cuts the lane off now.

    The lane's task was cancelled before its first step (asyncio), yet its
    handler gets the first record; while it is stuck on it, a second
    cancellation ends the drain at once, and the records are named on stderr.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))

    class Stuck(aioqlog.AsyncHandler):
        cut = False

        async def aemit(self, record: logging.LogRecord) -> None:
            task = listener._run_state.task
            assert task is not None
            task.cancel()  # as asyncio.run's end does: a second time now
            try:
                await asyncio.Event().wait()
            finally:
                self.cut = True

    handler = Stuck()
    handler.set_name("stuck")
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=STALL)

    async def main() -> None:
        listener.start()
        for i in range(20):
            logger.info("m%d", i)

    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        run(main(), loop_factory)
    assert time.monotonic() - started < STALL / 2, stderr.getvalue()
    assert handler.cut
    assert "kept for a next start, else lost at exit: 20 for stuck" in stderr.getvalue()
    assert listener.stats.undelivered == 20


_CTRL_C_TWICE = """
    import asyncio, logging, sys, threading, time
    import aioqlog

    entered = threading.Event()
    RECORDS = {records}

    class Handler(logging.FileHandler):
        def emit(self, record):
            entered.set()
            {emit}
            super().emit(record)

    logging.getLogger().handlers[:] = [Handler("app.log")]

    async def main():
        async with aioqlog.install(shutdown_timeout=60):
            for i in range(RECORDS):
                logging.getLogger("app").warning("r %d", i)
            await asyncio.to_thread(entered.wait)
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
"""

#: A handler that never returns, and a slow one that keeps delivering (20 s of records).
_CTRL_C_HANDLERS = {
    "stuck": (1, "threading.Event().wait()"),
    "slow": (10_000, "time.sleep(0.002)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("handler", sorted(_CTRL_C_HANDLERS))
def test_a_second_ctrl_c_is_never_swallowed(tmp_path: Path, handler: str) -> None:
    """Ctrl-C starts a bounded stop, which says so; a second Ctrl-C ends the process at once.

    The second is sent once the process shows it has taken the first: the
    kernel merges a SIGINT sent before the process took the previous one. On
    Python 3.10 the first may already end it (its ``KeyboardInterrupt`` lands
    outside the ``async with``, and the exit gives a stuck handler a second).
    Behind a slow but working handler the exit does not deliver the rest
    either (the user said "now" twice): it says how many records it leaves,
    and those and the lines written add up to every record.
    """
    records, emit = _CTRL_C_HANDLERS[handler]
    script = textwrap.dedent(_CTRL_C_TWICE).format(records=records, emit=emit)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    took_it = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if any(
                notice in line
                for notice in (
                    "stopping: waiting for the handlers",  # inside the async with
                    "the event loop is ending without",  # 3.10: it landed outside
                    "still busy",  # at exit
                )
            ):
                took_it.set()
        took_it.set()  # the process ended

    reader = threading.Thread(target=read_stderr, daemon=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        reader.start()
        proc.send_signal(signal.SIGINT)
        assert took_it.wait(30), "".join(lines)
        if sys.version_info >= (3, 11):
            assert proc.poll() is None, "".join(lines)
            assert re.search(r"\(up to 5\ds more; press Ctrl-C to skip\)", "".join(lines))
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(30)
        assert time.monotonic() - started < 10, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader.ident is not None:
            reader.join(30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    err = "".join(lines)
    assert "KeyboardInterrupt" in err
    left = re.findall(r"exiting without flushing or closing it \((\d+) records undelivered\)", err)
    # The same report, once; or twice when the second Ctrl-C lands as it is written.
    assert len(left) in (1, 2), err
    assert len(set(left)) == 1, err
    left = left[:1]
    written = len((tmp_path / "app.log").read_text().splitlines())
    if handler == "stuck":
        assert (left, written) == (["1"], 0)
    else:
        assert written + int(left[0]) in (records, records + 1), err  # +1: the one in emit
        assert int(left[0]) > records // 2, err  # not delivered after the second Ctrl-C


# ------------------------------------------- records logged during and after stop


_DURING_STOP = """
    import asyncio, logging, sys, time
    import aioqlog

    class Slow(logging.FileHandler):
        def emit(self, record):
            time.sleep(0.01)
            super().emit(record)

    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.propagate = False
    q = aioqlog.LogQueue()
    log.addHandler(aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, Slow("app.log"))
    logged = 0

    async def ticker(stop):
        global logged
        while not stop.is_set():
            log.info("tick %d", logged)
            logged += 1
            await asyncio.sleep(0.005)

    async def main():
        global logged
        listener.start()
        for _ in range(20):
            log.info("tick %d", logged)
            logged += 1
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        await listener.stop()
        stop.set()
        await task
        log.info("final")
        logged += 1
        print(logged)

    asyncio.run(main())
"""


def test_records_logged_while_stop_runs_are_written_before_exit(tmp_path: Path) -> None:
    """A task logs while stop() runs, then one final record, then a normal exit: all written."""
    result = _script(_DURING_STOP, tmp_path)
    assert result.returncode == 0, result.stderr
    logged = int(result.stdout)
    lines = _lines(tmp_path / "app.log")
    assert len(lines) == logged, result.stderr
    assert lines[-1] == "final"
    assert lines[:-1] == [f"tick {i}" for i in range(logged - 1)]


_FINAL_AFTER_BLOCK = """
    import asyncio, logging, sys
    import aioqlog

    class Chatty(logging.FileHandler):
        # Logs a line per send, as HTTP clients do.
        def emit(self, record):
            super().emit(record)
            logging.getLogger("client").info("sent %s", record.getMessage())

    handler = Chatty("app.log")
    q = aioqlog.LogQueue()
    for name in ("app", "client"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(aioqlog.QueueHandler(q))
    log = logging.getLogger("app")

    async def main():
        async with aioqlog.QueueListener(q, handler):
            for i in range(50):
                log.info("r%d", i)
        log.info("final")

    asyncio.run(main())
"""


@pytest.mark.parametrize("attempt", range(3))
def test_a_record_logged_right_after_the_block_is_written_before_exit(
    tmp_path: Path, attempt: int
) -> None:
    """After `async with listener:` ends, "final" is written, even behind a chatty handler."""
    result = _script(_FINAL_AFTER_BLOCK, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = _lines(tmp_path / "app.log")
    assert "final" in lines, result.stderr
    assert [line for line in lines if line.startswith("r")] == [f"r{i}" for i in range(50)]


class _Held(Recorder):
    """A recorder whose emit of "held" blocks until *opened* is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.opened = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "held":
            self.entered.set()
            self.opened.wait(STALL)
        super().emit(record)


def _stopped_listener(logger: logging.Logger, q: aioqlog.LogQueue, handler: Recorder) -> None:
    logger.addHandler(aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler)

    async def once() -> None:
        listener.start()
        await listener.stop()

    asyncio.run(once())


def _until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for a state another thread reaches."""
    deadline = time.monotonic() + STALL
    while not predicate():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.001)


def _log_in_thread(logger: logging.Logger, *messages: str) -> threading.Thread:
    def log() -> None:
        for message in messages:
            logger.info(message)

    thread = threading.Thread(target=log)
    thread.start()
    return thread


def test_after_stop_a_log_call_delivers_its_share_not_what_others_log_meanwhile(
    logger: logging.Logger,
) -> None:
    """The thread that finds no one delivering delivers up to its own record, then returns.

    What other threads queued meanwhile goes to a helper thread: one log call
    is not held for as long as other threads keep logging.
    """
    q = aioqlog.LogQueue()
    handler = Gates("mine", "theirs")
    _stopped_listener(logger, q, handler)
    mine = _log_in_thread(logger, "mine")  # delivers in its own call, and is held there
    assert handler.entered["mine"].wait(STALL)
    _log_in_thread(logger, "a", "theirs", "b").join(STALL)  # queued behind "mine"
    handler.opened["mine"].set()
    mine.join(STALL / 4)
    assert not mine.is_alive(), "the log call went on delivering other threads' records"
    assert handler.entered["theirs"].wait(STALL)  # a helper thread delivers them
    handler.opened["theirs"].set()
    assert handler.wait_for(4)
    assert handler.messages() == ["mine", "a", "theirs", "b"]


@pytest.mark.parametrize("overflow", ["drop_new", "drop_old", "block"])
def test_after_stop_a_thread_that_finds_the_queue_full_waits_its_turn(
    logger: logging.Logger, overflow: Literal["drop_new", "drop_old", "block"]
) -> None:
    """After stop(), another thread delivering a slow record makes this one wait, as a lock would.

    Nothing is dropped, whatever the policy: no loop is served then.
    """
    q = aioqlog.LogQueue(maxsize=2, overflow=overflow, block_timeout=STALL)
    handler = _Held()
    _stopped_listener(logger, q, handler)
    delivering = _log_in_thread(logger, "held")  # delivers in its thread, and waits there
    assert handler.entered.wait(STALL)
    waiting = _log_in_thread(logger, "b", "c", "d")  # b, c queued; d finds the queue full
    _until(lambda: q._blocked == 1)
    handler.opened.set()
    join_all([delivering, waiting])
    assert handler.messages() == ["held", "b", "c", "d"]
    assert q.dropped == 0


@pytest.mark.parametrize("overflow", ["drop_new", "block"])
def test_after_stop_a_stuck_handler_costs_one_wait_then_counted_drops_reported(
    logger: logging.Logger, overflow: Literal["drop_new", "block"]
) -> None:
    """One log call waits block_timeout for a stuck handler; later ones drop at once, counted.

    Once the handler moves, the drops are reported to it as soon as the
    queue is empty, even right after an earlier summary.
    """
    q = aioqlog.LogQueue(maxsize=1, overflow=overflow, block_timeout=0.2)
    handler = _Held()
    _stopped_listener(logger, q, handler)
    for episode in range(2):
        handler.entered.clear()
        handler.opened.clear()
        delivering = _log_in_thread(logger, "held")
        assert handler.entered.wait(STALL)
        logger.info("queued")
        started = time.monotonic()
        logger.info("waits, then dropped")
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        logger.info("dropped at once")
        assert time.monotonic() - started < 0.1
        handler.opened.set()
        join_all([delivering])
        assert q.dropped == 2 * (episode + 1)
        summaries = [m for m in handler.messages() if m.startswith("aioqlog dropped 2 records")]
        assert len(summaries) == episode + 1, handler.messages()
    logger.info("after")
    assert handler.messages()[-1] == "after"


# ------------------------------------------------------- after loop.close()


# loop.close() under a pending task is asyncio's: a trio run has no loop to close.
def test_a_record_after_the_loop_closed_is_handled_in_the_caller(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """The loop closed under a running listener: the next log call is handled at once."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    listener = aioqlog.QueueListener(q, rec)
    loop = loop_factory()

    async def main(listener: aioqlog.QueueListener) -> None:
        listener.start()
        logger.info("served")
        await rec.arrived(1)

    loop.run_until_complete(main(listener))
    loop.close()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        logger.info("after close")
    assert stderr.getvalue() == ""
    assert rec.messages() == ["served", "after close"]
    assert rec.records[-1].threadName == threading.current_thread().name
    assert q.qsize() == 0
    assert not listener.running
    # The closed loop abandoned the listener's task: collect it here, where
    # asyncio's "Task was destroyed but it is pending!" reaches this run's
    # handlers, not a later test's (test_bridge does the same).
    task = listener._run_state.task
    assert task is not None
    abandoned = weakref.ref(task)
    logger.handlers.clear()
    del listener, q, task
    gc.collect()
    assert abandoned() is None


# loop.close() under a pending task is asyncio's: a trio run has no loop to close.
@pytest.mark.parametrize("handlers", ["sync", "two sync", "sync and async"])
@pytest.mark.parametrize("after_close", [0, 1, 100])
def test_a_listener_whose_loop_closed_under_it_starts_again_on_a_new_loop(
    loop_factory: LoopFactory, logger: logging.Logger, after_close: int, handlers: str
) -> None:
    """The loop closed right after start(); start() on a new loop serves, and stop() returns.

    The first run's task never wound down and still held the queue: the new
    run must take it back rather than wait for it for ever; and an async
    handler's lane, whose task was left waiting on the closed loop, must not
    try to wake that task.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    rec = Recorder()
    other: Recorder | AsyncRecorder | None = {
        "sync": None,
        "two sync": Recorder(),
        "sync and async": AsyncRecorder(),
    }[handlers]
    listener = aioqlog.QueueListener(q, rec, *([other] if other is not None else []))
    loop = loop_factory()

    async def first(listener: aioqlog.QueueListener) -> None:
        listener.start()  # no await: the loop stops with the task wherever it is
        logger.info("a")

    loop.run_until_complete(first(listener))
    loop.close()
    expected = ["a"] + [f"b {i}" for i in range(after_close)] + ["c"]
    for i in range(after_close):
        logger.info("b %d", i)

    async def second(listener: aioqlog.QueueListener) -> aioqlog.ListenerStats:
        listener.start()
        logger.info("c")
        return await bounded(listener.stop())

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        stats = run(second(listener), loop_factory)
    assert rec.messages() == expected, stderr.getvalue()
    if other is not None:
        assert other.messages() == expected, stderr.getvalue()
    assert (stats.undelivered, stats.dropped) == (0, 0)
    assert "failed" not in stderr.getvalue()
    # Collect the first run's abandoned task here, not in a later test (see
    # test_a_record_after_the_loop_closed_is_handled_in_the_caller).
    del listener
    logger.handlers.clear()
    gc.collect()


# ----------------------------------------------------- a loop in a daemon thread


_DAEMON_LOOP = """
    import asyncio, logging, threading
    import aioqlog

    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.propagate = False
    q = aioqlog.LogQueue()
    log.addHandler(aioqlog.QueueHandler(q))
    handler = logging.FileHandler("app.log")
    listener = aioqlog.QueueListener(q, handler)
    ready = threading.Event()

    async def serve():
        listener.start()
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    ready.wait()
    for i in range(100):
        log.info("r%d", i)
"""


def test_a_loop_in_a_daemon_thread_delivers_everything_at_exit(tmp_path: Path) -> None:
    """The main thread logs 100 records and returns while a daemon thread's loop serves."""
    result = _script(_DAEMON_LOOP, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(tmp_path / "app.log") == [f"r{i}" for i in range(100)], result.stderr


# ------------------------------------------------ restart after a timed-out stop


@pytest.mark.anyio
async def test_a_restart_after_a_timed_out_stop_keeps_one_worker_and_the_order(
    logger: logging.Logger,
) -> None:
    """stop(timeout) runs out, start() again: one worker, records in order, exact stats."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    slow = Slow(0.02, name="slow")
    listener = aioqlog.QueueListener(q, slow)
    listener.start()
    for i in range(30):
        logger.info("old %d", i)
    with contextlib.redirect_stderr(io.StringIO()):
        stats = await listener.stop(timeout=0.1)
    assert stats.handlers[0].pending > 0
    listener.start()
    for i in range(5):
        logger.info("new %d", i)
    stats = await bounded(listener.stop())
    assert slow.messages() == [f"old {i}" for i in range(30)] + [f"new {i}" for i in range(5)]
    assert len(slow.threads) == 1
    assert (stats.enqueued, stats.handlers[0].handled, stats.handlers[0].pending) == (35, 35, 0)


_RESTART_STUCK = """
    import asyncio, logging, threading
    import aioqlog

    class Stuck(logging.Handler):
        def emit(self, record):
            threading.Event().wait()

    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.propagate = False
    q = aioqlog.LogQueue()
    log.addHandler(aioqlog.QueueHandler(q))
    handler = Stuck()
    logging.getLogger("other").addHandler(handler)  # on logging.shutdown's list
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=0.5)

    async def main():
        listener.start()
        log.info("one")
        await listener.stop(timeout=0.1)
        listener.start()
        log.info("two")
        await listener.stop(timeout=0.1)

    asyncio.run(main())
    print("done", flush=True)
"""


def test_a_restart_after_a_timed_out_stop_with_a_stuck_handler_still_exits() -> None:
    """The stuck handler's lane is the same after a restart, so exit skips it."""
    result = _script(_RESTART_STUCK)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "exiting without flushing or closing it (2 records undelivered)" in result.stderr


# ------------------------------------------------- drops while stuck, reported


@pytest.mark.anyio
async def test_drops_while_a_handler_was_stuck_are_reported_once_it_recovers(
    logger: logging.Logger,
) -> None:
    """Records dropped behind a stuck handler (no listener running) reach it as a summary."""
    q = aioqlog.LogQueue(maxsize=4)
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate(name="gate")
    listener = aioqlog.QueueListener(q, gate)
    listener.start()
    logger.info("first")
    await in_thread(lambda: gate.entered.wait(STALL))
    with contextlib.redirect_stderr(io.StringIO()):
        await listener.stop(timeout=0.05)
    for i in range(10):
        logger.info("while stuck %d", i)
    dropped = listener.stats.handlers[0].dropped
    assert dropped == 10 - 3  # the lane holds 4: "first" and three more
    gate.opened.set()
    assert gate.wait_until(lambda: any(r.name == "aioqlog" for r in gate.records))
    summary = [r.getMessage() for r in gate.records if r.name == "aioqlog"]
    assert summary == [
        f"aioqlog dropped {dropped} records for this handler: it fell behind "
        f"(maxsize=4, overflow='drop_new')"
    ]
    kept = [m for m in gate.messages() if not m.startswith("aioqlog")]
    assert kept == ["first", "while stuck 0", "while stuck 1", "while stuck 2"]


def _stopped_behind_first(
    logger: logging.Logger, q: aioqlog.LogQueue
) -> tuple[aioqlog.QueueListener, Gate]:
    """Return a listener whose stop() ran out of time while its gate held "first"."""
    logger.addHandler(aioqlog.QueueHandler(q))
    gate = Gate(name="gate")
    listener = aioqlog.QueueListener(q, gate)

    stop_behind(listener, logger, "first", held=(gate,))
    return listener, gate


def test_behind_a_handler_catching_up_a_thread_waits_for_room_instead_of_dropping(
    logger: logging.Logger,
) -> None:
    """After a stop that ran out of time, a slow but working handler loses nothing to a thread.

    Its worker still holds records; a thread logging more than the lane holds
    waits for room while the worker makes progress, as it would wait for the
    handler's lock.
    """
    listener, gate = _stopped_behind_first(logger, aioqlog.LogQueue(maxsize=2))
    lane = listener._lanes[0]
    thread = _log_in_thread(logger, "a", "b", "c")  # "first" and "a" fill the lane
    _until(lambda: lane.room_waiters == 1)  # type: ignore[attr-defined]
    gate.opened.set()
    join_all([thread])
    assert gate.wait_for(4)
    assert gate.messages() == ["first", "a", "b", "c"]
    assert listener.stats.handlers[0].dropped == 0


def test_behind_a_stuck_handler_one_wait_then_counted_drops_reported_when_it_moves(
    logger: logging.Logger,
) -> None:
    """A stuck worker costs one block_timeout wait; later records drop at once, counted."""
    q = aioqlog.LogQueue(maxsize=2, block_timeout=0.2)
    listener, gate = _stopped_behind_first(logger, q)
    logger.info("a")  # fills the lane
    started = time.monotonic()
    logger.info("waits, then dropped")
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    logger.info("dropped at once")
    assert time.monotonic() - started < 0.1
    assert listener.stats.handlers[0].dropped == 2
    gate.opened.set()
    assert gate.wait_until(lambda: any(r.name == "aioqlog" for r in gate.records))
    assert gate.messages() == [
        "first",
        "a",
        "aioqlog dropped 2 records for this handler: it fell behind "
        "(maxsize=2, overflow='drop_new')",
    ]


class _PausesAt(aioqlog.QueueListener):
    """A listener whose ``prepare`` of "pause" blocks until *opened* is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.opened = threading.Event()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.getMessage() == "pause":
            self.entered.set()
            self.opened.wait(STALL)
        return super().prepare(record)


def test_behind_a_stuck_handler_threads_wait_for_the_queue_instead_of_dropping(
    logger: logging.Logger,
) -> None:
    """After a stop that gave up on a stuck handler, the healthy one still gets every record.

    The thread delivering in the caller waits block_timeout once for room in
    the stuck handler's lane. A thread that found the queue full before that
    wait began waits behind it, as it would for the handler's lock, instead of
    giving up while it runs: only the stuck handler's record is dropped, and
    counted, and the healthy handler gets every record.
    """
    q = aioqlog.LogQueue(maxsize=2, block_timeout=0.2)
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, healthy = Gate(name="stuck"), Recorder(name="healthy")
    listener = _PausesAt(q, stuck, healthy)

    stop_behind(listener, logger, "first", held=(stuck,))
    try:
        logger.info("fills the stuck lane")
        delivering = _log_in_thread(logger, "pause")  # holds the delivery, then waits for room
        assert listener.entered.wait(STALL)
        waiting = _log_in_thread(logger, "a", "b", "c")  # a, b queued; c finds the queue full
        _until(lambda: q._blocked == 1)
        listener.opened.set()
        join_all([delivering, waiting])
        assert q.dropped == 0
        assert healthy.wait_for(6)
        assert healthy.messages() == ["first", "fills the stuck lane", "pause", "a", "b", "c"]
        assert listener.stats.handlers[0].dropped >= 1  # the stuck one's, counted
    finally:
        stuck.opened.set()


def test_behind_a_stuck_handler_the_healthy_one_loses_nothing_to_threads_logging_flat_out(
    logger: logging.Logger,
) -> None:
    """The same, with four threads logging flat out as the wait for the stuck lane ends.

    Their waits for room in the queue run out about when the delivering
    thread's wait does: the end of that wait counts as a move, so they wait
    on while delivery goes on past it. Several rounds, each after its own
    stop that gave up, since which wait ends first is down to the scheduler.
    """
    for _ in range(4):
        _four_threads_behind_a_stuck_handler(logger, per_thread=1000)


def _four_threads_behind_a_stuck_handler(logger: logging.Logger, per_thread: int) -> None:
    q = aioqlog.LogQueue(maxsize=100, block_timeout=0.2)
    queue_handler = aioqlog.QueueHandler(q)
    logger.addHandler(queue_handler)
    healthy, stuck = Recorder(name="healthy"), Gate(name="stuck")
    listener = aioqlog.QueueListener(q, healthy, stuck)

    start = threading.Barrier(4)

    def log(k: int) -> None:
        start.wait()
        for i in range(per_thread):
            logger.info("t%d %d", k, i)

    threads = [threading.Thread(target=log, args=(k,)) for k in range(4)]
    try:
        stop_behind(listener, logger, "first", held=(stuck,))
        for thread in threads:
            thread.start()
        join_all(threads)
        assert q.dropped == 0
        assert healthy.wait_for(1 + 4 * per_thread)
        assert listener.stats.handlers[1].dropped > 0  # the stuck one's, counted
    finally:
        stuck.opened.set()
        logger.removeHandler(queue_handler)


# ------------------------------------------------------- arguments with no end


@pytest.mark.parametrize("value", [float("inf"), 1e10, float("nan")])
def test_timeouts_with_no_end_are_refused(value: float) -> None:
    """An infinite (or unrepresentable) timeout is refused, not accepted to fail later."""
    with pytest.raises(ValueError, match="block_timeout must be a positive number of seconds"):
        aioqlog.LogQueue(block_timeout=value)
    with pytest.raises(ValueError, match="shutdown_timeout must be a positive number"):
        aioqlog.QueueListener(aioqlog.LogQueue(), shutdown_timeout=value)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        _async_handler_with_timeout(value)


def _async_handler_with_timeout(value: float) -> None:
    class H(aioqlog.AsyncHandler):
        async def aemit(self, record: logging.LogRecord) -> None:
            pass

    H(timeout=value)


# ------------------------------------------ one delivery path for async handlers


class _Exits(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "exit":
            raise SystemExit(3)
        return True


class _Batching(AsyncRecorder):
    async def aemit_batch(self, records: Sequence[logging.LogRecord]) -> None:
        for record in records:
            await self.aemit(record)


@pytest.mark.parametrize("handler_type", [AsyncRecorder, _Batching])
def test_a_filter_raising_system_exit_is_the_handlers_error_on_both_paths(
    anyio_backend: object, logger: logging.Logger, handler_type: type[AsyncRecorder]
) -> None:
    """SystemExit from a filter counts as one error, single-record or batch, and nothing escapes."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = handler_type()
    handler.addFilter(_Exits())
    errors: list[str] = []
    handler.handleError = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    listener = aioqlog.QueueListener(q, handler)

    async def main() -> aioqlog.ListenerStats:
        async with listener:
            for message in ("a", "exit", "b", "c"):
                logger.info(message)
        return listener.stats

    stats = run_on(anyio_backend, main)
    assert handler.messages() == ["a", "b", "c"]
    assert errors == ["exit"]
    assert (stats.handlers[0].handled, stats.handlers[0].errors) == (3, 1)


# ------------------------------------------------------ summaries coalesce


@pytest.mark.anyio
async def test_recursion_summaries_coalesce_to_one_per_interval(logger: logging.Logger) -> None:
    """A handler that logs on every record hears of the dropped lines once, not per batch."""

    class Chatty(Recorder):
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)
            logger.info("sent %s", record.getMessage())

    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    chatty = Chatty()
    async with aioqlog.QueueListener(q, chatty) as listener:
        for i in range(100):
            logger.info("r%d", i)
            await anyio.lowlevel.checkpoint()  # one record per batch, as a service logs
        await chatty.arrived(200)
    summaries = [m for m in chatty.messages() if m.startswith("aioqlog dropped")]
    assert len(summaries) <= 2
    announced = sum(int(m.split()[2]) for m in summaries)
    # What the handler logged about each summary is dropped quietly (never announced).
    assert announced + len(summaries) == listener.stats.recursion_dropped


# ------------------------------------------------------- a failed start, undone


def test_a_failed_install_start_leaves_the_logger_as_it_was(anyio_backend: object) -> None:
    """start() outside any event loop raises, and install() gives the root its handlers back."""
    root = logging.getLogger()
    rec = Recorder()
    root.handlers[:] = [rec]
    listener = aioqlog.install()
    with pytest.raises(RuntimeError, match="inside a running event loop"):
        listener.start()
    assert root.handlers == [rec]

    async def again() -> None:
        async with aioqlog.install():
            logging.getLogger("app").warning("works")

    run_on(anyio_backend, again)
    assert rec.messages()[-1] == "works"


# --------------------------------------- exit right after a bounded stop gave up


_SLOW_EXIT = """
    import asyncio, logging, time
    import aioqlog

    class Slow(logging.FileHandler):
        def emit(self, record):
            time.sleep(0.005)
            super().emit(record)

    logging.getLogger().handlers[:] = [Slow("app.log")]
    logging.getLogger().setLevel(logging.INFO)

    async def main():
        async with aioqlog.install(shutdown_timeout=0.3):
            for i in range(300):
                logging.getLogger("app").info("r%d", i)

    asyncio.run(main())
"""


def test_exit_right_after_a_bounded_stop_waits_for_a_slow_handler(tmp_path: Path) -> None:
    """A stop() gave up on a slow (not stuck) handler, and the script returns at once.

    At exit the handler is still making progress, so every record is written.
    """
    _writes_every_line(_SLOW_EXIT, tmp_path, [f"r{i}" for i in range(300)])


#: The scripts' logger "app", behind a QueueHandler on the queue q.
_APP_QUEUE = """
    log = logging.getLogger("app")
    log.propagate = False
    q = aioqlog.LogQueue()
    log.addHandler(aioqlog.QueueHandler(q))
"""


def _writes_every_line(source: str, tmp_path: Path, lines: list[str]) -> None:
    """Run *source*; assert it exits cleanly, app.log holds *lines*, nothing was given up on."""
    result = _script(source, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(tmp_path / "app.log") == lines, result.stderr
    assert "still busy" not in result.stderr


_SLOW_BATCH_EXIT = (
    """
    import asyncio, logging, time
    import aioqlog

    class SlowBatches(logging.FileHandler):
        def emit_batch(self, records):
            for record in records:
                time.sleep(0.02)  # a slow handler, not a stuck one
                self.emit(record)

"""
    + _APP_QUEUE
    + """
    async def main():
        listener = aioqlog.QueueListener(q, SlowBatches("app.log"), shutdown_timeout=8)
        async with listener:
            for i in range(150):
                log.warning("r%d", i)
            await listener.stop(0.2)

    asyncio.run(main())
"""
)


def test_exit_after_a_bounded_stop_sees_a_batch_handlers_progress(tmp_path: Path) -> None:
    """A batch call is short enough for the exit's short look to see it progress.

    With shutdown_timeout=8 a call sized to a quarter of it would last 2 s,
    longer than the second the exit looks for progress after a stop() gave up.
    """
    _writes_every_line(_SLOW_BATCH_EXIT, tmp_path, [f"r{i}" for i in range(150)])


_UNEVEN_BATCH_END = (
    """
    import asyncio, logging, time
    import aioqlog

    class Uneven(logging.FileHandler):
        def emit_batch(self, records):
            for record in records:
                if record.getMessage() != "r0":
                    time.sleep(0.02)  # as a rotating file's records that roll it over
                self.emit(record)

"""
    + _APP_QUEUE
    + """
    async def main():
        aioqlog.QueueListener(q, Uneven("app.log"), shutdown_timeout=1).start()
        for i in range(100):
            log.warning("r%d", i)  # the first call takes one record: r0, a cheap one

    asyncio.run(main())  # ends without stop()
"""
)


def test_a_cheap_first_call_does_not_make_the_next_one_look_stuck(tmp_path: Path) -> None:
    """Batch calls grow by doubling, so each shows progress well within the bound.

    Sized from the first call's cost alone, the second would take all 99 slow
    records (2 s), longer than shutdown_timeout: given up on as stuck at the
    loop's end, then at exit.
    """
    _writes_every_line(_UNEVEN_BATCH_END, tmp_path, [f"r{i}" for i in range(100)])


_SLOW_RECORD_EXIT = (
    """
    import asyncio, logging, threading, time
    import aioqlog

    class Slow(logging.FileHandler):
        first = threading.Event()

        def emit(self, record):
            time.sleep(1.3)  # each record takes longer than the exit's short look
            super().emit(record)
            self.first.set()

"""
    + _APP_QUEUE
    + """    slow = Slow("app.log")

    async def main():
        listener = aioqlog.QueueListener(q, slow)
        async with listener:
            log.warning("r0")
            await asyncio.to_thread(slow.first.wait, 10)
            log.warning("r1")
            log.warning("r2")
            await listener.stop(0.1)

    asyncio.run(main())
"""
)


def test_exit_after_a_bounded_stop_waits_longer_for_a_handler_slower_than_its_look(
    tmp_path: Path,
) -> None:
    """A handler whose every record takes over a second is slow, not stuck, at exit.

    The short look after a stop() gave up lasts twice the slowest record the
    handler was seen to take.
    """
    _writes_every_line(_SLOW_RECORD_EXIT, tmp_path, ["r0", "r1", "r2"])


_TURNS_COSTLY_EXIT = (
    """
    import asyncio, logging, threading, time
    import aioqlog

    class TurnsCostly(logging.Formatter):
        costly = False
        formatted = 0
        cheap_done = threading.Event()

        def format(self, record):
            if self.costly:
                time.sleep(0.02)  # a formatter that turned slow, not a stuck one
            TurnsCostly.formatted += 1
            if TurnsCostly.formatted == 2000:
                self.cheap_done.set()
            return super().format(record)

"""
    + _APP_QUEUE
    + """    handler = logging.FileHandler("app.log")
    handler.setFormatter(TurnsCostly("%(message)s"))

    async def main():
        listener = aioqlog.QueueListener(q, handler)
        async with listener:
            for i in range(2000):
                log.warning("r%d", i)  # cheap: the calls grow to hundreds of records
            await asyncio.to_thread(TurnsCostly.cheap_done.wait, 30)
            TurnsCostly.costly = True
            for i in range(2000, 2100):
                log.warning("r%d", i)  # one call takes them all: 2 s
            await listener.stop(0.1)

    asyncio.run(main())
"""
)


def test_exit_after_a_bounded_stop_sees_progress_inside_a_long_batch_call(
    tmp_path: Path,
) -> None:
    """A built-in batch path counts each record it formats as progress.

    After a long run of cheap records the handler turns costly all at once:
    its next call takes 100 records at 20 ms each, twice the exit's short look
    after a stop() gave up. Counted only when the call returns, it looked
    stuck, and the exit left it mid-call.
    """
    _writes_every_line(_TURNS_COSTLY_EXIT, tmp_path, [f"r{i}" for i in range(2100)])


# ------------------------------------- what an async handler holds and drops


class _Buffering(aioqlog.AsyncHandler):
    """Keeps records in a buffer of its own and drops beyond 3, like a network handler."""

    def __init__(self, hang_on_close: bool = False) -> None:
        super().__init__()
        self.buffer: list[logging.LogRecord] = []
        self.hang_on_close = hang_on_close
        self.taken = 0
        self.five = anyio.Event()

    async def aemit(self, record: logging.LogRecord) -> None:
        self.taken += 1
        if self.taken == 5:
            self.five.set()
        if len(self.buffer) >= 3:
            self.dropped += 1
        else:
            self.buffer.append(record)

    @property
    def pending(self) -> int:
        return len(self.buffer)

    async def aclose(self) -> None:
        if self.hang_on_close:
            await anyio.sleep_forever()


@pytest.mark.anyio
async def test_an_async_handlers_own_drops_and_holdings_are_in_the_stats(
    logger: logging.Logger,
) -> None:
    """HandlerStats counts what an async handler dropped and holds; aclose cut off says so."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = _Buffering(hang_on_close=True)
    handler.set_name("shipper")
    listener = aioqlog.QueueListener(q, handler)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        async with listener:
            for i in range(5):
                logger.info("r%d", i)
            await bounded(handler.five.wait())
            listener.shutdown_timeout = 0.2
    stats = listener.stats.handlers[0]
    assert (stats.dropped, stats.pending) == (2, 3)
    assert listener.stats.undelivered == 3
    assert "shipper.aclose() was cut off: stop()'s time ran out" in stderr.getvalue()
    assert "it still holds 3 records undelivered" in stderr.getvalue()


# ---------------------------- an async handler's aclose() when the loop ends without stop()

#: shutdown_timeout for the tests below; the collector takes a tenth of it per record.
_WINDOW = 0.3
_LATENCY = _WINDOW / 10


class _Collector:
    """A slow but working collector: acknowledges each record after ``_LATENCY``, in a thread."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._inbox: queue.Queue[tuple[str, Callable[[], object]] | None] = queue.Queue()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="collector")
        self._thread.start()

    async def send(self, message: str) -> None:
        """Hand *message* over; return once the collector has acknowledged it."""
        acked = anyio.Event()
        token = anyio.lowlevel.current_token()

        def ack() -> None:
            with contextlib.suppress(RuntimeError):  # the test failed, and its run ended
                anyio.from_thread.run_sync(acked.set, token=token)

        self._inbox.put((message, ack))
        await acked.wait()

    def _serve(self) -> None:
        while (item := self._inbox.get()) is not None:
            message, ack = item
            self._quit.wait(_LATENCY)  # the network round trip: the collector is slow
            self.received.append(message)
            ack()

    def close(self) -> None:
        self._quit.set()
        self._inbox.put(None)
        self._thread.join(STALL)


class _SendsOnClose(aioqlog.AsyncHandler):
    """Buffers every record; aclose() sends them one by one, as a network handler does.

    With *stall_after*, aclose() stops sending after that many records and
    waits forever (a collector that went silent); ``stalled_at`` and
    ``cut_at`` say when it stopped, and when it was cancelled.
    """

    def __init__(self, collector: _Collector, stall_after: int | None = None) -> None:
        super().__init__()
        self.set_name("shipper")
        self.collector = collector
        self.stall_after = stall_after
        self.buffer: list[str] = []
        self.stalled_at = self.cut_at = 0.0
        self.took_one = anyio.Event()

    async def aemit(self, record: logging.LogRecord) -> None:
        self.buffer.append(record.getMessage())
        self.took_one.set()

    @property
    def pending(self) -> int:
        return len(self.buffer)

    async def aclose(self) -> None:
        sent = 0
        while self.buffer:
            if sent == self.stall_after:
                self.stalled_at = time.monotonic()
                try:
                    await anyio.sleep_forever()
                finally:
                    self.cut_at = time.monotonic()
            await self.collector.send(self.buffer[0])
            del self.buffer[0]
            sent += 1


def _log_and_return(
    listener: aioqlog.QueueListener, logger: logging.Logger, count: int
) -> Callable[[], Coroutine[Any, Any, None]]:
    """Return a main() that starts *listener*, logs *count* records, and ends without stop()."""

    async def main() -> None:
        listener.start()
        handler = listener.handlers[0]
        assert isinstance(handler, _SendsOnClose)
        logger.info("r0")
        await bounded(handler.took_one.wait())  # the handler's lane is served
        for i in range(1, count):
            logger.info("r%d", i)

    return main


def test_aclose_at_the_end_of_a_run_without_stop_goes_on_while_it_sends(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """The run ends without stop(): aclose() sends a buffer for twice shutdown_timeout, all of it.

    Each record takes a tenth of shutdown_timeout to reach the collector; the
    bound on aclose() follows that progress, as the wait on the lanes does.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    collector = _Collector()
    handler = _SendsOnClose(collector)
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=_WINDOW)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            run_on(anyio_backend, _log_and_return(listener, logger, 20))
    finally:
        collector.close()
    assert collector.received == [f"r{i}" for i in range(20)], stderr.getvalue()
    assert listener.stats.undelivered == 0
    assert "aclose()" not in stderr.getvalue()


def test_aclose_at_the_end_of_a_run_without_stop_is_cut_off_once_it_stalls(
    anyio_backend: object, logger: logging.Logger
) -> None:
    """aclose() sends for longer than shutdown_timeout, then stalls: cut off shutdown_timeout later.

    What it sent before stalling reached the collector; what it still holds
    is named on stderr.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    collector = _Collector()
    handler = _SendsOnClose(collector, stall_after=15)
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=_WINDOW)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            run_on(anyio_backend, _log_and_return(listener, logger, 20))
    finally:
        collector.close()
    assert collector.received == [f"r{i}" for i in range(15)], stderr.getvalue()
    assert handler.stalled_at
    assert handler.cut_at
    assert _WINDOW - 0.02 <= handler.cut_at - handler.stalled_at < STALL / 2
    assert (
        f"shipper.aclose() was cut off: it sent nothing for shutdown_timeout={_WINDOW:g}s "
        f"while the event loop ended without QueueListener.stop(); it still holds 5 records "
        f"undelivered"
    ) in stderr.getvalue()
    assert listener.stats.undelivered == 5


# asyncio.run's ending, on asyncio and uvloop: trio tells the listener of the run's end once.
def test_a_second_cancellation_cuts_a_patient_aclose_short(
    loop_factory: LoopFactory, logger: logging.Logger
) -> None:
    """asyncio.run ends without stop(); cancelled again during aclose(), the listener ends now.

    The bound (shutdown_timeout) is long; the second cancellation ends the
    wait at once, and what the handler still holds is named on stderr.
    """
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    collector = _Collector()

    class CancelsTheListener(_SendsOnClose):
        async def aclose(self) -> None:
            task = listener._run_state.task
            assert task is not None
            task.cancel()  # as asyncio.run's end does: a second time now
            await super().aclose()

    handler = CancelsTheListener(collector, stall_after=0)
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=STALL)

    stderr = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stderr(stderr):
            run(_log_and_return(listener, logger, 3)(), loop_factory)
    finally:
        collector.close()
    assert time.monotonic() - started < STALL / 2
    assert handler.cut_at
    assert (
        "shipper.aclose() was cut off: the listener was cancelled again; it still holds 3 "
        "records undelivered"
    ) in stderr.getvalue()


# ----------------------------------------- logging.shutdown() with records on the way


_SHUTDOWN_AFTER_RUN = """
    import asyncio, logging, time
    import aioqlog

    class Slow(logging.FileHandler):
        def emit(self, record):
            time.sleep(0.005)
            super().emit(record)

    logging.basicConfig(level=logging.INFO, handlers=[Slow("app.log", "w")])

    async def main():
        async with aioqlog.install(shutdown_timeout=0.3):
            for i in range(300):
                logging.getLogger("app").info("r%d", i)

    try:
        asyncio.run(main())
    finally:
        logging.shutdown()
"""


def test_logging_shutdown_after_a_bounded_stop_waits_for_the_records(tmp_path: Path) -> None:
    """`finally: logging.shutdown()` right after a stop gave up: every record is written first.

    Without it, shutdown closed the file handler (mode "w") under its worker,
    and the records still on their way were dropped without a word.
    """
    result = _script(_SHUTDOWN_AFTER_RUN, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(tmp_path / "app.log") == [f"INFO:app:r{i}" for i in range(300)], result.stderr


@pytest.mark.anyio
async def test_logging_shutdown_on_the_listeners_loop_says_what_is_undelivered(
    logger: logging.Logger,
) -> None:
    """Closing the QueueHandler inside the listener's loop cannot wait: stderr says so."""
    q = aioqlog.LogQueue()
    queue_handler = aioqlog.QueueHandler(q)
    logger.addHandler(queue_handler)
    gate = Gate(name="gate")
    async with aioqlog.QueueListener(q, gate, shutdown_timeout=0.2):
        logger.info("held")
        await in_thread(lambda: gate.entered.wait(STALL))
        logger.info("behind it")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            queue_handler.close()
        said = stderr.getvalue()
        assert "was closed on the listener's own event loop with 2 records not yet" in said
        assert "Stop the listener before reconfiguring logging" in said
        gate.opened.set()


# ------------------------------------ install() again while a handler catches up


@pytest.mark.anyio
async def test_install_again_while_a_handler_catches_up_goes_on_with_it() -> None:
    """A second install() after a bounded stop gave up: the same listener, records in order."""
    root = logging.getLogger()
    gate = Gate(name="gate")
    root.handlers[:] = [gate]
    with contextlib.redirect_stderr(io.StringIO()):
        async with aioqlog.install(shutdown_timeout=0.1) as first:
            logging.getLogger("app").warning("first run")
            await in_thread(lambda: gate.entered.wait(STALL))
        with pytest.raises(RuntimeError, match="install again with the same options"):
            aioqlog.install(maxsize=10)
        async with aioqlog.install(shutdown_timeout=0.1) as second:
            assert second is first
            logging.getLogger("app").warning("second run")
            gate.opened.set()
    assert gate.messages() == ["first run", "second run"]
    assert len(gate.threads) == 1
    assert root.handlers == [gate]


_ACLOSE_NOTICES = """
import asyncio, logging
import aioqlog

class Hung(aioqlog.AsyncHandler):
    # Never returns from aemit or aclose, and holds nothing of its own.
    async def aemit(self, record):
        await asyncio.Event().wait()

    async def aclose(self):
        await asyncio.Event().wait()

class SlowCloser(aioqlog.AsyncHandler):
    # Buffers its records and sends one every 0.3 s when closed: progress throughout.
    def __init__(self):
        super().__init__()
        self.held = []

    @property
    def pending(self):
        return len(self.held)

    async def aemit(self, record):
        self.held.append(record)

    async def aclose(self):
        while self.held:
            await asyncio.sleep(0.3)
            self.held.pop()

q = aioqlog.LogQueue()
logging.getLogger().addHandler(aioqlog.QueueHandler(q))
slow = SlowCloser()
slow.set_name("slow-closer")
listener = aioqlog.QueueListener(q, Hung(), slow, shutdown_timeout=1)

async def main():
    listener.start()
    for i in range(6):
        logging.getLogger("app").warning("r %d", i)
    await asyncio.sleep(0.2)  # then the loop ends without stop()

asyncio.run(main())
"""


@pytest.mark.slow
def test_an_unstopped_end_says_once_what_it_delivers_and_which_aclose_it_waits_for() -> None:
    """The loop ends without stop(): one notice for the records, one per aclose() with a buffer.

    The notice for the records is not repeated while an ``aclose()`` is
    awaited; that wait names the handler and what it holds, and a handler
    holding nothing gets no notice.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _ACLOSE_NOTICES],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    err = proc.stderr
    assert proc.returncode == 0, err
    assert err.count("the event loop is ending without QueueListener.stop()") == 1, err
    assert re.search(
        r"waiting for slow-closer\.aclose\(\) to send the \d records it holds "
        r"\(as long as it makes progress; press Ctrl-C to skip\)",
        err,
    ), err
    assert "waiting for <Hung" not in err, err


_SLOW_BATCHES = """
import asyncio, contextvars, logging, sys, time
import aioqlog

request_id = contextvars.ContextVar("request_id", default="-")
kind = sys.argv[1]

class SlowAsync(aioqlog.AsyncHandler):
    # 0.2 s a record, whatever the batch: a slow but working shipper.
    mix_contexts = True
    done = 0

    async def aemit_batch(self, records):
        await asyncio.sleep(0.2 * len(records))
        SlowAsync.done += len(records)

class SlowSync(logging.Handler):
    done = 0

    def emit(self, record):
        raise AssertionError("emit_batch is used")

    def emit_batch(self, records):
        time.sleep(0.1 * len(records))
        SlowSync.done += len(records)

handler = SlowAsync() if kind == "async" else SlowSync()
q = aioqlog.LogQueue()
logging.getLogger().addHandler(aioqlog.QueueHandler(q))
listener = aioqlog.QueueListener(q, handler, shutdown_timeout=1)

async def main():
    listener.start()

    async def request(n):
        request_id.set(f"req-{n}")
        logging.getLogger("app").warning("request %d", n)

    await asyncio.gather(*(request(n) for n in range(15)))
    await asyncio.sleep(0.05)  # then the loop ends without stop()

asyncio.run(main())
if kind == "sync":
    import atexit
    atexit.register(lambda: print("done", SlowSync.done, flush=True))  # after aioqlog's hook
else:
    print("done", SlowAsync.done, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_slow_batch_handler_gets_everything_when_the_loop_ends_without_stop(kind: str) -> None:
    """Batches take longer than shutdown_timeout would allow: the calls are sized to show progress.

    15 records at 0.2 s (async) or 0.1 s (sync) a record, ``shutdown_timeout=1``:
    one call for all of them would look stuck and be cut off. Each call
    takes what the last one showed fits in a quarter of the bound, so the
    wait sees progress and delivers every record.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _SLOW_BATCHES, kind],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", "15"], proc.stdout + proc.stderr
    assert "never delivered" not in proc.stderr, proc.stderr
    assert "undelivered" not in proc.stderr, proc.stderr


class _NoClose(aioqlog.AsyncHandler):
    """An async handler with the default ``aclose()``, slow enough to be cut off."""

    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_a_stop_out_of_time_reports_no_aclose_the_handler_does_not_have(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler without an ``aclose()`` of its own is not reported as cut off in it."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    handler = _NoClose()
    handler.set_name("no-close")
    listener = aioqlog.QueueListener(q, handler)
    listener.start()
    for i in range(10):
        logger.info("r %d", i)
    await bounded(listener.stop(timeout=0.3))
    err = capsys.readouterr().err
    assert "stop() ran out of time" in err, err  # the records, as before
    assert "aclose()" not in err, err


_LOGS_FOR_EVER = """
import asyncio, logging, threading, time
import aioqlog

class Yielding(logging.FileHandler):  # lets other threads run between records, as I/O does
    def emit(self, record):
        time.sleep(0)
        super().emit(record)

q = aioqlog.LogQueue(maxsize=100, overflow="block", block_timeout=1)
handler = Yielding("app.log")
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(aioqlog.QueueHandler(q))

def for_ever():
    i = 0
    while True:
        log.info("r%d", i)
        i += 1

async def main():
    async with aioqlog.QueueListener(q, handler, shutdown_timeout=2):
        threading.Thread(target=for_ever, daemon=True).start()
        await asyncio.sleep(0.3)

asyncio.run(main())
print("main done", flush=True)
"""


_STUCK_IN_A_LOGGING_THREAD = """
import asyncio, logging, threading, time
import aioqlog

gate = threading.Event()

class Stuck(logging.Handler):
    def emit(self, record):
        if record.getMessage() == "stuck":
            gate.wait()

log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
q = aioqlog.LogQueue(maxsize=10)
log.addHandler(aioqlog.QueueHandler(q))
listener = aioqlog.QueueListener(q, Stuck(), shutdown_timeout=1.0)

async def main():
    listener.start()
    await listener.stop()

asyncio.run(main())
# No listener runs now: this daemon thread delivers in its own call, and sticks.
threading.Thread(target=log.info, args=("stuck",), daemon=True).start()
while not listener.stats.handlers[0].pending:
    time.sleep(0.01)
print("main done", time.time(), flush=True)
"""


_BACKLOG_IN_A_DAEMONS_CALL = """
import asyncio, logging, threading, time
import aioqlog

class Slow(logging.FileHandler):
    def emit(self, record):
        time.sleep(0.05)
        super().emit(record)

log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
q = aioqlog.LogQueue()
log.addHandler(aioqlog.QueueHandler(q))
handler = Slow("app.log")
listener = aioqlog.QueueListener(q, handler)

async def main():
    listener.start()
    await listener.stop()

asyncio.run(main())
# Another thread is delivering (it holds the right): these 20 wait in the queue.
token = q._right.pop()
for i in range(20):
    log.info("r%d", i)
q._right.append(token)
# A daemon thread's log call finds them, and delivers them before its own.
threading.Thread(target=log.info, args=("last",), daemon=True).start()
while not listener.stats.handlers[0].pending:
    time.sleep(0.001)
"""


def test_the_exit_waits_for_what_a_daemon_threads_call_delivers_from_before_it(
    tmp_path: Path,
) -> None:
    """Records queued before the exit, in a daemon thread's delivery, are all written.

    Before, nothing waited for that thread, and the exit killed it mid-way.
    """
    result = _script(_BACKLOG_IN_A_DAEMONS_CALL, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(tmp_path / "app.log") == [*(f"r{i}" for i in range(20)), "last"], result.stderr


def test_a_handler_stuck_in_a_logging_threads_call_after_stop_does_not_hold_the_exit(
    tmp_path: Path,
) -> None:
    """The exit gives up on it after shutdown_timeout, says so, and logging.shutdown skips it.

    Before, the exit waited only for aioqlog's own threads, and
    logging.shutdown waited for ever for the lock the stuck emit held.
    """
    result = _script(_STUCK_IN_A_LOGGING_THREAD, tmp_path)
    ended = time.time()
    assert result.returncode == 0, result.stderr
    main_done = float(result.stdout.split()[-1])
    # Given up on once: not again in the exit's second pass, nor at logging.shutdown.
    assert ended - main_done < 2.0, result.stderr
    assert result.stderr.count("is still busy (it handled nothing for 1s at exit)") == 1
    assert "(1 records undelivered)" in result.stderr


def test_a_daemon_thread_logging_for_ever_under_block_does_not_hold_the_exit(
    tmp_path: Path,
) -> None:
    """The exit delivers what was queued when it began; a thread that logs on is not waited for.

    Before, the helper that delivers leftovers took each new record the
    thread logged, so it made progress for ever and the exit waited on it.
    """
    started = time.monotonic()
    result = _script(_LOGS_FOR_EVER, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "main done" in result.stdout
    assert time.monotonic() - started < 30, result.stderr
    # What the thread logged after the exit began is not lost silently.
    said = re.search(
        r"threads went on logging as the interpreter exited: (\d+) records they logged after "
        r"the exit began were not delivered.*?, and (\d+) were dropped",
        result.stderr,
    )
    if said is None:
        # The thread logged nothing more once the exit began (it can stay
        # waiting for room until the interpreter stops it, as on Python 3.10):
        # then every record it logged is in the file, in order, or among the
        # drops reported to the handler there.
        lines = _lines(tmp_path / "app.log")
        numbers = [int(line[1:]) for line in lines if line.startswith("r")]
        reported = sum(
            int(n) for n in re.findall(r"aioqlog dropped (\d+) records", "\n".join(lines))
        )
        assert numbers == sorted(set(numbers)), result.stderr
        assert numbers[-1] + 1 == len(numbers) + reported, result.stderr
    else:
        assert int(said[1]) + int(said[2]) > 0
