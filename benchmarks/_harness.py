"""What every benchmark shares: event loops, paired rounds, tables, the machine.

A scenario runs each of its variants once per round, in an order that rotates
from round to round (A B C, B C A, C A B, ...), so that a drift of the shared
machine touches every variant alike. A *ratio* is taken inside each round
(variant / baseline, from the same round) and the table reports the median of
those per-round ratios next to the median of the raw figures.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The event loops every scenario runs on, by name.
LOOPS = ("asyncio", "uvloop")

#: The peers' distributions, for the machine description.
PEERS = ("aiologger", "aiologging", "loguru", "structlog", "uvloop", "aiofiles")

#: The formatter of every file written by a benchmark ("a typical formatter").
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return a factory of new event loops of *kind* ("asyncio" or "uvloop")."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        import uvloop  # noqa: PLC0415 - an optional extra

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"unknown loop kind {kind!r}; expected one of {', '.join(LOOPS)}")


def run_on(kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a new event loop of *kind*, then close it."""
    loop = loop_factory(kind)()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@dataclass
class Clock:
    """Wall time, process CPU time (every thread) and GC collections of a timed section."""

    wall: float = 0.0
    cpu: float = 0.0
    #: Garbage collections during the section, all generations and threads.
    collections: int = 0


@contextmanager
def clocked() -> Iterator[Clock]:
    """Time the block: wall clock and the whole process's CPU time, user and system.

    The garbage collector stays as the application has it (on): no scenario
    pauses it, since no service does.
    """
    clock = Clock()
    g0 = _collections()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield clock
    finally:
        clock.cpu = time.process_time() - c0
        clock.wall = time.perf_counter() - w0
        clock.collections = _collections() - g0


def _collections() -> int:
    """Return how many garbage collections the process has run, all generations."""
    return sum(generation["collections"] for generation in gc.get_stats())


def rotations(names: list[str], rounds: int) -> Iterator[list[str]]:
    """Yield the running order of each round: *names* rotated by one each round."""
    for r in range(rounds):
        k = r % len(names)
        yield names[k:] + names[:k]


#: Variants that raised, by "scenario/loop/variant": the error, for the report.
FAILURES: dict[str, str] = {}


async def paired(
    variants: Mapping[str, Callable[[], Awaitable[float]]], rounds: int, label: str = ""
) -> dict[str, list[float]]:
    """Run every variant once per round, in rotating order; return the samples by name.

    A variant that raises gets ``nan`` for that round and its error is kept in
    ``FAILURES`` (a peer that breaks is reported, not allowed to end the run).
    A collection runs before each variant (untimed), so that none inherits the
    garbage of the one before it; the collector stays on while it runs.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for order in rotations(list(variants), rounds):
        for name in order:
            gc.collect()
            try:
                sample = await variants[name]()
            except Exception as exc:  # noqa: BLE001 - reported in the table
                FAILURES[f"{label}{name}"] = f"{type(exc).__name__}: {exc}"
                sample = float("nan")
            samples[name].append(sample)
    return samples


def paired_ratio(mine: list[float], base: list[float]) -> float:
    """Return the median of the per-round ratios ``mine[r] / base[r]``, skipping failed rounds."""
    return median([a / b for a, b in zip(mine, base, strict=True) if b and not math.isnan(a / b)])


def median(values: list[float]) -> float:
    """Return the median of *values*, ignoring nan (a failed run); nan when none is left."""
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Return the *q*-th percentile (0-100) of *values*, nearest-rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Table:
    """One scenario's figures on one event loop.

    ``samples[variant]`` holds one figure per round; ``baseline`` names the
    variant the ratio column divides by (within each round).
    """

    scenario: str
    loop: str
    title: str
    unit: str
    baseline: str
    samples: dict[str, list[float]]
    better: str = "lower"  # or "higher": which way the unit improves
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def ratio(self, variant: str, against: str | None = None) -> float:
        """Return the median over rounds of ``variant / against`` (the baseline by default)."""
        return paired_ratio(self.samples[variant], self.samples[against or self.baseline])

    def cpu_ratio(self, variant: str, against: str | None = None) -> float:
        """Return the median over rounds of the CPU per record of *variant* / *against*.

        *against* is the table's ``cpu_baseline`` (or its baseline) by default.
        """
        cpu = self.extra["cpu_us"]
        base = against or self.extra.get("cpu_baseline", self.baseline)
        return paired_ratio(cpu[variant], cpu[base])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        """Rebuild a table from what ``to_json`` returned."""
        return cls(
            scenario=data["scenario"],
            loop=data["loop"],
            title=data["title"],
            unit=data["unit"],
            baseline=data["baseline"],
            samples={row["variant"]: row["samples"] for row in data["rows"]},
            better=data["better"],
            notes=data["notes"],
            extra=data["extra"],
        )

    def to_json(self) -> dict[str, Any]:
        """Return the table as plain data (figures, medians and ratios)."""
        return {
            "scenario": self.scenario,
            "loop": self.loop,
            "title": self.title,
            "unit": self.unit,
            "baseline": self.baseline,
            "better": self.better,
            "notes": self.notes,
            "extra": self.extra,
            "rows": [
                {
                    "variant": name,
                    "median": median(values),
                    "ratio": self.ratio(name),
                    "samples": values,
                }
                for name, values in self.samples.items()
            ],
        }


def lost_lines(written: dict[str, list[int]], expected: int) -> list[str]:
    """Return a note for each variant whose worst run wrote fewer than *expected* lines."""
    return [
        f"{name} wrote only {min(counts)} of {expected} lines in its worst run"
        for name, counts in written.items()
        if counts and min(counts) < expected
    ]


def describe_machine() -> dict[str, Any]:
    """Return what a reader needs to place the figures: CPU, OS, Python, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("aioqlog", *PEERS):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "executable": sys.executable,
        "versions": versions,
    }
