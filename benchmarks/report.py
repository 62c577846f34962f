"""Turn saved benchmark figures into docs/benchmarks.md, its plots and the README's table.

    python -m benchmarks.report results.json [--docs docs] [--readme README.md]

Everything written comes from the JSON file ``python -m benchmarks --json``
saved: the page, the PNG plots next to it (``docs/img/``), the block of
README.md between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->``,
and every figure the other pages quote, written as
``<!-- figure:scenario|loop|variant|median -->0.98 ms<!-- /figure -->`` (or
``|ratio`` for the variant's ratio to its table's baseline): the value between
the markers is replaced by the run's.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt

from benchmarks._harness import Table, median, paired_ratio
from benchmarks.targets import check_targets

README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"

#: A figure quoted in prose or in another page's table (see the module docstring).
QUOTED = re.compile(r"<!-- figure:(?P<key>[^>]+?) -->(?P<value>.*?)<!-- /figure -->")

#: Scenarios in the order the page presents them, with what each one answers.
SECTIONS = {
    "caller_cost": (
        "Caller cost",
        'What one `logger.info("request %s done in %d ms", s, i)` costs the coroutine that '
        "makes it, on the loop thread. The floor is the same call into a handler that does "
        'nothing: the cost of the LogRecord itself. The "bare queue" row is no library: a '
        "deque in front of a thread, with none of aioqlog's guarantees (see the end-to-end "
        "throughput below): what handing a record to a queue costs the caller on this "
        "machine without them. The coroutine sets no context variable, as in a program that "
        'sets none; the "a context variable set" row makes the same call where one is set, '
        "as under a tracer or a per-request id: aioqlog then also keeps the context beside "
        'the record (docs/concepts.md, "Context").',
    ),
    "throughput": (
        "End-to-end throughput",
        "From the first log call until a `FileHandler` (with a typical formatter, "
        "`%(asctime)s` included) has written every line to a real file, the producer "
        "logging in bursts of 50 records and yielding to the loop after each, as a service "
        "does between requests, with the garbage collector on. Beside the wall clock: the "
        "process's CPU time per record, every thread counted, since a queue that only moves "
        "the work to another thread saves the loop time but not the machine's. Ratios are "
        'to the same handler attached directly, within each round. The "bare queue" row is '
        "no library: a deque in front of a thread that formats a batch and writes it in one "
        "call, with no bound, context, error handling or shutdown guarantee, measured on the "
        "same machine in the same rounds: what a queue in front of a thread costs in Python "
        "without them. It formats each record with the handler's own `format`; aioqlog "
        "formats a plain `logging.Formatter`'s records to the same text in fewer steps "
        "(see the concepts page), which can take it past the bare queue.",
    ),
    "throughput_tight": (
        "A tight burst that never yields",
        "The same, but the coroutine logs every record in one go without yielding: a "
        "listener that needs the loop cannot run until the burst is over.",
    ),
    "throughput_busy": (
        "End-to-end throughput on a busy machine",
        "The service-like producer again, with a CPU-bound process (a Python busy loop) "
        "spinning for the whole measurement, so the worker threads compete for the cores.",
    ),
    "threads_1": (
        "Producer threads",
        "Threads logging at once into one `FileHandler`: behind aioqlog, behind the stdlib's "
        "`QueueHandler` + `QueueListener`, and attached directly (each thread writing under "
        "the handler's lock), with the process's CPU time per record beside the wall clock.",
    ),
    "threads_4": ("", ""),
    "threads_16": ("", ""),
    "loop_lag": (
        "Loop lag",
        "How late a coroutine that sleeps 1 ms at a time wakes up, while 400 records/s go "
        "to a handler that blocks 10 ms per record (4x more than it can take).",
    ),
    "burst": (
        "A burst with the defaults",
        "What a user checks on the first day: the loop logs N records without yielding, "
        "then two threads (`asyncio.to_thread`) log N each, into `logging.basicConfig`'s "
        "`FileHandler`, every setting at its default; then the set-up is stopped and the "
        "lines in the file are counted. Peak RSS is the process's own (`VmHWM`, a fresh "
        "process per run).",
    ),
    "burst_busy": (
        "A loop that stays busy",
        "A loaded service: the loop logs in bursts of 50 records and yields after each, for "
        "twice the default queue's bound, and no thread logs; the same set-ups, defaults and "
        "count as above. Each of the loop's turns polls for I/O, dropping the GIL for a "
        "moment and taking it straight back, which keeps a thread waiting for the GIL "
        "waiting (see [Concepts](concepts.md#a-loop-that-stays-busy)).",
    ),
    "memory": (
        "Memory under a burst",
        "Peak RSS growth while 4 threads log a burst into a stalled handler, in a fresh "
        "process per run.",
    ),
    "http": (
        "Shipping over HTTP",
        "Records sent to a log collector (aiohttp, in another process on 127.0.0.1): the "
        "stdlib's `HTTPHandler` makes a request per record, behind the stdlib's "
        "`QueueListener` thread or in an aioqlog lane; `AsyncHTTPHandler` sends batches of "
        "up to 500 records from the loop. The stdlib's network handlers beside their "
        "`aioqlog.handlers` twins are measured by `python -m benchmarks.twins`, with the "
        "figures in [Moving from the stdlib handlers](handlers/from-stdlib.md).",
    ),
    "http_full_lag": (
        "",
        "The loop's lag during those runs, shipping as fast as each can, beside the same "
        "producer logging into a handler that does nothing.",
    ),
    "http_lag": (
        "",
        "The loop's lag while each of them ships the same steady 400 records/s.",
    ),
    "drain": (
        "Drain at shutdown",
        "How long a listener takes to write a backlog of queued records to a `FileHandler`, "
        "from being made to `stop()` returning. An aioqlog queue with no listener keeps its "
        "records until one is made, and making it delivers them, in the thread that makes "
        "it (a listener made on the loop's thread holds the loop meanwhile: make it before "
        "anything logs, as `install()` does). The stdlib's `QueueHandler` renders each "
        "message at the call (its `prepare`), so its listener has less left to do here; "
        "that work shows in its caller cost instead.",
    ),
}


def fmt(value: float, unit: str) -> str:
    """Format a figure for a table cell."""
    if math.isnan(value):  # the variant failed
        return "failed"
    if unit in {"records/s", "ns/call"}:
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:,.2f}"


def quoted_figure(tables: list[dict[str, Any]], key: str) -> str:
    """Return the figure *key* (``scenario|loop|variant|median`` or ``...|ratio``) names."""
    scenario, loop, variant, stat = key.split("|")
    for t in tables:
        if t["scenario"] != scenario or t["loop"] != loop:
            continue
        for row in t["rows"]:
            if row["variant"] != variant:
                continue
            if stat == "ratio":
                return ratio_cell(row)
            if stat == "median":
                unit = t["unit"].split()[0]  # "ms p99" -> ms, "MiB peak RSS" -> MiB
                return f"{fmt(row['median'], unit)} {unit}"
    raise KeyError(f"the run has no figure {key!r}")


def fill_quoted(text: str, tables: list[dict[str, Any]]) -> str:
    """Return *text* with every quoted figure replaced by the run's."""
    return QUOTED.sub(
        lambda m: f"<!-- figure:{m['key']} -->{quoted_figure(tables, m['key'])}<!-- /figure -->",
        text,
    )


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """Return a Markdown table."""
    rule = "|---|" + "".join("---:|" for _ in header[1:])
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_cell(row: dict[str, Any]) -> str:
    """Return the ratio column's cell."""
    r = row["ratio"]
    return "failed" if math.isnan(r) else f"{r:.2f}x"


def ratio_of(mine: list[float], base: list[float]) -> str:
    """Return the cell of a per-round ratio (as the tables compute them)."""
    r = paired_ratio(mine, base)
    return "failed" if math.isnan(r) else f"{r:.2f}x"


def above_floor(mine: list[float], base: list[float]) -> str:
    """Return the cell of the median per-round difference to the floor, in ms."""
    d = median([a - b for a, b in zip(mine, base, strict=True) if not math.isnan(a - b)])
    return "failed" if math.isnan(d) else f"{d:+.2f}"


def scenario_tables(tables: list[dict[str, Any]]) -> str:
    """Return the Markdown for one scenario's tables (one per loop)."""
    out = []
    for t in tables:
        out.append(
            f"**{t['title']}** — {t['loop']} loop (unit: {t['unit']}; ratio to *{t['baseline']}*, "
            f"{'lower' if t['better'] == 'lower' else 'higher'} is better)\n"
        )
        samples = {r["variant"]: r["samples"] for r in t["rows"]}
        base = samples[t["baseline"]]
        extra = t["extra"]
        if t["scenario"] == "loop_lag":
            header = ["variant", "p50 ms", "p99 ms", "max ms", "p99 above no logging", "p99 ratio"]
            rows = [
                [
                    r["variant"],
                    fmt(extra["p50"][r["variant"]], "ms"),
                    fmt(r["median"], "ms"),
                    fmt(extra["max"][r["variant"]], "ms"),
                    above_floor(r["samples"], base),
                    ratio_cell(r),
                ]
                for r in t["rows"]
            ]
        elif t["baseline"] == "no logging":
            header = ["variant", f"median {t['unit']}", "above no logging, ms", "ratio"]
            rows = [
                [
                    r["variant"],
                    fmt(r["median"], t["unit"]),
                    above_floor(r["samples"], base),
                    ratio_cell(r),
                ]
                for r in t["rows"]
            ]
        elif t["scenario"] in {"burst", "burst_busy"}:
            header = [
                "variant",
                "lines written (worst run)",
                "dropped (counted)",
                "peak RSS MiB",
                "ratio",
            ]
            rows = [
                [
                    r["variant"],
                    f"{min(extra['written'][r['variant']]):,} of {extra['logged']:,}",
                    f"{median([float(d) for d in extra['dropped'][r['variant']]]):,.0f}",
                    fmt(r["median"], "MiB"),
                    ratio_cell(r),
                ]
                for r in t["rows"]
            ]
        elif t["scenario"] == "memory":
            header = ["variant / burst", "growth MiB", "dropped (counted)", "delivered", "ratio"]
            acc = extra["accounting"]
            rows = [
                [
                    r["variant"],
                    fmt(r["median"], "MiB"),
                    f"{acc[r['variant']]['dropped']:,.0f}",
                    f"{acc[r['variant']]['delivered']:,.0f}",
                    ratio_cell(r),
                ]
                for r in t["rows"]
            ]
        else:
            header = ["variant", f"median {t['unit']}", "ratio"]
            also = extra.get("also_against")
            if also and also != t["baseline"]:
                header.append(f"ratio to {also}")
            cpu = extra.get("cpu_us")
            if cpu is not None:
                cpu_base = extra.get("cpu_baseline", t["baseline"])
                header += ["CPU µs/record", f"CPU ratio to {cpu_base}"]
            collections = extra.get("gc_per_10k")
            if collections is not None:
                header.append("GC per 10k records")
            rows = []
            for r in t["rows"]:
                row = [r["variant"], fmt(r["median"], t["unit"]), ratio_cell(r)]
                if also and also != t["baseline"]:
                    row.append(ratio_of(r["samples"], samples[also]))
                if cpu is not None:
                    row += [
                        fmt(median(cpu[r["variant"]]), "µs"),
                        ratio_of(cpu[r["variant"]], cpu[cpu_base]),
                    ]
                if collections is not None:
                    row.append(f"{median(collections[r['variant']]):.0f}")
                rows.append(row)
        out.append(md_table(header, rows))
        out.append("")
        out += [f"- {note}" for note in t["notes"]]
        out.append("")
    return "\n".join(out)


def plot_bars(tables: list[dict[str, Any]], path: Path, ylabel: str, title: str) -> None:
    """Save a grouped bar chart of the median of each variant, one group per loop."""
    variants = [r["variant"] for r in tables[0]["rows"]]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(tables)
    for k, t in enumerate(tables):
        medians = {r["variant"]: r["median"] for r in t["rows"]}
        xs = [i + k * width for i in range(len(variants))]
        ys = [0.0 if math.isnan(medians.get(v, math.nan)) else medians[v] for v in variants]
        ax.bar(xs, ys, width, label=f"{t['loop']} loop")
    ax.set_xticks([i + width * (len(tables) - 1) / 2 for i in range(len(variants))])
    ax.set_xticklabels(variants, rotation=15, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lag(tables: list[dict[str, Any]], path: Path) -> None:
    """Save the distribution of loop lag per variant (one panel per loop), log scale."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4.2), squeeze=False)
    for ax, t in zip(axes[0], tables, strict=True):
        for variant, quantiles in t["extra"]["quantiles"].items():
            xs = [max(x, 0.01) for x in quantiles]
            ax.plot(xs, [q / 200 for q in range(len(xs))], label=variant)
        ax.set_xscale("log")
        ax.set_xlabel("loop lag, ms (log scale; below 0.01 shown at 0.01)")
        ax.set_ylabel("fraction of ticks at or below")
        ax.set_title(f"{t['loop']} loop")
        ax.axvline(2.0, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Loop lag with a handler blocking 10 ms per record, 400 records/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_block(data: dict[str, Any]) -> str:
    """Return the README's summary: the targets, as measured."""
    rows = [
        [t["target"], t["loop"], t["measured"], "met" if t["met"] else "**missed**"]
        for t in data["targets"]
    ]
    m = data["machine"]
    return "\n".join(
        [
            README_START,
            f"Measured with `{data['command']}` on {m['cores']} cores ({m['cpu']}), "
            f"{m['python']}, {data['started'][:10]}; details in "
            f"[docs/benchmarks.md](docs/benchmarks.md). In brackets: a bare queue (a deque in "
            f"front of a thread that formats with the handler's own `format`, none of aioqlog's "
            f"guarantees) in the same rounds: what a queue costs on that machine without them.",
            "",
            md_table(["target", "loop", "measured", ""], rows),
            README_END,
        ]
    )


def render(data: dict[str, Any], docs: Path, readme: Path | None) -> list[Path]:
    """Write the page, its plots and (if given) the README block; return the files written."""
    # The verdicts are read from the saved tables, by the same checks the run used.
    data = {**data, "targets": check_targets([Table.from_json(t) for t in data["tables"]])}
    img = docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for t in data["tables"]:
        by_scenario.setdefault(t["scenario"], []).append(t)
    written: list[Path] = []

    plots = []
    if "caller_cost" in by_scenario:
        p = img / "bench-caller-cost.png"
        plot_bars(by_scenario["caller_cost"], p, "ns per call (median)", "Caller cost per log call")
        plots.append(("Caller cost per log call", p))
    if "throughput" in by_scenario:
        p = img / "bench-throughput.png"
        plot_bars(
            by_scenario["throughput"], p, "records/s (median)", "End-to-end throughput per peer"
        )
        plots.append(("End-to-end throughput per peer", p))
    if "loop_lag" in by_scenario:
        p = img / "bench-loop-lag.png"
        plot_lag(by_scenario["loop_lag"], p)
        plots.append(("Loop-lag distribution", p))
    written += [p for _, p in plots]

    m = data["machine"]
    code = data.get("code") or {}
    commit = code.get("commit")
    if commit is None:
        measured = "not recorded"
    else:
        measured = f"`{commit[:12]}`"
        if code.get("aioqlog_dirty"):
            measured += " with uncommitted changes in aioqlog/"
        elif code.get("dirty"):
            measured += " (uncommitted changes outside aioqlog/)"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench-report` (python -m benchmarks.report): do not edit. -->",
        "",
        "Every figure on this page comes from one run of the benchmark suite in "
        "[`benchmarks/`](https://github.com/aioqlog/aioqlog/tree/main/benchmarks). Each "
        "scenario runs its variants side by side in one process, in rounds whose order "
        "rotates (A B C, B C A, ...); a ratio is taken inside each round and the tables give "
        "the median of the per-round ratios beside the median of the raw figures. The "
        "machine is shared and noisy: absolute figures drift from run to run, ratios hold.",
        "",
        "Reproduce with `make bench` (figures only) or `make bench-report` (figures, this "
        "page, its plots and the README's summary); `make bench QUICK=1` is the smoke run "
        "the test suite executes.",
        "",
        "## The run",
        "",
        md_table(
            ["", ""],
            [
                ["command", f"`{data['command']}`"],
                ["code measured", measured],
                ["date", data["started"]],
                ["duration", f"{data['duration_s']:.0f} s"],
                ["CPU", f"{m['cpu']}, {m['cores']} cores"],
                ["OS", m["os"]],
                ["Python", m["python"]],
                ["versions", versions],
                ["rounds", str(data["sizes"]["rounds"])],
            ],
        ),
        "",
        "## Targets",
        "",
        "Each target is a ratio within one run (or a figure) of the tables below, checked "
        "on every loop it was measured on. A missed target is reported here; it does not "
        "fail the run. Where the table measured the bare queue (a deque in front of a thread, "
        "with none of aioqlog's guarantees), its ratio is shown in brackets: the most any "
        "queue in front of a thread reached on this machine, in the same rounds.",
        "",
        md_table(
            ["target", "loop", "measured", ""],
            [
                [t["target"], t["loop"], t["measured"], "met" if t["met"] else "**missed**"]
                for t in data["targets"]
            ],
        ),
        "",
    ]
    if data.get("failures"):
        lines += ["## Variants that failed", ""]
        lines += [f"- `{k}`: {v}" for k, v in data["failures"].items()]
        lines.append("")
    for scenario, (heading, intro) in SECTIONS.items():
        if scenario not in by_scenario:
            continue
        if heading:
            lines += [f"## {heading}", "", intro, ""]
        elif intro:
            lines += [intro, ""]
        lines.append(scenario_tables(by_scenario[scenario]))
        for title, p in plots:
            if p.stem.removeprefix("bench-").replace("-", "_") == scenario:
                lines += [f"![{title}](img/{p.name})", ""]
    page = docs / "benchmarks.md"
    page.write_text("\n".join(lines).rstrip() + "\n")
    written.append(page)

    quoting = [p for p in sorted(docs.glob("*.md")) if p != page]
    for path in quoting + ([readme] if readme is not None else []):
        text = path.read_text()
        filled = fill_quoted(text, data["tables"])
        if filled != text:
            path.write_text(filled)
            written.append(path)

    if readme is not None:
        text = readme.read_text()
        pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{readme} has no {README_START} ... {README_END} block to fill in")
        readme.write_text(pattern.sub(lambda _: readme_block(data), text))
        written.append(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    """Render the report from the JSON file named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("results", type=Path, help="the JSON file python -m benchmarks saved")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the page goes")
    parser.add_argument("--readme", type=Path, help="README to update (its benchmarks block)")
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text())
    for path in render(data, args.docs, args.readme):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
