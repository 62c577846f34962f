"""Bursts with the defaults: the loop and two threads outrun a file handler; nothing is lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support import STALL, Gate, Recorder, in_thread

import aioqlog


@pytest.fixture
def basic_config(tmp_path: Path) -> Iterator[Path]:
    """logging.basicConfig(filename=...) on the root logger, as a user's script has it."""
    path = tmp_path / "app.log"
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield path
    handler.close()


def _burst(tag: str, count: int) -> None:
    log = logging.getLogger("burst")
    for i in range(count):
        log.info("%s %d", tag, i)


def _lines_by_tag(path: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        words = line.rsplit(": ", 1)[-1].split()
        assert len(words) == 2, "not burst lines: " + repr(
            [x for x in path.read_text().splitlines() if "burst:" not in x][:10]
        )
        tag, number = words
        seen.setdefault(tag, []).append(int(number))
    return seen


@pytest.mark.parametrize("n", [5_000, 20_000])
@pytest.mark.anyio
async def test_a_burst_from_the_loop_and_two_threads_loses_nothing_with_install(
    basic_config: Path, n: int
) -> None:
    """The loop logs N without yielding, then two threads log N each: all 3N lines written."""
    async with aioqlog.install() as listener:
        _burst("loop", n)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t1", n)
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t2", n)
    stats = listener.stats
    assert (stats.dropped, stats.handlers[0].dropped) == (0, 0)
    assert _lines_by_tag(basic_config) == {tag: list(range(n)) for tag in ("loop", "t1", "t2")}


@pytest.mark.anyio
async def test_a_burst_loses_nothing_through_a_plain_pair(basic_config: Path) -> None:
    """The same burst through a QueueHandler + QueueListener made by hand, with defaults."""
    n = 20_000
    root = logging.getLogger()
    (handler,) = root.handlers
    q = aioqlog.LogQueue()
    root.handlers[:] = [aioqlog.QueueHandler(q)]
    async with aioqlog.QueueListener(q, handler) as listener:
        _burst("loop", n)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t1", n)
            tg.start_soon(anyio.to_thread.run_sync, _burst, "t2", n)
    assert listener.stats.dropped == 0
    assert _lines_by_tag(basic_config) == {tag: list(range(n)) for tag in ("loop", "t1", "t2")}


@pytest.mark.anyio
async def test_a_stuck_handler_does_not_hold_back_the_others_under_backpressure(
    logger: logging.Logger,
) -> None:
    """Under "block", one handler stuck for good does not hold back the others.

    A thread waits for room when the handlers fall behind; a handler that makes
    no progress for block_timeout while full is passed over (its records are
    dropped and counted), so the others are served and the thread goes on.
    """
    q = aioqlog.LogQueue(maxsize=50, overflow="block", block_timeout=0.2)
    logger.addHandler(aioqlog.QueueHandler(q))
    stuck, fine = Gate(name="stuck"), Recorder(name="fine")
    listener = aioqlog.QueueListener(q, stuck, fine)
    listener.start()
    logger.info("first")
    await in_thread(lambda: stuck.entered.wait(STALL))
    done = threading.Event()

    def produce() -> None:
        for i in range(500):
            logger.info("r%d", i)
        done.set()

    await in_thread(produce)
    assert done.is_set()
    await fine.arrived(501)
    stats = listener.stats
    assert stats.handlers[1].handled == 501
    assert stats.handlers[0].dropped > 0
    stuck.opened.set()
    await listener.stop()
