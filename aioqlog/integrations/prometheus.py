"""Prometheus: expose what ``QueueListener.stats`` knows as metrics.

``ListenerCollector`` is a ``prometheus_client`` custom collector. Each scrape
takes one ``listener.stats`` snapshot per listener and turns it into metrics;
nothing runs on the logging path, so the collector costs the application's log
calls nothing.

Example:
    >>> import aioqlog
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from aioqlog.integrations.prometheus import ListenerCollector
    >>> registry = CollectorRegistry()
    >>> listener = aioqlog.QueueListener(aioqlog.LogQueue())
    >>> collector = ListenerCollector(registry=registry)
    >>> collector.add(listener, name="app")
    'app'
    >>> b'aioqlog_queue_depth{listener="app"} 0.0' in generate_latest(registry)
    True

``prometheus_client`` is not a dependency of aioqlog: install it with the
``aioqlog[prometheus]`` extra.

Added in version 0.1.0.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aioqlog.integrations.prometheus needs prometheus_client; install it with "
        "`pip install 'aioqlog[prometheus]'`"
    ) from exc

from .._install import InstalledListener
from .._listener import QueueListener
from .._stats import ListenerStats

__all__ = ["ListenerCollector"]

Family = CounterMetricFamily | GaugeMetricFamily

#: The reasons a record dropped before reaching any handler is counted under.
QUEUE_OVERFLOW = "queue_overflow"
RECURSION = "recursion"


class ListenerCollector:
    """Expose the stats of one or more ``QueueListener`` objects to Prometheus.

    Metrics (with the default *namespace*), labelled ``listener`` and, per
    handler, ``handler``:

    * ``aioqlog_listener_running`` (gauge): 1 while the listener serves its queue.
    * ``aioqlog_queue_depth``, ``aioqlog_queue_high_water``,
      ``aioqlog_queue_maxsize`` (gauges): records waiting in the queue now, the
      most it has held, and the most it can hold.
    * ``aioqlog_records_enqueued_total`` (counter): records accepted into the queue.
    * ``aioqlog_records_dropped_total`` (counter), by ``reason``:
      ``queue_overflow`` (the queue was full) and ``recursion`` (a handler
      logged from inside its own handling).
    * ``aioqlog_handler_handled_total``, ``aioqlog_handler_errors_total``,
      ``aioqlog_handler_dropped_total`` (counters) and ``aioqlog_handler_pending``
      (gauge), per handler.

    Collecting reads ``listener.stats`` from the scraping thread: a snapshot
    of counters, taken without a lock and without touching the queue.

    Args:
        listeners: Listeners to expose, named as ``add`` names them.
        namespace: The prefix of every metric name.
        registry: The registry to register with (the global ``REGISTRY`` by
            default); ``None`` leaves registering to you.

    Example:
        >>> collector = ListenerCollector()  # doctest: +SKIP
        >>> collector.add(aioqlog.install(), name="app")  # doctest: +SKIP

    Added in version 0.1.0.
    """

    def __init__(
        self,
        *listeners: QueueListener,
        namespace: str = "aioqlog",
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._namespace = namespace
        self._lock = threading.Lock()  # add/remove against a scrape in another thread
        self._listeners: dict[str, QueueListener] = {}
        for listener in listeners:
            self.add(listener)
        if registry is not None:
            registry.register(self)

    def add(self, listener: QueueListener, name: str | None = None) -> str:
        """Expose *listener*'s stats under the label ``listener=name``; return the name.

        Args:
            listener: The listener to expose.
            name: Its ``listener`` label. By default, for a listener from
                ``aioqlog.install()``, the logger's name (``root`` for the root
                logger); otherwise ``listener``, then ``listener-2``, ...

        Raises:
            TypeError: when *listener* is not an ``aioqlog.QueueListener``.
            ValueError: when the name or the listener is exposed already.
        """
        if not isinstance(listener, QueueListener):
            raise TypeError(
                f"ListenerCollector.add() needs an aioqlog.QueueListener, got {listener!r}"
            )
        with self._lock:
            for known, exposed in self._listeners.items():
                if exposed is listener:
                    raise ValueError(
                        f"{listener!r} is already exposed as listener={known!r}; "
                        f"remove() it first to rename it"
                    )
            if name is None:
                name = self._default_name(listener)
            elif name in self._listeners:
                raise ValueError(
                    f"a listener is already exposed as listener={name!r}; give each "
                    f"listener its own name"
                )
            self._listeners[name] = listener
        return name

    def remove(self, listener: QueueListener) -> None:
        """Stop exposing *listener*; its series disappear from the next scrape.

        Raises:
            ValueError: when *listener* is not exposed by this collector.
        """
        with self._lock:
            for name, exposed in self._listeners.items():
                if exposed is listener:
                    del self._listeners[name]
                    return
        raise ValueError(f"{listener!r} is not exposed by this ListenerCollector")

    def _default_name(self, listener: QueueListener) -> str:
        # Called with self._lock held.
        base = listener.logger.name if isinstance(listener, InstalledListener) else "listener"
        name, n = base, 1
        while name in self._listeners:
            n += 1
            name = f"{base}-{n}"
        return name

    def describe(self) -> list[Metric]:
        """Return the metric families, without samples (what a registry checks names with)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """Take a stats snapshot of every listener and yield its metric families."""
        with self._lock:
            listeners = list(self._listeners.items())
        families = self._families()
        for name, listener in listeners:
            _add(families, name, listener.stats, listener.queue.maxsize)
        yield from families.values()

    def _families(self) -> dict[str, Family]:
        ns = self._namespace
        listener = ["listener"]
        handler = ["listener", "handler"]
        return {
            "running": GaugeMetricFamily(
                f"{ns}_listener_running",
                "Whether the listener serves its queue (1) or not (0).",
                labels=listener,
            ),
            "depth": GaugeMetricFamily(
                f"{ns}_queue_depth", "Records waiting in the queue now.", labels=listener
            ),
            "maxsize": GaugeMetricFamily(
                f"{ns}_queue_maxsize",
                "The most records the queue holds (its maxsize).",
                labels=listener,
            ),
            "high_water": GaugeMetricFamily(
                f"{ns}_queue_high_water",
                "The most records the queue has held at once.",
                labels=listener,
            ),
            "enqueued": CounterMetricFamily(
                f"{ns}_records_enqueued",
                "Records accepted into the queue (evicted ones included).",
                labels=listener,
            ),
            "dropped": CounterMetricFamily(
                f"{ns}_records_dropped",
                "Records dropped before reaching the handlers, by reason: queue_overflow "
                "(the queue was full) or recursion (a handler logging while handling).",
                labels=[*listener, "reason"],
            ),
            "handled": CounterMetricFamily(
                f"{ns}_handler_handled",
                "Records the handler finished without raising.",
                labels=handler,
            ),
            "errors": CounterMetricFamily(
                f"{ns}_handler_errors",
                "Records whose handling raised (each went to handleError).",
                labels=handler,
            ),
            "handler_dropped": CounterMetricFamily(
                f"{ns}_handler_dropped",
                "Records the handler missed: its lane was full, or it was stuck after stop().",
                labels=handler,
            ),
            "pending": GaugeMetricFamily(
                f"{ns}_handler_pending",
                "Records waiting for the handler or being handled now.",
                labels=handler,
            ),
            "queue_age": GaugeMetricFamily(
                f"{ns}_queue_oldest_age_seconds",
                "Seconds since the oldest record still in the queue was logged (0: empty).",
                labels=listener,
            ),
            "pending_age": GaugeMetricFamily(
                f"{ns}_handler_oldest_pending_age_seconds",
                "Seconds since the oldest record waiting for the handler was logged "
                "(0: none waits): how far behind the handler is.",
                labels=handler,
            ),
        }


def _add(families: dict[str, Family], name: str, stats: ListenerStats, maxsize: int) -> None:
    """Add one listener's snapshot to *families*."""
    labels = [name]
    families["running"].add_metric(labels, int(stats.running))
    families["depth"].add_metric(labels, stats.queue_depth)
    families["maxsize"].add_metric(labels, maxsize)
    families["high_water"].add_metric(labels, stats.high_water)
    families["enqueued"].add_metric(labels, stats.enqueued)
    families["queue_age"].add_metric(labels, stats.oldest_queued_age or 0.0)
    families["dropped"].add_metric([name, QUEUE_OVERFLOW], stats.dropped)
    families["dropped"].add_metric([name, RECURSION], stats.recursion_dropped)
    for handler in stats.handlers:
        # Two handlers of one listener named alike are told apart by
        # HandlerStats.name itself ("file #1", "file #2"): a series each.
        labels = [name, handler.name]
        families["handled"].add_metric(labels, handler.handled)
        families["errors"].add_metric(labels, handler.errors)
        families["handler_dropped"].add_metric(labels, handler.dropped)
        families["pending"].add_metric(labels, handler.pending)
        families["pending_age"].add_metric(labels, handler.oldest_pending_age or 0.0)
