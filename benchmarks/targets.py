"""The targets the benchmarks check: each a ratio (or figure) of one scenario's table.

Checked by ``python -m benchmarks`` after a run, and again by the report from
the saved tables, so both always read the same figures the same way. A target
is met or missed; a missed one is reported, it never fails the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks._harness import Table, median
from benchmarks.burst import AIOQLOG

#: What a check returns: the measured figure, as the page shows it, and the verdict.
Verdict = tuple[str, bool]


@dataclass(frozen=True)
class Target:
    """A promise about one ratio (or figure) of one table, checked on every run."""

    text: str
    scenario: str
    check: Callable[[Table], Verdict]


#: What a queue in front of a thread costs on the machine without aioqlog's
#: promises (``benchmarks.bare``): its figure is shown beside aioqlog's.
BARE = "bare queue"


def _beside_bare(t: Table, r: float, bare: Callable[[], float]) -> str:
    """Show ratio *r*, and the bare queue's (``bare()``) where the table measured it."""
    if BARE not in t.samples:
        return f"{r:.2f}x"
    return f"{r:.2f}x (bare queue {bare():.2f}x)"


def _ratio_at_most(variant: str, limit: float, against: str | None = None) -> Any:
    def check(t: Table) -> Verdict:
        r = t.ratio(variant, against)
        return _beside_bare(t, r, lambda: t.ratio(BARE, against)), r <= limit

    return check


def _ratio_at_least(variant: str, limit: float, against: str | None = None) -> Any:
    def check(t: Table) -> Verdict:
        r = t.ratio(variant, against)
        return _beside_bare(t, r, lambda: t.ratio(BARE, against)), r >= limit

    return check


def _cpu_at_most(variant: str, limit: float) -> Any:
    def check(t: Table) -> Verdict:
        r = t.cpu_ratio(variant)
        return _beside_bare(t, r, lambda: t.cpu_ratio(BARE)), r <= limit

    return check


def _p99_above_floor_at_most(variant: str, limit_ms: float) -> Any:
    # The p99 of each window less the same round's "no logging" window: the
    # median of those paired differences, so machine drift cancels out.
    def check(t: Table) -> Verdict:
        above = [
            a - b
            for a, b in zip(t.samples[variant], t.samples[t.baseline], strict=True)
            if not math.isnan(a - b)
        ]
        d = median(above)
        return f"+{d:.2f} ms" if d >= 0 else f"{d:.2f} ms", d <= limit_ms

    return check


def _burst(t: Table) -> Verdict:
    # Every aioqlog run wrote every line, and peaked no higher than the stdlib's.
    logged = t.extra["logged"]
    worst = min(min(t.extra["written"][v]) for v in AIOQLOG)
    rss = max(t.ratio(v) for v in AIOQLOG)
    shown = f"N={t.extra['n']:,}: {worst:,}/{logged:,} lines, peak RSS {rss:.2f}x"
    return shown, worst >= logged and rss <= 1.0


def _bounded_memory(t: Table) -> Verdict:
    # Once a burst is far beyond maxsize, a bigger one must not cost more memory:
    # compare the two largest bursts (4x apart in the full run).
    bursts = t.extra["bursts"]
    smaller = t.samples[f"aioqlog / {bursts[-2]}"]
    larger = t.samples[f"aioqlog / {bursts[-1]}"]
    growth = median(larger) / max(median(smaller), 1.0)  # below 1 MiB counts as 1 MiB
    lossless = all(
        row["lossless"] for name, row in t.extra["accounting"].items() if name.startswith("aioqlog")
    )
    return f"{growth:.2f}x", growth <= 1.25 and lossless


#: The published targets (ratios within one run; service-like producer; GC on; a real file).
TARGETS = (
    Target(
        "end to end: aioqlog >= 1.2x direct handling",
        "throughput",
        _ratio_at_least("aioqlog", 1.2, "direct"),
    ),
    Target(
        "end to end: aioqlog >= 1.6x stdlib QueueHandler + QueueListener",
        "throughput",
        _ratio_at_least("aioqlog", 1.6, "stdlib queue"),
    ),
    Target(
        "end to end: CPU per record (all threads) of aioqlog <= 0.9x direct",
        "throughput",
        _cpu_at_most("aioqlog", 0.9),
    ),
    Target(
        "tight burst that never yields: aioqlog >= 1.0x direct",
        "throughput_tight",
        _ratio_at_least("aioqlog", 1.0, "direct"),
    ),
    Target(
        "caller cost of aioqlog <= 1.10x the no-op handler (consumers running, GC on)",
        "caller_cost",
        _ratio_at_most("aioqlog", 1.10),
    ),
    Target(
        "4 producer threads: aioqlog >= 1.5x stdlib",
        "threads_4",
        _ratio_at_least("aioqlog", 1.5, "stdlib queue"),
    ),
    Target(
        "loop-lag p99 with a 10 ms/record handler: aioqlog <= 0.5 ms above no logging",
        "loop_lag",
        _p99_above_floor_at_most("aioqlog", 0.5),
    ),
    Target(
        "burst with the defaults (install() and the pair): every line written, "
        "peak RSS <= the stdlib's",
        "burst",
        _burst,
    ),
    Target(
        "a loop that stays busy, with the defaults (install() and the pair): every line "
        "written, peak RSS <= the stdlib's",
        "burst_busy",
        _burst,
    ),
    Target(
        "HTTP shipping at full speed: loop-lag p99 of AsyncHTTPHandler <= 1 ms above no logging",
        "http_full_lag",
        _p99_above_floor_at_most("aioqlog AsyncHTTPHandler", 1.0),
    ),
    Target(
        "memory bounded by maxsize: the largest burst (4x the next) grows RSS "
        "<= 1.25x what the next does, every record delivered or counted",
        "memory",
        _bounded_memory,
    ),
)


def check_targets(tables: list[Table]) -> list[dict[str, Any]]:
    """Return each target's measured figure and verdict, per loop it was measured on."""
    results = []
    for target in TARGETS:
        for table in tables:
            if table.scenario != target.scenario:
                continue
            try:
                measured, met = target.check(table)
            except (KeyError, ValueError, ZeroDivisionError) as exc:
                # A table from an older run, or a variant that failed: say so, and go on.
                measured, met = f"not measured ({type(exc).__name__}: {exc})", False
            results.append(
                {
                    "target": target.text,
                    "scenario": target.scenario,
                    "loop": table.loop,
                    "measured": measured,
                    "met": met,
                }
            )
    return results
