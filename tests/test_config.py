"""dictConfig: the obvious configuration builds an aioqlog pair, bad ones say what to fix."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import Recorder, run_on

import aioqlog
import aioqlog.config


def _config(queue_handler: dict[str, Any], *, name: str = "queued") -> dict[str, Any]:
    """A dictConfig for the root logger: one aioqlog handler in front of a recorder.

    The recorder is named "recorder": a queue handler named "a..." is configured
    before it (dictConfig goes in name order), one named "z..." after it.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "recorder": {"()": "support.Recorder", "formatter": "plain", "level": "INFO"},
            name: queue_handler,
        },
        "root": {"level": "DEBUG", "handlers": [name]},
    }


def _error_text(exc: BaseException) -> str:
    """Every message in an exception chain (dictConfig wraps the real cause)."""
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


@pytest.fixture
def configured() -> Iterator[None]:
    """Close what dictConfig created, so no configured listener outlives the test."""
    yield
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
        handler.close()


def _root_handler() -> aioqlog.QueueHandler:
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, aioqlog.QueueHandler)
    return handler


CLASS_FORM = {"class": "aioqlog.QueueHandler", "handlers": ["recorder"]}
FACTORY_FORM = {"()": "aioqlog.config.queue_handler", "handlers": ["recorder"]}


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
@pytest.mark.parametrize("name", ["a_queue", "z_queue"])
def test_dictconfig_builds_an_aioqlog_pair(form: dict[str, Any], name: str) -> None:
    """The handler is ours, its listener too (never a stdlib thread), over the named handlers."""
    logging.config.dictConfig(_config(dict(form), name=name))
    handler = _root_handler()
    listener = handler.listener if handler._pending is None else None
    if listener is None:  # names resolved on first use: the configuration is complete now
        (listener,) = aioqlog._dictconfig.configured_listeners()
    assert isinstance(listener, aioqlog.QueueListener)
    assert listener.queue is handler.queue
    assert isinstance(handler.queue, aioqlog.LogQueue)
    (recorder,) = listener.handlers
    assert isinstance(recorder, Recorder)
    assert recorder.name == "recorder"
    assert not listener.running


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
def test_records_before_the_loop_are_handled_and_then_served(
    form: dict[str, Any], anyio_backend: object
) -> None:
    """Before listening() they are handled in the caller; then in the listener's thread.

    The recorder's level and formatter from the configuration keep working.
    """
    config = _config({**form, "respect_handler_level": True}, name="a_queue")
    logging.config.dictConfig(config)
    log = logging.getLogger("app.config")
    log.info("before the loop")
    log.debug("below the recorder's level")

    async def main() -> Recorder:
        async with aioqlog.listening() as listeners:
            (listener,) = listeners
            assert listener.running
            log.info("served")
            log.debug("below the recorder's level")
        (recorder,) = listener.handlers
        assert isinstance(recorder, Recorder)
        return recorder

    recorder = run_on(anyio_backend, main)
    # Only this test's logger: root also gets whatever else logs meanwhile (asyncio, say).
    lines = [line for line in recorder.lines if " app.config " in line]
    assert lines == ["INFO app.config before the loop", "INFO app.config served"]
    assert threading.current_thread().name in recorder.threads
    assert any(name.startswith("aioqlog-") for name in recorder.threads)


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
@pytest.mark.parametrize("respect", [None, True, False], ids=["default", "true", "false"])
def test_handler_levels_are_respected_unless_configured_otherwise(
    form: dict[str, Any], respect: bool | None
) -> None:
    """Without the key, a handler's level filters as when attached directly, on every Python.

    (On 3.12+ the stdlib fills in its own default, false, before aioqlog sees the listener.)
    """
    entry = dict(form) if respect is None else {**form, "respect_handler_level": respect}
    logging.config.dictConfig(_config(entry, name="a_queue"))
    handler = _root_handler()
    listener = handler.listener if handler._pending is None else None
    if listener is None:
        (listener,) = aioqlog._dictconfig.configured_listeners()
    assert listener.respect_handler_level is (respect is not False)
    log = logging.getLogger("app.levels")
    log.debug("below the recorder's level")
    log.info("at the recorder's level")
    (recorder,) = listener.handlers
    assert isinstance(recorder, Recorder)
    lines = [line for line in recorder.lines if " app.levels " in line]
    expected = ["INFO app.levels at the recorder's level"]
    if respect is False:
        expected.insert(0, "DEBUG app.levels below the recorder's level")
    assert lines == expected


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
def test_a_respect_handler_level_that_is_not_a_bool_is_refused(form: dict[str, Any]) -> None:
    """A YAML "false" written as a string fails on every Python, not only before 3.12."""
    with pytest.raises(ValueError, match="handler") as raised:  # dictConfig's own wrapper
        logging.config.dictConfig(
            _config({**form, "respect_handler_level": "false"}, name="a_queue")
        )
    assert "'respect_handler_level' must be true or false, got 'false'" in _error_text(raised.value)


@pytest.mark.usefixtures("configured")
def test_queue_options_come_from_the_queue_key() -> None:
    """A 'queue' mapping builds the LogQueue with those options."""
    queue = {"()": "aioqlog.LogQueue", "maxsize": 123, "overflow": "drop_old"}
    logging.config.dictConfig(_config({**CLASS_FORM, "queue": queue}))
    q = _root_handler().queue
    assert (q.maxsize, q.overflow) == (123, "drop_old")


@pytest.mark.usefixtures("configured")
def test_factory_takes_plain_queue_options() -> None:
    """The factory also takes the options without a "()" key."""
    queue = {"maxsize": 77, "overflow": "block"}
    logging.config.dictConfig(_config({**FACTORY_FORM, "queue": queue}))
    q = _root_handler().queue
    assert (q.maxsize, q.overflow) == (77, "block")


BAD_CONFIGS = [
    pytest.param(
        {**CLASS_FORM, "queue": {"()": "aioqlog.LogQueue", "overflow": "drop_all"}},
        ["overflow", "'drop_new', 'drop_old', 'block'"],
        id="unknown-overflow",
    ),
    pytest.param(
        {**CLASS_FORM, "queue": {"()": "aioqlog.LogQueue", "maxsize": 0}},
        ["maxsize must be a positive integer"],
        id="non-positive-maxsize",
    ),
    pytest.param(
        {**CLASS_FORM, "handlers": ["recorder", "mail"]},
        ["'mail'"],
        id="unknown-handler-name",
    ),
    pytest.param(
        {**FACTORY_FORM, "handlers": ["mail"]},
        ["'handlers' names 'mail'", "fix the name or define it"],
        id="factory-unknown-handler-name",
    ),
    pytest.param(
        {"()": "aioqlog.config.queue_handler"},
        ["needs a 'handlers' key"],
        id="factory-without-handlers",
    ),
    pytest.param(
        {"class": "aioqlog.QueueHandler"},
        # Python 3.12's dictConfig refuses it first, in its own words.
        [
            "No handlers specified for a QueueHandler"
            if sys.version_info[:2] == (3, 12)
            else "'handlers' key"
        ],
        id="class-without-handlers",
    ),
    pytest.param(
        {**FACTORY_FORM, "maxsize": 10},
        ["'maxsize' is an option of the queue", '"queue": {"()": "aioqlog.LogQueue"'],
        id="queue-option-on-the-handler",
    ),
    pytest.param(
        {**FACTORY_FORM, "listener": "aioqlog.QueueListener"},
        ["remove the 'listener' key"],
        id="factory-listener-key",
    ),
    pytest.param(
        {**CLASS_FORM, "listener": "test_config.ThreadListener"},
        ["remove the 'listener' key"],
        id="thread-listener",
    ),
]


class ThreadListener(logging.handlers.QueueListener):
    """A stdlib listener subclass: serving from a thread is what aioqlog replaces."""


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(("entry", "expected"), BAD_CONFIGS)
def test_bad_configuration_names_the_key_and_the_fix(
    entry: dict[str, Any], expected: list[str]
) -> None:
    """dictConfig fails at configuration time with a message that says what to change."""
    with pytest.raises((ValueError, TypeError)) as caught:
        logging.config.dictConfig(_config(dict(entry)))
    text = _error_text(caught.value)
    for fragment in expected:
        assert fragment in text


@pytest.mark.skipif(
    sys.version_info[:2] == (3, 12), reason="Python 3.12's dictConfig drops unknown handler keys"
)
@pytest.mark.usefixtures("configured")
def test_a_queue_option_on_the_class_form_is_refused() -> None:
    """'maxsize' beside "class" (not under 'queue') fails instead of being ignored."""
    with pytest.raises((ValueError, TypeError)) as caught:
        logging.config.dictConfig(_config({**CLASS_FORM, "maxsize": 10}))
    assert "'maxsize' is an option of the queue" in _error_text(caught.value)


@pytest.mark.usefixtures("configured")
def test_the_stdlib_default_listener_is_replaced_when_assigned() -> None:
    """Assigning a stdlib QueueListener (as dictConfig does on 3.12+) yields ours."""
    recorder = Recorder()
    handler = aioqlog.QueueHandler()
    handler.listener = logging.handlers.QueueListener(
        handler.queue,  # type: ignore[arg-type]
        recorder,
        respect_handler_level=True,
    )
    listener = handler.listener
    assert isinstance(listener, aioqlog.QueueListener)
    assert listener.handlers == (recorder,)
    assert listener.respect_handler_level


@pytest.mark.parametrize("maxsize", [0, 5])
def test_a_stdlib_queue_passed_by_hand_is_refused(maxsize: int) -> None:
    """A queue.Queue() given by hand is never swapped silently: the error names both fixes."""
    import queue

    with pytest.raises(
        TypeError,
        match=r"needs an aioqlog\.LogQueue, got queue\.Queue; pass aioqlog\.LogQueue\("
        r"maxsize=\.\.\.\) instead, or use logging\.handlers\.QueueHandler",
    ):
        aioqlog.QueueHandler(queue.Queue(maxsize))


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
@pytest.mark.anyio
async def test_a_queue_handler_that_names_itself_is_refused(form: dict[str, Any]) -> None:
    """Its records would come back to its own queue for ever: refused, saying what to list.

    By dictConfig itself where it builds the listener (Python 3.12+), else by
    ``listening()``, before any record goes round.
    """

    async def configure_and_listen() -> None:
        logging.config.dictConfig(_config({**form, "handlers": ["queued"]}))
        async with aioqlog.listening():
            pass

    with pytest.raises((ValueError, RuntimeError)) as caught:
        await configure_and_listen()
    if sys.version_info >= (3, 12) and "class" in form:
        # dictConfig resolves the names itself there, and refuses it in its own words.
        assert "Unable to set required handler 'queued'" in _error_text(caught.value)
        return
    assert "'queued' would deliver its records back to its own queue ('queued' -> 'queued')" in (
        _error_text(caught.value)
    )
    assert "list under 'handlers' the handlers that write the records" in _error_text(caught.value)


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("form", [CLASS_FORM, FACTORY_FORM], ids=["class", "factory"])
def test_two_queue_handlers_that_name_each_other_are_refused(form: dict[str, Any]) -> None:
    """A loop through two queues: each record would go round once, then be dropped, unsaid."""
    config = _config({**form, "handlers": ["recorder", "z_queue"]}, name="a_queue")
    config["handlers"]["z_queue"] = {**form, "handlers": ["a_queue"]}
    with pytest.raises(ValueError, match="Unable to") as caught:
        logging.config.dictConfig(config)
    if sys.version_info >= (3, 12) and "class" in form:
        assert "Unable to set required handler" in _error_text(caught.value)
        return
    assert "('a_queue' -> 'z_queue' -> 'a_queue')" in _error_text(caught.value)


def test_a_listener_refuses_the_handler_that_feeds_its_queue() -> None:
    """``QueueListener(q, QueueHandler(q))`` would send each record round for ever."""
    q = aioqlog.LogQueue()
    with pytest.raises(ValueError, match="puts records on the queue this listener serves"):
        aioqlog.QueueListener(q, logging.NullHandler(), aioqlog.QueueHandler(q))


@pytest.mark.anyio
async def test_listening_without_configuration_says_what_to_do() -> None:
    """No configured aioqlog handler: a RuntimeError that names both fixes."""
    with pytest.raises(RuntimeError, match=r"dictConfig.*aioqlog.install\(\)"):
        async with aioqlog.listening():
            pass


@pytest.mark.anyio
async def test_listening_runs_the_given_listeners_and_drains_them(
    logger: logging.Logger,
) -> None:
    """Explicit listeners: started on enter, drained and stopped on exit."""
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    recorder = Recorder()
    listener = aioqlog.QueueListener(q, recorder)
    async with aioqlog.listening(listener) as running:
        assert running == [listener]
        assert listener.running
        for i in range(100):
            logger.info("r%d", i)
    assert not listener.running
    assert recorder.messages() == [f"r{i}" for i in range(100)]


@pytest.mark.usefixtures("configured")
@pytest.mark.anyio
async def test_a_replaced_configuration_is_not_started() -> None:
    """Only handlers attached to a logger now count: a second dictConfig wins."""
    logging.config.dictConfig(_config(dict(CLASS_FORM), name="first"))
    first = _root_handler()
    logging.config.dictConfig(_config(dict(CLASS_FORM), name="second"))
    second = _root_handler()
    assert first is not second
    async with aioqlog.listening() as listeners:
        assert listeners == [second.listener]
    assert first.listener is None or not first.listener.running
