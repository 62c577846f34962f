"""AsyncSyslogHandler against a real rsyslogd on 127.0.0.1, and a real unix socket.

The fixture starts a private ``rsyslogd`` (the Debian package, installed by
``.ci/run``) with ``tests/rsyslog/rsyslog.conf.in``: it listens on free UDP and
TCP ports of 127.0.0.1 and writes each message it receives as one line
(``msgid|app-name|facility|severity|msg``) to a file that the tests read.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from support import STALL, a_peer_that_never_reads, bounded, in_thread

import aioqlog
from aioqlog.handlers import AsyncSyslogHandler

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
)
needs_rsyslog = pytest.mark.skipif(
    RSYSLOGD is None, reason="rsyslogd is not installed (.ci/run installs the rsyslog package)"
)
CONFIG = Path(__file__).parent / "rsyslog" / "rsyslog.conf.in"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Rsyslog:
    """A private rsyslogd process; its received messages, line by line."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.out = workdir / "received.log"
        self.udp_port = _free_port(socket.SOCK_DGRAM)
        self.tcp_port = _free_port(socket.SOCK_STREAM)
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(
            CONFIG.read_text().format(
                workdir=workdir,
                udp_port=self.udp_port,
                tcp_port=self.tcp_port,
                out=self.out,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.probes = 0

    def start(self) -> None:
        assert RSYSLOGD is not None
        with (self.workdir / "rsyslogd.err").open("ab") as err:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.workdir / "pid")],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        # Ready once a probe over each transport has come out in the file.
        self.probe("udp")
        self.probe("tcp")

    def probe(self, transport: str) -> None:
        deadline = time.monotonic() + STALL
        self.probes += 1
        tag = f"probe-{transport}-{self.probes}"
        message = f"<14>1 - - probe - {tag} - ready".encode()
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                errors = (self.workdir / "rsyslogd.err").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd exited: {errors}")
            try:
                if transport == "udp":
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.sendto(message, ("127.0.0.1", self.udp_port))
                else:
                    with socket.create_connection(("127.0.0.1", self.tcp_port), 1) as sock:
                        sock.sendall(b"%d %s" % (len(message), message))
            except OSError:
                pass
            if any(line.startswith(tag) for line in self.raw_lines()):
                return
            time.sleep(0.05)  # an external process: poll its output, bounded
        raise RuntimeError(f"rsyslogd did not receive a {transport} probe in {STALL}s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(STALL)
            self.proc = None

    def raw_lines(self) -> list[str]:
        try:
            return self.out.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def lines(self) -> list[list[str]]:
        """Received messages except the probes, split into their five fields."""
        return [line.split("|", 4) for line in self.raw_lines() if not line.startswith("probe-")]

    def messages(self, msgid: str) -> list[str]:
        return [fields[4].lstrip() for fields in self.lines() if fields[0] == msgid]

    def wait_for(self, msgid: str, count: int) -> list[str]:
        deadline = time.monotonic() + STALL
        while time.monotonic() < deadline:
            found = self.messages(msgid)
            if len(found) >= count:
                return found
            time.sleep(0.02)  # an external process: poll its output, bounded
        raise AssertionError(f"rsyslogd got {self.messages(msgid)!r}, expected {count}")


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path)
    server.start()
    yield server
    server.stop()


def _serve(logger: logging.Logger, handler: AsyncSyslogHandler) -> aioqlog.QueueListener:
    q = aioqlog.LogQueue()
    logger.addHandler(aioqlog.QueueHandler(q))
    return aioqlog.QueueListener(q, handler)


class Reported(AsyncSyslogHandler):
    """Keeps what handleError is given instead of printing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reported: list[str] = []

    def handleError(self, record: logging.LogRecord) -> None:
        # Not getMessage(): the record may be one whose message cannot be rendered.
        self.reported.append(record.msg % record.args if record.name == "aioqlog" else record.msg)


LEVELS = [
    (logging.DEBUG, "7"),
    (logging.INFO, "6"),
    (logging.WARNING, "4"),
    (logging.ERROR, "3"),
    (logging.CRITICAL, "2"),
]


@needs_rsyslog
@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.anyio
async def test_rsyslog_receives_every_record_in_order(
    transport: str, rsyslog: Rsyslog, logger: logging.Logger
) -> None:
    """Each record arrives once, in order, with its severity, facility, app name and logger."""
    port = rsyslog.udp_port if transport == "udp" else rsyslog.tcp_port
    handler = Reported(
        ("127.0.0.1", port),
        transport=transport,
        facility=16,  # local0
        app_name="shop",
    )
    async with _serve(logger, handler):
        for i in range(40):
            level, _ = LEVELS[i % len(LEVELS)]
            logger.log(level, "record %d: grüße", i)
    msgid = logger.name[:32]
    await in_thread(lambda: rsyslog.wait_for(msgid, 40))
    lines = [fields for fields in rsyslog.lines() if fields[0] == msgid]
    assert [fields[4].lstrip() for fields in lines] == [f"record {i}: grüße" for i in range(40)]
    assert [fields[3] for fields in lines] == [LEVELS[i % 5][1] for i in range(40)]
    assert {fields[1] for fields in lines} == {"shop"}
    assert {fields[2] for fields in lines} == {"16"}  # local0
    assert (handler.sent, handler.dropped, handler.reported) == (40, 0, [])


@needs_rsyslog
@pytest.mark.anyio
async def test_tcp_reconnects_after_a_server_restart(
    rsyslog: Rsyslog, logger: logging.Logger
) -> None:
    """rsyslogd stops and starts again: records logged meanwhile arrive after it."""
    handler = Reported(("127.0.0.1", rsyslog.tcp_port), transport="tcp", backoff=0.05)
    msgid = logger.name[:32]
    async with _serve(logger, handler):
        logger.info("before")
        await in_thread(lambda: rsyslog.wait_for(msgid, 1))
        await in_thread(rsyslog.stop)
        for i in range(10):
            logger.info("while down %d", i)
        await in_thread(rsyslog.start)
        await in_thread(lambda: rsyslog.wait_for(msgid, 11))
    assert rsyslog.messages(msgid) == ["before"] + [f"while down {i}" for i in range(10)]
    assert handler.reconnects >= 1
    assert handler.reported[0].endswith("could not be sent; reconnecting")


@needs_rsyslog
@pytest.mark.anyio
async def test_a_full_buffer_drops_counts_and_reports(
    rsyslog: Rsyslog, logger: logging.Logger
) -> None:
    """While the server is down the buffer holds buffer_size messages; the rest are reported."""
    handler = Reported(
        ("127.0.0.1", rsyslog.tcp_port), transport="tcp", backoff=0.05, buffer_size=5
    )
    msgid = logger.name[:32]
    await in_thread(rsyslog.stop)
    async with _serve(logger, handler):
        for i in range(8):
            logger.info("record %d", i)
        await in_thread(rsyslog.start)
        await in_thread(lambda: rsyslog.wait_for(msgid, 5))
        await in_thread(lambda: rsyslog.wait_for("aioqlog", 1))
    assert rsyslog.messages(msgid) == [f"record {i}" for i in range(5)]
    (summary,) = rsyslog.messages("aioqlog")
    assert summary.startswith("aioqlog dropped 3 records for <Reported tcp:('127.0.0.1',")
    assert summary.endswith("its buffer was full (buffer_size=5)")
    assert handler.dropped == 3


@needs_rsyslog
@pytest.mark.parametrize(("transport", "max_message"), [("udp", 2048), ("tcp", 60_000)])
@pytest.mark.anyio
async def test_a_huge_record_is_cut_and_the_rest_arrives(
    transport: str, max_message: int, rsyslog: Rsyslog, logger: logging.Logger
) -> None:
    """A 10 MB record is cut to max_message (counted); over TCP the stream stays in step."""
    port = rsyslog.udp_port if transport == "udp" else rsyslog.tcp_port
    handler = Reported(
        ("127.0.0.1", port),
        transport=transport,
        max_message=max_message,
    )
    msgid = logger.name[:32]
    async with _serve(logger, handler):
        logger.info("before")
        logger.info("x" * (10 * 1024 * 1024))
        logger.info("after")
    found = await in_thread(lambda: rsyslog.wait_for(msgid, 3))
    assert found[0] == "before"
    assert set(found[1]) == {"x"}
    assert max_message - 200 < len(found[1]) < max_message
    assert found[2] == "after"
    assert handler.truncated == 1


@pytest.mark.parametrize("cut", range(4))
@pytest.mark.anyio
async def test_a_record_is_cut_between_two_characters(
    cut: int, unix_socket: socket.socket, logger: logging.Logger
) -> None:
    """The cut never falls inside a UTF-8 sequence: what arrives decodes, one character short."""
    handler = Reported(unix_socket.getsockname(), transport="unix", hostname="h", app_name="a")
    async with _serve(logger, handler):
        logger.info("ab")
    whole = unix_socket.recv(65536)
    handler = Reported(
        unix_socket.getsockname(),
        transport="unix",
        hostname="h",
        app_name="a",
        max_message=len(whole) + 2 * 3 + cut,  # past "ab", "日本" and `cut` bytes of "語"
    )
    async with _serve(logger, handler):
        logger.info("ab日本語テキスト")
    message = unix_socket.recv(65536)
    assert message.decode().endswith(" - ab日本" + ("語" if cut == 3 else ""))
    assert handler.truncated == 1


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A bound unix datagram socket (as /dev/log) that the tests read from."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "log.sock"))
    sock.settimeout(STALL)
    yield sock
    sock.close()


@pytest.mark.anyio
async def test_a_unix_datagram_socket_gets_rfc5424_messages(
    unix_socket: socket.socket, logger: logging.Logger
) -> None:
    """Over a unix datagram socket (as /dev/log), each record is one RFC 5424 message."""
    handler = Reported(
        unix_socket.getsockname(), transport="unix", app_name="shop", hostname="web-1"
    )
    async with _serve(logger, handler):
        logger.warning("disk %d%% full", 91)
        logger.error("multi\nline")
    first, second = (unix_socket.recv(65536).decode() for _ in range(2))
    pattern = (
        r"<12>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 web-1 shop \d+ "
        + re.escape(logger.name[:32])
        + r" - disk 91% full"
    )
    assert re.fullmatch(pattern, first), first
    assert second.startswith("<11>1 ")
    assert second.endswith(" - multi\nline")


@pytest.mark.anyio
async def test_a_record_that_fails_to_format_is_reported_alone(
    unix_socket: socket.socket, logger: logging.Logger
) -> None:
    """A broken format: handleError for that record only; the others are sent."""
    handler = Reported(unix_socket.getsockname(), transport="unix")
    async with _serve(logger, handler):
        logger.info("a")
        logger.info("%d apples", "three")
        logger.info("b")
    received = [unix_socket.recv(65536).decode() for _ in range(2)]
    assert [m.rsplit(" - ", 1)[1] for m in received] == ["a", "b"]
    assert handler.reported == ["%d apples"]


@pytest.mark.anyio
async def test_an_unreachable_server_is_reported_once_and_stop_returns(
    logger: logging.Logger,
) -> None:
    """Nobody listens: one report, messages kept for later, stop() returns."""
    port = _free_port(socket.SOCK_STREAM)
    handler = Reported(("127.0.0.1", port), transport="tcp", backoff=5.0)
    listener = _serve(logger, handler)
    listener.start()
    for i in range(3):
        logger.info("record %d", i)
    # In a 5 s backoff: stop() cuts it short instead of waiting it out.
    started = time.monotonic()
    await bounded(listener.stop())
    assert time.monotonic() - started < 4.0
    assert handler.reported[0].endswith("could not be sent; reconnecting")
    assert len(handler.reported) == 1
    assert handler.pending == 3


@pytest.mark.anyio
async def test_close_budget_bounds_a_write_to_a_server_that_stopped_reading(
    logger: logging.Logger,
) -> None:
    """The server takes the connection and never reads: stop() ends with close_budget.

    A write blocked on the full connection had no bound: stop() waited for
    ever, whatever close_budget said.
    """
    with a_peer_that_never_reads() as port:
        handler = Reported(("127.0.0.1", port), transport="tcp", close_budget=0.5)
        listener = _serve(logger, handler)
        listener.start()
        for i in range(3_000):  # about 12 MB: more than the socket buffers hold
            logger.info("record %d %s", i, "x" * 4_000)
        started = time.monotonic()
        await bounded(listener.stop())
        assert time.monotonic() - started < 3.0
    assert handler.pending > 0
    assert handler.sent + handler.pending + handler.dropped == 3_000


@needs_rsyslog
def test_the_documented_forwarding_config_is_valid_rsyslog(tmp_path: Path) -> None:
    """The rsyslog configuration in docs/beyond-one-machine.md passes rsyslogd -N1."""
    page = (Path(__file__).parent.parent / "docs" / "beyond-one-machine.md").read_text()
    (block,) = re.findall(r"```text\n(.*?)```", page, re.S)
    conf = tmp_path / "forward.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\n{block}')
    assert RSYSLOGD is not None
    result = subprocess.run(
        [RSYSLOGD, "-N1", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"transport": "sctp"}, ValueError, "transport must be one of udp, tcp, unix"),
        ({"address": "/dev/log"}, TypeError, "needs a \\(host, port\\) address"),
        ({"transport": "unix"}, TypeError, "needs a socket path"),
        ({"facility": 24}, ValueError, "facility must be an int from 0 to 23"),
        ({"buffer_size": 0}, ValueError, "buffer_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad argument raises an error naming it."""
    with pytest.raises(error, match=message):
        AsyncSyslogHandler(**kwargs)


# ---------------------------------------------------------------- TLS, trio's runs


def _records(logger: logging.Logger, texts: list[str]) -> list[logging.LogRecord]:
    return [
        logger.makeRecord(logger.name, logging.INFO, __file__, 1, text, (), None) for text in texts
    ]


@pytest.mark.anyio
async def test_tls_sends_octet_counted_frames_on_every_backend(logger: logging.Logger) -> None:
    """ssl= speaks TLS to a server whose certificate a private CA signed, on every backend."""
    import ssl

    import trustme
    from anyio.streams.tls import TLSListener

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    received: list[bytes] = []
    got_all = anyio.Event()

    async def serve(stream: anyio.abc.ByteStream) -> None:
        data = b""
        try:
            async with stream:
                async for chunk in stream:
                    data += chunk
                    while b" " in data:  # octet counting: "LEN MSG"
                        size, _, rest = data.partition(b" ")
                        if len(rest) < int(size):
                            break
                        received.append(rest[: int(size)])
                        data = rest[int(size) :]
                    if len(received) == 3:
                        got_all.set()
        except (anyio.BrokenResourceError, ssl.SSLError):
            pass

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_context, standard_compatible=False)
    handler = Reported(("127.0.0.1", port), transport="tcp", ssl=client_context)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        with anyio.fail_after(STALL):
            await handler.aemit_batch(_records(logger, ["one", "two", "three"]))
            await got_all.wait()
            await handler.aclose()
        tg.cancel_scope.cancel()
    assert [m.rsplit(b" - ", 1)[1] for m in received] == [b"one", b"two", b"three"]
    assert (handler.sent, handler.reported) == (3, [])


def test_a_run_ending_without_aclose_ends_and_the_next_run_sends_the_rest(
    unix_socket: socket.socket, logger: logging.Logger
) -> None:
    """A trio run that ends with the sender waiting ends; a later run sends what was left."""
    import trio

    class Signalling(Reported):
        failed: trio.Event | None = None

        def handleError(self, record: logging.LogRecord) -> None:
            super().handleError(record)
            if self.failed is not None:
                self.failed.set()

    handler = Signalling(unix_socket.getsockname(), transport="unix", backoff=60.0)
    away = unix_socket.getsockname() + ".away"  # nobody there: the sender backs off

    async def first_run() -> None:
        handler.address = away
        handler.failed = trio.Event()
        with anyio.fail_after(STALL):
            await handler.aemit_batch(_records(logger, ["kept"]))
            await handler.failed.wait()  # the sender failed once and now backs off

    trio.run(first_run)  # returns: the sender, a system task, is cancelled with the run
    assert handler.pending == 1

    async def second_run() -> None:
        handler.address = unix_socket.getsockname()
        with anyio.fail_after(STALL):
            await handler.aclose()

    trio.run(second_run)
    assert unix_socket.recv(65536).decode().rsplit(" - ", 1)[1] == "kept"
    assert (handler.sent, handler.pending) == (1, 0)


def test_tls_needs_tcp_and_a_context() -> None:
    """ssl= is refused with another transport, or as something other than a context."""
    with pytest.raises(ValueError, match="ssl needs transport='tcp'"):
        AsyncSyslogHandler(("127.0.0.1", 514), ssl=True)
    with pytest.raises(TypeError, match=r"ssl must be True, False or an ssl\.SSLContext"):
        AsyncSyslogHandler(("127.0.0.1", 514), transport="tcp", ssl="yes")  # type: ignore[arg-type]


def test_without_anyio_aioqlog_imports_and_the_handlers_name_their_extra() -> None:
    """Without anyio, import aioqlog works; import aioqlog.handlers says which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['anyio'] = None  # as if not installed\n"
        "import aioqlog\n"
        "try:\n"
        "    import aioqlog.handlers\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=STALL, check=True
    )
    assert done.stdout.strip() == (
        "aioqlog.handlers needs anyio, which each handler's extra installs: "
        "pip install 'aioqlog[syslog]' (or aioqlog[http], aioqlog[smtp])"
    )
