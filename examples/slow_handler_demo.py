"""Show what a slow logging handler does to an event loop, directly and behind aioqlog.

An event loop runs a ticker that wakes every 5 ms and measures how late it
wakes (the loop lag every request on this loop would feel), while an app logs
records to a handler that blocks ~50 ms per record, as an SMTP or HTTP
handler does. First the handler is attached directly to the logger, then it
sits behind aioqlog. Run it with ``make demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time

import aioqlog


class SlowHandler(logging.Handler):
    """Blocks for a while per record, like a handler that talks to a mail server."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.delivered = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Take *delay* seconds, then count the record as delivered."""
        time.sleep(self.delay)
        self.format(record)
        self.delivered += 1


async def ticker(stop: asyncio.Event, lags: list[float], period: float = 0.005) -> None:
    """Wake every *period* seconds and record how late each wake-up was."""
    loop = asyncio.get_running_loop()
    expected = loop.time() + period
    while not stop.is_set():
        await asyncio.sleep(max(0.0, expected - loop.time()))
        now = loop.time()
        lags.append(max(0.0, now - expected))
        expected = now + period


async def app(logger: logging.Logger, records: int, interval: float) -> None:
    """Log one record every *interval* seconds, as request handlers do."""
    for i in range(records):
        logger.warning("order %d failed: payment declined", i)
        await asyncio.sleep(interval)


async def measure(logger: logging.Logger, records: int, interval: float) -> list[float]:
    stop = asyncio.Event()
    lags: list[float] = []
    tick = asyncio.create_task(ticker(stop, lags))
    await app(logger, records, interval)
    stop.set()
    await tick
    return lags


def summary(name: str, lags: list[float], delivered: int, records: int, seconds: float) -> str:
    ms = sorted(lag * 1000 for lag in lags)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"{name:<22} {p50:8.2f} {p99:8.2f} {ms[-1]:8.2f}   "
        f"{delivered:>4}/{records:<4}   {seconds:5.2f} s"
    )


async def main(records: int, delay: float, interval: float) -> None:
    logger = logging.getLogger("demo")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    rows = []

    # 1. The slow handler attached directly: every log call blocks the loop.
    direct = SlowHandler(delay)
    logger.addHandler(direct)
    started = time.perf_counter()
    lags = await measure(logger, records, interval)
    rows.append(
        summary("attached directly", lags, direct.delivered, records, time.perf_counter() - started)
    )
    logger.removeHandler(direct)

    # 2. The same handler behind aioqlog: the loop only appends to a queue.
    queue = aioqlog.LogQueue()
    queued = SlowHandler(delay)
    logger.addHandler(aioqlog.QueueHandler(queue))
    started = time.perf_counter()
    async with aioqlog.QueueListener(queue, queued):
        lags = await measure(logger, records, interval)
    # Leaving the block awaited stop(): every record was delivered.
    rows.append(
        summary("behind aioqlog", lags, queued.delivered, records, time.perf_counter() - started)
    )

    version = ".".join(map(str, sys.version_info[:3]))
    print(
        f"{records} records to a handler that blocks {delay * 1000:.0f} ms per record, "
        f"one logged every {interval * 1000:.0f} ms (Python {version}).\n"
        f"Loop lag is how late a 5 ms ticker on the same loop wakes up; wall time\n"
        f"runs from the first record until every record was delivered.\n"
    )
    print(f"{'':<22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   delivered   wall time")
    for row in rows:
        print(row)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40, help="records to log (default 40)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per record (0.05)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between records")
    args = parser.parse_args()
    asyncio.run(main(args.records, args.delay, args.interval))
