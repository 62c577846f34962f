"""Logging configuration: the ``dictConfig`` factory for an aioqlog QueueHandler.

``"class": "aioqlog.QueueHandler"`` works on every supported Python. The
factory form below does the same and reads as what it is on Python 3.10 and
3.11, where the stdlib has no special case for queue handlers::

    "handlers": {
        "queued": {
            "()": "aioqlog.config.queue_handler",
            "handlers": ["file", "mail"],
            "queue": {"()": "aioqlog.LogQueue", "maxsize": 50000, "overflow": "drop_old"},
            "respect_handler_level": True,
        },
    }

Start the listeners it sets up with ``aioqlog.listening()`` once the event
loop runs (the framework integrations do it for you).

Added in version 0.1.0.
"""

from __future__ import annotations

from typing import Any

from ._handler import QueueHandler

__all__ = ["queue_handler"]


def queue_handler(queue: Any = None, **config: Any) -> QueueHandler:
    """Build an aioqlog ``QueueHandler`` and its listener from dictConfig keys.

    Args:
        queue: ``LogQueue`` options as a mapping (``{"()": "aioqlog.LogQueue",
            "maxsize": ...}`` or just ``{"maxsize": ...}``), a ``LogQueue``,
            or ``None`` for the default queue.
        **config: ``handlers`` (required: the names of the handlers to
            deliver to) and ``respect_handler_level``.

    Returns:
        The handler; ``handler.listener`` is its listener, not started.

    Raises:
        ValueError: for a missing or unknown handler name, or a bad queue option.
        TypeError: for a key the handler does not take.

    Added in version 0.1.0.
    """
    if "handlers" not in config:
        raise ValueError(
            "aioqlog.config.queue_handler needs a 'handlers' key: the names of the "
            "handlers its listener delivers to"
        )
    return QueueHandler(queue, **config)
