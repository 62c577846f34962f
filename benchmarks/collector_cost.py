"""Caller cost with the Prometheus collector: does exposing the stats slow a log call?

``python -m benchmarks.collector_cost [asyncio|uvloop] [rounds]``

Measures ``caller_cost``'s aioqlog set-up three ways, in rotating rounds:
without a collector, with a ``ListenerCollector`` registered, and with it
scraped (``generate_latest``) from another thread every 10 ms, a hundred times
more often than Prometheus usually scrapes. Prints the median ns per call and
the median of the per-round ratios to the plain set-up.
"""

from __future__ import annotations

import statistics
import sys
import threading
from collections.abc import Awaitable, Callable
from functools import partial

from prometheus_client import CollectorRegistry, generate_latest

import aioqlog
from aioqlog.integrations.prometheus import ListenerCollector
from benchmarks._harness import FAILURES, paired, run_on
from benchmarks.caller_cost import MESSAGE, Counting, Subject, cost_per_call, fresh_logger, until

MODES = ("no collector", "registered", "scraped")


def subject_with(mode: str) -> Callable[[int], Awaitable[Subject]]:
    """Return a factory of aioqlog subjects with the collector as *mode* says."""

    async def make(batch: int) -> Subject:
        sink = Counting()
        q = aioqlog.LogQueue(maxsize=2 * batch)
        logger = fresh_logger(f"bench.collector.{mode}", aioqlog.QueueHandler(q))
        listener = aioqlog.QueueListener(q, sink)
        done = threading.Event()
        scraper: threading.Thread | None = None
        if mode != "no collector":
            registry = CollectorRegistry()
            ListenerCollector(listener, registry=registry)
            if mode == "scraped":

                def scrape() -> None:
                    while not done.wait(0.01):
                        generate_latest(registry)

                scraper = threading.Thread(target=scrape, name="scraper")
                scraper.start()
        listener.start()

        async def settle(n: int) -> None:
            await until(lambda: sink.count >= n, "aioqlog delivery")

        async def close() -> None:
            done.set()
            if scraper is not None:
                scraper.join()
            stats = await listener.stop()
            assert stats.dropped == 0, stats

        return Subject(lambda s, i: logger.info(MESSAGE, s, i), settle, close)

    return make


def main(loop: str = "asyncio", rounds: int = 21) -> None:
    """Measure and print the three modes on *loop*."""

    async def measure() -> dict[str, list[float]]:
        variants = {m: partial(cost_per_call, subject_with(m), 20_000, 1_000) for m in MODES}
        return await paired(variants, rounds, "collector_cost/")

    samples = run_on(loop, measure)
    if FAILURES:
        raise SystemExit(f"failed: {FAILURES}")
    base = samples["no collector"]
    for mode in MODES:
        ratios = [a / b for a, b in zip(samples[mode], base, strict=True)]
        print(
            f"{loop:8} {mode:13} {statistics.median(samples[mode]):8.0f} ns/call  "
            f"ratio {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "asyncio",
        int(sys.argv[2]) if len(sys.argv) > 2 else 21,
    )
