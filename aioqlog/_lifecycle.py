"""What happens at interpreter exit and after a fork.

At exit, nothing queued is dropped without a word.

``asyncio.run`` cancels the listener's task, which delivers what was queued
(see ``QueueListener``). This hook covers the rest: a loop that stopped or
closed with the listener's task still inside it, worker threads still handling
records, records for async handlers that no listener will await, and queues
that no listener ever served. It runs before ``logging.shutdown`` closes the
handlers (atexit hooks run last-registered first, and ``logging`` registers
its hook when it is first imported, before this module).

In a child made by ``os.fork()``, every queue and listener forgets the
parent's records, wake-up tokens, locks, task and threads, so the child
neither duplicates the parent's records nor waits on a lock a vanished thread
held, and it can start listeners of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._bridge import LogQueue
    from ._listener import QueueListener

__all__ = ["skip_at_shutdown", "track", "track_queue", "write_stderr"]

_listeners: weakref.WeakSet[QueueListener] = weakref.WeakSet()
_queues: weakref.WeakSet[LogQueue] = weakref.WeakSet()


def track(listener: QueueListener) -> None:
    """Have *listener* finish its work at interpreter exit."""
    _listeners.add(listener)


def track_queue(queue: LogQueue) -> None:
    """Have *queue* report records that no listener ever served, at exit."""
    _queues.add(queue)


def _at_exit() -> None:
    for listener in list(_listeners):
        try:
            listener._at_exit()
        except Exception as exc:  # noqa: BLE001 - exit must go on
            write_stderr(f"could not finish {listener!r} at exit: {exc!r}")
    for queue in list(_queues):
        if queue._sink is None and queue.qsize():
            write_stderr(
                f"{queue.qsize()} records were logged to a LogQueue that no "
                f"QueueListener served; they were not delivered"
            )


def _after_fork_in_child() -> None:
    # Queues first: a listener rebuilt after them finds its queue clean.
    for queue in list(_queues):
        queue._after_fork_in_child()
    for listener in list(_listeners):
        listener._after_fork_in_child()


def skip_at_shutdown(handler: logging.Handler) -> None:
    """Keep ``logging.shutdown`` (at exit) away from a handler stuck in ``emit``.

    ``logging.shutdown`` takes each handler's lock to flush and close it; a
    worker thread stuck inside ``emit`` holds that lock forever, so exit would
    hang. The handler is taken off the list that ``logging.shutdown`` walks.
    """
    handlers = getattr(logging, "_handlerList", None)
    lock = getattr(logging, "_lock", None)
    if not isinstance(handlers, list) or lock is None:
        return  # another logging implementation: nothing to take it off
    with lock:
        handlers[:] = [ref for ref in handlers if ref() is not handler]


def write_stderr(message: str) -> None:
    """Write one line about aioqlog itself to stderr; never raise."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(f"aioqlog: {message}\n")
        stream.flush()
    except Exception:  # noqa: BLE001 - nowhere left to report to
        pass


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
