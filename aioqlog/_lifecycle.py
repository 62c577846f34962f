"""What happens at interpreter exit and after a fork.

At exit, nothing queued is dropped without a word.

``asyncio.run`` cancels the listener's task, and the end of ``trio.run``'s
main task tells it; either way it delivers what was queued (see
``QueueListener``). This hook covers the rest: a loop that stopped or closed
with the listener's task still inside it, worker threads still handling
records, records for async handlers that no listener will await, and queues
that no listener ever served. It runs before ``logging.shutdown`` closes the
handlers (atexit hooks run last-registered first, and ``logging`` registers
its hook when it is first imported, before this module).

In a child made by ``os.fork()``, every queue and listener forgets the
parent's records, wake-up tokens, locks, task and threads, so the child
neither duplicates the parent's records nor waits on a lock a vanished thread
held, and it can start listeners of its own. Before the fork, each sync
handler's lock is taken (for a second at most), so that no worker is inside a
write when it happens: the stream's own lock would stay held in the child.

This module reaches queues and listeners only through the two Protocols
below, ``ExitQueue`` and ``ExitListener``, so it imports neither the bridge nor
the listener: both import it, to register themselves.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import logging
import os
import threading
import time
import weakref
from typing import Protocol

from ._diagnostics import write_stderr

__all__ = [
    "ExitListener",
    "ExitQueue",
    "flush_at_shutdown",
    "skip_at_shutdown",
    "track",
    "track_queue",
]


class ExitQueue(Protocol):
    """What exit and fork handling call on a queue (``LogQueue`` provides it).

    The underscored methods belong to aioqlog, not to its users: they are
    shared across the package's modules and listed here so that a reader
    sees the whole contract, and mypy checks that the queue keeps it.
    """

    def qsize(self) -> int:
        """Return the number of records waiting in the queue."""
        ...

    @property
    def dropped(self) -> int:
        """Records the queue dropped (its overflow policy)."""
        ...

    @property
    def maxsize(self) -> int:
        """The queue's bound."""
        ...

    @property
    def overflow(self) -> str:
        """The queue's overflow policy."""
        ...

    def _has_listener(self) -> bool:
        """Return whether a listener was created for the queue (its records have a home)."""
        ...

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, the parent's records and hand-offs."""
        ...


class ExitListener(Protocol):
    """What exit and fork handling call on a listener (``QueueListener`` provides it).

    The underscored methods are aioqlog's own, as on ``ExitQueue``.
    """

    def _at_exit(self) -> None:
        """Deliver what an unfinished run left behind, as the interpreter exits."""
        ...

    def _report_late_records(self) -> None:
        """Say on stderr what threads logging on through the exit lost (after the last _at_exit)."""
        ...

    def _before_fork(self, deadline: float) -> None:
        """Hold its sync handlers' locks until the fork, waiting until *deadline* at most."""
        ...

    def _after_fork_in_parent(self) -> None:
        """Release what ``_before_fork`` held."""
        ...

    def _after_fork_in_child(self) -> None:
        """Forget, in a forked child, the parent's run: its task, threads and records."""
        ...


_listeners: weakref.WeakSet[ExitListener] = weakref.WeakSet()
_queues: weakref.WeakSet[ExitQueue] = weakref.WeakSet()


def track(listener: ExitListener) -> None:
    """Have *listener* finish its work at interpreter exit."""
    _listeners.add(listener)


def track_queue(queue: ExitQueue) -> None:
    """Have *queue* report records that no listener ever served, at exit."""
    _queues.add(queue)


def _finish_listeners() -> None:
    for listener in list(_listeners):
        try:
            listener._at_exit()
        except Exception as exc:  # noqa: BLE001 - exit must go on
            write_stderr(f"could not finish {listener!r} at exit: {exc!r}")


def _at_exit() -> None:
    _finish_listeners()
    for listener in list(_listeners):
        try:
            listener._report_late_records()
        except Exception as exc:  # noqa: BLE001 - exit must go on
            write_stderr(f"could not report on {listener!r} at exit: {exc!r}")
    for queue in list(_queues):
        if not queue._has_listener() and (queue.qsize() or queue.dropped):
            also = (
                f" ({queue.dropped} more were dropped: the queue was full, "
                f"maxsize={queue.maxsize}, overflow={queue.overflow!r})"
                if queue.dropped
                else ""
            )
            write_stderr(
                f"{queue.qsize()} records were logged to a LogQueue that no "
                f"QueueListener served; they were not delivered{also}"
            )


#: Seconds a fork waits, at most, for the handlers' workers to finish their writes.
FORK_WAIT = 1.0

# The listeners whose handlers' locks the fork under way holds.
_forking: list[ExitListener] = []
# Whether the fork under way holds logging's module lock (taken here first).
_logging_lock_held = False


def _before_fork() -> None:
    # No worker writes across the fork: a write holds the stream's own lock
    # (a file's buffer), which in the child no thread would ever release.
    # logging's own hook takes its module lock after this one: taken here
    # first, so that the handlers' locks come after it, as when logging
    # closes handlers under it (dictConfig). Held the other way round, a
    # thread holding it and waiting for a handler's lock would wait for ever.
    global _logging_lock_held
    lock = getattr(logging, "_lock", None)
    if lock is not None:
        lock.acquire()  # as logging's own hook is about to, for as long
        _logging_lock_held = True
    deadline = time.monotonic() + FORK_WAIT
    for listener in _snapshot(_listeners):
        _forking.append(listener)
        try:
            listener._before_fork(deadline)
        except Exception as exc:  # noqa: BLE001 - the fork must go on
            write_stderr(f"could not prepare {listener!r} for a fork: {exc!r}")


def _after_fork_in_parent() -> None:
    while _forking:
        listener = _forking.pop()
        try:
            listener._after_fork_in_parent()
        except Exception as exc:  # noqa: BLE001
            write_stderr(f"could not resume {listener!r} after a fork: {exc!r}")
    _release_logging_lock()


def _release_logging_lock() -> None:
    global _logging_lock_held
    lock = getattr(logging, "_lock", None)
    if _logging_lock_held and lock is not None:
        _logging_lock_held = False
        try:
            lock.release()
        except RuntimeError:
            pass  # in the child, made anew by logging's own hook: not held


def _snapshot(listeners: weakref.WeakSet[ExitListener]) -> list[ExitListener]:
    """Return *listeners* as a list, while other threads may add to them."""
    for _ in range(100):
        try:
            return list(listeners)
        except RuntimeError:  # a listener made meanwhile: "Set changed size during iteration"
            continue
    return []  # not one quiet moment: prepare none (the fork goes on as without aioqlog)


def _after_fork_in_child() -> None:
    _forking.clear()  # each listener releases what it held as it starts afresh
    _release_logging_lock()
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


def flush_at_shutdown(handler: logging.Handler) -> None:
    """Put *handler* back on the list ``logging.shutdown`` walks (see ``skip_at_shutdown``).

    Where it was taken off while stuck, and has moved since. Once only.
    """
    handlers = getattr(logging, "_handlerList", None)
    lock = getattr(logging, "_lock", None)
    add = getattr(logging, "_addHandlerRef", None)
    if not isinstance(handlers, list) or lock is None or add is None:
        return
    with lock:
        listed = any(ref() is handler for ref in handlers)
    if not listed:
        add(handler)


atexit.register(_at_exit)
# Also earlier, while the interpreter can still run the handlers' I/O: threading
# runs these hooks (last registered first) before it joins the non-daemon
# threads, and before concurrent.futures' own hook makes executors refuse work,
# which a network handler's connection needs (its DNS lookup). A listener whose
# loop runs in a daemon thread is stopped on that loop here; the atexit hook
# then finishes what non-daemon threads log after this.
_register_early = getattr(threading, "_register_atexit", None)
if _register_early is not None:
    _register_early(_finish_listeners)
if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
