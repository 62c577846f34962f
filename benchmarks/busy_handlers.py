"""A busy loop, or threads logging flat out, into a plain and a rotating file.

Each run is a fresh Python process that logs into one handler, attached
directly or behind ``aioqlog.QueueHandler`` + ``aioqlog.QueueListener`` with
the defaults, and reports what a user would look at: lines written, the
whole run's time, the mean log call, and the loop's lag.

* ``busy``: the loop logs N records in bursts of 50 with an
  ``await asyncio.sleep(0)`` after each (a loaded service), while a ticker
  task measures how late a 1 ms sleep wakes up.
* ``threads``: four threads log N records each as fast as they can, while the
  loop idles.

Handlers: ``file`` (``FileHandler``), ``file+null`` (the same beside a
``NullHandler``: records go through the listener's task) and ``rotating``
(``RotatingFileHandler``,
``maxBytes`` 4 MB, ``backupCount`` 20: a rollover every 60,000 records or so,
every line kept).
It is not part of ``make bench-report``: the guarantees quote it.

    python -m benchmarks.busy_handlers                      # the tables, 3 rounds
    python -m benchmarks.busy_handlers --rounds 5 --records 200000
    python -m benchmarks.busy_handlers --shapes threads --handlers file+null
    python -m benchmarks.busy_handlers one rotating busy aioqlog 200000 /tmp/x  # one run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aioqlog
from benchmarks._harness import FORMAT, median, percentile
from benchmarks.memory import peak_kb

BURST = 50
THREADS = 4
HANDLERS = ("file", "rotating", "file+null")
SHAPES = ("busy", "threads")
MODES = ("direct", "aioqlog")


def _handler(kind: str, path: Path) -> logging.Handler:
    handler: logging.Handler
    if kind in ("file", "file+null"):
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=4_000_000, backupCount=20, encoding="utf-8"
        )
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def _lines(path: Path) -> int:
    total = 0
    for part in [path, *path.parent.glob(path.name + ".*")]:
        with part.open("rb") as f:
            total += sum(1 for line in f if b" rec " in line)
    return total


async def _run(shape: str, n: int, handler: logging.Handler, listener: Any) -> dict[str, Any]:
    log = logging.getLogger("bench.busy")
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1000)

    def flat_out(k: int) -> None:
        own = logging.getLogger(f"bench.busy.t{k}")
        for i in range(n):
            own.info("rec %d", i)

    t0 = time.perf_counter()
    calls = 0.0
    if listener is not None:
        await listener.__aenter__()
    tick = asyncio.ensure_future(ticker())
    if shape == "busy":
        for start in range(0, n, BURST):
            tb = time.perf_counter()
            for i in range(start, min(n, start + BURST)):
                log.info("rec %d", i)
            calls += time.perf_counter() - tb
            await asyncio.sleep(0)
    else:
        threads = [threading.Thread(target=flat_out, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join)
    done = True
    await tick
    if listener is not None:
        await listener.__aexit__(None, None, None)
    handler.close()
    return {
        "seconds": time.perf_counter() - t0,
        "call_us": calls / n * 1e6 if shape == "busy" else float("nan"),
        "lag_p99_ms": percentile(lags, 99),
    }


def one(kind: str, shape: str, mode: str, n: int, path: Path) -> dict[str, Any]:
    """Run one variant in this process; return its figures."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = _handler(kind, path)
    listener = None
    if mode == "direct":
        root.handlers[:] = [handler]
    else:
        q = aioqlog.LogQueue()
        root.handlers[:] = [aioqlog.QueueHandler(q)]
        extra = [logging.NullHandler()] if kind == "file+null" else []
        listener = aioqlog.QueueListener(q, handler, *extra)
    result = asyncio.run(_run(shape, n, handler, listener))
    root.handlers[:] = []
    result["lines"] = _lines(path)
    result["logged"] = n * (THREADS if shape == "threads" else 1)
    result["peak_mib"] = peak_kb() / 1024
    return result


def _subprocess(kind: str, shape: str, mode: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.busy_handlers",
                "one",
                kind,
                shape,
                mode,
                str(n),
                str(Path(tmp) / "out.log"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=200_000, help="per producer")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--handlers", nargs="+", choices=HANDLERS, default=["file", "rotating"])
    args, rest = parser.parse_known_args()
    if rest[:1] == ["one"]:
        kind, shape, mode, n, path = rest[1:6]
        print(json.dumps(one(kind, shape, mode, int(n), Path(path))))
        return
    for shape in args.shapes:
        n = args.records if shape == "busy" else args.records // 2
        for kind in args.handlers:
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for r in range(args.rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    runs[mode].append(_subprocess(kind, shape, mode, n))
            logged = runs["direct"][0]["logged"]
            print(f"\n{shape}: {kind}, {logged:,} records, {args.rounds} rounds (medians)")
            print(f"  {'':9} {'lines':>16} {'seconds':>8} {'call us':>8} {'lag p99':>8} {'MiB':>6}")
            for mode in MODES:
                got = runs[mode]

                def fig(key: str, got: list[dict[str, Any]] = got) -> float:
                    return median([g[key] for g in got])

                lines = "/".join(str(g["lines"]) for g in got)
                print(
                    f"  {mode:9} {lines:>16} {fig('seconds'):8.2f} {fig('call_us'):8.2f}"
                    f" {fig('lag_p99_ms'):8.2f} {fig('peak_mib'):6.1f}"
                )
            ratio = median(
                [
                    a["seconds"] / d["seconds"]
                    for a, d in zip(runs["aioqlog"], runs["direct"], strict=True)
                ]
            )
            print(f"  time, aioqlog / direct: {ratio:.2f}x")


if __name__ == "__main__":
    main()
