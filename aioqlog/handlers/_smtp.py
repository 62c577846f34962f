"""``AsyncSMTPHandler``: mail records as digests, so an error storm is one mail.

Each record is formatted in its log call's context; the batching, retries
and drop accounting are ``BatchSender``'s: the first record of a burst waits
up to *digest_age* seconds for others (or until *digest_size* are waiting),
and they go out together as one mail, sent with aiosmtplib.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, NamedTuple

from .._diagnostics import check_positive
from ._base import BatchSender, Rejected

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["AsyncSMTPHandler", "aiosmtplib_module", "deliver"]


class _Entry(NamedTuple):
    """A formatted record: what a digest needs of it."""

    levelno: int
    levelname: str
    text: str


class AsyncSMTPHandler(BatchSender[_Entry]):
    """Mail records to people, coalescing a burst into one digest mail.

    Needs ``aiosmtplib`` (``pip install aioqlog[smtp]``), imported when the
    handler is created. Serve it with a ``QueueListener``; usually with a
    level such as ``logging.ERROR``. The first record of a burst waits up to
    *digest_age* seconds for more, so that an error storm becomes one mail of
    up to *digest_size* records rather than a mail per record.

    Each record appears in the mail as the handler's formatter writes it.
    The subject names the worst level, the first record's first line, and
    how many records the mail holds.

    Args:
        host: The SMTP server.
        port: Its port (25; 587 is usual with *starttls*, 465 with *use_tls*).
        sender: The From address.
        recipients: The To addresses.
        level: The handler's level.
        subject_prefix: Put before every subject (``"[shop] "``).
        username: Log in with this user (and *password*).
        password: The password for *username*.
        starttls: Upgrade the connection with STARTTLS.
        use_tls: Connect with TLS from the start (SMTPS).
        tls_context: An ``ssl.SSLContext`` for either (a private CA).
        digest_size: The most records in one mail.
        digest_age: Seconds the first record of a burst waits for others.
        request_timeout: Seconds allowed per SMTP exchange.
        retry_budget: Seconds an outage may last before the records waiting
            for it are dropped (counted and reported in the next mail).
        backoff: First retry delay; doubles up to *backoff_max*, with jitter.
        backoff_max: Longest delay between retries.
        buffer_size: The most records held while waiting or retrying.
        close_budget: Seconds ``aclose()`` (at ``stop()``) keeps retrying a
            failing server before it leaves the rest buffered; ``0`` makes
            one last attempt.
        timeout: As for every ``AsyncHandler``: a bound on each call.

    Attributes:
        sent: Records mailed.
        dropped: Records dropped (buffer full, outage past the budget, or
            the server refused their mail for good).
        retries: Mails retried.
        mails: Mails the server accepted.

    Example:
        >>> handler = AsyncSMTPHandler(  # doctest: +SKIP
        ...     "smtp.example.com", 587, sender="app@example.com",
        ...     recipients=["oncall@example.com"], starttls=True,
        ...     username="app", password="...", level=logging.ERROR,
        ... )

    Added in version 0.1.0.
    """

    trio_instead = (
        "its client, aiosmtplib, needs asyncio. On trio, serve the stdlib's "
        "logging.handlers.SMTPHandler with aioqlog.QueueListener instead: it mails from the "
        "listener's worker thread, never from the loop (one mail per record, no digests)"
    )

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        recipients: Sequence[str],
        level: int = logging.NOTSET,
        subject_prefix: str = "",
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        tls_context: _ssl.SSLContext | None = None,
        digest_size: int = 100,
        digest_age: float = 30.0,
        request_timeout: float = 30.0,
        retry_budget: float = 300.0,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        buffer_size: int = 1_000,
        close_budget: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        owner = type(self).__qualname__
        # Checked here too, so that the errors name this handler's arguments.
        check_positive(owner, "digest_size", digest_size, integer=True)
        check_positive(owner, "digest_age", digest_age)
        super().__init__(
            level=level,
            timeout=timeout,
            batch_size=digest_size,
            batch_age=digest_age,
            retry_budget=retry_budget,
            backoff=backoff,
            backoff_max=backoff_max,
            buffer_size=buffer_size,
            close_budget=close_budget,
        )
        try:
            smtp = aiosmtplib_module()
        except ImportError:
            raise ImportError(f"{owner} needs aiosmtplib: pip install 'aioqlog[smtp]'") from None
        if not isinstance(host, str) or not host:
            raise ValueError(f"{owner} host must be a host name, got {host!r}")
        check_positive(owner, "port", port, integer=True)
        check_positive(owner, "request_timeout", request_timeout)
        if isinstance(recipients, str) or not recipients:
            raise ValueError(
                f"{owner} recipients must be a non-empty list of addresses, got {recipients!r}"
            )
        if starttls and use_tls:
            raise ValueError(f"{owner}: choose starttls or use_tls, not both")
        if (username is None) != (password is None):
            raise ValueError(f"{owner}: give both username and password, or neither")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.subject_prefix = subject_prefix
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.tls_context = tls_context
        self.request_timeout = request_timeout
        self.mails = 0
        # The Message-ID's domain: socket.getfqdn() may ask a resolver for
        # seconds, so it is looked up once, off the loop, before the first mail.
        self._fqdn: str | None = None
        # Temporary trouble is retried; a 5xx answer is the server's final word.
        self.retryable = (OSError, asyncio.TimeoutError, smtp.SMTPException)
        self._smtp = smtp

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.host}:{self.port} ({logging.getLevelName(self.level)})>"
        )

    def encode(self, record: logging.LogRecord) -> _Entry:
        r"""Format *record* for the mail.

        A lone surrogate (a file name that ``os.fsdecode()`` could not
        decode, say) has no UTF-8: it is shown as its escape (``\udce9``),
        or the whole digest could not be mailed.
        """
        text = self.format(record)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return _Entry(record.levelno, record.levelname, text)

    def compose(self, entries: Sequence[_Entry], batch_id: str | None = None) -> EmailMessage:
        """Return the digest mail for *entries* (override to change its form).

        *batch_id*, the same on every attempt to mail these entries, makes the
        Message-ID, so that a mail sent twice (after a cut-off attempt) is
        recognisably one mail.
        """
        worst = max(entries, key=lambda e: e.levelno)
        first_line = entries[0].text.splitlines()[0] if entries[0].text else ""
        if len(first_line) > 100:
            first_line = first_line[:97] + "..."
        more = f" (+{len(entries) - 1} more)" if len(entries) > 1 else ""
        message = EmailMessage()
        message["Subject"] = f"{self.subject_prefix}{worst.levelname}: {first_line}{more}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=True)
        # Not socket.getfqdn() here (nor make_msgid's default, which calls
        # it): it may block on a resolver, and this runs on the loop.
        domain = self._fqdn or socket.gethostname() or "localhost"
        message["Message-ID"] = (
            make_msgid(domain=domain) if batch_id is None else f"<{batch_id}@{domain}>"
        )
        separator = "\n\n" + "-" * 72 + "\n\n"
        message.set_content(separator.join(e.text for e in entries) + "\n")
        return message

    async def send(self, items: list[_Entry], batch_id: str) -> None:
        """Mail *items* as one digest, its Message-ID made of *batch_id*."""
        smtp = self._smtp
        if self._fqdn is None:
            self._fqdn = await self.off_loop(socket.getfqdn) or "localhost"
        message = self.compose(items, batch_id)
        await deliver(
            smtp,
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.starttls,
            use_tls=self.use_tls,
            tls_context=self.tls_context,
            timeout=self.request_timeout,
        )
        self.mails += 1


async def deliver(smtp: Any, message: EmailMessage, *, hostname: str, **options: Any) -> None:
    """Send *message* with aiosmtplib (*smtp*); raise ``Rejected`` on a final refusal.

    A 5xx answer, or every recipient refused, is the server's final word;
    anything else it raises is left for the caller to retry.
    """
    try:
        await smtp.send(message, hostname=hostname, **options)
    except smtp.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise Rejected(f"{hostname} answered {exc.code} {exc.message}") from exc
        raise
    except smtp.SMTPRecipientsRefused as exc:
        raise Rejected(f"{hostname} refused every recipient: {exc}") from exc


def aiosmtplib_module() -> Any:
    """Import aiosmtplib: an optional extra, imported when a handler is created."""
    import aiosmtplib  # noqa: PLC0415

    return aiosmtplib
