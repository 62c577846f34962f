"""Shipping over HTTP: records/s to a local collector, and the loop's lag meanwhile.

A collector (aiohttp, in a process of its own on 127.0.0.1) counts the records
it receives. Throughput: each variant logs N records from the loop, in bursts
of 100 with a yield between bursts, then stops its listener; the clock runs
until the collector has every record. Loop lag: each variant logs at a steady
PACED_RATE records/s (what all of them can ship) for a few seconds, while a
ticker on the loop measures how late its 1 ms sleeps wake up. The ticker also
runs during the throughput runs: the loop's lag while shipping at full speed
(one p99 over the ticks of every run, pooled: a run is too short for its own).

* no logging: the same producer into a handler that does nothing: the loop's
  own floor for the lag tables. At full speed it would end at once, so it logs
  on, burst after burst, for the paced runs' window: the floor is a loop as
  busy with logging calls as the others', not an idle one.

* stdlib: ``logging.handlers.HTTPHandler`` (a request per record) behind the
  stdlib ``QueueHandler`` and ``QueueListener`` thread.
* aioqlog + stdlib HTTPHandler: the same handler in an aioqlog lane.
* aioqlog AsyncHTTPHandler: batches of up to 500 records, NDJSON, encoded in
  its thread; made off the loop, as at an application's set-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import queue
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial

import aioqlog
from aioqlog.handlers import AsyncHTTPHandler
from benchmarks._harness import Table, lost_lines, paired, percentile
from benchmarks.caller_cost import ARG, MESSAGE, NoOp, fresh_logger

BURST = 100
#: Records per second in the loop-lag runs: below what the slowest variant ships.
PACED_RATE = 400
#: Seconds between two paced bursts.
PACE = 0.02
#: The variant that logs nothing: the floor of the lag tables, no row of the rate table.
NO_LOGGING = "no logging"

_COLLECTOR = """
import sys
from aiohttp import web

count = 0

async def ingest(request):
    global count
    body = await request.read()
    count += body.count(b"\\n")
    return web.Response(text="ok")

async def form(request):
    global count
    await request.read()
    count += 1
    return web.Response(text="ok")

async def get_count(request):
    return web.Response(text=str(count))

async def reset(request):
    global count
    count = 0
    return web.Response(text="ok")

app = web.Application(client_max_size=256 * 1024 * 1024)
app.router.add_post("/ingest", ingest)
app.router.add_post("/form", form)
app.router.add_get("/count", get_count)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Collector:
    """The collector process: start it, reset and read its count over HTTP."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def _call(self, method: str, path: str) -> str:
        request = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())

    def reset(self) -> None:
        """Set the received count to zero."""
        self._call("POST", "/reset")

    def count(self) -> int:
        """Return how many records arrived since the last reset."""
        return int(self._call("GET", "/count"))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the collector answers (it is starting in its own process)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.count()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@contextmanager
def collector() -> Iterator[Collector]:
    """Run the collector in a child process for the duration of the block."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _COLLECTOR, str(port)])
    try:
        server = Collector(port)
        server.wait_ready()
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    # perf_counter, not loop.time(): uvloop's clock counts whole milliseconds.
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(max(0.0, (time.perf_counter() - t0 - 0.001) * 1000))


async def _produce(logger: logging.Logger, n: int) -> None:
    for start in range(0, n, BURST):
        for i in range(start, min(n, start + BURST)):
            logger.info(MESSAGE, ARG, i)
        await asyncio.sleep(0)


async def _produce_paced(logger: logging.Logger, n: int) -> None:
    per_burst = max(1, int(PACED_RATE * PACE))
    for start in range(0, n, per_burst):
        for i in range(start, min(n, start + per_burst)):
            logger.info(MESSAGE, ARG, i)
        await asyncio.sleep(PACE)


async def _timed(
    server: Collector,
    n: int,
    lags: list[float],
    body: Callable[[], Awaitable[None]],
) -> float:
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(_ticker(lags, stop))
    t0 = time.perf_counter()
    await body()
    elapsed = time.perf_counter() - t0
    stop.set()
    await ticker
    return n / elapsed


Producer = Callable[[logging.Logger, int], Awaitable[None]]


async def with_stdlib(server: Collector, n: int, lags: list[float], produce: Producer) -> float:
    handler = logging.handlers.HTTPHandler(f"127.0.0.1:{server.port}", "/form", method="POST")
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger = fresh_logger("bench.http.stdlib", logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, handler)

    async def body() -> None:
        listener.start()
        await produce(logger, n)
        # The stdlib's stop() joins its thread: off the loop, as an app would have to.
        await asyncio.get_running_loop().run_in_executor(None, listener.stop)

    return await _timed(server, n, lags, body)


async def with_aioqlog_stdlib_handler(
    server: Collector, n: int, lags: list[float], produce: Producer
) -> float:
    handler = logging.handlers.HTTPHandler(f"127.0.0.1:{server.port}", "/form", method="POST")
    q = aioqlog.LogQueue()
    logger = fresh_logger("bench.http.aioqlog-sync", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)

    async def body() -> None:
        listener.start()
        await produce(logger, n)
        await listener.stop()

    return await _timed(server, n, lags, body)


async def with_aioqlog(server: Collector, n: int, lags: list[float], produce: Producer) -> float:
    # Made off the loop, as an application makes it at set-up (before its loop
    # serves, or in dictConfig): so it makes its HTTP client then, not while
    # the loop serves (see docs/handlers/http.md, "Cost on the loop").
    handler = await asyncio.to_thread(
        partial(AsyncHTTPHandler, f"{server.base}/ingest", batch_size=500, batch_age=0.05)
    )
    q = aioqlog.LogQueue()
    logger = fresh_logger("bench.http.aioqlog", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)

    async def body() -> None:
        listener.start()
        await produce(logger, n)
        await listener.stop()

    return await _timed(server, n, lags, body)


Shipper = Callable[[Collector, int, list[float], Producer], Awaitable[float]]

VARIANTS: dict[str, Shipper] = {
    "stdlib HTTPHandler + QueueListener": with_stdlib,
    "aioqlog + stdlib HTTPHandler": with_aioqlog_stdlib_handler,
    "aioqlog AsyncHTTPHandler": with_aioqlog,
}


def no_logging(window: float) -> Shipper:
    """Return the variant that logs into a handler doing nothing, for at least *window* s."""

    async def run(server: Collector, n: int, lags: list[float], produce: Producer) -> float:
        logger = fresh_logger("bench.http.none", NoOp())

        async def body() -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + window
            if produce is _produce:
                # Full speed: the producer's own load on the loop, for the whole
                # window (an idle loop would be a floor no logging run has).
                while loop.time() < end:
                    await produce(logger, n)
            else:
                await produce(logger, n)
                await asyncio.sleep(max(0.0, end - loop.time()))

        return await _timed(server, n, lags, body)

    return run


async def measure(loop: str, rounds: int, n: int, lag_seconds: float) -> list[Table]:
    """Return records/s shipped, and the loop's p99 lag at full speed and at a steady rate."""
    variants = {NO_LOGGING: no_logging(lag_seconds), **VARIANTS}
    shippers = list(VARIANTS)
    received: dict[str, list[int]] = {name: [] for name in shippers}
    paced_n = max(1, int(PACED_RATE * lag_seconds))
    paced_received: dict[str, list[int]] = {name: [] for name in shippers}
    # Every tick of the full-speed runs, per variant: one run ships in well
    # under a second, too few ticks for a p99 of its own.
    full_ticks: dict[str, list[float]] = {name: [] for name in variants}
    with collector() as server:

        async def once(name: str, paced: bool) -> float:
            await asyncio.to_thread(server.reset)
            lags: list[float] = []
            count = paced_n if paced else n
            produce = _produce_paced if paced else _produce
            try:
                rate = await variants[name](server, count, lags, produce)
            finally:
                if not paced:
                    full_ticks[name].extend(lags)
            if name != NO_LOGGING:
                (paced_received if paced else received)[name].append(
                    await asyncio.to_thread(server.count)
                )
            return percentile(lags, 99) if paced else rate

        samples = await paired(
            {name: partial(once, name, False) for name in variants}, rounds, f"http/{loop}/"
        )
        lag_samples = await paired(
            {name: partial(once, name, True) for name in variants}, rounds, f"http_lag/{loop}/"
        )
    del samples[NO_LOGGING]  # it shipped nothing: no rate to show
    full_lag = {
        name: [percentile(ticks, 99) if ticks else float("nan")]
        for name, ticks in full_ticks.items()
    }
    notes = [
        f"{n:,} records logged from the loop in bursts of {BURST}, to an aiohttp collector "
        f"in another process on 127.0.0.1; timed until the listener's stop() returned"
    ]
    notes += lost_lines(received, n)
    rate = Table(
        scenario="http",
        loop=loop,
        title=f"Records shipped over HTTP per second ({n:,} records)",
        unit="records/s",
        baseline="stdlib HTTPHandler + QueueListener",
        samples=samples,
        better="higher",
        notes=notes,
        extra={"records": n, "received": received},
    )
    full = Table(
        scenario="http_full_lag",
        loop=loop,
        title="Loop lag while shipping over HTTP at full speed (p99)",
        unit="ms",
        baseline=NO_LOGGING,
        samples=full_lag,
        better="lower",
        notes=[
            f"the runs of the table above: {n:,} records in bursts of {BURST}; p99 of how late "
            f"a 1 ms sleep on the loop woke up, over the ticks of all {rounds} runs pooled (one "
            f"run ships in well under a second: too few ticks for a p99 per run); no logging: "
            f"the same producer into a handler that does nothing, logging on without a pause "
            f"for {lag_seconds:g} s (a loop as busy with log calls, not an idle one)",
        ],
        extra={"records": n, "ticks": {name: len(t) for name, t in full_ticks.items()}},
    )
    lag_notes = [
        f"{PACED_RATE} records/s for {lag_seconds:g} s, logged from the loop; p99 of how late "
        f"a 1 ms sleep on the loop woke up, per run"
    ]
    lag_notes += lost_lines(paced_received, paced_n)
    lag = Table(
        scenario="http_lag",
        loop=loop,
        title=f"Loop lag while shipping {PACED_RATE} records/s over HTTP (p99)",
        unit="ms",
        baseline=NO_LOGGING,
        samples=lag_samples,
        better="lower",
        notes=lag_notes,
        extra={"records": paced_n, "received": paced_received},
    )
    return [rate, full, lag]


def main() -> None:
    """Run the scenario on its own: ``python -m benchmarks.http_shipping``."""
    from benchmarks._harness import run_on  # noqa: PLC0415

    for table in run_on("asyncio", lambda: measure("asyncio", 3, 2_000, 1.0)):
        print(json.dumps(table.to_json()["rows"], indent=1, default=str)[:2000])


if __name__ == "__main__":
    main()
