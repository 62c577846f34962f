"""Fixtures shared by the suite: every async test runs on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Mapping

import pytest

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# The tests that press Ctrl-C send SIGINT to a child Python. A suite started in
# the background by a non-interactive shell (`make stress &`, nohup, some CI
# runners) inherits SIGINT ignored, and so would every child: Python keeps an
# ignored SIGINT ignored, and those tests would wait in vain. Handling it here
# gives each child the default disposition (exec resets a handled signal), as
# a process started from a terminal has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

LOOP_FACTORIES: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
if sys.platform != "win32":
    import uvloop

    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """Run each ``@pytest.mark.asyncio`` test (asyncio's own) on asyncio and on uvloop."""
    return LOOP_FACTORIES


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """A loop factory, for sync tests that run their own loop (``asyncio.run``)."""
    return LOOP_FACTORIES[request.param]


#: anyio's backends, for every ``@pytest.mark.anyio`` test and ``support.run_on``.
ANYIO_BACKENDS: list[object] = ["asyncio", ("asyncio", {"use_uvloop": True}), "trio"]
if sys.platform == "win32":
    ANYIO_BACKENDS.remove(("asyncio", {"use_uvloop": True}))


@pytest.fixture(params=ANYIO_BACKENDS, ids=lambda b: "uvloop" if isinstance(b, tuple) else b)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Each anyio backend: asyncio, asyncio on uvloop, and trio."""
    return request.param


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond, so that narrow races actually happen."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


_names = itertools.count()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A fresh logger of its own, detached from root, removed afterwards."""
    log = logging.getLogger(f"aioqlog.tests.{next(_names)}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
    logging.Logger.manager.loggerDict.pop(log.name, None)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave global logging state (root handlers, raiseExceptions) as found."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    raise_exceptions = logging.raiseExceptions
    factory = logging.getLogRecordFactory()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.raiseExceptions = raise_exceptions
    logging.setLogRecordFactory(factory)
