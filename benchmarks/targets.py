"""The targets the benchmarks check: each a ratio (or figure) of one scenario's table.

Checked by ``python -m benchmarks`` after a run, and again by the report from
the saved tables, so both always read the same figures the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks._harness import Table, median


@dataclass(frozen=True)
class Target:
    """A promise about one ratio (or figure) of one table, checked on every run."""

    text: str
    scenario: str
    check: Callable[[Table], tuple[float, bool]]
    shown: str  # how the measured figure reads, e.g. "{:.2f}x"


def _ratio_at_most(variant: str, limit: float, against: str | None = None) -> Any:
    def check(t: Table) -> tuple[float, bool]:
        r = t.ratio(variant, against)
        return r, r <= limit

    return check


def _ratio_at_least(variant: str, limit: float, against: str | None = None) -> Any:
    def check(t: Table) -> tuple[float, bool]:
        r = t.ratio(variant, against)
        return r, r >= limit

    return check


def _p99_at_most(variant: str, limit_ms: float) -> Any:
    def check(t: Table) -> tuple[float, bool]:
        p99 = max(t.samples[variant])  # the worst window, not the median one
        return p99, p99 <= limit_ms

    return check


def _bounded_memory(t: Table) -> tuple[float, bool]:
    # Once a burst is far beyond maxsize, a bigger one must not cost more memory:
    # compare the two largest bursts (4x apart in the full run).
    bursts = t.extra["bursts"]
    smaller = t.samples[f"aioqlog / {bursts[-2]}"]
    larger = t.samples[f"aioqlog / {bursts[-1]}"]
    growth = median(larger) / max(median(smaller), 1.0)  # below 1 MiB counts as 1 MiB
    lossless = all(
        row["lossless"] for name, row in t.extra["accounting"].items() if name.startswith("aioqlog")
    )
    return growth, growth <= 1.25 and lossless


TARGETS = (
    Target(
        "caller cost of aioqlog <= 1.20x the no-op handler",
        "caller_cost",
        _ratio_at_most("aioqlog", 1.20),
        "{:.2f}x",
    ),
    Target(
        "end-to-end aioqlog >= 1.3x stdlib QueueHandler+QueueListener",
        "throughput",
        _ratio_at_least("aioqlog", 1.3),
        "{:.2f}x",
    ),
    Target(
        "end-to-end aioqlog >= 0.85x direct handling",
        "throughput",
        _ratio_at_least("aioqlog", 0.85, "direct"),
        "{:.2f}x",
    ),
    Target(
        "4 producer threads: aioqlog >= 1.0x stdlib",
        "threads_4",
        _ratio_at_least("aioqlog", 1.0),
        "{:.2f}x",
    ),
    Target(
        "loop lag p99 <= 2 ms with the blocking handler behind aioqlog (worst window)",
        "loop_lag",
        _p99_at_most("aioqlog", 2.0),
        "{:.2f} ms",
    ),
    Target(
        "memory bounded by maxsize: the largest burst (4x the next) grows RSS "
        "<= 1.25x what the next does, every record delivered or counted",
        "memory",
        _bounded_memory,
        "{:.2f}x",
    ),
)


def check_targets(tables: list[Table]) -> list[dict[str, Any]]:
    """Return each target's measured figure and verdict, per loop it was measured on."""
    results = []
    for target in TARGETS:
        for table in tables:
            if table.scenario != target.scenario:
                continue
            value, met = target.check(table)
            results.append(
                {
                    "target": target.text,
                    "scenario": target.scenario,
                    "loop": table.loop,
                    "measured": target.shown.format(value),
                    "met": met,
                }
            )
    return results
