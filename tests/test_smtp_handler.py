"""AsyncSMTPHandler against a real aiosmtpd server on 127.0.0.1.

The server (aiosmtpd's ``Controller``, in a thread of its own) keeps every
mail it accepts, can be told to answer 451 (try later) or 554 (refused) to
the next mails, to require a login, and can be stopped and started again.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import logging.handlers
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from support import STALL, bounded, in_thread

import aioqlog
from aioqlog.handlers import AsyncSMTPHandler


class Mailbox:
    """aiosmtpd's handler: keeps each accepted mail; misbehaves on demand."""

    def __init__(self) -> None:
        self.mails: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.answers: list[str] = []  # answers to the next DATA commands, then 250
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answers:
            return self.answers.pop(0)
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.changed:
            self.mails.append(mail)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.mails) >= count, STALL)

    def bodies(self) -> list[str]:
        # As received over SMTP: CRLF line ends.
        return [mail.get_content().replace("\r\n", "\n") for mail in self.mails]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """An aiosmtpd server that can be stopped and started on the same port."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.mailbox = Mailbox()
        self.port = _free_port()
        self.login = login
        self.controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            (data.login.decode(), data.password.decode()) == self.login
        )
        return AuthResult(success=ok)

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.login is not None:
            kwargs = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        self.controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, ready_timeout=STALL, **kwargs
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[Server]:
    server = Server()
    server.start()
    yield server
    server.stop()


class Reported(AsyncSMTPHandler):
    """Keeps what handleError is given instead of printing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reported: list[str] = []
        self.on_report: Callable[[], None] | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        self.reported.append(record.getMessage())
        if self.on_report is not None:
            self.on_report()


FAST = {"backoff": 0.02, "backoff_max": 0.1, "request_timeout": 5.0}


def _handler(server: Server, **kwargs: Any) -> Reported:
    arguments: dict[str, Any] = {
        "sender": "app@example.com",
        "recipients": ["oncall@example.com", "ops@example.com"],
        "digest_age": 60,
        **FAST,
        **kwargs,
    }
    return Reported("127.0.0.1", server.port, **arguments)


def _serve(logger: logging.Logger, handler: aioqlog.AsyncHandler) -> aioqlog.QueueListener:
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    return aioqlog.QueueListener(q, handler)


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_an_error_storm_is_one_digest_mail(smtp: Server, logger: logging.Logger) -> None:
    """50 errors in a burst become one mail holding all of them, in order."""
    handler = _handler(smtp, subject_prefix="[shop] ")
    async with _serve(logger, handler):
        logger.warning("cache miss storm")
        for i in range(49):
            logger.error("payment %d failed", i)
    assert len(smtp.mailbox.mails) == 1
    mail = smtp.mailbox.mails[0]
    assert mail["Subject"] == "[shop] ERROR: cache miss storm (+49 more)"
    assert mail["From"] == "app@example.com"
    assert smtp.mailbox.envelopes == [
        ("app@example.com", ["oncall@example.com", "ops@example.com"])
    ]
    body = smtp.mailbox.bodies()[0]
    positions = [body.index(f"payment {i} failed\n") for i in range(49)]
    assert positions == sorted(positions)
    assert (handler.sent, handler.mails, handler.dropped) == (50, 1, 0)


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_a_lone_surrogate_does_not_cost_the_digest(
    smtp: Server, logger: logging.Logger
) -> None:
    """A name os.fsdecode() could not decode is shown escaped; the digest is mailed.

    Raw, it made the whole mail unencodable: every record of it was dropped.
    """
    handler = _handler(smtp)
    async with _serve(logger, handler):
        logger.error("could not open %s", os.fsdecode(b"caf\xe9.txt"))
        logger.error("é stays é")
    assert (handler.sent, handler.mails, handler.dropped, handler.reported) == (2, 1, 0, [])
    body = smtp.mailbox.bodies()[0]
    assert "could not open caf\\udce9.txt\n" in body
    assert "é stays é\n" in body


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_digest_size_caps_a_mail(smtp: Server, logger: logging.Logger) -> None:
    """digest_size=10 and 25 records: three mails of 10, 10 and 5."""
    handler = _handler(smtp, digest_size=10)
    async with _serve(logger, handler):
        for i in range(25):
            logger.error("record %d", i)
    counts = [body.count("record ") for body in smtp.mailbox.bodies()]
    assert counts == [10, 10, 5]


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_a_lone_record_goes_once_the_digest_age_passes(
    smtp: Server, logger: logging.Logger
) -> None:
    """A record with nothing after it is mailed after digest_age, without waiting for stop()."""
    handler = _handler(smtp, digest_age=0.05)
    async with _serve(logger, handler):
        logger.critical("disk full")
        assert await in_thread(lambda: smtp.mailbox.wait_for(1))
    assert smtp.mailbox.mails[0]["Subject"] == "CRITICAL: disk full"


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_a_temporary_refusal_is_retried(smtp: Server, logger: logging.Logger) -> None:
    """451 twice, then accepted: one mail, reported once, nothing lost."""
    smtp.mailbox.answers = ["451 try again later", "451 try again later"]
    handler = _handler(smtp)
    async with _serve(logger, handler):
        logger.error("important")
    assert len(smtp.mailbox.mails) == 1
    assert handler.retries == 2
    assert handler.reported == [f"{handler!r}: a batch of 1 records could not be sent; retrying"]


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_a_permanent_refusal_drops_and_the_next_mail_says_so(
    smtp: Server, logger: logging.Logger
) -> None:
    """554: the digest is dropped and counted, and the next mail starts with the count."""
    smtp.mailbox.answers = ["554 no thanks"]
    handler = _handler(smtp, digest_size=2)
    async with _serve(logger, handler):
        for i in range(4):
            logger.error("record %d", i)
    assert handler.dropped == 2
    assert handler.reported == [f"{handler!r}: a batch of 2 records were rejected"]
    (body,) = smtp.mailbox.bodies()
    assert body.startswith("aioqlog dropped 2 records for <Reported 127.0.0.1:")
    assert "record 2" in body
    assert "record 3" in body


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_nothing_is_lost_while_the_server_restarts(
    smtp: Server, logger: logging.Logger
) -> None:
    """The server is down (connection refused), then back: the digest arrives."""
    smtp.stop()
    handler = _handler(smtp, digest_age=0.01)
    listener = _serve(logger, handler)
    listener.start()
    reported = threading.Event()
    handler.on_report = reported.set
    for i in range(3):
        logger.error("while down %d", i)
    assert await in_thread(lambda: reported.wait(STALL))
    await in_thread(smtp.start)
    assert await in_thread(lambda: smtp.mailbox.wait_for(1))
    await bounded(listener.stop())
    text = "".join(smtp.mailbox.bodies())
    assert [f"while down {i}" in text for i in range(3)] == [True] * 3
    assert handler.dropped == 0


# A server on 127.0.0.1 for the test: AUTH without TLS is what we mean.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_login(logger: logging.Logger) -> None:
    """With username and password the handler logs in where the server requires it."""
    server = Server(login=("app", "s3cret"))
    server.start()
    try:
        handler = _handler(server, username="app", password="s3cret")
        async with _serve(logger, handler):
            logger.error("authenticated")
    finally:
        server.stop()
    (body,) = server.mailbox.bodies()
    assert body == "authenticated\n"
    assert handler.reported == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipients": "ops@example.com"}, "recipients must be a non-empty list"),
        ({"recipients": []}, "recipients must be a non-empty list"),
        ({"starttls": True, "use_tls": True}, "choose starttls or use_tls"),
        ({"username": "app"}, "give both username and password"),
        ({"digest_size": 0}, "digest_size must be a positive integer"),
        ({"port": -1}, "port must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(kwargs: dict[str, Any], message: str) -> None:
    """Each bad argument raises ValueError naming it."""
    arguments: dict[str, Any] = {
        "sender": "app@example.com",
        "recipients": ["ops@example.com"],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        AsyncSMTPHandler("127.0.0.1", **arguments)


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_starttls_with_a_private_ca(logger: logging.Logger) -> None:
    """A server that requires STARTTLS: with starttls=True and the CA trusted, mail goes."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        ready_timeout=STALL,
        tls_context=server_ctx,
        require_starttls=True,
    )
    controller.start()
    try:
        handler = Reported(
            "127.0.0.1",
            controller.port,
            sender="app@example.com",
            recipients=["oncall@example.com"],
            starttls=True,
            tls_context=client_ctx,
            digest_age=60,
            **FAST,
        )
        async with _serve(logger, handler):
            logger.error("over tls")
    finally:
        controller.stop()
    assert mailbox.bodies() == ["over tls\n"]
    assert handler.reported == []


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_stop_cuts_a_backoff_short_within_close_budget(
    smtp: Server, logger: logging.Logger
) -> None:
    """With the server down and close_budget=0.1, stop() does not wait out a 2 s backoff."""
    smtp.stop()
    handler = _handler(smtp, digest_age=0.01, backoff=2.0, backoff_max=2.0, close_budget=0.1)
    reported = asyncio.Event()
    handler.on_report = reported.set
    listener = _serve(logger, handler)
    listener.start()
    logger.error("undeliverable")
    # The first attempt failed: the handler now waits 1-2 s before the next one.
    await bounded(reported.wait())
    started = time.monotonic()
    await bounded(listener.stop())
    assert time.monotonic() - started < 0.8
    assert handler.pending == 1


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_a_slow_fqdn_lookup_does_not_stall_the_loop(
    smtp: Server, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """socket.getfqdn() (for the Message-ID) runs off the loop, once: the loop ticks meanwhile."""
    entered = threading.Event()
    ticked = threading.Event()
    calls: list[str] = []

    def slow_getfqdn(name: str = "") -> str:
        calls.append(threading.current_thread().name)
        entered.set()
        # A resolver that takes its time: done once the loop has shown it still runs.
        return "resolved.example" if ticked.wait(2.0) else "stalled.example"

    monkeypatch.setattr(socket, "getfqdn", slow_getfqdn)

    async def ticker() -> None:
        assert await in_thread(lambda: entered.wait(STALL))
        for _ in range(3):
            await asyncio.sleep(0)
        ticked.set()

    handler = _handler(smtp, digest_size=1)
    async with _serve(logger, handler):
        ticking = asyncio.ensure_future(ticker())
        logger.error("first")
        await bounded(ticking)
        logger.error("second")
    assert [m["Message-ID"].endswith("@resolved.example>") for m in smtp.mailbox.mails] == [
        True,
        True,
    ]
    # Once for the handler, never on the loop (aiosmtplib asks too, from an executor).
    assert [name.startswith("aioqlog-encode-") for name in calls].count(True) == 1
    assert threading.current_thread().name not in calls


class Subject:
    """A getSubject override, the same for the stdlib handler and its twin."""

    def getSubject(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} in {record.name}: {record.getMessage()}"


class StdlibSMTPHandler(Subject, logging.handlers.SMTPHandler):
    pass


class TwinSMTPHandler(Subject, aioqlog.handlers.SMTPHandler):
    pass


#: RFC 5322's date-time, as email.utils.localtime() renders it in a header.
DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)


def _twin_records(logger: logging.Logger) -> list[logging.LogRecord]:
    try:
        raise KeyError("missing")
    except KeyError:
        exc_info = sys.exc_info()
    return [
        logger.makeRecord(logger.name, logging.ERROR, "shop.py", 12, "paid %s", ("42",), None),
        logger.makeRecord(logger.name, logging.CRITICAL, "shop.py", 13, "café ✓", (), exc_info),
    ]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("login", [None, ("app", "s3cret")])
@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_smtp_handler_sends_the_stdlib_mails(
    logger: logging.Logger, login: tuple[str, str] | None
) -> None:
    """aioqlog.handlers.SMTPHandler mails what logging.handlers.SMTPHandler mails."""
    server = Server(login=login)
    server.start()
    mailbox = server.mailbox
    records = _twin_records(logger)
    arguments: tuple[Any, ...] = (
        ("127.0.0.1", server.port),
        "app@example.com",
        ["oncall@example.com", "ops@example.com"],
        "unused",
        login,
    )
    try:
        stdlib = StdlibSMTPHandler(*arguments)
        stdlib.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        await in_thread(lambda: [stdlib.handle(record) for record in records])
        assert await in_thread(lambda: mailbox.wait_for(2))
        expected, expected_envelopes = list(mailbox.mails), list(mailbox.envelopes)
        mailbox.mails.clear()
        mailbox.envelopes.clear()
        twin = TwinSMTPHandler(*arguments)
        twin.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        await bounded(twin.aemit_batch(records))
        await bounded(twin.aclose())
    finally:
        await in_thread(server.stop)
    assert len(mailbox.mails) == 2
    assert mailbox.envelopes == expected_envelopes
    for theirs, ours in zip(expected, mailbox.mails, strict=True):
        for header in ("From", "To", "Subject", "Content-Type", "MIME-Version"):
            assert ours[header] == theirs[header], header
        assert sorted(ours.keys()) == sorted(theirs.keys())
        assert ours.get_content() == theirs.get_content()
        assert DATE.match(theirs["Date"]), theirs["Date"]
        assert DATE.match(ours["Date"]), ours["Date"]
    assert ours["Subject"] == f"CRITICAL in {logger.name}: café ✓"
    assert "KeyError: 'missing'" in ours.get_content()
    assert (twin.sent, twin.dropped) == (2, 0)


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_smtp_handler_retries_a_temporary_refusal(
    smtp: Server, logger: logging.Logger
) -> None:
    """Behind a listener, a 451 answer is retried: one mail per record, nothing lost."""
    smtp.mailbox.answers = ["451 try again later"]
    handler = aioqlog.handlers.SMTPHandler(
        ("127.0.0.1", smtp.port),
        "app@example.com",
        "oncall@example.com",
        "Trouble",
        backoff=0.02,
        backoff_max=0.05,
    )
    async with _serve(logger, handler):
        logger.error("first")
        logger.error("second")
    assert [mail["Subject"] for mail in smtp.mailbox.mails] == ["Trouble", "Trouble"]
    assert smtp.mailbox.bodies() == ["first\n", "second\n"]
    assert smtp.mailbox.envelopes == [("app@example.com", ["oncall@example.com"])] * 2
    assert (handler.sent, handler.dropped, handler.retries) == (2, 0, 1)


@pytest.mark.asyncio  # aiosmtplib is asyncio-only (its refusal of trio is tested)
async def test_smtp_handler_secure_upgrades_with_starttls_before_the_login(
    logger: logging.Logger,
) -> None:
    """secure=() with credentials: STARTTLS (the server's certificate checked), then login."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = Server(login=("app", "s3cret"))
    mailbox = server.mailbox
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=server.port,
        ready_timeout=STALL,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=server._authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        handler = aioqlog.handlers.SMTPHandler(
            ("127.0.0.1", server.port),
            "app@example.com",
            ["oncall@example.com"],
            "Over TLS",
            credentials=("app", "s3cret"),
            secure=(),
            tls_context=client_ctx,
        )
        async with _serve(logger, handler):
            logger.error("secret")
    finally:
        controller.stop()
    assert mailbox.bodies() == ["secret\n"]
    assert (handler.sent, handler.dropped) == (1, 0)


def test_on_trio_it_is_refused_with_the_fix(logger: logging.Logger) -> None:
    """Under trio (aiosmtplib needs asyncio): refused where the backend shows, naming the fix."""
    import trio

    fix = r"runs on asyncio and uvloop, not on trio: .*logging\.handlers\.SMTPHandler"
    arguments: dict[str, Any] = {"sender": "shop@example.com", "recipients": ["ops@example.com"]}
    made_before = AsyncSMTPHandler("127.0.0.1", **arguments)  # no loop yet: nothing to refuse
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "down", (), None)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=fix):
            AsyncSMTPHandler("127.0.0.1", **arguments)  # made in the run: refused at once
        # Its first call raises to the lane, which reports it; the record is not taken.
        with pytest.raises(RuntimeError, match=fix):
            await made_before.aemit_batch([record])
        with pytest.raises(RuntimeError, match=fix):
            await made_before.aclose()

    trio.run(main)
    assert made_before.pending == 0


def test_on_trio_a_listener_reports_the_refusal_and_the_app_goes_on(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Behind a listener under trio, the refusal goes to handleError: no log call raises."""
    import trio

    handler = AsyncSMTPHandler(
        "127.0.0.1", sender="shop@example.com", recipients=["ops@example.com"]
    )
    queue = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(queue))
    went_on: list[str] = []

    async def main() -> None:
        with trio.fail_after(STALL):
            async with aioqlog.QueueListener(queue, handler):
                logger.error("down")
                await trio.lowlevel.checkpoint()
                went_on.append("yes")

    trio.run(main)
    assert went_on == ["yes"]
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "runs on asyncio and uvloop, not on trio" in err
