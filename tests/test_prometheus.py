"""Prometheus: a real registry's exposition says what ``listener.stats`` says."""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio.lowlevel
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import STALL, Gate, Recorder, in_thread

import aioqlog
from aioqlog.integrations.prometheus import ListenerCollector

ROOT = Path(__file__).resolve().parent.parent

#: A scraped sample: its name and its labels.
Key = tuple[str, frozenset[tuple[str, str]]]


class Broken(Recorder):
    """A handler whose emit always raises (after recording the record)."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        raise OSError("disk full")

    def handleError(self, record: logging.LogRecord) -> None:
        """Swallow the error quietly: the counter is what is under test."""


class Echo(logging.Handler):
    """Log one more record for every record handled: a handler feeding itself."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.set_name("echo")
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        self.logger.warning("echo of %r", record.getMessage())


def scrape(registry: CollectorRegistry, *, ages: bool = False) -> dict[Key, float]:
    """Return every sample of the registry's text exposition, parsed back.

    The ages (``*_age_seconds``) move with the clock, so they are left out
    unless *ages* asks for them.
    """
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if ages or not sample.name.endswith("_age_seconds")
    }


def expected(name: str, stats: aioqlog.ListenerStats, maxsize: int) -> dict[Key, float]:
    """Return the samples a scrape must hold for *stats*, as the docs list them."""
    listener = ("listener", name)
    samples: dict[Key, float] = {
        ("aioqlog_listener_running", frozenset({listener})): float(stats.running),
        ("aioqlog_queue_depth", frozenset({listener})): stats.queue_depth,
        ("aioqlog_queue_maxsize", frozenset({listener})): maxsize,
        ("aioqlog_queue_high_water", frozenset({listener})): stats.high_water,
        ("aioqlog_records_enqueued_total", frozenset({listener})): stats.enqueued,
        (
            "aioqlog_records_dropped_total",
            frozenset({listener, ("reason", "queue_overflow")}),
        ): stats.dropped,
        (
            "aioqlog_records_dropped_total",
            frozenset({listener, ("reason", "recursion")}),
        ): stats.recursion_dropped,
    }
    for h in stats.handlers:
        labels = frozenset({listener, ("handler", h.name)})
        samples[("aioqlog_handler_handled_total", labels)] = h.handled
        samples[("aioqlog_handler_errors_total", labels)] = h.errors
        samples[("aioqlog_handler_dropped_total", labels)] = h.dropped
        samples[("aioqlog_handler_pending", labels)] = h.pending
    return samples


async def steady_scrape(
    registry: CollectorRegistry, listener: aioqlog.QueueListener
) -> tuple[aioqlog.ListenerStats, dict[Key, float]]:
    """Scrape until the stats are the same before and after the scrape; return both.

    Run on the loop, with no thread logging: only the lanes' threads change the
    stats then, and only in one direction (counters up, pending down), so equal
    stats before and after mean the scrape saw exactly those.
    """
    deadline = time.monotonic() + STALL
    while time.monotonic() < deadline:
        before = listener.stats
        samples = scrape(registry)
        if _counts(listener.stats) == _counts(before):
            return before, samples
        await anyio.lowlevel.checkpoint()  # let the listener hand on what the lanes reported
    raise AssertionError(f"the stats never held still for a scrape: {listener.stats}")


def _counts(stats: aioqlog.ListenerStats) -> aioqlog.ListenerStats:
    """*stats* without the ages, which grow while a record waits (the scrape leaves them out)."""
    return dataclasses.replace(
        stats,
        oldest_queued_age=None,
        handlers=tuple(dataclasses.replace(h, oldest_pending_age=None) for h in stats.handlers),
    )


def between(low: dict[Key, float], seen: dict[Key, float], high: dict[Key, float]) -> bool:
    """Return whether each monotonic sample of *seen* lies between *low* and *high*."""
    for key, value in seen.items():
        name = key[0]
        monotonic = name.endswith("_total") or name.endswith("_high_water")
        if monotonic and not low[key] <= value <= high[key]:
            return False
    return seen.keys() == low.keys() == high.keys()


@pytest.mark.anyio
async def test_the_scrape_matches_the_stats_while_records_flow(logger: logging.Logger) -> None:
    """Every metric equals listener.stats, for the queue and for each handler, drops included."""
    registry = CollectorRegistry()
    fast, slow, broken = Recorder(name="fast"), Gate(name="slow"), Broken(name="broken")
    queue = aioqlog.LogQueue(maxsize=64, overflow="drop_new")
    logger.addHandler(aioqlog.QueueHandler(queue))
    listener = aioqlog.QueueListener(queue, fast, slow, broken)
    collector = ListenerCollector(registry=registry)
    assert collector.add(listener, name="app") == "app"
    listener.start()

    # From the loop, in one go: the queue takes 64, and drops 36 (the loop never waits).
    for i in range(100):
        logger.info("from the loop %d", i)
    await fast.arrived(64)
    # The slow handler is stuck in its first record; the other 63 wait in its lane.
    assert slow.entered.wait(STALL)

    # From a thread, scraped from another thread (as Prometheus' HTTP server does).
    stop_scraping = threading.Event()
    scrapes: list[tuple[dict[Key, float], dict[Key, float], dict[Key, float]]] = []

    def scraper() -> None:
        while not stop_scraping.is_set() and len(scrapes) < 10_000:
            low = expected("app", listener.stats, 64)
            seen = scrape(registry)
            high = expected("app", listener.stats, 64)
            scrapes.append((low, seen, high))

    scraping = threading.Thread(target=scraper)
    scraping.start()

    def produce() -> None:
        for i in range(50):
            logger.info("from a thread %d", i)

    await in_thread(produce)
    await fast.arrived(64 + 50)
    stop_scraping.set()
    scraping.join()
    assert scrapes
    assert all(between(*s) for s in scrapes)

    # Nothing is logged now and the slow handler is stuck: the rest settles.
    stats, samples = await steady_scrape(registry, listener)
    assert samples == expected("app", stats, 64)
    assert stats.dropped == 36
    assert stats.enqueued == 64 + 50
    # The slow handler's lane holds the 64 and the drop report; it missed all 50 later ones.
    assert (stats.handlers[1].pending, stats.handlers[1].dropped) == (65, 50)

    slow.opened.set()
    final = await listener.stop()
    assert scrape(registry) == expected("app", final, 64)
    assert final.handlers[0].handled == len(fast.records) > 114  # the drop reports too
    assert final.handlers[2].errors == len(broken.records) == len(fast.records)
    assert scrape(registry)[("aioqlog_listener_running", frozenset({("listener", "app")}))] == 0


@pytest.mark.anyio
async def test_recursion_drops_are_a_reason_of_their_own(logger: logging.Logger) -> None:
    """A handler logging from its own emit shows as reason="recursion", not as queue overflow."""
    registry = CollectorRegistry()
    recorder = Recorder(name="recorder")
    queue = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(queue))
    listener = aioqlog.QueueListener(queue, recorder, Echo(logger))
    ListenerCollector(listener, registry=registry)
    async with listener:
        logger.info("request done")
        await recorder.arrived(2)  # the record and the handler's echo of it
    stats = listener.stats
    samples = scrape(registry)
    assert samples == expected("listener", stats, queue.maxsize)
    key = "aioqlog_records_dropped_total"
    assert samples[(key, frozenset({("listener", "listener"), ("reason", "recursion")}))] >= 1
    assert samples[(key, frozenset({("listener", "listener"), ("reason", "queue_overflow")}))] == 0


@pytest.mark.anyio
async def test_each_listener_has_its_own_series(logger: logging.Logger) -> None:
    """Listeners are told apart by name: given, the installed logger's, or numbered."""
    registry = CollectorRegistry()
    logger.addHandler(Recorder(name="file"))
    installed = aioqlog.install(logger)
    plain = aioqlog.QueueListener(aioqlog.LogQueue(), Recorder(name="file"))
    other = aioqlog.QueueListener(aioqlog.LogQueue(), Recorder(name="file"), Recorder(name="file"))
    collector = ListenerCollector(installed, plain, registry=registry)
    assert collector.add(other) == "listener-2"
    with pytest.raises(ValueError, match="already exposed as listener='listener'"):
        collector.add(plain, name="again")
    with pytest.raises(ValueError, match="give each listener its own name"):
        collector.add(aioqlog.QueueListener(aioqlog.LogQueue()), name=logger.name)
    with pytest.raises(TypeError, match=r"needs an aioqlog\.QueueListener"):
        collector.add(logging.handlers.QueueListener(None))  # type: ignore[arg-type]

    async with installed:
        logger.info("one")
    handled = {
        (dict(key[1])["listener"], dict(key[1])["handler"]): value
        for key, value in scrape(registry).items()
        if key[0] == "aioqlog_handler_handled_total"
    }
    assert handled == {
        (logger.name, "file"): 1,
        ("listener", "file"): 0,
        ("listener-2", "file #1"): 0,  # two handlers of one listener share a name
        ("listener-2", "file #2"): 0,
    }
    collector.remove(plain)
    assert {dict(k[1])["listener"] for k in scrape(registry)} == {logger.name, "listener-2"}
    with pytest.raises(ValueError, match="is not exposed"):
        collector.remove(plain)


def test_one_collector_per_registry() -> None:
    """A second collector on the same registry is refused: one collector holds every listener."""
    registry = CollectorRegistry()
    ListenerCollector(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ListenerCollector(registry=registry)


PROMTOOL_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'aioqlog_records_dropped_total{instance="a",listener="root",reason="recursion"}'
        values: '0 0 0 5 5 5 5 5 5 5 5 5 5'
      - series: 'aioqlog_queue_depth{instance="a",listener="root"}'
        values: '9000x15'
      - series: 'aioqlog_queue_maxsize{instance="a",listener="root"}'
        values: '10000x15'
      - series: 'aioqlog_handler_pending{instance="a",listener="root",handler="smtp"}'
        values: '7x15'
      - series: 'aioqlog_handler_handled_total{instance="a",listener="root",handler="smtp"}'
        values: '3x15'
      - series: 'aioqlog_handler_errors_total{instance="a",listener="root",handler="smtp"}'
        values: '0x15'
    alert_rule_test:
      - {eval_time: 4m, alertname: LogRecordsDropped, exp_alerts: [{exp_labels: {severity: warning,
         instance: a, listener: root, reason: recursion}}]}
      - {eval_time: 12m, alertname: LogRecordsDropped, exp_alerts: []}
      - {eval_time: 6m, alertname: LogQueueBacklog, exp_alerts: [{exp_labels: {severity: warning,
         instance: a, listener: root}}]}
      - {eval_time: 12m, alertname: LogHandlerStalled, exp_alerts: [{exp_labels: {
         severity: critical, instance: a, listener: root, handler: smtp}}]}
      - {eval_time: 12m, alertname: LogHandlerErrors, exp_alerts: []}
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_docs_alert_rules_are_valid_and_fire(tmp_path: Path) -> None:
    """promtool accepts the docs' alert rules; drops, backlog and a stall fire on sample series."""
    page = (ROOT / "docs" / "integrations" / "prometheus.md").read_text()
    rules = re.search(r"```yaml\n(.*?)```", page, re.DOTALL)
    assert rules is not None
    (tmp_path / "docs.yml").write_text(rules.group(1))
    # The unit test checks which alerts fire, with which labels: not the wording.
    bare = yaml.safe_load(rules.group(1))
    for rule in bare["groups"][0]["rules"]:
        del rule["annotations"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(bare))
    (tmp_path / "test.yml").write_text(PROMTOOL_TEST)
    for command in (["check", "rules", "docs.yml"], ["test", "rules", "test.yml"]):
        result = subprocess.run(
            ["promtool", *command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_docs_sample_runs_as_written() -> None:
    """The Python sample of docs/integrations/prometheus.md runs and prints its metrics."""
    page = (ROOT / "docs" / "integrations" / "prometheus.md").read_text()
    sample = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    assert sample is not None
    result = subprocess.run(
        [sys.executable, "-c", sample.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert 'aioqlog_records_enqueued_total{listener="root"} 3.0' in result.stdout
    assert 'aioqlog_handler_handled_total{handler="console",listener="root"}' in result.stdout


@pytest.mark.anyio
async def test_the_oldest_waiting_record_shows_how_far_behind_a_handler_is(
    logger: logging.Logger,
) -> None:
    """A stuck handler's oldest waiting record ages; once it catches up, the age is 0."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck = Gate(name="stuck")
    registry = CollectorRegistry()
    listener = aioqlog.QueueListener(q, stuck)
    ListenerCollector(registry=registry).add(listener, name="app")
    key = (
        "aioqlog_handler_oldest_pending_age_seconds",
        frozenset({("listener", "app"), ("handler", "stuck")}),
    )
    async with listener:
        logger.info("held in emit")
        await in_thread(lambda: stuck.entered.wait(STALL))
        logger.info("waits behind it")
        record = await in_thread(lambda: _waiting(listener))
        age = scrape(registry, ages=True)[key]
        assert age >= time.time() - record.created - 1.0
        assert listener.stats.handlers[0].oldest_pending_age is not None
        stuck.opened.set()
    assert scrape(registry, ages=True)[key] == 0.0
    assert listener.stats.handlers[0].oldest_pending_age is None
    assert listener.stats.oldest_queued_age is None


def _waiting(listener: aioqlog.QueueListener) -> logging.LogRecord:
    """Return the record waiting for the first lane's handler, once it is there.

    A lone sync handler's worker takes records off the queue itself (the one-hop
    path): there the waiting record stays queued until the worker is free.
    """
    lane = listener._lanes[0]
    queued = listener._one_hop is not None
    waiting = listener.queue._items if queued else lane.buffer
    deadline = time.monotonic() + STALL
    while not waiting and time.monotonic() < deadline:
        time.sleep(0.001)  # the listener moves it on the loop; this thread cannot await that
    return listener.queue._peek()[0][0] if queued else lane.buffer[0][0]
