"""Every Python sample in README.md and docs/ runs as written.

Each ```` ```python ```` block is run as a script by this interpreter, in a
subprocess (cwd: a fresh temporary directory, at most ``TIMEOUT`` seconds), and
must exit 0 without a traceback or a logging error on stderr. A marker in the
HTML comments just above the fence changes that:

- ``<!-- fragment: why -->``: deliberately not a whole program; it is only
  compiled (as is, or, for ``"key": value`` entries of a mapping, inside braces).
- ``<!-- continues -->``: runs after the block before it on the same page
  (fragments aside), as one script.
- ``<!-- serves: /path -->``: a server sample. It runs with ``PORT`` set to a free
  port, must serve on 127.0.0.1 (the sample reads ``PORT``), answer ``GET /path``
  with 200, then exit on SIGTERM.

A ``--8<-- "file"`` line (the mkdocs snippets syntax) is replaced by that file,
as the docs build does (such a block sits between ``<!-- fmt: off -->`` and
``<!-- fmt: on -->``, which keep ruff from formatting the include line). A sample
that imports a package which is not installed is skipped (the test extras
install every one the docs use).

Samples addressed to a server elsewhere are pointed at one the test starts on
127.0.0.1: the address literals in ``SERVERS`` are replaced by the local
server's, and the test checks that the server received what the sample logged.
"""

from __future__ import annotations

import ast
import email
import email.policy
import gzip
import http.server
import importlib.util
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from support import STALL

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TIMEOUT = 60.0

FENCE = re.compile(r"^(?P<indent>\s*)```python\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>fragment|continues|serves)\s*:?\s*(?P<arg>.*?)\s*-->\s*$")
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclass
class Sample:
    """One ```python block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    kind: str  # "run", "fragment", "continues" or "serves"
    arg: str
    previous: Sample | None  # the block before it on the same page, fragments aside

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def script(self) -> str:
        """Return the code to run: with the blocks it continues, if any."""
        if self.kind == "continues":
            assert self.previous is not None, f"{self.name}: nothing before it to continue"
            return f"{self.previous.script()}\n\n{self.code}"
        return self.code


def _expand(line: str) -> str:
    match = SNIPPET.match(line)
    if match is None:
        return line
    return (ROOT / match["path"]).read_text()


def collect(page: Path) -> list[Sample]:
    """Return the ```python blocks of a markdown page, with their markers."""
    lines = page.read_text().splitlines()
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent = len(fence["indent"])
        body: list[str] = []
        j = i + 1
        while not lines[j].strip().startswith("```"):
            body.append(_expand(lines[j][indent:]))
            j += 1
        marker = None
        for before in reversed(lines[:i]):  # the comments just above the fence
            if before.strip() and not before.strip().startswith("<!--"):
                break
            marker = marker or MARKER.match(before)
        kind, arg = (marker["kind"], marker["arg"]) if marker else ("run", "")
        previous = next((s for s in reversed(samples) if s.kind != "fragment"), None)
        samples.append(Sample(page, i + 1, "\n".join(body) + "\n", kind, arg, previous))
        i = j + 1
    return samples


SAMPLES = [sample for page in PAGES for sample in collect(page)]


def _missing_packages(code: str) -> list[str]:
    """Name the top-level packages the code imports that are not installed."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return sorted(root for root in roots if importlib.util.find_spec(root) is None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------ local servers


class Received:
    """What a local server received, as text; can be waited on."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.changed = threading.Condition()

    def add(self, text: str) -> None:
        with self.changed:
            self.parts.append(text)
            self.changed.notify_all()

    def wait_for(self, text: str) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: text in "".join(self.parts), STALL)


@contextmanager
def http_collector(received: Received) -> Iterator[str]:
    """Serve an HTTP log collector on 127.0.0.1; yield its ingest URL."""

    class Ingest(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.add(body.decode())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test's output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    thread = threading.Thread(target=server.serve_forever, name="collector", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ingest"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STALL)


@contextmanager
def syslog_listener(received: Received) -> Iterator[int]:
    """Accept syslog over TCP on 127.0.0.1 (RFC 6587 frames, kept as text); yield the port."""

    class Frames(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(65536):
                received.add(data.decode(errors="replace"))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Frames)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="syslog", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STALL)


@contextmanager
def smtp_server(received: Received, ca_file: Path) -> Iterator[int]:
    """Serve SMTP with STARTTLS and a login on 127.0.0.1; yield the port.

    The certificate is issued for 127.0.0.1 by a test CA written to *ca_file*,
    which the sample's process trusts through ``SSL_CERT_FILE``.
    """
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    class Mailbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
            received.add(str(mail))
            return "250 OK"

    def accept_any_login(*args: Any) -> AuthResult:
        return AuthResult(success=isinstance(args[-1], LoginPassword))

    port = _free_port()
    controller = Controller(
        Mailbox(),
        hostname="127.0.0.1",
        port=port,
        ready_timeout=STALL,
        tls_context=context,
        require_starttls=True,
        authenticator=accept_any_login,
        auth_required=True,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@dataclass
class Server:
    """A server a sample addresses: the literal that names it, and how to stand one up."""

    address: re.Pattern[str]
    start: Callable[[Received, Path], Any]  # a context manager yielding the replacement
    expected: Callable[[str], list[str]]  # what the server must receive, given the sample


def _logged_messages(code: str) -> list[str]:
    """Return the literal messages the sample logs (``.warning("...")`` and the like)."""
    return re.findall(r'\.(?:debug|info|warning|error|critical|exception)\("([^"%]+)"', code)


@contextmanager
def _quoted(server: Any) -> Iterator[str]:
    with server as url:
        yield f'"{url}"'


@contextmanager
def _host_port(server: Any) -> Iterator[str]:
    with server as port:
        yield f'"127.0.0.1", {port}'


@contextmanager
def _tuple(server: Any) -> Iterator[str]:
    with server as port:
        yield f'("127.0.0.1", {port})'


SERVERS = [
    Server(
        re.compile(r'"https://logs\.example\.com/ingest"'),
        lambda received, tmp: _quoted(http_collector(received)),
        _logged_messages,
    ),
    Server(
        re.compile(r'"smtp\.example\.com",\s*587'),
        lambda received, tmp: _host_port(smtp_server(received, tmp / "ca.pem")),
        # Only ERROR records are mailed.
        lambda code: re.findall(r'\.(?:error|critical|exception)\("([^"%]+)"', code),
    ),
    Server(
        re.compile(r'\("127\.0\.0\.1", 514\)'),
        lambda received, tmp: _tuple(syslog_listener(received)),
        _logged_messages,
    ),
]


# ------------------------------------------------------------------- the tests


#: opentelemetry-instrumentation-logging's LoggingHandler.flush() starts a thread, which
#: Python 3.12 refuses while logging.shutdown() runs at exit: printed with or without aioqlog.
_OTEL_FLUSH_AT_EXIT = re.compile(
    r"Exception ignored in atexit callback: <function shutdown at 0x[0-9a-f]+>\n"
    r"Traceback \(most recent call last\):\n"
    r"(?:  .*\n)*?  File \".*/opentelemetry/instrumentation/logging/handler\.py\", .* in flush\n"
    r"(?:  .*\n)*"
    r"RuntimeError: can't create new thread at interpreter shutdown\n"
)


def _clean(stderr: str) -> bool:
    stderr = _OTEL_FLUSH_AT_EXIT.sub("", stderr)
    return "Traceback" not in stderr and "Logging error" not in stderr


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if (tmp_path / "ca.pem").exists():
        env["SSL_CERT_FILE"] = str(tmp_path / "ca.pem")
    return env


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _serve(sample: Sample, script: str, tmp_path: Path) -> None:
    """Run a server sample on a free port: one GET, then SIGTERM; it must end cleanly."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_env(tmp_path, PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}{sample.arg}"
        deadline = time.monotonic() + TIMEOUT
        response = None
        # Poll: a process that is starting cannot be awaited.
        while response is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(url, timeout=STALL)
            except httpx.TransportError:
                time.sleep(0.05)
        if response is None:
            proc.kill()
            _, err = proc.communicate(timeout=TIMEOUT)
            pytest.fail(f"{sample.name} did not serve {url}:\n{err}")
        assert response.status_code == 200, response.text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # uvicorn re-raises the signal it handled once it has shut down.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert _clean(err), err


@pytest.mark.parametrize("sample", SAMPLES, ids=[sample.name for sample in SAMPLES])
def test_the_sample_runs_as_written(sample: Sample, tmp_path: Path) -> None:
    """The block runs to a clean exit (fragments compile); its servers get what it logs."""
    script = sample.script()
    if sample.kind == "fragment":
        assert sample.arg, f"{sample.name}: say why it is a fragment: <!-- fragment: why -->"
        try:
            compile(script, sample.name, "exec")
        except SyntaxError:
            compile("{" + script + "}", sample.name, "exec")  # entries of a mapping
        return
    missing = _missing_packages(script)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not installed")
    if sample.kind == "serves":
        _serve(sample, script, tmp_path)
        return
    received = Received()
    with _servers_for(script, received, tmp_path) as (script, expected):
        result = _run(script, tmp_path)
        assert result.returncode == 0, result.stderr
        assert _clean(result.stderr), result.stderr
        for message in expected:
            assert received.wait_for(message), f"{message!r} not in {received.parts!r}"


@contextmanager
def _servers_for(
    script: str, received: Received, tmp_path: Path
) -> Iterator[tuple[str, list[str]]]:
    """Start a local server for each address the script names; rewrite it to point there."""
    with ExitStack() as stack:
        expected: list[str] = []
        for server in SERVERS:
            if server.address.search(script):
                replacement = stack.enter_context(server.start(received, tmp_path))
                script = server.address.sub(replacement, script)
                expected += server.expected(script)
        yield script, expected


def test_every_page_with_python_has_samples_found() -> None:
    """The extraction finds the blocks (a broken fence pattern would pass vacuously)."""
    pages = {sample.page.name for sample in SAMPLES}
    assert {"README.md", "quickstart.md", "dictconfig.md", "starlette.md"} <= pages
    assert any(sample.kind == "serves" for sample in SAMPLES)


def _config_blocks() -> Iterator[tuple[str, str]]:
    """Yield (where, text) for every code block of the docs and every example config."""
    fence = re.compile(r"^\s*```\w*\s*$\n(.*?)^\s*```\s*$", re.S | re.M)
    for page in PAGES:
        for block in fence.findall(page.read_text()):
            yield str(page.relative_to(ROOT)), block
    for path in sorted((ROOT / "examples").iterdir()):
        if path.suffix in {".py", ".json", ".yaml"}:
            yield str(path.relative_to(ROOT)), path.read_text()


def test_every_queue_mapping_in_the_docs_names_its_factory() -> None:
    """A "queue" mapping without "()" fails on Python 3.12+: no sample or example has one."""
    # JSON and Python: "queue": {...}; YAML: queue: followed by an indented mapping.
    mapping = re.compile(r'"?queue"?\s*:\s*(\{[^{}]*\}|\n(?:\s+\S.*\n?)+)')
    found = 0
    for where, text in _config_blocks():
        for match in mapping.finditer(text):
            found += 1
            assert "()" in match.group(1), f"{where}: {match.group(0)!r} has no '()' key"
    assert found  # the pattern still matches the samples


def test_every_extra_the_docs_name_exists() -> None:
    """``pip install 'aioqlog[x]'`` in the docs names an extra that pyproject.toml defines."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.M))
    named = {
        extra
        for page in PAGES
        for extra in re.findall(r"aioqlog\[([A-Za-z0-9_-]+)\]", page.read_text())
    }
    assert "yaml" in named
    assert named <= extras, f"not defined in pyproject.toml: {sorted(named - extras)}"


def test_the_404_page_links_under_the_sites_own_path(tmp_path: Path) -> None:
    """The built 404 page links under the project's Pages path (/aioqlog/), not the root."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (make docs installs it)")
    # A GitHub project site is published at https://<owner>.github.io/<repo>/.
    repo_url = re.search(r"^repo_url:\s*\S+/(\S+?)/?$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert repo_url
    prefix = f"/{repo_url[1]}/"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        timeout=TIMEOUT * 2,
        check=True,
    )
    page = (tmp_path / "404.html").read_text()
    links = re.findall(r'(?:href|src)="(/[^"]*)"', page)
    assert links
    assert all(link.startswith(prefix) for link in links), links
