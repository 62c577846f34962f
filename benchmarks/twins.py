"""The twins of the stdlib's network handlers beside their originals, behind a listener.

For each of ``HTTPHandler``, ``SMTPHandler`` and ``SocketHandler``: the stdlib
handler in an aioqlog lane (a worker thread) and its ``aioqlog.handlers``
twin (on the loop), both behind an aioqlog ``QueueListener``, each sending
to a local server that runs in a process of its own on 127.0.0.1 and counts
what it receives. Each variant logs N records from the loop in bursts of 100
(a yield between bursts) into a queue (and a twin's buffer) with room for
all of them, then stops its listener; records/s runs until ``stop()``
returned, and a ticker on the loop measures how late its 1 ms sleeps wake
up meanwhile (p99, the whole run).

    python -m benchmarks.twins                 # 3 rounds, the default sizes
    python -m benchmarks.twins --rounds 1 --scale 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import aioqlog
import aioqlog.handlers
from benchmarks._harness import Table, describe_machine, lost_lines, paired, percentile, run_on
from benchmarks.caller_cost import ARG, MESSAGE, fresh_logger
from benchmarks.http_shipping import BURST, _free_port, _ticker, collector

#: Records per variant and round, by handler (a request, a mail or a frame each).
RECORDS = {"HTTPHandler": 2_000, "SMTPHandler": 500, "SocketHandler": 20_000}

_SMTP_SERVER = """
import sys, time
from pathlib import Path
from aiosmtpd.controller import Controller

out = Path(sys.argv[2])
count = 0

class Counter:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        out.write_text(str(count))
        return "250 OK"

controller = Controller(Counter(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
out.write_text("0")
while True:
    time.sleep(3600)
"""

# Counts length-prefixed frames: it never unpickles what it receives.
_SOCKET_SERVER = """
import socketserver, struct, sys, threading
from pathlib import Path

out = Path(sys.argv[2])
count = 0
lock = threading.Lock()

class Frames(socketserver.StreamRequestHandler):
    def handle(self):
        global count
        while True:
            head = self.rfile.read(4)
            if len(head) < 4:
                return
            self.rfile.read(struct.unpack(">L", head)[0])
            with lock:
                count += 1
                if not count % 1000:
                    out.write_text(str(count))
        with lock:
            out.write_text(str(count))  # the connection closed: the last of them

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

server = Server(("127.0.0.1", int(sys.argv[1])), Frames)
out.write_text("0")
server.serve_forever()
"""


class CountingServer:
    """A server process that writes how many records it received to a file."""

    def __init__(self, port: int, counter: Path) -> None:
        self.port = port
        self.counter = counter
        self.offset = 0

    def _total(self) -> int:
        return int(self.counter.read_text() or 0)

    def count(self, expected: int) -> int:
        """Return how many records it received since the last reset.

        The socket server may still be reading what was written: wait (at most
        ten seconds) for *expected* of them.
        """
        deadline = time.monotonic() + 10
        while (got := self._total() - self.offset) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return got

    def reset(self) -> None:
        """Count from here on."""
        self.offset = self._total()


@contextmanager
def counting_server(script: str) -> Iterator[CountingServer]:
    """Run *script* (port, counter file) in a child process for the duration of the block."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        counter = Path(tmp) / "count"
        proc = subprocess.Popen([sys.executable, "-c", script, str(port), str(counter)])
        try:
            deadline = time.monotonic() + 30
            while not counter.exists() or not counter.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("the counting server did not start")
                time.sleep(0.05)
            yield CountingServer(port, counter)
        finally:
            proc.terminate()
            proc.wait(10)


Make = Callable[[int, int], logging.Handler]

#: How each variant's handler is made, given the server's port.
MAKERS: dict[str, dict[str, Make]] = {
    "HTTPHandler": {
        "stdlib HTTPHandler": lambda port, n: logging.handlers.HTTPHandler(
            f"127.0.0.1:{port}", "/form", method="POST"
        ),
        "aioqlog.handlers.HTTPHandler": lambda port, n: aioqlog.handlers.HTTPHandler(
            f"127.0.0.1:{port}", "/form", method="POST", buffer_size=n
        ),
    },
    "SMTPHandler": {
        "stdlib SMTPHandler": lambda port, n: logging.handlers.SMTPHandler(
            ("127.0.0.1", port), "app@example.com", ["ops@example.com"], "Error"
        ),
        "aioqlog.handlers.SMTPHandler": lambda port, n: aioqlog.handlers.SMTPHandler(
            ("127.0.0.1", port), "app@example.com", ["ops@example.com"], "Error", buffer_size=n
        ),
    },
    "SocketHandler": {
        "stdlib SocketHandler": lambda port, n: logging.handlers.SocketHandler("127.0.0.1", port),
        "aioqlog.handlers.SocketHandler": lambda port, n: aioqlog.handlers.SocketHandler(
            "127.0.0.1", port, buffer_size=n
        ),
    },
}


async def one_run(make: Make, port: int, n: int, lags: list[float]) -> float:
    """Log *n* records through *make(port, n)* behind a listener; return records/s."""
    handler = make(port, n)
    q = aioqlog.LogQueue(maxsize=max(10_000, n))  # room for all: this measures shipping
    logger = fresh_logger("bench.twins", aioqlog.QueueHandler(q))
    listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(_ticker(lags, stop))
    t0 = time.perf_counter()
    listener.start()
    for start in range(0, n, BURST):
        for i in range(start, min(n, start + BURST)):
            logger.error(MESSAGE, ARG, i)
        await asyncio.sleep(0)
    await listener.stop()
    elapsed = time.perf_counter() - t0
    stop.set()
    await ticker
    handler.close()
    return n / elapsed


async def measure(
    loop: str, rounds: int, scale: float, kinds: list[str] | None = None
) -> list[Table]:
    """Return two tables per handler: records/s, and the loop's p99 lag meanwhile."""
    tables: list[Table] = []
    for kind in kinds or list(MAKERS):
        tables += await measure_kind(kind, loop, rounds, max(BURST, int(RECORDS[kind] * scale)))
    return tables


async def measure_kind(kind: str, loop: str, rounds: int, n: int) -> list[Table]:
    """Return records/s and loop-lag p99 for the stdlib *kind* and its twin."""
    variants = MAKERS[kind]
    received: dict[str, list[int]] = {name: [] for name in variants}
    lags: dict[str, list[float]] = {name: [] for name in variants}
    with _server(kind) as (port, count, reset):

        async def once(name: str, make: Make) -> float:
            await asyncio.to_thread(reset)
            mine: list[float] = []
            rate = await one_run(make, port, n, mine)
            received[name].append(await asyncio.to_thread(count, n))
            lags[name].append(percentile(mine, 99))
            return rate

        samples = await paired(
            {name: partial(once, name, make) for name, make in variants.items()},
            rounds,
            f"twins/{kind}/{loop}/",
        )
    baseline = next(iter(variants))
    notes = [
        f"{n:,} records logged from the loop in bursts of {BURST}, each handler behind an "
        f"aioqlog QueueListener (queue and twin buffer with room for all), to a server in "
        f"another process on 127.0.0.1; timed until stop() returned"
    ]
    notes += lost_lines(received, n)
    rate = Table(
        scenario=f"twins_{kind}",
        loop=loop,
        title=f"{kind}: records per second ({n:,} records)",
        unit="records/s",
        baseline=baseline,
        samples=samples,
        better="higher",
        notes=notes,
        extra={"records": n, "received": received},
    )
    lag = Table(
        scenario=f"twins_{kind}_lag",
        loop=loop,
        title=f"{kind}: loop lag meanwhile (p99)",
        unit="ms",
        baseline=baseline,
        samples=lags,
        better="lower",
        notes=["p99 of how late a 1 ms sleep on the loop woke up, per run"],
    )
    return [rate, lag]


@contextmanager
def _server(kind: str) -> Iterator[tuple[int, Callable[[int], int], Callable[[], None]]]:
    """Yield the port, a count(expected) and a reset() of the server *kind* sends to."""
    if kind == "HTTPHandler":
        with collector() as http:
            yield http.port, lambda expected: http.count(), http.reset
        return
    script = _SMTP_SERVER if kind == "SMTPHandler" else _SOCKET_SERVER
    with counting_server(script) as server:
        yield server.port, server.count, server.reset


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print each table: ``python -m benchmarks.twins``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.twins", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the record counts")
    parser.add_argument("--loop", default="asyncio", help="asyncio or uvloop")
    parser.add_argument("--only", help=f"comma-separated handlers of: {', '.join(MAKERS)}")
    args = parser.parse_args(argv)
    kinds = args.only.split(",") if args.only else list(MAKERS)
    for kind in kinds:
        if kind not in MAKERS:
            parser.error(f"unknown handler {kind!r}; expected one of {', '.join(MAKERS)}")
    machine = describe_machine()
    print("python -m benchmarks.twins " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"{machine.get('cpu', '')} {machine.get('python', '')}".strip())
    tables = run_on(args.loop, lambda: measure(args.loop, args.rounds, args.scale, kinds))
    for table in tables:
        print(f"\n{table.title} [{table.loop}] ({table.unit}, ratio to {table.baseline})")
        for row in table.to_json()["rows"]:
            print(f"  {row['variant']:<32} {row['median']:>12,.2f}  {row['ratio']:>7.2f}x")
        for note in table.notes:
            print(f"  - {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
