"""Run every benchmark, print the tables and the targets, and save the figures as JSON.

    python -m benchmarks                      # the full run (about ten minutes)
    python -m benchmarks --quick              # a smoke run: tiny sizes, same code
    python -m benchmarks --json results.json  # where to save the figures
    python -m benchmarks --only caller_cost,throughput

``python -m benchmarks.report results.json`` turns the saved figures into
docs/benchmarks.md and its plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import caller_cost, drain, loop_lag, memory, threads, throughput
from benchmarks._harness import FAILURES, LOOPS, Table, describe_machine, run_on


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does per round."""

    rounds: int
    calls: int
    batch: int
    e2e_records: int
    thread_records: int
    lag_seconds: float
    memory_rounds: int
    bursts: tuple[int, ...]
    maxsize: int
    drain_records: int


FULL = Sizes(
    rounds=5,
    calls=10_000,
    batch=1_000,
    e2e_records=20_000,
    thread_records=20_000,
    lag_seconds=2.0,
    memory_rounds=3,
    bursts=(20_000, 100_000, 400_000),
    maxsize=10_000,
    drain_records=100_000,
)
QUICK = Sizes(
    rounds=2,
    calls=400,
    batch=100,
    e2e_records=500,
    thread_records=480,
    lag_seconds=0.2,
    memory_rounds=1,
    bursts=(2_000, 8_000),
    maxsize=500,
    drain_records=1_000,
)

SCENARIOS = ("caller_cost", "throughput", "threads", "loop_lag", "memory", "drain")


def run_scenario(name: str, loop: str, sizes: Sizes) -> list[Table]:
    """Run scenario *name* on a fresh event loop of kind *loop*; return its tables."""
    s = sizes
    if name == "caller_cost":
        return [run_on(loop, lambda: caller_cost.measure(loop, s.rounds, s.calls, s.batch))]
    if name == "throughput":
        return [run_on(loop, lambda: throughput.measure(loop, s.rounds, s.e2e_records))]
    if name == "threads":
        return run_on(loop, lambda: threads.measure(loop, s.rounds, s.thread_records))
    if name == "loop_lag":
        return [run_on(loop, lambda: loop_lag.measure(loop, s.rounds, s.lag_seconds))]
    if name == "drain":
        return [run_on(loop, lambda: drain.measure(loop, s.rounds, s.drain_records))]
    if name == "memory":
        return [memory.measure(s.memory_rounds, s.bursts, s.maxsize)]
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")


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
    bursts = t.extra["bursts"]
    small = t.samples[f"aioqlog / {bursts[0]}"]
    large = t.samples[f"aioqlog / {bursts[-1]}"]
    growth = max(large) / max(min(small), 1.0)
    lossless = all(
        row["lossless"] for name, row in t.extra["accounting"].items() if name.startswith("aioqlog")
    )
    return growth, growth <= 1.5 and lossless


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
        "memory bounded by maxsize: largest burst's growth <= 1.5x the smallest's, "
        "every record delivered or counted",
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


def print_table(table: Table) -> None:
    """Print *table* the way the report shows it."""
    print(f"\n{table.title} [{table.loop}] ({table.unit}, ratio to {table.baseline})")
    for row in table.to_json()["rows"]:
        print(f"  {row['variant']:<28} {row['median']:>14,.2f}  {row['ratio']:>7.2f}x")
    for note in table.notes:
        print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named on the command line (all by default)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", type=Path, help="save the figures to this file")
    parser.add_argument("--only", help=f"comma-separated scenarios of: {', '.join(SCENARIOS)}")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated event loops")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(SCENARIOS)
    loops = args.loops.split(",")
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    started = time.time()
    tables: list[Table] = []
    for name in names:
        for loop in loops if name != "memory" else ["asyncio"]:
            for table in run_scenario(name, loop, sizes):
                print_table(table)
                tables.append(table)
    targets = check_targets(tables)
    print("\nTargets:")
    for t in targets:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']} [{t['loop']}]: {t['measured']}")
    for key, error in FAILURES.items():
        print(f"  failed: {key}: {error}")
    result = {
        "command": "python -m benchmarks" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": describe_machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "sizes": sizes.__dict__,
        "tables": [t.to_json() for t in tables],
        "targets": targets,
        "failures": dict(FAILURES),
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
