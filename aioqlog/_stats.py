"""Snapshots of what a listener has done: ``ListenerStats`` and ``HandlerStats``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HandlerStats", "ListenerStats"]


@dataclass(frozen=True)
class HandlerStats:
    """What one handler of a listener has done so far.

    Attributes:
        name: The handler's name, or its repr when it has none; followed by
            `` #N``, the handler's position among the listener's handlers (from
            1), when another of them is named alike (two unnamed handlers of
            one class), so that stderr's reports tell them apart.
        handled: Records passed to the handler that it finished without raising
            (its own filters may have rejected some of them). For an async
            handler that buffers records (the network handlers), "finished"
            means taken into its buffer: they count in ``pending`` too until
            sent, and in ``dropped`` if it drops them.
        errors: Records whose handling raised; each went to ``handleError``.
        dropped: Records this handler missed because its lane was full (the
            queue's overflow policy applied per handler, also while it catches
            up after a ``stop()`` that ran out of time), plus those an async
            handler dropped itself (``AsyncHandler.dropped``).
        pending: Records waiting in the handler's lane or being handled now,
            plus those an async handler still holds in a buffer of its own
            (``AsyncHandler.pending``: a network handler's unsent records).
        oldest_pending_age: Seconds since the oldest record still waiting in the
            handler's lane was logged (``record.created``), or ``None`` when
            none waits: how far behind the handler is.

    Added in version 0.1.0.
    """

    name: str
    handled: int
    errors: int
    dropped: int
    pending: int
    oldest_pending_age: float | None = None


@dataclass(frozen=True)
class ListenerStats:
    """A snapshot of a ``QueueListener`` and its queue; see ``QueueListener.stats``.

    Attributes:
        running: Whether the listener is serving its queue.
        enqueued: Records accepted into the queue so far (evicted ones included).
        dropped: Records the queue's overflow policy dropped (``LogQueue.dropped``).
        queue_depth: Records waiting in the queue now.
        high_water: The deepest the queue has been since it was created.
        recursion_dropped: Records logged by a handler while handling a record
            that a handler had logged: dropped to stop a handler feeding itself.
        handlers: One ``HandlerStats`` per handler, in the listener's order.
        oldest_queued_age: Seconds since the oldest record still in the queue
            was logged, or ``None`` when the queue is empty.
        logged_after_stop: Of the records queued or pending for a sync
            handler right now, those logged after ``stop()`` began (or the
            loop ended): not the stop's to deliver, they are on their way in
            the logging threads, as without a listener, or at exit. Not
            counted in ``undelivered``. Like ``undelivered``, a count of
            deliveries: a record pending for two handlers counts twice.

    Example:
        >>> stats = listener.stats  # doctest: +SKIP
        >>> stats.dropped, [h.pending for h in stats.handlers]  # doctest: +SKIP
        (0, [0, 0])

    Added in version 0.1.0.
    """

    running: bool
    enqueued: int
    dropped: int
    queue_depth: int
    high_water: int
    recursion_dropped: int
    handlers: tuple[HandlerStats, ...]
    oldest_queued_age: float | None = None
    logged_after_stop: int = 0

    @property
    def undelivered(self) -> int:
        """Records accepted but not (yet) delivered: queued, in a lane, or held by a handler.

        A count of deliveries still to make: a queued record counts once, and
        each handler's ``pending`` is added, so a record that two handlers
        still hold counts twice. Once a stop has begun, only the records
        logged before it count: a stop that delivered everything it had to
        reads 0, however many records threads logged meanwhile (see
        ``logged_after_stop``).
        """
        return self.queue_depth + sum(h.pending for h in self.handlers) - self.logged_after_stop
