"""What aioqlog says about arguments and about itself, one way everywhere.

Argument checks, shared by every public constructor and method: a bad
argument fails at once, with a sentence that names it and says what it must
be, rather than later, inside a thread or at exit, where nobody sees it (an
infinite timeout passes every "positive" check and then overflows the lock it
is handed to).

Reports: a handler's error goes to its own ``handleError`` (``report_error``);
what concerns aioqlog itself, when no handler is left to tell, is one line on
stderr (``write_stderr``). Neither ever raises.

A leaf: it imports nothing from aioqlog, so every module may use it.
"""

from __future__ import annotations

import logging
import math
import sys
import threading

__all__ = ["check_positive", "check_seconds", "report_error", "write_stderr"]

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


def check_positive(
    owner: str, name: str, value: object, *, integer: bool = False, hint: str = ""
) -> None:
    """Raise ``ValueError`` naming *owner* and *name* unless *value* is a positive number.

    The number must be finite: an infinite backoff, budget or batch age would
    make a handler wait or retry for ever. With *integer*, only an ``int``
    passes; ``bool`` never does. A *hint* (why, or what to pass instead) ends
    the message.
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not value > 0  # type: ignore[operator]
        or not math.isfinite(value)  # type: ignore[arg-type]
    ):
        what = "a positive integer" if integer else "a positive number (finite)"
        tail = f"; {hint}" if hint else ""
        raise ValueError(f"{owner} {name} must be {what}, got {value!r}{tail}")


def report_error(handler: logging.Handler, record: logging.LogRecord) -> None:
    """Pass the exception being handled to *handler*'s handleError; never raise."""
    try:
        handler.handleError(record)
    except Exception:  # noqa: BLE001 - a broken handleError must not kill the lane
        pass


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
