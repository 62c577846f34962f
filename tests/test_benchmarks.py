"""The benchmarks: the quick run executes every scenario and the report renders it.

Speed is not asserted here (the machines are shared and noisy); what is: every
scenario and peer runs on both loops, nothing is lost on the way, and the
report turns the figures into the page, the plots and the README block.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import Table, percentile, rotations
from benchmarks.provenance import MEASURED, freshness, git

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_rounds_rotate_so_every_variant_runs_in_every_position() -> None:
    """Paired rounds start with a different variant each time."""
    orders = list(rotations(["a", "b", "c"], 4))
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_ratios_are_taken_within_each_round() -> None:
    """A ratio is the median of per-round ratios, not a ratio of medians; failures are skipped."""
    table = Table(
        scenario="s",
        loop="asyncio",
        title="t",
        unit="ns/call",
        baseline="floor",
        samples={"floor": [10.0, 20.0, 40.0], "x": [11.0, 24.0, math.nan]},
    )
    assert table.ratio("x") == pytest.approx((1.1 + 1.2) / 2)
    assert table.ratio("floor", "x") == pytest.approx((10 / 11 + 20 / 24) / 2)


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; the extremes are the min and max."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``python -m benchmarks --quick`` once, in a child process, and load its figures."""
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["_path"] = str(out)
    return data


def _tables(data: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [t for t in data["tables"] if t["scenario"] == scenario]


def test_the_quick_run_measures_every_scenario_on_both_loops(quick_run: dict[str, Any]) -> None:
    """Each scenario has a table per loop (memory: one), every peer measured, none failed."""
    assert quick_run["failures"] == {}
    seen = {(t["scenario"], t["loop"]) for t in quick_run["tables"]}
    for scenario in (
        "caller_cost",
        "throughput",
        "throughput_tight",
        "throughput_busy",
        "threads_1",
        "threads_4",
        "threads_16",
        "burst",
        "burst_busy",
        "http",
        "http_full_lag",
        "http_lag",
    ):
        assert {(scenario, "asyncio"), (scenario, "uvloop")} <= seen
    assert {("loop_lag", "asyncio"), ("drain", "uvloop"), ("memory", "asyncio")} <= seen
    caller = _tables(quick_run, "caller_cost")[0]
    assert [r["variant"] for r in caller["rows"]] == [
        "no-op handler",
        "aioqlog",
        "aioqlog, a context variable set",
        "stdlib QueueHandler",
        "aiologger",
        "loguru enqueue",
        "structlog ainfo",
        "bare queue",
    ]
    for table in quick_run["tables"]:
        for row in table["rows"]:
            assert all(math.isfinite(x) and x >= 0 for x in row["samples"]), (table, row)
    from benchmarks.targets import TARGETS

    # Every target is checked on every loop its scenario ran on, and read a figure.
    checked = {(t["target"], t["loop"]) for t in quick_run["targets"]}
    for target in TARGETS:
        loops = {"asyncio"} if target.scenario == "memory" else {"asyncio", "uvloop"}
        assert {(target.text, loop) for loop in loops} <= checked, target.text
    for t in quick_run["targets"]:
        assert not t["measured"].startswith("not measured"), t


def test_the_clock_runs_with_the_garbage_collector_on() -> None:
    """No benchmark pauses the garbage collector: applications never do."""
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        for call in ("gc.disable", "gc.freeze", "gc_paused"):
            assert call not in text, f"{path.name} calls {call}"


def test_the_run_reports_cpu_per_record_beside_wall_time(quick_run: dict[str, Any]) -> None:
    """Throughput, tight burst, busy machine and threads give every variant's CPU per record."""
    scenarios = {"throughput", "throughput_tight", "throughput_busy", "threads_1", "threads_4"}
    tables = [t for t in quick_run["tables"] if t["scenario"] in scenarios]
    assert len(tables) == 2 * len(scenarios)
    for table in tables:
        cpu = table["extra"]["cpu_us"]
        assert "direct" in cpu, table["scenario"]
        for row in table["rows"]:
            assert len(cpu[row["variant"]]) == 2, (table["scenario"], row["variant"])
            assert all(math.isfinite(x) and x > 0 for x in cpu[row["variant"]])


def test_the_run_records_the_commit_it_measured(quick_run: dict[str, Any]) -> None:
    """The saved figures name the commit measured and whether aioqlog/ had changes."""
    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        pytest.skip("git or the repository is unavailable here")
    code = quick_run["code"]
    assert code["commit"] == head.stdout.strip()
    assert isinstance(code["dirty"], bool)
    assert isinstance(code["aioqlog_dirty"], bool)


def test_aioqlog_writes_every_record_in_every_scenario(quick_run: dict[str, Any]) -> None:
    """Every run wrote or shipped every record; bursts account for every record."""
    for scenario in (
        "throughput",
        "throughput_tight",
        "throughput_busy",
        "threads_1",
        "threads_4",
        "threads_16",
        "drain",
    ):
        for table in _tables(quick_run, scenario):
            records = table["extra"]["records"]
            assert table["extra"]["lines_written"]["aioqlog"] == [records] * 2, table
    for scenario in ("http", "http_lag"):
        for table in _tables(quick_run, scenario):
            records = table["extra"]["records"]
            for name, received in table["extra"]["received"].items():
                assert received == [records] * 2, (scenario, name, received)
    for table in _tables(quick_run, "burst") + _tables(quick_run, "burst_busy"):
        # What the defaults do in a burst is a target (reported); that nothing is lost
        # uncounted is a guarantee: every line is written or counted as dropped.
        extra = table["extra"]
        for name in ("aioqlog install()", "aioqlog pair"):
            runs = zip(extra["written"][name], extra["dropped"][name], strict=True)
            for written, dropped in runs:
                assert written + dropped >= extra["logged"], (name, written, dropped)
        for name in ("stdlib pair", "loguru enqueue"):
            assert extra["written"][name] == [extra["logged"]], (name, extra["written"])
    (memory,) = _tables(quick_run, "memory")
    for name, row in memory["extra"]["accounting"].items():
        assert row["lossless"], (name, row)
        if name.startswith("aioqlog"):
            assert row["dropped"] + row["delivered"] == row["records"]


def test_the_report_renders_the_page_the_plots_and_the_readme_block(
    quick_run: dict[str, Any], tmp_path: Path
) -> None:
    """The report writes docs/benchmarks.md, three PNG plots, and fills the README block."""
    readme = tmp_path / "README.md"
    readme.write_text("# app\n\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\n\nafter\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.report",
            quick_run["_path"],
            "--docs",
            str(tmp_path / "docs"),
            "--readme",
            str(readme),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    for heading in (
        "## Targets",
        "## Caller cost",
        "## End-to-end throughput",
        "## A tight burst that never yields",
        "## End-to-end throughput on a busy machine",
        "## A burst with the defaults",
        "## A loop that stays busy",
        "## Loop lag",
        "## Shipping over HTTP",
    ):
        assert heading in page
    for header in ("CPU µs/record", "CPU ratio to direct", "ratio to stdlib queue"):
        assert header in page
    assert "| lines written (worst run) |" in page
    assert "Loop lag while shipping over HTTP at full speed" in page
    assert f"| code measured | `{quick_run['code']['commit'][:12]}`" in page
    assert "`python -m benchmarks --quick`" in page
    for name in ("bench-caller-cost.png", "bench-throughput.png", "bench-loop-lag.png"):
        assert (tmp_path / "docs" / "img" / name).read_bytes().startswith(PNG)
        assert f"(img/{name})" in page
    text = readme.read_text()
    assert "old" not in text
    assert text.endswith("<!-- benchmarks:end -->\n\nafter\n")
    assert "end to end: aioqlog >= 1.2x direct handling" in text


def _last_change_to_package() -> str:
    """Return the newest commit that changed aioqlog/ (skip the test without git history)."""
    proc = git("rev-list", "--max-count=1", "HEAD", "--", f"{MEASURED}/")
    if proc is None or proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip("git or the repository's history is unavailable here")
    changed = proc.stdout.strip()
    parent = git("rev-parse", "--verify", "--quiet", f"{changed}~1^{{commit}}")
    if parent is None or parent.returncode != 0:
        pytest.skip("the history is too shallow to hold the commit before aioqlog/ last changed")
    return changed


def test_figures_from_older_code_are_stale() -> None:
    """Figures measured before aioqlog/'s last change are stale; measured at HEAD, fresh."""
    changed = _last_change_to_package()
    older = freshness({"code": {"commit": f"{changed}~1", "aioqlog_dirty": False}})
    assert older.state == "stale", older
    assert "make bench-report" in older.reason
    head = freshness({"code": {"commit": changed, "aioqlog_dirty": False}})
    assert head.state == "fresh", head
    dirty = freshness({"code": {"commit": changed, "aioqlog_dirty": True}})
    assert dirty.state == "stale", dirty
    assert freshness({}).state == "unknown"
    assert freshness({"code": {"commit": "0" * 40}}).state == "unknown"


def test_the_published_figures_describe_the_current_code() -> None:
    """benchmarks/results.json (docs/benchmarks.md) was measured on HEAD's aioqlog/."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    verdict = freshness(results)
    if verdict.state == "unknown":
        pytest.skip(verdict.reason)
    assert verdict.state == "fresh", verdict.reason


def test_every_figure_the_docs_quote_is_the_published_runs() -> None:
    """A figure quoted outside docs/benchmarks.md is the one benchmarks/results.json holds.

    Quoted figures sit between ``<!-- figure:KEY -->`` and ``<!-- /figure -->``;
    ``make bench-report`` fills them in, so a hand-copied figure cannot go stale.
    """
    from benchmarks.report import QUOTED, quoted_figure  # matplotlib: imported when needed

    tables = json.loads((ROOT / "benchmarks" / "results.json").read_text())["tables"]
    quoted = {}
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for m in QUOTED.finditer(page.read_text()):
            quoted[f"{page.name}: {m['key']}"] = (m["value"], quoted_figure(tables, m["key"]))
    pages = {key.split(":")[0] for key in quoted}
    assert {"guarantees.md", "comparison.md", "concepts.md"} <= pages
    assert {k: v for k, v in quoted.items() if v[0] != v[1]} == {}


def test_the_report_fills_in_quoted_figures() -> None:
    """fill_quoted replaces the value between the markers, and refuses a key the run lacks."""
    from benchmarks.report import fill_quoted  # matplotlib: imported when needed

    tables = [
        {
            "scenario": "loop_lag",
            "loop": "asyncio",
            "unit": "ms p99",
            "rows": [{"variant": "aioqlog", "median": 0.4567, "ratio": 1.5}],
        }
    ]
    text = "lag <!-- figure:loop_lag|asyncio|aioqlog|median -->9 ms<!-- /figure --> and "
    text += "<!-- figure:loop_lag|asyncio|aioqlog|ratio -->2x<!-- /figure -->."
    assert fill_quoted(text, tables) == (
        "lag <!-- figure:loop_lag|asyncio|aioqlog|median -->0.46 ms<!-- /figure --> and "
        "<!-- figure:loop_lag|asyncio|aioqlog|ratio -->1.50x<!-- /figure -->."
    )
    with pytest.raises(KeyError, match="uvloop"):
        fill_quoted("<!-- figure:loop_lag|uvloop|aioqlog|median -->1<!-- /figure -->", tables)
