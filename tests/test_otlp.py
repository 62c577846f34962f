"""OTLP/HTTP logs: AsyncHTTPHandler(body="otlp") to a receiver decoding with opentelemetry-proto.

The receiver (aiohttp, asyncio only) serves on a loop of its own in a thread,
so that the tests run on asyncio, uvloop and trio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web
from support import STALL, in_thread, on_its_loop, served_in_a_thread

import aioqlog
from aioqlog.handlers import AsyncHTTPHandler

json_format = pytest.importorskip("google.protobuf.json_format")
logs_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
trace_sdk = pytest.importorskip("opentelemetry.sdk.trace")


class Receiver:
    """An OTLP/HTTP logs receiver on 127.0.0.1: parses each request as ExportLogsServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.content_types: list[str] = []
        self.received = threading.Condition()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.runner: web.AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the receiver's own

    async def serve(self) -> None:
        """Start serving (on the receiver's own loop)."""
        self.loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_post("/v1/logs", self.export)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def close(self) -> None:
        """Stop serving: connections are refused (on the receiver's own loop)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def start(self) -> None:
        """Serve again, from a test on any backend."""
        await on_its_loop(self.loop, self.serve)

    async def stop(self) -> None:
        """Go away, from a test on any backend."""
        await on_its_loop(self.loop, self.close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    async def export(self, request: web.Request) -> web.Response:
        message = logs_service_pb2.ExportLogsServiceRequest()
        # Fails (400) on anything the official message types do not accept.
        try:
            json_format.ParseDict(_hex_ids_to_base64(json.loads(await request.text())), message)
        except (json_format.ParseError, ValueError) as exc:
            return web.Response(status=400, text=str(exc))
        with self.received:
            self.requests.append(message)
            self.content_types.append(request.headers["Content-Type"])
            self.received.notify_all()
        return web.Response(content_type="application/json", text="{}")

    def records(self) -> list[tuple[Any, Any, Any]]:
        """Return every (resource, scope, log record) received, in order."""
        return [
            (resource_logs.resource, scope_logs.scope, record)
            for message in self.requests
            for resource_logs in message.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]

    def bodies(self) -> list[str]:
        return [r.body.string_value for _, scope, r in self.records() if scope.name != "aioqlog"]

    async def wait_for(self, count: int) -> None:
        """Await (in a thread of its own) *count* records received."""

        def wait() -> bool:
            with self.received:
                return self.received.wait_for(lambda: len(self.records()) >= count, STALL)

        assert await in_thread(wait), f"only {len(self.records())} of {count} records arrived"


def _hex_ids_to_base64(payload: Any) -> Any:
    """Turn OTLP/JSON's hex trace and span ids into the base64 protobuf's JSON mapping expects.

    OTLP's JSON encoding differs from the standard mapping there: ids are hex
    strings, as an OTLP receiver (the OpenTelemetry Collector) reads them.
    """
    for resource_logs in payload.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        raw = bytes.fromhex(record[key])
                        record[key] = base64.b64encode(raw).decode()
    return payload


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver serving on a loop of its own, in a thread."""
    r = Receiver()
    with served_in_a_thread(r.serve, r.close):
        yield r


def _attributes(record: Any) -> dict[str, Any]:
    return {kv.key: json_format.MessageToDict(kv.value) for kv in record.attributes}


@pytest.mark.anyio
async def test_every_field_decodes_with_the_official_message_types(
    receiver: Receiver, logger: logging.Logger
) -> None:
    """Severity, body, attributes, scope, resource, and the span active at each log call."""
    provider = trace_sdk.TracerProvider()
    tracer = provider.get_tracer("test")
    handler = AsyncHTTPHandler(
        receiver.url, body="otlp", resource={"service.name": "checkout"}, batch_age=0.02
    )
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    spans: dict[str, Any] = {}

    async def request(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            spans[name] = span.get_span_context()
            logger.info("%s starts", name)
            await anyio.lowlevel.checkpoint()
            logger.warning("%s ends", name)

    async with aioqlog.QueueListener(q, handler):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "a")
            tg.start_soon(request, "b")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("outside any span")
        logger.log(25, "between info and warning")
        await receiver.wait_for(6)

    assert set(receiver.content_types) == {"application/json"}
    records = receiver.records()
    by_body = {r.body.string_value.splitlines()[0]: (res, scope, r) for res, scope, r in records}
    for name in ("a", "b"):
        context = spans[name]
        for body, severity, text in (
            (f"{name} starts", 9, "INFO"),
            (f"{name} ends", 13, "WARNING"),
        ):
            resource, scope, record = by_body[body]
            assert (record.severity_number, record.severity_text) == (severity, text)
            assert record.trace_id == context.trace_id.to_bytes(16, "big")
            assert record.span_id == context.span_id.to_bytes(8, "big")
            assert scope.name == logger.name
            assert {kv.key: kv.value.string_value for kv in resource.attributes} == {
                "service.name": "checkout"
            }
            attributes = _attributes(record)
            assert attributes["code.function"] == {"stringValue": "request"}
            assert attributes["thread.name"] == {"stringValue": "MainThread"}
            assert int(attributes["code.lineno"]["intValue"]) > 0
            assert record.time_unix_nano > 0
            assert record.observed_time_unix_nano >= record.time_unix_nano
    _, _, failed = by_body["outside any span"]
    assert (failed.severity_number, failed.trace_id) == (17, b"")
    attributes = _attributes(failed)
    assert attributes["exception.type"] == {"stringValue": "ValueError"}
    assert attributes["exception.message"] == {"stringValue": "boom"}
    assert "raise ValueError" in attributes["exception.stacktrace"]["stringValue"]
    _, _, between = by_body["between info and warning"]
    assert between.severity_number == 12  # INFO's band, as far as it goes (9 + 3)


@pytest.mark.anyio
async def test_nothing_is_lost_across_a_receiver_restart(
    receiver: Receiver, logger: logging.Logger
) -> None:
    """The receiver goes away and comes back: every record arrives, each once."""
    handler = AsyncHTTPHandler(
        receiver.url,
        body="otlp",
        batch_size=5,
        batch_age=0.02,
        backoff=0.02,
        backoff_max=0.1,
        request_timeout=2.0,
    )
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    async with aioqlog.QueueListener(q, handler):
        logger.info("r 0")
        await receiver.wait_for(1)
        await receiver.stop()
        for i in range(1, 30):
            logger.info("r %d", i)
        await receiver.start()
        await receiver.wait_for(30)
    assert receiver.bodies() == [f"r {i}" for i in range(30)]
    assert handler.dropped == 0
