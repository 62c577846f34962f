"""Frameworks: real uvicorn and aiohttp servers on 127.0.0.1, logging through aioqlog."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support import STALL, Recorder

import aioqlog
from aioqlog.integrations.aiohttp import cleanup_ctx
from aioqlog.integrations.starlette import lifespan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# ---------------------------------------------------------------- the lifespan


@pytest.mark.asyncio
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


@pytest.mark.asyncio
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


# ------------------------------------------------------------------- aiohttp


@pytest.mark.asyncio
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
