"""structlog's stdlib integration behind aioqlog writes what it writes without aioqlog."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Gate, Recorder

import aioqlog

structlog = pytest.importorskip("structlog")

NAME = "aioqlog.tests.structlog"


def pinned_timestamp(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Stand in for ``TimeStamper``: the same time in both runs, so output can be compared."""
    event_dict["timestamp"] = "2026-01-01T00:00:00Z"
    return event_dict


SHARED = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    pinned_timestamp,
]


def processor_formatter() -> logging.Formatter:
    """The usual ``ProcessorFormatter``: context merged and exceptions rendered in it.

    Both run where the record is formatted (behind aioqlog, in the handler's
    worker thread), so they prove the log call's context and exception reach it.
    """
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    return formatter


@pytest.fixture
def stdlib_logger() -> Iterator[logging.Logger]:
    """The stdlib logger structlog writes to; structlog configured for ProcessorFormatter."""
    structlog.configure(
        processors=[*SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    log = logging.getLogger(NAME)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def log_everything() -> None:
    """Log through structlog and the stdlib, changing context and values right after each call."""
    slog = structlog.get_logger(NAME)
    plain = logging.getLogger(NAME)
    structlog.contextvars.bind_contextvars(request_id="r-1", user="alice")
    cart = ["apple"]
    prefs = {"theme": "dark"}
    slog.info("cart", items=cart, prefs=prefs, nested={"ids": [1, 2]})
    cart.append("changed after the call")
    prefs["theme"] = "changed after the call"
    structlog.contextvars.bind_contextvars(request_id="r-2", user="bob")
    plain.warning("a stdlib record, %s", "merged with the context")
    structlog.contextvars.bind_contextvars(request_id="r-3")
    try:
        raise KeyError("missing")
    except KeyError:
        slog.exception("lookup failed")
        plain.exception("stdlib lookup failed")
    structlog.contextvars.bind_contextvars(request_id="r-4")

    def worker() -> None:
        structlog.contextvars.bind_contextvars(request_id="t-1", thread="worker-1")
        slog.info("from a thread")
        plain.info("stdlib from a thread")
        structlog.contextvars.bind_contextvars(request_id="t-2")

    thread = threading.Thread(target=worker, name="worker-1")
    thread.start()
    thread.join()
    structlog.contextvars.unbind_contextvars("user")


def test_direct_output_is_what_the_test_expects(stdlib_logger: logging.Logger) -> None:
    """The reference itself: each value as it was at its call, the tracebacks present."""
    direct = Recorder()
    direct.setFormatter(processor_formatter())
    stdlib_logger.addHandler(direct)
    log_everything()
    joined = "\n".join(direct.lines)
    assert len(direct.lines) == 6
    assert "changed after the call" not in joined
    assert joined.count("Traceback (most recent call last)") == 2
    assert '"request_id": "r-1"' in direct.lines[0]
    assert '"items": ["apple"]' in direct.lines[0]
    assert '"request_id": "t-1"' in direct.lines[4]


@pytest.mark.anyio
async def test_output_is_byte_identical_to_direct_handling(stdlib_logger: logging.Logger) -> None:
    """Context bound at the call, values changed after it, exceptions: bytes as without aioqlog."""
    direct = Recorder()
    direct.setFormatter(processor_formatter())
    stdlib_logger.addHandler(direct)
    log_everything()
    stdlib_logger.removeHandler(direct)
    structlog.contextvars.clear_contextvars()

    q = aioqlog.LogQueue()
    stdlib_logger.addHandler(aioqlog.QueueHandler(q))
    # The gate holds the worker until everything was logged and changed, so a
    # value or context read at handling time would show the later state.
    gate = Gate()
    gate.setFormatter(processor_formatter())
    async with aioqlog.QueueListener(q, gate):
        log_everything()
        gate.opened.set()
        await gate.arrived(len(direct.lines))
    assert [line.encode() for line in gate.lines] == [line.encode() for line in direct.lines]


def fail_and_log() -> None:
    """Log an exception with ``slog.exception()`` (the same traceback from both runs)."""
    try:
        raise KeyError("missing")
    except KeyError:
        structlog.get_logger(NAME).exception("lookup failed")


@pytest.mark.anyio
async def test_exception_keeps_its_traceback_when_the_formatter_renders_it(
    stdlib_logger: logging.Logger,
) -> None:
    """``slog.exception()``: exc_info=True is resolved at the call, not in the worker thread."""
    direct = Recorder()
    direct.setFormatter(processor_formatter())
    stdlib_logger.addHandler(direct)
    fail_and_log()
    stdlib_logger.removeHandler(direct)

    q = aioqlog.LogQueue()
    stdlib_logger.addHandler(aioqlog.QueueHandler(q))
    queued = Recorder()
    queued.setFormatter(processor_formatter())
    async with aioqlog.QueueListener(q, queued):
        fail_and_log()
    assert "KeyError: 'missing'" in queued.lines[0]
    assert queued.lines == direct.lines


DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "integrations" / "structlog.md"

CLIENT = """
from fastapi.testclient import TestClient
from app import app

with TestClient(app) as client:
    assert client.get("/items/42", headers={"x-request-id": "abc"}).json() == {"item_id": 42}
    assert client.get("/items/0", headers={"x-request-id": "def"}).json() == {"item_id": 0}
"""


def test_the_docs_fastapi_sample_runs_as_written(tmp_path: Path) -> None:
    """The docs page's app, served in-process: each line has its request's context and traceback."""
    pytest.importorskip("fastapi")
    text = DOCS_PAGE.read_text()
    start = text.index("```python\n") + len("```python\n")
    (tmp_path / "app.py").write_text(text[start : text.index("```\n", start)])
    root = str(Path(aioqlog.__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CLIENT],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["logger"] == "app"]
    assert [(line["event"], line["request_id"]) for line in mine] == [
        ("item read", "abc"),
        ("item read", "def"),
        ("cannot divide by the item id", "def"),
    ]
    assert mine[2]["exception"].endswith("ZeroDivisionError: division by zero")
