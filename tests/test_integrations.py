"""Frameworks: real uvicorn and aiohttp servers on 127.0.0.1, logging through aioqlog."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support import STALL, Recorder, bounded, in_thread

import aioqlog
from aioqlog.integrations.aiohttp import cleanup_ctx
from aioqlog.integrations.starlette import lifespan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# ---------------------------------------------------------------- the lifespan


@pytest.mark.anyio
async def test_lifespan_wraps_the_apps_own(logger: logging.Logger) -> None:
    """Logging starts before the app's startup, stops after its shutdown; state passes on."""
    recorder = Recorder()
    logging.getLogger().handlers[:] = [recorder]
    logger.propagate = True
    events: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: object) -> AsyncIterator[dict[str, int]]:
        events.append(f"startup, queued={_queued()}")
        logger.info("app startup")
        yield {"answer": 42}
        logger.info("app shutdown")
        events.append("shutdown")

    app = object()
    async with lifespan(app_lifespan, install=True)(app) as state:
        assert state == {"answer": 42}
    assert events == ["startup, queued=True", "shutdown"]
    mine = [r.getMessage() for r in recorder.records if r.name == logger.name]
    assert mine == ["app startup", "app shutdown"]
    assert all(name.startswith("aioqlog-") for name in recorder.threads)
    assert logging.getLogger().handlers == [recorder]


def _queued() -> bool:
    return any(isinstance(h, aioqlog.QueueHandler) for h in logging.getLogger().handlers)


@pytest.mark.anyio
async def test_lifespan_alone_yields_no_state() -> None:
    """Without an app lifespan, it runs logging only."""
    logging.getLogger().handlers[:] = [Recorder()]
    span: Callable[[object], AbstractAsyncContextManager[Any]] = lifespan(install=True)
    async with span(object()) as state:
        assert state is None
        assert _queued()


def test_integration_arguments_are_checked_when_the_app_is_built() -> None:
    """A bad option fails at app creation, not at the first startup."""
    with pytest.raises(ValueError, match="overflow must be one of"):
        lifespan(install=True, overflow="never")
    with pytest.raises(TypeError, match="install=True only"):
        cleanup_ctx(maxsize=10)
    with pytest.raises(TypeError, match="install must be True or False"):
        lifespan(install="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------- uvicorn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[Any]:
    """Start uvicorn on a free loopback port with a given log config; kill it afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(log_config: Path) -> tuple[subprocess.Popen[str], str]:
        port = _free_port()
        command = [
            sys.executable, "-m", "uvicorn", "examples.fastapi_app:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-config", str(log_config),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_until_serving(proc, base)
        return proc, base

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_until_serving(proc: subprocess.Popen[str], base: str) -> None:
    """Poll the health endpoint of a starting server (a process we cannot await)."""
    deadline = time.monotonic() + STALL
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"uvicorn exited early: {err}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("uvicorn did not start serving")


def _terminate(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), err
    return out, err


@pytest.mark.slow
def test_fastapi_on_uvicorn_writes_every_line_and_drains_on_sigterm(
    tmp_path: Path, uvicorn_server: Any
) -> None:
    """A 50 ms-per-record handler behind aioqlog: each request's line is in the file.

    After SIGTERM the file holds every line logged before the signal (and the
    app's shutdown line): nothing is lost at shutdown.
    """
    config = json.loads((EXAMPLES / "logging_config.json").read_text())
    log_file = tmp_path / "app.log"
    config["handlers"]["slow_file"]["filename"] = str(log_file)
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(config))
    proc, base = uvicorn_server(log_config)
    requests = 40
    with httpx.Client(base_url=base, timeout=STALL) as client:
        for i in range(requests):
            response = client.get(f"/items/{i}")
            assert response.json() == {"item": i}
    _terminate(proc)
    text = log_file.read_text()
    for i in range(requests):
        assert f"INFO app served item {i}\n" in text
        assert f'"GET /items/{i} HTTP/1.1" 200' in text
    assert "INFO app app starting" in text
    assert "INFO app app stopping" in text
    assert "Application shutdown complete." in text
    # Logged after the lifespan stopped the listener: handled in the caller, not lost.
    assert "Finished server process" in text.rstrip().splitlines()[-1]


def test_the_uvicorn_recipes_say_the_same_thing() -> None:
    """The JSON and YAML --log-config recipes are the same configuration."""
    as_json = json.loads((EXAMPLES / "uvicorn_log_config.json").read_text())
    as_yaml = yaml.safe_load((EXAMPLES / "uvicorn_log_config.yaml").read_text())
    assert as_json == as_yaml


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["uvicorn_log_config.yaml", "uvicorn_log_config.json"])
def test_the_uvicorn_recipe_routes_uvicorns_logs_through_aioqlog(
    recipe: str, uvicorn_server: Any
) -> None:
    """uvicorn's error and access logs arrive, including what it logs after the app stopped."""
    proc, base = uvicorn_server(EXAMPLES / recipe)
    with httpx.Client(base_url=base, timeout=STALL) as client:
        for i in range(5):
            assert client.get(f"/items/{i}").status_code == 200
    out, err = _terminate(proc)
    for i in range(5):
        assert f'"GET /items/{i} HTTP/1.1" 200' in out
    assert "Application startup complete." in err
    assert "Application shutdown complete." in err
    # Logged after the lifespan stopped the listener: handled in the caller, not lost.
    assert "Finished server process" in err


# ------------------------------------------------------------------ gunicorn


@pytest.mark.slow
def test_gunicorn_logconfig_dict_writes_every_app_and_access_line(tmp_path: Path) -> None:
    """examples/gunicorn_conf.py, a uvicorn worker: 50 requests, 50 app + 50 access lines."""
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    port = _free_port()
    command = [
        sys.executable, "-m", "gunicorn", "examples.fastapi_app:app",
        "-c", str(EXAMPLES / "gunicorn_conf.py"), "-b", f"127.0.0.1:{port}", "-w", "1",
    ]  # fmt: skip
    # HOME: gunicorn 24+ puts a control socket there.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_serving(proc, base)
        requests = 50
        with httpx.Client(base_url=base, timeout=STALL) as client:
            for i in range(requests):
                assert client.get(f"/items/{i}").json() == {"item": i}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    app_lines = [line for line in err.splitlines() if " INFO app served item " in line]
    access_lines = [line for line in out.splitlines() if '"GET /items/' in line]
    assert len(app_lines) == requests, err
    assert len(access_lines) == requests, out
    for i in range(requests):
        assert any(line.endswith(f" served item {i}") for line in app_lines)
        assert any(f'"GET /items/{i} HTTP/1.1" 200' in line for line in access_lines)
    # The app's lifespan started the worker's listeners and drained them at shutdown.
    assert "INFO app app stopping" in err
    assert "Application shutdown complete." in err


# --------------------------------------------------------- uvicorn's own loggers

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class HandledIn(Recorder):
    """A recorder that notes the thread each record was handled in; flags startup."""

    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.started = started
        self.handled_in: list[tuple[str, str]] = []  # (logger name, handling thread)

    def emit(self, record: logging.LogRecord) -> None:
        self.handled_in.append((record.name, threading.current_thread().name))
        super().emit(record)
        if record.getMessage() == "Application startup complete.":
            self.started.set()


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """Leave uvicorn's loggers (which uvicorn.Config configures) as found."""
    saved = [
        (log, list(log.handlers), log.level, log.propagate, log.disabled)
        for log in map(logging.getLogger, UVICORN_LOGGERS)
    ]
    yield
    for log, handlers, level, propagate, disabled in saved:
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate
        log.disabled = disabled


def _install_only_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI(lifespan=lifespan(install=True))

    @app.get("/items/{item}")
    async def read_item(item: int) -> dict[str, int]:
        return {"item": item}

    return app


@pytest.mark.asyncio  # uvicorn's Server, served in this process, runs on asyncio only
@pytest.mark.usefixtures("uvicorn_loggers")
@pytest.mark.parametrize(
    ("recipe", "log_config", "behind_aioqlog"),
    [
        # uvicorn's default setup: its loggers have handlers and propagate=False.
        ("lifespan(install=True) alone", "default", False),
        ("examples/fastapi_install.py", "default", True),
        # uvicorn.run(app, log_config=None): its loggers propagate to root.
        ("lifespan(install=True) alone", None, True),
    ],
)
async def test_uvicorns_access_log_goes_behind_aioqlog_with_the_documented_recipes(
    recipe: str, log_config: str | None, behind_aioqlog: bool
) -> None:
    """uvicorn's access line is handled by an aioqlog worker, not on the loop, per the docs."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from examples.fastapi_install import app as install_app

    app = install_app if recipe.startswith("examples/") else _install_only_app()
    config = uvicorn.Config(
        app, log_config=LOGGING_CONFIG if log_config == "default" else None, lifespan="on"
    )  # configures logging, as uvicorn.run() does before serving
    started = threading.Event()
    recorders = [HandledIn(started) for _ in range(3)]
    logging.getLogger().handlers[:] = [recorders[0]]
    logging.getLogger().setLevel(logging.INFO)
    if log_config == "default":
        # Stand-ins for uvicorn's own stream handlers on its own loggers.
        logging.getLogger("uvicorn").handlers[:] = [recorders[1]]
        logging.getLogger("uvicorn.access").handlers[:] = [recorders[2]]
    server = uvicorn.Server(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            assert await in_thread(lambda: started.wait(STALL)), "uvicorn did not start"
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://{host}:{port}/items/7", timeout=STALL)
                assert response.json() == {"item": 7}
        finally:
            server.should_exit = True
            await bounded(serving)
    handled_in = [entry for recorder in recorders for entry in recorder.handled_in]
    access = [thread for name, thread in handled_in if name == "uvicorn.access"]
    assert len(access) == 1
    loop_thread = threading.current_thread().name
    if behind_aioqlog:
        assert access[0].startswith("aioqlog-"), access
    else:
        assert access == [loop_thread]
    # Put back at shutdown: uvicorn's loggers have their own handlers again.
    if log_config == "default":
        assert logging.getLogger("uvicorn.access").handlers == [recorders[2]]


# ------------------------------------------------------------------- aiohttp


@pytest.mark.asyncio  # aiohttp's web app runs on asyncio only
async def test_aiohttp_app_logs_every_request_through_aioqlog(tmp_path: Path) -> None:
    """The example app on a real aiohttp server: every line written; handlers restored."""
    from aiohttp import ClientSession, web

    from examples.aiohttp_app import make_app
    from examples.slow_file_handler import SlowFileHandler

    root = logging.getLogger()
    slow = SlowFileHandler(str(tmp_path / "app.log"), latency=0.02)
    slow.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root.handlers[:] = [slow]
    root.setLevel(logging.INFO)
    runner = web.AppRunner(make_app())
    await runner.setup()
    try:
        assert _queued()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with ClientSession() as session:
            for i in range(20):
                async with session.get(f"http://{host}:{port}/items/{i}") as response:
                    assert await response.json() == {"item": i}
    finally:
        await runner.cleanup()
        slow.close()
    assert root.handlers == [slow]
    lines = (tmp_path / "app.log").read_text().splitlines()
    assert [line for line in lines if line.startswith("app ")] == [
        f"app served item {i}" for i in range(20)
    ]
    assert sum('"GET /items/' in line for line in lines) == 20  # aiohttp's access log
