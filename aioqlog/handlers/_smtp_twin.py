"""``SMTPHandler``: ``logging.handlers.SMTPHandler``'s mails, sent from the loop.

A drop-in twin of the stdlib handler: the same constructor, the same
overridable ``getSubject``, and the same mail for each record (From, To,
Subject, Date, the formatted record as its body), so the people reading
them see no change. What differs is how it is sent: from the event loop with
aiosmtplib, through ``BatchSender``'s bounded buffer, retries, counted drops
and bounded close, one mail per record.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from .._diagnostics import check_positive
from ._base import BatchSender
from ._smtp import aiosmtplib_module, deliver

if TYPE_CHECKING:
    import ssl

__all__ = ["SMTPHandler"]


class SMTPHandler(BatchSender[EmailMessage]):
    """Mail each record as ``logging.handlers.SMTPHandler`` does, without blocking the loop.

    Change ``logging.handlers.SMTPHandler`` to ``aioqlog.handlers.SMTPHandler``
    and serve it with a ``QueueListener``: each record becomes the mail the
    stdlib handler sends, with the same From, To and Subject
    (``getSubject(record)``), a Date header of the same form, and the
    handler's formatter output as its body. Needs ``aiosmtplib``
    (``pip install aioqlog[smtp]``), imported when the handler is created.
    For digests (one mail for a burst of errors) use ``AsyncSMTPHandler``.

    Unlike the stdlib handler, which tries each mail once and hands a failure
    to ``handleError``, it retries a refused connection, a timeout and a 4xx
    answer with backoff for up to *retry_budget* seconds, buffering up to
    *buffer_size* records meanwhile; a 5xx answer drops the mail. Every drop
    is counted in ``dropped`` and reported, first to ``handleError``, then in
    a mail of its own ahead of the next record that gets through. The record
    is formatted and its mail built (``getSubject`` included) in a thread of
    the handler's own, in the log call's context; its Date is the time it
    was built, not the time it was sent.

    Args:
        mailhost: The SMTP server: ``"host"`` (port 25) or ``(host, port)``.
        fromaddr: The From address.
        toaddrs: The To address, or a list of them.
        subject: The Subject (``getSubject`` returns it; override that to
            make it depend on the record).
        credentials: ``(username, password)`` to log in with.
        secure: With *credentials*, upgrade the connection with STARTTLS
            first: ``()``, ``(keyfile,)`` or ``(keyfile, certfile)`` (the
            client certificate), as for the stdlib handler.
        timeout: Seconds allowed per SMTP exchange (kept as
            ``request_timeout``: ``timeout`` is every ``AsyncHandler``'s bound
            on a call, and stays ``None`` here).
        level: The handler's level.
        retry_budget: Seconds an outage may last before the records waiting
            for it are dropped (counted and reported).
        backoff: First retry delay; doubles up to *backoff_max*, with jitter.
        backoff_max: Longest delay between retries.
        buffer_size: The most records held while retrying; more are dropped,
            counted and reported.
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps retrying a
            failing server before it leaves the rest buffered.
        tls_context: An ``ssl.SSLContext`` for STARTTLS (a private CA). The
            server's certificate is checked, where the stdlib's handler
            checks nothing.

    Attributes:
        sent: Records mailed.
        dropped: Records dropped (buffer full, outage past the budget, or a
            5xx answer).
        retries: Mails retried.

    Example:
        >>> handler = SMTPHandler(  # doctest: +SKIP
        ...     ("smtp.example.com", 587), "app@example.com", ["oncall@example.com"],
        ...     "Application error", credentials=("app", "..."), secure=(),
        ... )

    Added in version 0.1.0.
    """

    trio_instead = (
        "its client, aiosmtplib, needs asyncio. On trio, serve the stdlib's "
        "logging.handlers.SMTPHandler itself with aioqlog.QueueListener: it mails from the "
        "listener's worker thread, never from the loop"
    )
    encode_in_thread = True

    def __init__(  # noqa: PLR0917 - the stdlib's positional parameters
        self,
        mailhost: str | tuple[str, int],
        fromaddr: str,
        toaddrs: str | Sequence[str],
        subject: str,
        credentials: tuple[str, str] | None = None,
        secure: tuple[()] | tuple[str] | tuple[str, str] | None = None,
        timeout: float | None = 5.0,
        *,
        level: int = logging.NOTSET,
        retry_budget: float = 300.0,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        buffer_size: int = 1_000,
        close_budget: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            level=level,
            timeout=None,
            batch_size=1,  # one mail per record, as the stdlib sends
            batch_age=1.0,  # (unused: a batch of one is always full)
            retry_budget=retry_budget,
            backoff=backoff,
            backoff_max=backoff_max,
            buffer_size=buffer_size,
            close_budget=close_budget,
        )
        owner = type(self).__qualname__
        try:
            smtp = aiosmtplib_module()
        except ImportError:
            raise ImportError(f"{owner} needs aiosmtplib: pip install 'aioqlog[smtp]'") from None
        if timeout is not None:  # None: no limit, as smtplib takes it
            check_positive(owner, "timeout", timeout)
        # The stdlib's attributes, as it sets them.
        self.mailhost: str
        self.mailport: int | None
        if isinstance(mailhost, (list, tuple)):
            self.mailhost, self.mailport = mailhost
        else:
            self.mailhost, self.mailport = mailhost, None
        self.username: str | None = None
        self.password: str | None = None
        if isinstance(credentials, (list, tuple)):
            self.username, self.password = credentials
        self.fromaddr = fromaddr
        self.toaddrs = [toaddrs] if isinstance(toaddrs, str) else list(toaddrs)
        self.subject = subject
        self.secure = secure
        self.tls_context = tls_context
        self.request_timeout = timeout
        # Temporary trouble is retried; a 5xx answer is the server's final word.
        self.retryable = (OSError, asyncio.TimeoutError, smtp.SMTPException)
        self._smtp = smtp
        # The EHLO name: socket.getfqdn() may ask a resolver for seconds, so it
        # is looked up once, off the loop, before the first mail.
        self._fqdn: str | None = None

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.mailhost}:{self.mailport or 25} ({level})>"

    def getSubject(self, record: logging.LogRecord) -> str:
        """Return the Subject for *record*: *subject* (override to make it depend on it)."""
        return self.subject

    def encode(self, record: logging.LogRecord) -> EmailMessage:
        """Return the stdlib ``SMTPHandler``'s mail for *record*."""
        message = EmailMessage()
        message["From"] = self.fromaddr
        message["To"] = ",".join(self.toaddrs)
        message["Subject"] = self.getSubject(record)
        message["Date"] = email.utils.localtime()
        message.set_content(self.format(record))
        return message

    async def send(self, items: list[EmailMessage], batch_id: str) -> None:
        """Mail each of *items* (a record, after any drop summary) on its own."""
        if self._fqdn is None:
            self._fqdn = await self.off_loop(socket.getfqdn) or "localhost"
        await self.send_each(items, batch_id, self._send_one)

    async def _send_one(self, message: EmailMessage) -> None:
        """Send one mail as the stdlib's ``SMTPHandler.emit`` does."""
        # STARTTLS only with credentials, as the stdlib does; never opportunistically.
        secure: Sequence[Any] | None = self.secure if self.username else None
        await deliver(
            self._smtp,
            message,
            hostname=self.mailhost,
            port=self.mailport or 25,
            username=self.username,
            password=self.password,
            local_hostname=self._fqdn,
            start_tls=secure is not None,
            client_key=secure[0] if secure else None,
            client_cert=secure[1] if secure and len(secure) > 1 else None,
            tls_context=self.tls_context,
            timeout=self.request_timeout,
        )
