"""Memory: peak RSS while producers outrun a stalled handler, burst after burst.

Each run is a fresh Python process (so one run's peak cannot hide another's).
Four threads log a burst of B records, each carrying a 200-character argument,
while the only handler is stalled (its ``emit`` waits until the burst is
over). The process's peak RSS growth over its level before the burst is the
figure (the peak during the burst, less the resident size just before it).
Then the handler is released and every queue is drained.

* ``aioqlog``: ``LogQueue()`` (the default maxsize, ``drop_new``): the
  queue and the handler's lane each hold at most maxsize records; the rest
  are dropped, counted and reported.
* ``stdlib queue``: ``logging.handlers.QueueHandler(SimpleQueue())``, which is
  unbounded, with its ``QueueListener``.

    python -m benchmarks.memory aioqlog 100000 10000   # one run: burst, maxsize
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import queue
import resource
import subprocess
import sys
import threading
from typing import Any

import aioqlog
from benchmarks._harness import Table, median, rotations, run_on
from benchmarks.caller_cost import fresh_logger

VARIANTS = ("stdlib queue", "aioqlog")
PAYLOAD = "x" * 200
MESSAGE = "payload %s %d"
PRODUCERS = 4


class Stalled(logging.Handler):
    """A handler whose ``emit`` waits for ``gate`` to be set, then counts the burst's."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Wait until released, then count *record* if it is one of the burst's."""
        self.gate.wait()
        if record.getMessage().startswith("payload "):
            self.count += 1


def _status_kb(field: str) -> int | None:
    """Return a ``kB`` field of /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_kb() -> int:
    """Return this process's peak resident set size so far, in KiB.

    ``VmHWM`` belongs to this process's own memory map. ``ru_maxrss`` (the
    fallback) is not: Linux carries it over ``exec`` from the parent, so a child
    of a big benchmark process would report the parent's peak.
    """
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_kb() -> int:
    """Return this process's resident set size now, in KiB (the peak where unknown)."""
    rss = _status_kb("VmRSS")
    return rss if rss is not None else peak_kb()


async def child(variant: str, burst: int, maxsize: int) -> dict[str, Any]:
    """Run one burst in this process; return the peak growth and the accounting."""
    handler = Stalled()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    left = [PRODUCERS]
    lock = threading.Lock()

    def producer(logger: logging.Logger) -> None:
        for i in range(burst // PRODUCERS):
            logger.info(MESSAGE, PAYLOAD, i)
        with lock:
            left[0] -= 1
            if left[0] == 0:
                loop.call_soon_threadsafe(done.set_result, None)

    if variant == "aioqlog":
        q = aioqlog.LogQueue(maxsize=maxsize)
        logger = fresh_logger("bench.memory", aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, handler, shutdown_timeout=None)
        listener.start()
    else:
        sq: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        logger = fresh_logger("bench.memory", logging.handlers.QueueHandler(sq))
        stdlib_listener = logging.handlers.QueueListener(sq, handler)
        stdlib_listener.start()
    await asyncio.sleep(0)
    before = current_kb()
    threads = [threading.Thread(target=producer, args=(logger,)) for _ in range(PRODUCERS)]
    for t in threads:
        t.start()
    await done
    for t in threads:
        t.join()
    if variant == "aioqlog":
        # Let the listener fill the handler's lane as far as its bound allows.
        await asyncio.sleep(0.05)
    peak = peak_kb()
    handler.gate.set()
    if variant == "aioqlog":
        stats = await listener.stop()
        dropped = stats.dropped + sum(h.dropped for h in stats.handlers)
    else:
        stdlib_listener.stop()
        dropped = 0
    total = burst // PRODUCERS * PRODUCERS
    delivered = handler.count
    return {
        "growth_mb": (peak - before) / 1024,
        "records": total,
        "dropped": dropped,
        "delivered": delivered,
    }


def one_run(variant: str, burst: int, maxsize: int) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it printed."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", variant, str(burst), str(maxsize)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(rounds: int, bursts: tuple[int, ...], maxsize: int = 10_000) -> Table:
    """Return peak RSS growth (MiB) per variant and burst, medians of *rounds* runs."""
    runs: dict[str, list[dict[str, Any]]] = {}
    names = [f"{v} / {b}" for b in bursts for v in VARIANTS]
    for order in rotations(names, rounds):
        for name in order:
            variant, burst = name.split(" / ")
            runs.setdefault(name, []).append(one_run(variant, int(burst), maxsize))
    samples = {name: [r["growth_mb"] for r in runs[name]] for name in names}
    accounting = {
        name: {
            "records": runs[name][0]["records"],
            "dropped": median([float(r["dropped"]) for r in runs[name]]),
            "delivered": median([float(r["delivered"]) for r in runs[name]]),
            "lossless": all(r["dropped"] + r["delivered"] == r["records"] for r in runs[name]),
        }
        for name in names
    }
    return Table(
        scenario="memory",
        loop="asyncio",
        title="Peak RSS growth while 4 threads outrun a stalled handler",
        unit="MiB",
        baseline=names[0],
        samples=samples,
        better="lower",
        notes=[
            f"bursts of {', '.join(f'{b:,}' for b in bursts)} records with a 200-character "
            f"argument from {PRODUCERS} threads; a fresh process per run",
            f"aioqlog: LogQueue(maxsize={maxsize:,}), overflow drop_new (the default); "
            "dropped = counted by the queue and the lane, and reported",
        ],
        extra={
            "bursts": list(bursts),
            "maxsize": maxsize,
            "variants": list(VARIANTS),
            "accounting": accounting,
        },
    )


if __name__ == "__main__":
    kind, size, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(run_on("asyncio", lambda: child(kind, size, bound))))
