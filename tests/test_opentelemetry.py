"""OpenTelemetry: log records exported from aioqlog's worker carry the span of their log call.

OpenTelemetry's ``LoggingHandler`` reads the current span when it handles a
record (``opentelemetry.context.get_current()``, a ``contextvars`` lookup).
aioqlog handles records in a worker thread, long after the call; it runs each
handler inside a copy of the record's log-call context, which is what these
tests pin. Each one holds the handler until the spans have ended, so a handler
that read the span at handling time, in the worker's own context, would export
no span or the wrong one (the stdlib's ``QueueListener`` does: see the last test).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from opentelemetry.instrumentation.logging.handler import (
    LoggingHandler as InstrumentationLoggingHandler,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import LoggingHandler as SDKLoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer
from support import STALL, bounded, in_thread, join_all

import aioqlog

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
except ImportError:  # opentelemetry-sdk before 1.39 has the older name only
    from opentelemetry.sdk._logs.export import (
        InMemoryLogExporter as InMemoryLogRecordExporter,
    )

ROOT = Path(__file__).resolve().parent.parent

#: A finished log record's trace id, span id and body.
Exported = tuple[int, int, str]


class Hold(logging.Filter):
    """Keep the handler from handling anything until released (runs in the worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        assert self.released.wait(STALL), "the test never released the handler"
        return True


@dataclass
class OTel:
    """An OpenTelemetry logs pipeline into memory, and a tracer."""

    handler: logging.Handler
    exporter: InMemoryLogRecordExporter
    tracer: Tracer
    hold: Hold

    def exported(self) -> list[Exported]:
        """Return each exported record's trace id, span id and body, in export order."""
        return [
            (data.log_record.trace_id or 0, data.log_record.span_id or 0, str(data.log_record.body))
            for data in self.exporter.get_finished_logs()
        ]

    def wait_exported(self, count: int) -> list[Exported]:
        """Flush until *count* records were exported; return them."""
        provider = self.handler._logger_provider  # type: ignore[attr-defined]
        provider.force_flush()  # SimpleLogRecordProcessor exports in emit(): nothing waits
        exported = self.exported()
        assert len(exported) == count, exported
        return exported


def ids(span: Span) -> tuple[int, int]:
    """Return *span*'s trace id and span id."""
    context = span.get_span_context()
    return context.trace_id, context.span_id


HANDLERS: dict[str, Callable[[LoggerProvider], logging.Handler]] = {
    "sdk": lambda provider: SDKLoggingHandler(logger_provider=provider),
    "instrumentation": lambda provider: InstrumentationLoggingHandler(logger_provider=provider),
}


@pytest.fixture(params=sorted(HANDLERS))
def otel(request: pytest.FixtureRequest) -> Iterator[OTel]:
    """The SDK's LoggingHandler (deprecated) or its successor, into an in-memory exporter."""
    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's handler is deprecated
        handler = HANDLERS[request.param](provider)
    hold = Hold()
    handler.addFilter(hold)
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("aioqlog.tests")
    yield OTel(handler, exporter, tracer, hold)
    hold.released.set()
    provider.shutdown()


@pytest.mark.anyio
async def test_a_coroutines_record_carries_its_span_not_the_workers(
    logger: logging.Logger, otel: OTel
) -> None:
    """Records logged in a span on the loop are exported with that span, after it ended."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, otel.handler):
        with otel.tracer.start_as_current_span("request") as request:
            logger.info("in the request")
            with otel.tracer.start_as_current_span("db query") as query:
                logger.info("in the query")
            logger.info("back in the request")
        logger.info("outside any span")
        otel.hold.released.set()  # only now, with every span ended, does the worker handle
    assert otel.wait_exported(4) == [
        (*ids(request), "in the request"),
        (*ids(query), "in the query"),
        (*ids(request), "back in the request"),
        (0, 0, "outside any span"),
    ]


@pytest.mark.anyio
async def test_two_concurrent_requests_keep_their_own_spans(
    logger: logging.Logger, otel: OTel
) -> None:
    """Two interleaved requests on one loop: every record has its own request's span."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    turns = {name: anyio.Event() for name in ("a", "b")}
    spans: dict[str, Span] = {}

    async def request(name: str, other: str) -> None:
        with otel.tracer.start_as_current_span(f"request {name}") as span:
            spans[name] = span
            for step in range(3):
                await turns[name].wait()  # take turns: a, b, a, b, ...
                turns[name] = anyio.Event()  # anyio's events cannot be cleared: a fresh one
                logger.info("%s step %d", name, step)
                turns[other].set()

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "a", "b")
            tg.start_soon(request, "b", "a")

    async with aioqlog.QueueListener(q, otel.handler):
        turns["a"].set()
        await bounded(both())
        otel.hold.released.set()
    exported = otel.wait_exported(6)
    assert [body for *_, body in exported] == [f"{n} step {s}" for s in range(3) for n in "ab"]
    for trace_id, span_id, body in exported:
        assert (trace_id, span_id) == ids(spans[body[0]]), body
    assert ids(spans["a"])[0] != ids(spans["b"])[0]


@pytest.mark.anyio
async def test_records_from_threads_carry_their_threads_span(
    logger: logging.Logger, otel: OTel
) -> None:
    """Spans made in threads (sync code in an executor): each record has its thread's span."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    started = threading.Barrier(3)
    spans: dict[str, Span] = {}

    def worker(name: str) -> None:
        with otel.tracer.start_as_current_span(f"job {name}") as span:
            spans[name] = span
            started.wait(STALL)  # both spans are open at once
            for i in range(5):
                logger.info("%s %d", name, i)

    async with aioqlog.QueueListener(q, otel.handler):
        with otel.tracer.start_as_current_span("the loop's span") as loop_span:
            threads = [threading.Thread(target=worker, args=(n,)) for n in ("t1", "t2")]
            for t in threads:
                t.start()
            started.wait(STALL)
            logger.info("loop")
            await in_thread(lambda: join_all(threads))
        otel.hold.released.set()
    exported = otel.wait_exported(11)
    spans["loop"] = loop_span
    for trace_id, span_id, body in exported:
        assert (trace_id, span_id) == ids(spans[body.split()[0]]), body


def test_the_stdlib_queue_listener_loses_the_span(logger: logging.Logger, otel: OTel) -> None:
    """Without the log call's context (the stdlib's QueueListener), records export no span.

    The control for the tests above: it shows that they would fail if the span
    were read in the worker's own context.
    """
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger.addHandler(logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, otel.handler)
    listener.start()
    try:
        with otel.tracer.start_as_current_span("request"):
            logger.info("in the request")
        otel.hold.released.set()
    finally:
        listener.stop()
    assert otel.wait_exported(1) == [(0, 0, "in the request")]


def test_the_docs_sample_exports_each_request_with_its_trace() -> None:
    """The sample of docs/integrations/opentelemetry.md runs: each request has its own trace."""
    page = (ROOT / "docs" / "integrations" / "opentelemetry.md").read_text()
    sample = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    assert sample is not None
    result = subprocess.run(
        [sys.executable, "-c", sample.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    decoder, text, records = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        record, end = decoder.raw_decode(text)
        records.append(record)
        text = text[end:].strip()
    assert sorted(r["body"] for r in records) == [f"request {n} done" for n in range(3)]
    traces = {r["trace_id"] for r in records}
    assert len(traces) == 3
    assert "0x00000000000000000000000000000000" not in traces
    assert all(r["resource"]["attributes"]["service.name"] == "checkout" for r in records)
