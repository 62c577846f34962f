"""Random sequences of lifecycle steps, logging and faults: the invariants hold.

Hypothesis drives one queue and one listener (with a sync and an async
handler) through random sequences of: start, stop, stop with a timeout, a
cancel of every task on the loop, logging on the loop, logging from threads,
bursts past the queue's size, a handler that hangs until released, and records
that make both handlers fail. The loop (asyncio, uvloop or trio) runs in a
thread of its own, behind an anyio blocking portal; every step is bounded, so
a deadlock fails the test instead of hanging it. The cancel of every task is
asyncio's (trio cannot cancel another's task), so it is tried there only.

Invariants:

* every step returns within its bound, and ``stop(timeout)`` within *timeout*
  plus a scheduling margin;
* no record is lost: for each handler, records delivered + records reported to
  ``handleError`` + records counted as dropped (by the queue or the lane) ==
  records produced, once everything has settled;
* each producer's records reach each handler in the order they were logged;
* while no listener runs, no record is stranded in the queue.

``AIOQLOG_STATEFUL_EXAMPLES`` sets how many sequences are tried (25 by default;
``make soak`` tries 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.from_thread
import anyio.lowlevel
from conftest import ANYIO_BACKENDS
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support import STALL, backend_parts

import aioqlog

T = TypeVar("T")

#: Slack for "stop(timeout) returned within its bound" on a busy 2-core machine.
MARGIN = 2.0


class Ledger:
    """What one handler got: per producer, the sequence numbers delivered and failed."""

    def __init__(self) -> None:
        self.delivered: list[tuple[int, int]] = []
        self.failed = 0
        self.changed = threading.Condition()

    def deliver(self, record: logging.LogRecord) -> None:
        if record.name == "aioqlog":
            return  # drop summaries: counted through the stats instead
        if "fail" in record.getMessage():
            raise ValueError("this record makes the handler fail")
        with self.changed:
            self.delivered.append(record.args)  # type: ignore[arg-type]
            self.changed.notify_all()

    def fail(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.failed += 1
            self.changed.notify_all()


class SyncHandler(logging.Handler):
    """A sync handler that can be made to hang until released."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.open = threading.Event()
        self.open.set()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.open.wait(STALL):
            raise AssertionError("the handler was never released")
        self.ledger.deliver(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.ledger.fail(record)


class AsyncHandler(aioqlog.AsyncHandler):
    """An async handler that yields to the loop per record."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()

    async def aemit(self, record: logging.LogRecord) -> None:
        await anyio.lowlevel.checkpoint()
        self.ledger.deliver(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.ledger.fail(record)


class ListenerMachine(RuleBasedStateMachine):
    """One queue, one listener, two handlers, and a loop in a thread."""

    def __init__(self) -> None:
        super().__init__()
        self.portal: anyio.from_thread.BlockingPortal | None = None
        self.exits = contextlib.ExitStack()
        self.on_asyncio = False
        self.portals_tasks: set[asyncio.Task[Any]] = set()

    @initialize(
        backend=st.sampled_from(ANYIO_BACKENDS),
        overflow=st.sampled_from(["drop_new", "drop_old", "block"]),
        maxsize=st.sampled_from([8, 64, 512]),
    )
    def set_up(self, backend: object, overflow: str, maxsize: int) -> None:
        name, options = backend_parts(backend)
        self.portal = self.exits.enter_context(
            anyio.from_thread.start_blocking_portal(name, options)
        )
        self.on_asyncio = name == "asyncio"
        if self.on_asyncio:
            # The portal's own tasks: the cancel of "every task" spares them.
            self.portals_tasks = self.on_loop(_all_tasks)
        self.logger = logging.getLogger(f"aioqlog.tests.stateful.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.queue = aioqlog.LogQueue(maxsize=maxsize, overflow=overflow, block_timeout=0.005)  # type: ignore[arg-type]
        self.logger.addHandler(aioqlog.QueueHandler(self.queue))
        self.sync = SyncHandler()
        self.async_ = AsyncHandler()
        self.listener = aioqlog.QueueListener(
            self.queue, self.sync, self.async_, shutdown_timeout=0.1
        )
        self.produced = 0
        self.next_seq: dict[int, int] = {}
        self.next_producer = 0

    # ------------------------------------------------------------- helpers

    def on_loop(self, fn: Callable[[], Awaitable[T]], bound: float = STALL) -> T:
        """Run ``fn()`` in a task on the machine's loop; wait at most *bound* s."""
        assert self.portal is not None
        return self.portal.start_task_soon(fn).result(bound)

    def log(self, producer: int, count: int, fail_every: int) -> None:
        seq = self.next_seq.get(producer, 0)
        for i in range(count):
            if fail_every and i % fail_every == 0:
                self.logger.info("fail %d %d", producer, seq + i)
            else:
                self.logger.info("ok %d %d", producer, seq + i)
        self.next_seq[producer] = seq + count

    def new_producer(self) -> int:
        self.next_producer += 1
        return self.next_producer

    @property
    def safe_to_log_in_caller(self) -> bool:
        # With no listener running, the sync handler runs in the logging
        # thread, as if attached directly: a hung one would hang that thread.
        return self.listener.running or self.sync.open.is_set()

    # --------------------------------------------------------------- rules

    @rule()
    def start(self) -> None:
        async def start() -> None:
            if not self.listener.running:
                self.listener.start()

        self.on_loop(start)

    @precondition(lambda self: self.sync.open.is_set())
    @rule()
    def stop(self) -> None:
        self.on_loop(self.listener.stop)
        assert not self.listener.running

    @rule(timeout=st.sampled_from([0.0, 0.01, 0.1]))
    def stop_with_timeout(self, timeout: float) -> None:
        started = time.monotonic()
        self.on_loop(functools.partial(self.listener.stop, timeout=timeout))
        assert time.monotonic() - started < timeout + MARGIN
        assert not self.listener.running

    @precondition(lambda self: self.safe_to_log_in_caller)
    @rule(count=st.sampled_from([1, 2, 50, 200]), fail_every=st.sampled_from([0, 0, 7]))
    def log_on_the_loop(self, count: int, fail_every: int) -> None:
        producer = self.new_producer()

        async def log() -> None:
            self.log(producer, count, fail_every)

        self.on_loop(log)
        self.produced += count

    @precondition(lambda self: self.safe_to_log_in_caller)
    @rule(threads=st.integers(1, 4), count=st.integers(1, 300), fail_every=st.sampled_from([0, 5]))
    def log_from_threads(self, threads: int, count: int, fail_every: int) -> None:
        producers = [self.new_producer() for _ in range(threads)]
        workers = [
            threading.Thread(target=self.log, args=(p, count, fail_every)) for p in producers
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(STALL)
            assert not worker.is_alive(), "a logging thread did not return"
        self.produced += threads * count

    @precondition(lambda self: self.safe_to_log_in_caller)
    @rule()
    def burst_past_the_queue(self) -> None:
        # More than the queue holds, from a thread, all at once.
        count = self.queue.maxsize + 100
        worker = threading.Thread(target=self.log, args=(self.new_producer(), count, 0))
        worker.start()
        worker.join(STALL)
        assert not worker.is_alive()
        self.produced += count

    @precondition(lambda self: self.listener.running and self.on_asyncio)
    @rule()
    def cancel_every_task(self) -> None:
        # A supervisor or task group cancelling everything on the loop.
        async def cancel() -> None:
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() - self.portals_tasks if t is not me]
            for task in others:
                task.cancel()
            if others:
                await asyncio.wait(others)

        self.on_loop(cancel)
        assert not self.listener.running

    @rule()
    def hang_the_sync_handler(self) -> None:
        self.sync.open.clear()

    @rule()
    def release_the_sync_handler(self) -> None:
        self.sync.open.set()

    # ----------------------------------------------------------- invariants

    @invariant()
    def the_loop_is_responsive(self) -> None:
        if self.portal is None:
            return

        async def ping() -> bool:
            return True

        assert self.on_loop(ping, bound=STALL)

    @invariant()
    def nothing_waits_in_the_queue_while_stopped(self) -> None:
        # With no listener running, the logging threads deliver: a record left
        # in the queue would wait for a listener that may never come.
        if self.portal is None or self.listener.running or not self.sync.open.is_set():
            return
        deadline = time.monotonic() + STALL
        while self.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.001)  # a helper thread may still be draining
        assert self.queue.qsize() == 0, f"{self.queue.qsize()} records stranded in the queue"

    def teardown(self) -> None:
        if self.portal is None:
            return
        try:
            self.sync.open.set()
            # One more run delivers what the async handler kept while stopped.
            self.start()
            self.on_loop(self.listener.stop)
            stats = self.listener.stats
            ledgers = (self.sync.ledger, self.async_.ledger)
            for ledger, handler_stats in zip(ledgers, stats.handlers, strict=True):
                self.check(ledger, handler_stats.dropped)
        finally:
            self.logger.handlers.clear()
            logging.Logger.manager.loggerDict.pop(self.logger.name, None)
            self.exits.close()  # ends the portal's run and joins its thread

    def check(self, ledger: Ledger, lane_dropped: int) -> None:
        queue_dropped = self.queue.dropped

        def settled() -> bool:
            # A lane left behind by a timed-out stop finishes on its own.
            return len(ledger.delivered) + ledger.failed + queue_dropped + lane_dropped >= (
                self.produced
            )

        with ledger.changed:
            ledger.changed.wait_for(settled, STALL)
        total = len(ledger.delivered) + ledger.failed + queue_dropped + lane_dropped
        assert total == self.produced, (
            f"{len(ledger.delivered)} delivered + {ledger.failed} failed + "
            f"{queue_dropped} + {lane_dropped} dropped != {self.produced} produced"
        )
        last: dict[int, int] = {}
        for producer, seq in ledger.delivered:
            assert seq > last.get(producer, -1), f"producer {producer} out of order"
            last[producer] = seq


async def _all_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks()


def _run_machine() -> None:
    ListenerMachine.TestCase.settings = settings(
        max_examples=int(os.environ.get("AIOQLOG_STATEFUL_EXAMPLES", "25")),
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    ListenerMachine.TestCase().runTest()


def test_random_lifecycles_lose_nothing_and_never_deadlock() -> None:
    """Hypothesis explores start/stop/log/hang/fail sequences against the invariants."""
    _run_machine()
