"""Checks on arguments, shared by every public constructor and method.

A bad argument fails at once, with a sentence that names it and says what
it must be, rather than later, inside a thread or at exit, where nobody sees
it (an infinite timeout passes every "positive" check and then overflows the
lock it is handed to).
"""

from __future__ import annotations

import logging
import math
import threading

__all__ = ["check_seconds", "report_error"]

#: The longest wait any lock, condition or join accepts (about 49 days on Linux).
MAX_SECONDS = float(threading.TIMEOUT_MAX)


def check_seconds(
    value: object, what: str, *, allow_none: bool = False, allow_zero: bool = False
) -> float | None:
    """Return *value* as seconds, or raise ``ValueError`` naming *what*.

    Seconds are a finite ``int`` or ``float`` no larger than what a lock
    accepts, positive (or zero, with *allow_zero*), or ``None`` where
    *allow_none* says that means "no bound".
    """
    if value is None and allow_none:
        return None
    if (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and (value >= 0 if allow_zero else value > 0)
        and math.isfinite(value)
        and value <= MAX_SECONDS
    ):
        return float(value)
    kind = "a non-negative" if allow_zero else "a positive"
    none = " or None (no bound)" if allow_none else ""
    raise ValueError(
        f"{what} must be {kind} number of seconds, at most {MAX_SECONDS:.0f}{none}, got {value!r}"
    )


def report_error(handler: logging.Handler, record: logging.LogRecord) -> None:
    """Pass the exception being handled to *handler*'s handleError; never raise."""
    try:
        handler.handleError(record)
    except Exception:  # noqa: BLE001 - a broken handleError must not kill the lane
        pass
