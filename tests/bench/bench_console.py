"""The console's list and search at 1,000,000 envelopes against the same at 10,000.

Design budget (PostgreSQL): console list and search at 1,000,000 envelopes <= 1.5x their
latency at 10,000 (indexes, keyset pagination, capped counts).

Setup: two databases migrated with Flask-Migrate's ``upgrade()`` and filled by the same
deterministic generator, one with ``SMALL`` and one with ``LARGE`` envelopes (row i is the
same customer, order number, team and template in both; only the second has 990,000 more).
Twelve teams of very different sizes (40% of the envelopes down to 0.1%), 40 templates, one
or two recipients an envelope (names, emails, 40% with a phone), an email per recipient (a
few bounced or failed), realistic JSON (merge data, settings, page geometry) and statuses.
Rows go in with COPY (PostgreSQL) or executemany (SQLite) in batches, with the listing and
search indexes dropped meanwhile and built again afterwards from their own definitions
(as a restore does), then ANALYZE.

Measured through the real view: Flask's test client, signed in (password and TOTP) as an
agent of a mid-size team (12%), an agent of the smallest team (0.1%) and a compliance
manager (every team), GET ``/console`` with the scenario's query string (full page for a
list; the htmx fragment, as the search box asks for it, for a search; a search whose first
page is full has its count asked for by a request of its own, ``/console/count``, measured as
a scenario of its own for the common surname). Each scenario runs
ROUNDS interleaved rounds (small, large, small, ...), each side REQUESTS requests a round
after one warm-up; a round's ratio is large/small of the mean latency. Printed: min / median
/ max of the ratios and of each side's latency; the median ratio is the figure, and a
scenario over the budget says OVER BUDGET. SQLite's figures are printed as information.

Environment: ``BENCH_CONSOLE_N`` (envelopes in the large database, default 1000000),
``BENCH_CONSOLE_ROUNDS`` (default 7), ``BENCH_CONSOLE_SQLITE=0`` skips SQLite,
``BENCH_CONSOLE_KEEP=1`` leaves the PostgreSQL server running and prints its address (for
EXPLAIN by hand).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bench.common import base_config, bench_folder, start_postgres

LARGE = int(os.environ.get("BENCH_CONSOLE_N", "1000000"))
SMALL = 10_000
ROUNDS = int(os.environ.get("BENCH_CONSOLE_ROUNDS", "7"))
REQUESTS = 3
BATCH = 20_000
BUDGET = 1.5
NAME = "console_list_search"
PASSWORD = "bench console password"
SEED = 20261204

# Share of the envelopes each team sent (the last one: an agent "whose team has few").
TEAM_WEIGHTS = (0.40, 0.20, 0.12, 0.08, 0.06, 0.045, 0.035, 0.025, 0.015, 0.01, 0.009, 0.001)
MID_TEAM = 2  # 12%
SMALL_TEAM = len(TEAM_WEIGHTS) - 1
TEMPLATES_PER_TEAM = (6, 5, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2)
SPAN = timedelta(days=730)
NOW = datetime.now(UTC).replace(microsecond=0)  # the same rows in both databases
STATUSES = (
    ("sent", 0.15),
    ("completed", 0.65),
    ("declined", 0.07),
    ("expired", 0.08),
    ("voided", 0.05),
)
STATUS_EDGES = [  # (status, upper edge of its share in [0, 1))
    (name, edge)
    for (name, _), edge in zip(STATUSES, itertools.accumulate(w for _, w in STATUSES), strict=True)
]
LIVE = timedelta(days=30)
FIRST = (
    "ana", "ben", "carla", "dmitri", "elena", "farid", "grace", "hugo", "ines", "jamal",
    "kofi", "lena", "mateo", "nadia", "oskar", "priya", "quinn", "rosa", "sven", "tariq",
)  # fmt: skip
LAST = ("garcia", "smith", "novak", "okafor", "tanaka", "muller", "rossi", "silva", "khan",
        "nguyen", "kowalski", "haddad", "jensen", "moreau", "papadopoulos", "yilmaz",
        "fernandez", "lindqvist", "obrien", "castillo", "ivanova", "dubois", "schmidt",
        "andersson", "mensah", "takahashi", "morales", "petrov", "osei", "herrera")  # fmt: skip
DOMAINS = ("example.com", "mail.example", "post.example.org", "inbox.example.net")
PAGES = [
    {"number": n, "width": 595.28, "height": 841.89, "rotation": 0, "x0": 0, "y0": 0,
     "image_blob_id": None, "image_type": "image/png"}
    for n in (1, 2)
]  # fmt: skip
SETTINGS = {
    "reminder_every_hours": 48, "reminder_max": 3, "expiry_days": 30, "routing": "sequential",
    "folder": "Customer Documents", "attachments": "optional", "default_auth": "link",
}  # fmt: skip

SETTINGS_JSON, PAGES_JSON = json.dumps(SETTINGS), json.dumps(PAGES)
ENVELOPE_COLUMNS = (
    "id", "public_id", "template_version_id", "team_id", "created_by_id", "title", "status",
    "merge_data", "ticket_id", "routing", "settings", "document_blob_id", "original_sha256",
    "page_count", "pages", "images_status", "images_attempts", "created_at", "sent_at",
    "expires_at", "finished_at", "seal_status", "seal_attempts", "search_text",
)  # fmt: skip
RECIPIENT_COLUMNS = (
    "id", "envelope_id", "role", "role_name", "kind", "order", "name", "email", "phone",
    "locale", "auth_method", "status", "auth_attempts", "reminders_sent", "sent_at",
    "finished_at", "locked_at",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "id", "created_at", "to_address", "to_name", "subject", "text_body", "html_body", "locale",
    "kind", "envelope_id", "recipient_id", "status", "attempts", "sent_at",
)  # fmt: skip
BODY = (
    "Hello,\n\nCustomer Care sent you a document to sign. Open the link below on your phone or "
    "computer; it works until the date shown.\n\nThank you.\n"
)


# ---------------------------------------------------------------- the data


@dataclass
class Base:
    """Rows every envelope refers to: teams, senders, template versions, the document."""

    team_ids: list[int]
    senders: dict[int, list[int]]  # team id -> sender user ids
    versions: dict[int, list[tuple[int, str]]]  # team id -> (version id, template name)
    blob_id: str
    logins: dict[str, tuple[str, str]]  # who -> (email, TOTP secret)


def _setup(app: Any) -> Base:
    """Teams, staff (enrolled in TOTP), approved templates and one stored document."""
    import pyotp

    from portal import storage
    from portal.accounts import admin
    from portal.accounts.models import User
    from portal.extensions import db
    from portal.library.models import Template, TemplateVersion

    with app.app_context():
        blob_id = storage.put(b"%PDF-1.7 bench", kind="envelope_document")
        team_ids, senders, versions, logins = [], {}, {}, {}
        for number, templates in enumerate(TEMPLATES_PER_TEAM):
            team = admin.create_team(f"Team {number:02d}", by="bench")
            team_ids.append(team.id)
            senders[team.id] = []
            for agent in range(4):
                user, _ = admin.create_user(
                    f"agent{agent}.team{number}@bench.example", f"Agent {agent} of team {number}",
                    "agent", team, by="bench", password=PASSWORD,
                )  # fmt: skip
                senders[team.id].append(user.id)
            versions[team.id] = []
            for t in range(templates):
                name = f"Template {number:02d}-{t} {('Refund', 'Addendum', 'Consent')[t % 3]}"
                template = Template(name=name, document_type="other", team_id=team.id)
                version = TemplateVersion(
                    template=template, number=1, status="approved", source_kind="pdf",
                    source_blob_id=blob_id, page_count=2, roles=[],
                )  # fmt: skip
                db.session.add_all([template, version])
                db.session.flush()
                versions[team.id].append((version.id, name))
        compliance, _ = admin.create_user(
            "compliance@bench.example", "Compliance", "compliance", None, by="bench",
            password=PASSWORD,
        )  # fmt: skip
        for who, user_id in (
            ("mid", senders[team_ids[MID_TEAM]][0]),
            ("small", senders[team_ids[SMALL_TEAM]][0]),
            ("all", compliance.id),
        ):
            secret = pyotp.random_base32(32)
            user = db.session.get(User, user_id)
            user.totp_blob_id = storage.put(secret.encode(), kind="totp_secret")
            user.totp_confirmed_at = NOW
            logins[who] = (user.email, secret)
        db.session.commit()
        return Base(team_ids, senders, versions, blob_id, logins)


def _team_picker(rng: random.Random, team_ids: list[int]) -> Callable[[], int]:
    cumulative, total = [], 0.0
    for weight in TEAM_WEIGHTS:
        total += weight
        cumulative.append(total)
    return lambda: team_ids[min(_bisect(cumulative, rng.random() * total), len(team_ids) - 1)]


def _bisect(values: list[float], x: float) -> int:
    import bisect

    return bisect.bisect_right(values, x)


def _status(rng: random.Random, age: timedelta) -> str:
    """Envelopes of the last 30 days are mostly out for signature; older ones have ended."""
    roll = rng.random()
    status = next((name for name, edge in STATUS_EDGES if roll < edge), "voided")
    if age < LIVE:
        return "sent" if roll < 0.6 else status
    return "expired" if status == "sent" else status


def generate(base: Base, n: int) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
    """Batches of (envelope, recipient, message) rows; row i is the same whatever ``n``."""
    from portal.envelopes.search import search_text_for

    rng = random.Random(SEED)
    team_of = _team_picker(rng, base.team_ids)
    step = SPAN / LARGE  # the same times in both databases: the small one is the latest days
    start = NOW - step * n
    envelopes: list[tuple] = []
    recipients: list[tuple] = []
    messages: list[tuple] = []
    recipient_id = 0
    for i in range(1, n + 1):
        team = team_of()
        version_id, title = rng.choice(base.versions[team])
        sender = rng.choice(base.senders[team])
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first.title()} {last.title()}"
        email = f"{first}.{last}{i}@{rng.choice(DOMAINS)}"
        phone = (
            f"+44 7{rng.randrange(100, 1000)} {rng.randrange(100000, 1000000)}"
            if rng.random() < 0.4
            else None
        )
        merge = {
            "customer.name": name,
            "order.number": f"ORD-{i:07d}",
            "account.number": f"AC-{rng.randrange(100000, 1000000)}",
            "refund.amount": f"€{rng.randrange(5, 900)}.{rng.randrange(100):02d}",
        }
        ticket = f"T-{rng.randrange(10**6, 10**7)}" if rng.random() < 0.7 else None
        at = start + step * i
        # (every draw is made whatever the status, which depends on the row's age and so on
        # the database's size: row i holds the same values in both databases)
        status = _status(rng, NOW - at)
        took = timedelta(hours=rng.randrange(1, 200))
        finished = at + took if status != "sent" else None
        people = [(name, email, phone, "customer", "Customer", "signer", 1)]
        if rng.random() < 0.2:
            manager = (f"Manager {team}", f"manager{team}@bench.example", None)
            people.append((*manager, "manager", "Account manager", "approver", 2))
        sealed = rng.random() < 0.9995
        seal = ("sealed" if sealed else "failed") if status == "completed" else None
        envelopes.append((
            i, f"{rng.getrandbits(128):032x}", version_id, team, sender, title, status,
            json.dumps(merge), ticket, "sequential", SETTINGS_JSON, base.blob_id,
            f"{rng.getrandbits(256):064x}", 2, PAGES_JSON, "ready", 0, at, at,
            at + timedelta(days=30), finished, seal, 1 if seal else 0,
            search_text_for(title, ticket, merge, [(p[0], p[1], p[2]) for p in people]),
        ))  # fmt: skip
        for person_name, address, person_phone, role, role_name, kind, order in people:
            recipient_id += 1
            done = status == "completed" or (status == "declined" and order == 1)
            r_status = ("signed" if kind == "signer" else "approved") if done else "sent"
            if status == "declined" and order == 1:
                r_status = "declined"
            locks = rng.random() < 0.003
            locked = at + timedelta(minutes=9) if status == "sent" and locks else None
            recipients.append((
                recipient_id, i, role, role_name, kind, order, person_name, address, person_phone,
                "en", "link", r_status, 0, 0, at, finished if done else None, locked,
            ))  # fmt: skip
            roll = rng.random()
            m_status = "bounced" if roll < 0.005 else "failed" if roll < 0.008 else "sent"
            messages.append((
                recipient_id, at, address, person_name, f"Please sign: {title}", BODY, "", "en",
                "signing_request", i, recipient_id, m_status, 1, at,
            ))  # fmt: skip
        if len(envelopes) == BATCH:
            yield envelopes, recipients, messages
            envelopes, recipients, messages = [], [], []
    if envelopes:
        yield envelopes, recipients, messages


# ---------------------------------------------------------------- loading


def _load_postgresql(conninfo: str, base: Base, n: int) -> float:
    """COPY ``n`` envelopes in; returns the seconds it took (indexes rebuilt included)."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers while loading
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('envelope', 'recipient', 'message') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with conn.cursor() as cursor:
            for envelopes, recipients, messages in generate(base, n):
                for table, columns, rows in (
                    ("envelope", ENVELOPE_COLUMNS, envelopes),
                    ("recipient", RECIPIENT_COLUMNS, recipients),
                    ("message", MESSAGE_COLUMNS, messages),
                ):
                    quoted = ", ".join(f'"{c}"' for c in columns)
                    with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        copied = time.perf_counter()
        for _name, definition in indexes:
            conn.execute(definition)
        print(
            f"  postgresql: {n:,} envelopes copied in {copied - started:.1f} s,"
            f" indexes built in {time.perf_counter() - copied:.1f} s",
            flush=True,
        )
        for table in ("envelope", "recipient", "message"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _load_sqlite(path: str, base: Base, n: int) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('envelope', 'recipient', 'message')"
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for envelopes, recipients, messages in generate(base, n):
            conn.execute("BEGIN")
            for table, columns, rows in (
                ("envelope", ENVELOPE_COLUMNS, envelopes),
                ("recipient", RECIPIENT_COLUMNS, recipients),
                ("message", MESSAGE_COLUMNS, messages),
            ):
                quoted = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join("?" for _ in columns)
                conn.executemany(
                    f"INSERT INTO {table} ({quoted}) VALUES ({marks})",
                    ([_sqlite_value(v) for v in row] for row in rows),
                )
            conn.execute("COMMIT")
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


# ---------------------------------------------------------------- signed-in clients


CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _signed_in(app: Any, email: str, secret: str) -> Any:
    import pyotp

    client = app.test_client()
    token = CSRF.search(client.get("/auth/login").get_data(as_text=True)).group(1)
    first = client.post(
        "/auth/login", data={"csrf_token": token, "email": email, "password": PASSWORD}
    )
    assert first.status_code == 302, first.status_code
    token = CSRF.search(client.get("/auth/code").get_data(as_text=True)).group(1)
    code = client.post("/auth/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()})
    assert code.status_code == 302 and code.headers["Location"].endswith("/console"), (
        code.status_code
    )
    return client


@dataclass(frozen=True)
class Scenario:
    name: str
    who: str  # "mid" | "small" | "all"
    query: str
    fragment: bool = False
    path: str = "/console"
    expect: bytes = b"envelope-rows"  # in the answer, or it measured an error page


def scenarios(base: Base) -> list[Scenario]:
    """What is measured; the search terms belong to envelopes both databases hold."""
    order, surname, email, phone, small_order = _known_rows(base)
    return [
        Scenario("list, agent (team of 12%)", "mid", ""),
        Scenario("list, agent (team of 0.1%)", "small", ""),
        Scenario("list, compliance (every team)", "all", ""),
        Scenario("list by document, compliance", "all", "sort=document"),
        Scenario("list waiting, agent", "mid", "status=sent"),
        Scenario("needs attention, agent", "mid", "attention=1"),
        Scenario("search order number, agent", "mid", f"q={order}", True),
        Scenario("search surname, agent", "mid", f"q={surname}", True),
        Scenario(
            "search surname, agent: its count",
            "mid",
            f"q={surname}&shown=50",
            True,
            path="/console/count",
            expect=b"Showing 50 of",
        ),
        Scenario("search email, compliance", "all", f"q={email}", True),
        Scenario("search phone digits, agent", "mid", f"q={phone}", True),
        Scenario("search order number, small team", "small", f"q={small_order}", True),
    ]


def _known_rows(base: Base) -> tuple[str, str, str, str, str]:
    """An order number, surname, email and phone of the mid-size team's envelopes, and an
    order number of the smallest team's, from the first ``SMALL`` rows (both databases')."""
    mid, few = base.team_ids[MID_TEAM], base.team_ids[SMALL_TEAM]
    order = surname = email = phone = small_order = ""
    for envelopes, recipients, _messages in generate(base, SMALL):
        by_id = {row[0]: row for row in envelopes}
        for recipient in recipients:
            envelope = by_id[recipient[1]]
            if recipient[4] != "signer":
                continue
            if envelope[3] == few and not small_order:
                small_order = json.loads(envelope[7])["order.number"]
            if envelope[3] != mid:
                continue
            if envelope[0] > SMALL // 2 and not order:
                order = json.loads(envelope[7])["order.number"]
                surname = recipient[6].split()[-1]
                email = recipient[7]
            if recipient[8] and not phone and envelope[0] > SMALL // 3:
                phone = "".join(ch for ch in recipient[8] if ch.isdigit())[-7:]
    return order, surname, email, phone, small_order


# ---------------------------------------------------------------- timing


def _latency(client: Any, scenario: Scenario) -> float:
    headers = {"HX-Request": "true"} if scenario.fragment else {}
    url = f"{scenario.path}?{scenario.query}" if scenario.query else scenario.path
    started = time.perf_counter()
    for _ in range(REQUESTS):
        response = client.get(url, headers=headers)
        body = response.get_data()
        assert response.status_code == 200 and scenario.expect in body, response.status_code
        assert b"No envelopes match" not in body, f"{scenario.name}: nothing found"
    return (time.perf_counter() - started) / REQUESTS


def _spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    return (
        "/".join(f"{v * scale:.1f}" for v in (min(values), statistics.median(values), max(values)))
        + unit
    )


def _compare(
    label: str, small: dict[str, Any], large: dict[str, Any], base: Base, budget: bool
) -> None:
    worst = 0.0
    for scenario in scenarios(base):
        a, b = small[scenario.who], large[scenario.who]
        _latency(a, scenario), _latency(b, scenario)  # warm-up
        ratios, small_ms, large_ms = [], [], []
        for _ in range(ROUNDS):
            s = _latency(a, scenario)
            big = _latency(b, scenario)
            small_ms.append(s)
            large_ms.append(big)
            ratios.append(big / s)
        median = statistics.median(ratios)
        worst = max(worst, median)
        verdict = ("OK" if median <= BUDGET else "OVER BUDGET") if budget else "(information)"
        print(
            f"  {label} {scenario.name}: ratio {median:.2f} (min/median/max {_spread(ratios)});"
            f" {LARGE:,}: {_spread(large_ms, 1000, ' ms')};"
            f" {SMALL:,}: {_spread(small_ms, 1000, ' ms')}"
            f" {verdict}",
            flush=True,
        )
    if budget:
        verdict = "OK" if worst <= BUDGET else "OVER BUDGET"
        print(
            f"{NAME}[{label}]: worst scenario median ratio {worst:.2f} at {LARGE:,} vs {SMALL:,}"
            f" envelopes (budget {BUDGET:.2f}) {verdict}",
            flush=True,
        )
    else:
        print(
            f"{NAME}[{label}]: worst scenario median ratio {worst:.2f} (information, no budget)",
            flush=True,
        )


# ---------------------------------------------------------------- the two databases


def _app(uri: str) -> Any:
    from flask_migrate import upgrade

    from portal import create_app

    app = create_app(base_config(uri))
    with app.app_context():
        upgrade()
    return app


def _clients(app: Any, base: Base) -> dict[str, Any]:
    return {who: _signed_in(app, email, secret) for who, (email, secret) in base.logins.items()}


def _dispose(app: Any) -> None:
    from portal.extensions import db, dispose_engines

    with app.app_context():
        db.session.remove()
        dispose_engines()


def _bench_postgresql() -> None:
    server = start_postgres(NAME)
    if server is None:
        return
    keep = os.environ.get("BENCH_CONSOLE_KEEP") == "1"
    apps = []
    try:
        sides: dict[int, tuple[Any, Base]] = {}
        for n in (SMALL, LARGE):
            database = f"portal_console_{n}"
            server.execute(f"CREATE DATABASE {database}")
            app = _app(server.url(database))
            apps.append(app)
            base = _setup(app)
            conninfo = f"host=127.0.0.1 port={server.port} user=postgres dbname={database}"
            seconds = _load_postgresql(conninfo, base, n)
            print(
                f"  postgresql: {n:,} envelopes generated and loaded in {seconds:.1f} s", flush=True
            )
            sides[n] = (app, base)
        (small_app, base), (large_app, large_base) = sides[SMALL], sides[LARGE]
        small, large = _clients(small_app, base), _clients(large_app, large_base)
        _compare("postgresql", small, large, base, True)
        if keep:
            print(f"  kept: psql -h 127.0.0.1 -p {server.port} -U postgres portal_console_{LARGE}")
    finally:
        for app in apps:
            _dispose(app)
        if not keep:
            server.stop()


def _bench_sqlite(folder: str) -> None:
    sides: dict[int, tuple[Any, Base]] = {}
    apps = []
    try:
        for n in (SMALL, LARGE):
            path = os.path.join(folder, f"console-{n}.db")
            app = _app(f"sqlite:///{path}")
            apps.append(app)
            base = _setup(app)
            _dispose(app)  # the loader writes with its own connection
            seconds = _load_sqlite(path, base, n)
            print(f"  sqlite: {n:,} envelopes generated and loaded in {seconds:.1f} s", flush=True)
            sides[n] = (app, base)
        (small_app, base), (large_app, large_base) = sides[SMALL], sides[LARGE]
        small, large = _clients(small_app, base), _clients(large_app, large_base)
        _compare("sqlite", small, large, base, False)
    finally:
        for app in apps:
            _dispose(app)


def run() -> None:
    with bench_folder() as folder:
        _bench_postgresql()
        if os.environ.get("BENCH_CONSOLE_SQLITE", "1") != "0":
            _bench_sqlite(folder)
