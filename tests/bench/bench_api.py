"""The REST API: reading one envelope and a page of 25, against a bare Flask JSON endpoint.

Design budget (the API has none of its own in the design; it takes the signer page's):

- API throughput >= 30% of a bare Flask endpoint returning the same JSON body on the same
  gunicorn setup, for ``GET /api/v1/envelopes/<id>`` and ``GET /api/v1/envelopes?limit=25``.

Setup: as ``bench_signing_page`` (whose helpers this module uses): a temporary instance folder
and database (migrated with Flask-Migrate's ``upgrade()``), ``flask portal seed-demo``, the demo
refund sent to one customer, then ENVELOPES - 1 more refunds sent by the demo agent (so the list
is a full page of 25 with a next cursor), and an API key of the agent's team with
``envelopes:read`` made by the demo admin through ``portal.integrations.keys.create``. Every timed
request sends ``Authorization: Bearer <key>`` (wrk ``-H``), so each one finds the key by its hash,
counts against ``API_RATE_LIMIT`` (Flask-Limiter's in-memory storage, one count per gunicorn
worker, as there is no Redis here), runs the view and its schema, and gets its ETag and
RateLimit headers. ``API_RATE_LIMIT`` is set to LIMIT, far above what the run can make, so the
limiter counts every call but never answers 429; the run fails if any response is not 2xx.

Baseline: a bare Flask app with the same two routes, each returning (``jsonify``) the JSON body
the portal answered for it, read once at start-up; it gets the same header.

Both apps run under gunicorn with ``--workers 2`` (sync) on 127.0.0.1, loaded by ``wrk -t2 -c4``
(``bench_signing_page``'s settings) from a separate process. For each endpoint: one WARMUP-second
run of each side, then ROUNDS interleaved rounds (ours, baseline, ...) of DURATION seconds; each
round gives a ratio (ours over the baseline of the same round); the figure is the median ratio,
with min/median/max of the ratios and of each side's requests per second. SQLite (embedded mode)
and PostgreSQL (the production setup), in that order.

Environment: ``BENCH_API_SECONDS`` (default 5, whole seconds), ``BENCH_API_ROUNDS`` (default 3),
``BENCH_SIGNING_CONNECTIONS`` (wrk's connections, default 4).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from tests.bench import bench_signing_page as signing_bench
from tests.bench.bench_signing_page import (
    PORTAL_WSGI,
    WARMUP,
    WORKERS,
    WRK_THREADS,
    Load,
    Server,
    _require_wrk,
    _spread,
    _wrk,
    fetch,
    prepared,
)
from tests.bench.common import REFUND_VALUES

DURATION = int(os.environ.get("BENCH_API_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "3"))
ENVELOPES = 26  # a full page of 25 and one more, so the page has a next cursor
PAGE = 25
BUDGET_RATIO = 0.30  # the signer page's throughput budget
LIMIT = "1000000 per minute"  # counted on every call, never reached in a run

ENV = {
    **signing_bench.ENV,
    "SECRET_KEY": "bench-api-secret-key",
    "API_RATE_LIMIT": LIMIT,
}

BASE_WSGI = '''"""A bare Flask app returning the portal's JSON bodies: the baseline."""
import json
from pathlib import Path

from flask import Flask, jsonify

BODIES = json.loads((Path(__file__).parent / "bench_api_bodies.json").read_text())

app = Flask(__name__)


@app.get("/api/v1/envelopes/<envelope_id>")
def envelope(envelope_id):
    return jsonify(BODIES["one"])


@app.get("/api/v1/envelopes")
def envelopes():
    return jsonify(BODIES["page"])
'''


# ---------------------------------------------------------------- setup


def _prepare() -> tuple[str, str]:
    """The signer bench's database (its sent refund) plus more refunds and a read key;
    returns (public id of the first refund, the key's secret)."""
    from sqlalchemy import select

    from portal import create_app
    from portal.accounts.models import User
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.extensions import db, dispose_engines
    from portal.integrations import keys
    from portal.library import operations as library
    from portal.library.models import Template

    _link, public_id = signing_bench._prepare()
    app = create_app()
    with app.app_context():
        users = db.session.execute(select(User).where(User.email.like("%@demo.example")))
        by_email = {user.email: user for user in users.scalars()}
        agent, admin = by_email["agent@demo.example"], by_email["admin@demo.example"]
        template = db.session.execute(
            select(Template).where(Template.name == "Refund authorization")
        ).scalar_one()
        version = library.approved_version(template)
        if version is None:
            raise RuntimeError("the demo refund has no approved version")
        for number in range(1, ENVELOPES):
            customer = RecipientInput(
                role="customer", name="Zoë Łukasiewicz", email=f"zoe{number}@example.com"
            )
            envelopes.create_and_send(version, REFUND_VALUES, [customer], by=agent)
        if agent.team is None:
            raise RuntimeError("the demo agent has no team")
        made = keys.create(agent.team, "Benchmark", ["envelopes:read"], "never", by=admin)
        db.session.commit()
        secret = made.secret
        db.session.remove()
        dispose_engines()
    return public_id, secret


def _bodies(
    port: int, paths: dict[str, str], headers: dict[str, str], public_id: str
) -> dict[str, bytes]:
    """The portal's answers to both paths (checked), by name."""
    raw = {}
    bodies = {}
    for name, path in paths.items():
        status, answer, body = fetch(port, path, headers)
        if status != 200 or answer.get_content_type() != "application/json":
            raise RuntimeError(f"GET {path}: {status} {answer.get_content_type()}: {body[:300]!r}")
        if "RateLimit" not in answer:
            raise RuntimeError(f"GET {path}: no RateLimit header, the limiter did not count it")
        raw[name] = body
        bodies[name] = json.loads(body)
    if bodies["one"].get("id") != public_id:
        raise RuntimeError(f"GET {paths['one']}: another envelope: {bodies['one'].get('id')!r}")
    page = bodies["page"]
    if len(page.get("items", ())) != PAGE or not page.get("next_cursor"):
        raise RuntimeError(f"GET {paths['page']}: not a full page of {PAGE} with a next cursor")
    return raw


# ---------------------------------------------------------------- load


def _throughput(
    name: str,
    ours: Server,
    base: Server,
    path: str,
    headers: dict[str, str],
    backend: str,
    size: int,
) -> int:
    """Interleaved rounds on ``path``; prints the result; returns our non-2xx count."""
    wrk = _require_wrk()
    _wrk(wrk, ours.port, path, headers, WARMUP)
    _wrk(wrk, base.port, path, headers, WARMUP)
    mine: list[Load] = []
    theirs: list[Load] = []
    load_before = os.getloadavg()
    for _ in range(ROUNDS):  # interleaved, so drift in machine load hits both alike
        mine.append(_wrk(wrk, ours.port, path, headers, DURATION))
        theirs.append(_wrk(wrk, base.port, path, headers, DURATION))
    ratios = [o.rate / b.rate if b.rate else 0.0 for o, b in zip(mine, theirs, strict=True)]
    ratio = statistics.median(ratios)
    bad = sum(o.others for o in mine)
    verdict = "OK" if ratio >= BUDGET_RATIO and not bad else "OVER BUDGET"
    print(
        f"{name}[{backend}]: ours {statistics.median(o.rate for o in mine):,.0f} req/s"
        f" / baseline {statistics.median(b.rate for b in theirs):,.0f} req/s"
        f" = {ratio:.2f} median (budget {BUDGET_RATIO:.2f}) {verdict}",
        flush=True,
    )
    print(
        f"  ratio min/median/max {_spread(ratios, 2)}; req/s min/median/max: ours"
        f" {_spread([o.rate for o in mine])}, baseline {_spread([b.rate for b in theirs])};"
        f" load average before the rounds {' '.join(f'{v:.2f}' for v in load_before)}",
        flush=True,
    )
    print(
        f"  GET {path} (API key; {size / 1024:.1f} KB of JSON) vs the bare endpoint,"
        f" gunicorn --workers {WORKERS} (sync),"
        f" wrk -t{WRK_THREADS} -c{signing_bench.CONNECTIONS}, {ROUNDS} interleaved rounds of"
        f" {DURATION} s after {WARMUP} s warm-up, {os.cpu_count()} CPUs;"
        f" non-2xx or socket errors: ours {bad}, baseline {sum(b.others for b in theirs)}",
        flush=True,
    )
    return bad


def _measure(backend: str, folder: str, database_url: str) -> int:
    """Prepare the database, serve both apps with gunicorn, measure both endpoints."""
    with prepared(backend, folder, database_url, ENV, _prepare) as (public_id, secret):
        headers = {"Authorization": f"Bearer {secret}"}
        paths = {"one": f"/api/v1/envelopes/{public_id}", "page": f"/api/v1/envelopes?limit={PAGE}"}
        servers: list[Server] = []
        try:
            ours = Server(folder, "bench_portal_wsgi")
            servers.append(ours)
            ours.wait("/healthz")
            raw = _bodies(ours.port, paths, headers, public_id)
            bodies = {name: json.loads(body) for name, body in raw.items()}
            Path(folder, "bench_api_bodies.json").write_text(json.dumps(bodies))
            base = Server(folder, "bench_api_base_wsgi")
            servers.append(base)
            base.wait(paths["page"])
            bad = 0
            for name, key in (("api_envelope_get", "one"), ("api_envelope_list", "page")):
                size = len(raw[key])
                bad += _throughput(name, ours, base, paths[key], headers, backend, size)
            status, answer, _body = fetch(ours.port, paths["one"], headers)
            print(f"  after the rounds: {status}, RateLimit {answer.get('RateLimit')}", flush=True)
        finally:
            for server in servers:
                server.stop()
    return bad


def run() -> None:
    """Embedded mode (SQLite) and the production setup (PostgreSQL), same gunicorn settings."""
    from tests.services import PostgresServer

    _require_wrk()
    with tempfile.TemporaryDirectory(prefix="portal-bench-api-") as folder:
        Path(folder, "bench_portal_wsgi.py").write_text(PORTAL_WSGI)
        Path(folder, "bench_api_base_wsgi.py").write_text(BASE_WSGI)
        bad = _measure("sqlite", folder, f"sqlite:///{os.path.join(folder, 'bench.db')}")
        server = PostgresServer.start()
        try:
            server.execute("CREATE DATABASE portal_bench_api")
            url = f"postgresql://postgres@127.0.0.1:{server.port}/portal_bench_api"
            bad += _measure("postgresql", folder, url)
        finally:
            server.stop()
    if bad:
        raise RuntimeError(f"{bad} API responses were not 2xx (or failed): the figures are void")


if __name__ == "__main__":
    run()
