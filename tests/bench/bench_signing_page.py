"""The signer's document page: throughput against a bare Flask "hello" app, and page weight.

Design budgets:

- signer page throughput >= 30% of a bare Flask "hello" endpoint on the same gunicorn setup;
- signer page weight <= 60 KB compressed (HTML + CSS + JS).

Setup: a temporary instance folder and SQLite database (migrated with Flask-Migrate's
``upgrade()``), ``flask portal seed-demo``, the demo refund sent to one customer (link-only
auth) and the disclosure accepted, so ``GET /sign/<public_id>`` renders the document page.
Both apps run under gunicorn with the same command line (``--workers 2``, sync workers) on
127.0.0.1; the portal gets its settings from the environment, as ``wsgi.py`` does. The signer's
session cookie comes from one ``GET /s/<token>`` (not followed) plus one page view (which adds
the CSRF token to the session, as a browser's first view does); every timed request reuses it.

Load: ``wrk`` (Debian package ``wrk``, installed by ``make test-deps``), a separate process;
without it the benchmark says so and stops. Each contender gets one WARMUP-second wrk run,
then ROUNDS interleaved rounds (ours, baseline, ours, baseline, ...) of DURATION seconds each,
``wrk -t2 -c CONNECTIONS``, counting only 200 responses. Each round gives a ratio (ours over
the baseline of the same round); the reported figure is the median ratio, with min/median/max
of the ratios and of each side's requests per second. gunicorn's sync workers close the
connection after every response, so each request includes a TCP connect for both contenders
alike.

Weight: the page's HTML plus every same-origin stylesheet (``link rel=stylesheet``) and
script (``script src``) it references, each gzipped at level 6; KB = 1024 bytes.

Environment: ``BENCH_SIGNING_CONNECTIONS`` (default 4), ``BENCH_SIGNING_SECONDS`` (default 2,
whole seconds), ``BENCH_SIGNING_ROUNDS`` (default 7),
``BENCH_PROFILE=1`` prints a cProfile summary of PROFILE_REQUESTS page views through the
Flask test client (``BENCH_PROFILE_LINES`` lines of each listing, default 25).
"""

from __future__ import annotations

import cProfile
import gzip
import http.client
import io
import os
import pstats
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from tests.bench.common import REFUND_VALUES, environment, server_env

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = int(os.environ.get("BENCH_SIGNING_CONNECTIONS", "4"))
WRK_THREADS = 2
WARMUP = 1  # seconds
DURATION = int(os.environ.get("BENCH_SIGNING_SECONDS", "2"))
ROUNDS = int(os.environ.get("BENCH_SIGNING_ROUNDS", "7"))
WORKERS = 2
READY_TIMEOUT = 30.0
PROFILE_REQUESTS = 200
PROFILE_LINES = int(os.environ.get("BENCH_PROFILE_LINES", "25"))
BUDGET_RATIO = 0.30
BUDGET_KB = 60.0
NAME_RATE = "signing_page_throughput"
NAME_WEIGHT = "signing_page_weight"

ENV = server_env("bench-signing-secret-key")
T = TypeVar("T")

PORTAL_WSGI = '''"""The portal as wsgi.py builds it, with settings from the environment."""
from portal import create_app

app = create_app()
'''

HELLO_WSGI = '''"""A bare Flask app: the baseline."""
from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello():
    return "<!doctype html><title>Hello</title><p>Hello, world!</p>"
'''


# ---------------------------------------------------------------- setup


def _prepare() -> tuple[str, str]:
    """Migrate, seed, send the refund and consent; return (link path, public id)."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from portal import create_app
    from portal.accounts.models import User
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.extensions import db, dispose_engines
    from portal.library import operations as library
    from portal.library.models import Template
    from portal.signing import operations as signing

    app = create_app()
    with app.app_context():
        upgrade()
        seeded = app.test_cli_runner().invoke(args=["portal", "seed-demo"])
        if seeded.exit_code != 0:
            raise RuntimeError(f"seed-demo failed: {seeded.output}") from seeded.exception
        db.session.rollback()
        agent = db.session.execute(
            select(User).where(User.email == "agent@demo.example")
        ).scalar_one()
        template = db.session.execute(
            select(Template).where(Template.name == "Refund authorization")
        ).scalar_one()
        customer = RecipientInput(role="customer", name="Zoë Łukasiewicz", email="zoe@example.com")
        envelope, links = envelopes.create_and_send(
            library.approved_version(template), REFUND_VALUES, [customer], by=agent
        )
        (recipient,) = envelope.recipients
        if recipient.auth_method != "link":
            raise RuntimeError(f"expected a link-only recipient, got {recipient.auth_method}")
        public_id = envelope.public_id
        signing.give_consent(recipient.id)
        link = urlsplit(links[recipient.id]).path
        db.session.remove()
        dispose_engines()
    return link, public_id


def _checkpoint(path: str) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """One gunicorn on 127.0.0.1 serving ``module:app`` from ``folder``."""

    def __init__(self, folder: str, module: str) -> None:
        self.port = _free_port()
        self.log_path = os.path.join(folder, f"{module}.log")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        command = [
            gunicorn,
            "--workers",
            str(WORKERS),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            folder,
            f"{module}:app",
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((folder, str(ROOT)))}
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait(self, path: str) -> None:
        """Return once ``GET path`` answers 200."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.tail()}")
            try:
                status, _headers, _body = fetch(self.port, path)
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready on {path} in {READY_TIMEOUT:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _cookie(headers: http.client.HTTPMessage, current: str = "") -> str:
    jar = SimpleCookie()
    if current:
        jar.load(current)
    for value in headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return "; ".join(f"{morsel.key}={morsel.value}" for morsel in jar.values())


def _signer_cookie(port: int, link: str, public_id: str) -> tuple[str, bytes]:
    """The session cookie a browser holds on its second view, and the page HTML."""
    status, headers, _ = fetch(port, link)
    location = headers.get("Location", "")
    if status != 302 or not location.endswith(f"/sign/{public_id}"):
        raise RuntimeError(f"GET {link}: {status} -> {location!r}, expected /sign/{public_id}")
    cookie = _cookie(headers)
    if not cookie:
        raise RuntimeError(f"GET {link} set no session cookie")
    status, headers, body = fetch(port, f"/sign/{public_id}", {"Cookie": cookie})
    if status != 200 or b"Adopt and sign" not in body:
        raise RuntimeError(f"GET /sign/{public_id}: {status}, not the document page")
    return _cookie(headers, cookie), body


# ---------------------------------------------------------------- load


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rate: float  # 200 responses per second
    others: int  # non-2xx/3xx responses and socket errors


def _wrk(wrk: str, port: int, path: str, headers: dict[str, str], seconds: int) -> Load:
    """One wrk run of ``seconds`` against ``path``."""
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    url = f"http://127.0.0.1:{port}{path}"
    out = subprocess.run(
        [wrk, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", *header_args, url],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    span = float(total.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = sum(int(n) for n in errors.groups()) if errors else 0
    return Load((int(total.group(1)) - bad) / span, bad + failed)


def _spread(values: list[float], digits: int = 0) -> str:
    """min / median / max."""
    return " / ".join(
        f"{v:,.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def _throughput(portal: Server, hello: Server, page: str, cookie: str, backend: str) -> None:
    wrk = _require_wrk()
    ours_headers = {"Cookie": cookie}
    _wrk(wrk, portal.port, page, ours_headers, WARMUP)  # each contender warmed up alike
    _wrk(wrk, hello.port, "/hello", {}, WARMUP)
    ours: list[Load] = []
    base: list[Load] = []
    load_before = os.getloadavg()
    for _ in range(ROUNDS):  # interleaved, so drift in machine load hits both alike
        ours.append(_wrk(wrk, portal.port, page, ours_headers, DURATION))
        base.append(_wrk(wrk, hello.port, "/hello", {}, DURATION))
    ratios = [o.rate / b.rate if b.rate else 0.0 for o, b in zip(ours, base, strict=True)]
    ratio = statistics.median(ratios)
    verdict = "OK" if ratio >= BUDGET_RATIO else "OVER BUDGET"
    print(
        f"{NAME_RATE}[{backend}]: ours {statistics.median(o.rate for o in ours):,.0f} req/s"
        f" / baseline {statistics.median(b.rate for b in base):,.0f} req/s"
        f" = {ratio:.2f} median (budget {BUDGET_RATIO:.2f}) {verdict}",
        flush=True,
    )
    print(
        f"  ratio by round {' '.join(f'{r:.2f}' for r in ratios)};"
        f" load average before the rounds {' '.join(f'{v:.2f}' for v in load_before)}",
        flush=True,
    )
    print(
        f"  ratio min/median/max {_spread(ratios, 2)}; req/s min/median/max: ours"
        f" {_spread([o.rate for o in ours])}, baseline {_spread([b.rate for b in base])}",
        flush=True,
    )
    print(
        f"  GET {page} (signer cookie) vs GET /hello, gunicorn --workers {WORKERS} (sync),"
        f" wrk -t{WRK_THREADS} -c{CONNECTIONS}, {ROUNDS} interleaved rounds of {DURATION} s each"
        f" after {WARMUP} s warm-up, {os.cpu_count()} CPUs, load average"
        f" {' '.join(f'{v:.2f}' for v in os.getloadavg())};"
        f" non-200 or errors: {sum(o.others for o in ours)} / {sum(b.others for b in base)}",
        flush=True,
    )


def _require_wrk() -> str:
    """wrk's path; the benchmark stops when it is not installed (no in-process client: one
    would share the CPUs with the servers it measures and flatter the slower one)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk is not installed: run `make test-deps` (or `apt-get install wrk`); "
            "the signer page benchmark needs it as its load client"
        )
    return wrk


# ---------------------------------------------------------------- weight


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.styles: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "link" and "stylesheet" in found.get("rel", "").lower().split():
            if found.get("href"):
                self.styles.append(found["href"])
        elif tag == "script" and found.get("src"):
            self.scripts.append(found["src"])


def _gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def _weight(port: int, page: str, html: bytes) -> None:
    assets = _Assets()
    assets.feed(html.decode("utf-8"))
    origin = f"http://127.0.0.1:{port}"
    sizes = {"html": _gzipped(html), "css": 0, "js": 0}
    raw = {"html": len(html), "css": 0, "js": 0}
    skipped: list[str] = []
    for kind, refs in (("css", assets.styles), ("js", assets.scripts)):
        for ref in dict.fromkeys(refs):
            url = urlsplit(urljoin(origin + page, ref))
            if f"{url.scheme}://{url.netloc}" != origin:
                skipped.append(ref)
                continue
            status, _headers, body = fetch(port, url.path + (f"?{url.query}" if url.query else ""))
            if status != 200:
                raise RuntimeError(f"GET {ref}: {status}")
            sizes[kind] += _gzipped(body)
            raw[kind] += len(body)
    total = sum(sizes.values()) / 1024
    ratio = total / BUDGET_KB
    verdict = "OK" if total <= BUDGET_KB else "OVER BUDGET"
    print(
        f"{NAME_WEIGHT}: ours {total:.1f} KB compressed (html {sizes['html'] / 1024:.1f},"
        f" css {sizes['css'] / 1024:.1f}, js {sizes['js'] / 1024:.1f}) / budget {BUDGET_KB:g} KB"
        f" = {ratio:.2f} {verdict}",
        flush=True,
    )
    print(
        f"  gzip -6 of {len(assets.styles)} stylesheet(s) and {len(assets.scripts)} script(s);"
        f" uncompressed html {raw['html'] / 1024:.1f} KB, css {raw['css'] / 1024:.1f} KB,"
        f" js {raw['js'] / 1024:.1f} KB"
        + (f"; not same-origin, left out: {', '.join(skipped)}" if skipped else ""),
        flush=True,
    )


# ---------------------------------------------------------------- profile


def _profile(link: str, public_id: str) -> None:
    """cProfile of PROFILE_REQUESTS page views through the Flask test client, in-process."""
    from portal import create_app
    from portal.extensions import dispose_engines

    app = create_app()
    client = app.test_client()
    if client.get(link).status_code != 302:
        raise RuntimeError(f"GET {link} did not redirect")
    page = f"/sign/{public_id}"
    client.get(page)  # the first view adds the CSRF token to the session
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(PROFILE_REQUESTS):
        client.get(page)
    profiler.disable()
    elapsed = time.perf_counter() - started
    with app.app_context():
        dispose_engines()
    each = elapsed / PROFILE_REQUESTS * 1000
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(PROFILE_LINES)
        print(
            f"--- cProfile of {PROFILE_REQUESTS} GET {page} ({each:.2f} ms each, profiled),"
            f" by {order}\n{out.getvalue()}",
            flush=True,
        )


# ---------------------------------------------------------------- entry point


@contextmanager
def prepared(
    backend: str, folder: str, database_url: str, env: dict[str, str], prepare: Callable[[], T]
) -> Iterator[T]:
    """In ``backend``'s instance folder under ``folder`` with ``env`` set: what ``prepare``
    returns, the SQLite database checkpointed so the servers start from one file."""
    instance = os.path.join(folder, f"instance-{backend}")
    os.makedirs(instance)
    with environment({**env, "PORTAL_INSTANCE": instance, "DATABASE_URL": database_url}):
        made = prepare()
        if backend == "sqlite":
            _checkpoint(database_url.removeprefix("sqlite:///"))
        yield made


def _measure(backend: str, folder: str, database_url: str, weigh: bool) -> None:
    """Prepare the database, serve both apps with gunicorn, and measure."""
    with prepared(backend, folder, database_url, ENV, _prepare) as (link, public_id):
        page = f"/sign/{public_id}"
        servers: list[Server] = []
        try:
            portal = Server(folder, "bench_portal_wsgi")
            servers.append(portal)
            hello = Server(folder, "bench_hello_wsgi")
            servers.append(hello)
            portal.wait("/healthz")
            hello.wait("/hello")
            cookie, html = _signer_cookie(portal.port, link, public_id)
            _throughput(portal, hello, page, cookie, backend)
            if weigh:
                _weight(portal.port, page, html)
        finally:
            for server in servers:
                server.stop()
        if os.environ.get("BENCH_PROFILE"):
            _profile(link, public_id)


def run() -> None:
    """Embedded mode (SQLite) and the production setup (PostgreSQL), same gunicorn settings."""
    from tests.services import PostgresServer

    _require_wrk()
    with tempfile.TemporaryDirectory(prefix="portal-bench-signing-") as folder:
        Path(folder, "bench_portal_wsgi.py").write_text(PORTAL_WSGI)
        Path(folder, "bench_hello_wsgi.py").write_text(HELLO_WSGI)
        _measure("sqlite", folder, f"sqlite:///{os.path.join(folder, 'bench.db')}", weigh=True)
        server = PostgresServer.start()
        try:
            server.execute("CREATE DATABASE portal_bench_signing")
            url = f"postgresql://postgres@127.0.0.1:{server.port}/portal_bench_signing"
            _measure("postgresql", folder, url, weigh=False)
        finally:
            server.stop()


if __name__ == "__main__":
    run()
