"""Run every benchmark, print the tables and the targets, and save the figures as JSON.

    python -m benchmarks                      # the full run (about ten minutes)
    python -m benchmarks --quick              # a smoke run: tiny sizes, same code
    python -m benchmarks --json results.json  # where to save the figures
    python -m benchmarks --only caller_cost,throughput
    python -m benchmarks --only throughput,burst --loops asyncio

``python -m benchmarks.report results.json`` turns the saved figures into
docs/benchmarks.md and its plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aioqlog._bridge import DEFAULT_MAXSIZE
from benchmarks import (
    burst,
    caller_cost,
    drain,
    http_shipping,
    loop_lag,
    memory,
    threads,
    throughput,
)
from benchmarks._harness import FAILURES, LOOPS, Table, describe_machine, median, run_on
from benchmarks.provenance import describe_code
from benchmarks.targets import check_targets


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does per round."""

    rounds: int
    calls: int
    batch: int
    e2e_records: int
    tight_records: int
    thread_records: int
    lag_seconds: float
    memory_rounds: int
    bursts: tuple[int, ...]
    maxsize: int
    drain_records: int
    http_records: int
    burst_rounds: int
    burst_sizes: tuple[int, ...]
    busy_records: int


FULL = Sizes(
    rounds=5,
    calls=10_000,
    batch=1_000,
    e2e_records=20_000,
    tight_records=50_000,
    thread_records=20_000,
    lag_seconds=2.0,
    memory_rounds=3,
    bursts=(20_000, 100_000, 400_000),
    maxsize=DEFAULT_MAXSIZE,  # what users get
    drain_records=100_000,
    http_records=5_000,
    burst_rounds=3,
    burst_sizes=(5_000, 20_000),
    busy_records=100_000,  # twice the default maxsize
)
QUICK = Sizes(
    rounds=2,
    calls=400,
    batch=100,
    e2e_records=500,
    tight_records=500,
    thread_records=480,
    lag_seconds=0.2,
    memory_rounds=1,
    bursts=(2_000, 8_000),
    maxsize=500,
    drain_records=1_000,
    http_records=200,
    burst_rounds=1,
    burst_sizes=(300,),
    busy_records=1_000,
)

SCENARIOS = (
    "caller_cost",
    "throughput",
    "throughput_tight",
    "throughput_busy",
    "threads",
    "loop_lag",
    "burst",
    "memory",
    "drain",
    "http",
)


def run_scenario(name: str, loop: str, sizes: Sizes) -> list[Table]:
    """Run scenario *name* on a fresh event loop of kind *loop*; return its tables."""
    s = sizes
    if name == "caller_cost":
        return [run_on(loop, lambda: caller_cost.measure(loop, s.rounds, s.calls, s.batch))]
    if name in {"throughput", "throughput_busy"}:
        return [run_on(loop, lambda: throughput.measure(loop, s.rounds, s.e2e_records, name))]
    if name == "throughput_tight":
        return [run_on(loop, lambda: throughput.measure(loop, s.rounds, s.tight_records, name))]
    if name == "burst":
        return burst.measure(loop, s.burst_rounds, s.burst_sizes, s.busy_records)
    if name == "threads":
        return run_on(loop, lambda: threads.measure(loop, s.rounds, s.thread_records))
    if name == "loop_lag":
        return [run_on(loop, lambda: loop_lag.measure(loop, s.rounds, s.lag_seconds))]
    if name == "drain":
        return [run_on(loop, lambda: drain.measure(loop, s.rounds, s.drain_records))]
    if name == "http":
        return run_on(
            loop, lambda: http_shipping.measure(loop, s.rounds, s.http_records, s.lag_seconds)
        )
    if name == "memory":
        return [memory.measure(s.memory_rounds, s.bursts, s.maxsize)]
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")


def print_table(table: Table) -> None:
    """Print *table* the way the report shows it."""
    print(f"\n{table.title} [{table.loop}] ({table.unit}, ratio to {table.baseline})")
    cpu = table.extra.get("cpu_us")
    for row in table.to_json()["rows"]:
        line = f"  {row['variant']:<34} {row['median']:>14,.2f}  {row['ratio']:>7.2f}x"
        if cpu is not None:
            name = row["variant"]
            line += f"  CPU {median(cpu[name]):>7.2f} us/record {table.cpu_ratio(name):>6.2f}x"
        collections = table.extra.get("gc_per_10k")
        if collections is not None:
            line += f"  GC {median(collections[row['variant']]):>4.0f}/10k"
        print(line)
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
    code = describe_code()
    started = time.time()
    tables: list[Table] = []
    for name in names:
        for loop in loops if name != "memory" else ["asyncio"]:
            began = time.perf_counter()
            for table in run_scenario(name, loop, sizes):
                print_table(table)
                tables.append(table)
            print(f"  ({name} on {loop}: {time.perf_counter() - began:.1f} s)")
    targets = check_targets(tables)
    print("\nTargets:")
    for t in targets:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']} [{t['loop']}]: {t['measured']}")
    print("(a missed target is reported, not an error: the run still succeeds)")
    for key, error in FAILURES.items():
        print(f"  failed: {key}: {error}")
    result = {
        "command": "python -m benchmarks" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": describe_machine(),
        "code": code,
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
