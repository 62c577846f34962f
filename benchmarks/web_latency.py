"""Request latency of a FastAPI app on uvicorn, logging to a 50 ms-per-record handler.

Three runs of the same app (examples/fastapi_app.py), interleaved round by
round: no logging at all; the slow handler attached directly to the root
logger; the same handler behind aioqlog (examples/logging_config.json's
shape). Each request logs one line. Concurrent clients on 127.0.0.1 measure
latency; the table gives medians over the rounds and the ratio to the run
without logging.

    python benchmarks/web_latency.py [--rounds 3] [--clients 10] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODES = ("no logging", "attached directly", "behind aioqlog")


def log_config(mode: str, log_file: Path, latency: float) -> dict[str, Any]:
    """The dictConfig each mode runs uvicorn with."""
    slow = {
        "()": "examples.slow_file_handler.SlowFileHandler",
        "filename": str(log_file),
        "latency": latency,
    }
    handlers: dict[str, Any] = {"slow_file": slow}
    root: dict[str, Any] = {"level": "INFO", "handlers": ["slow_file"]}
    loggers: dict[str, Any] = {}
    if mode == "behind aioqlog":
        handlers["queued"] = {"class": "aioqlog.QueueHandler", "handlers": ["slow_file"]}
        root["handlers"] = ["queued"]
    else:
        if mode == "no logging":
            handlers, root = {}, {"level": "CRITICAL", "handlers": []}
        # The app's lifespan runs the configured aioqlog listeners: give it an
        # idle one, on a logger nothing logs to.
        handlers["idle_null"] = {"class": "logging.NullHandler"}
        handlers["idle_queue"] = {"class": "aioqlog.QueueHandler", "handlers": ["idle_null"]}
        loggers["bench.idle"] = {"handlers": ["idle_queue"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": handlers,
        "loggers": loggers,
        "root": root,
    }


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(base: str, clients: int, requests: int) -> list[float]:
    """Run *clients* concurrent clients of *requests* each; return latencies in ms."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one_client(offset: int) -> None:
            for i in range(requests):
                start = time.perf_counter()
                response = await client.get(f"/items/{offset + i}")
                latencies.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()

        # Warm up: open every client's connection before measuring.
        await asyncio.gather(*(client.get("/health") for _ in range(clients)))
        await asyncio.gather(*(one_client(c * requests) for c in range(clients)))
    return latencies


def run_mode(mode: str, workdir: Path, args: argparse.Namespace) -> list[float]:
    """Start uvicorn for *mode*, measure, then SIGTERM it and wait for the drain."""
    log_file = workdir / f"{mode.replace(' ', '_')}.log"
    config = workdir / "log_config.json"
    config.write_text(json.dumps(log_config(mode, log_file, args.latency)))
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--log-config", str(config), "--no-access-log",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("uvicorn did not start: " + proc.communicate()[1]) from None
                time.sleep(0.05)
        httpx.get(f"{base}/items/0").raise_for_status()  # warm-up
        return asyncio.run(measure(base, args.clients, args.requests))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=300)


def percentile(values: list[float], q: float) -> float:
    """Return the *q*-th percentile (0-100) of *values*."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    """Run the modes round by round and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per record")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mode in MODES:
                ms = run_mode(mode, Path(tmp), args)
                results[mode].append((percentile(ms, 50), percentile(ms, 99), max(ms)))
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; {args.clients} clients x "
        f"{args.requests} requests, {args.latency * 1000:.0f} ms per record, "
        f"medians of {args.rounds} rounds"
    )
    print(f"{'':20} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99 vs none':>12}")
    base_p99 = statistics.median(r[1] for r in results["no logging"])
    for mode in MODES:
        p50, p99, top = (statistics.median(r[i] for r in results[mode]) for i in range(3))
        print(f"{mode:20} {p50:8.2f} {p99:8.2f} {top:8.2f} {p99 / base_p99:11.2f}x")


if __name__ == "__main__":
    main()
