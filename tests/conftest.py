"""Fixtures: real services (Redis, PostgreSQL), a migrated database per test, staff helpers.

The backend is chosen with ``--db sqlite|postgresql`` (or ``PORTAL_TEST_DB``); ``make test``
runs the suite once on each.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyotp
import pytest
from flask import Flask, current_app, has_app_context
from flask.testing import FlaskClient

from tests.services import PostgresServer, RedisServer

pytest_plugins = ["tests.browser", "tests.smtp"]  # browser fixtures; smtp_server

ARTIFACTS = Path(__file__).parent / "artifacts"
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
TEST_KEY = bytes(range(32))

_instance = tempfile.mkdtemp(prefix="portal-instance-")
os.environ["PORTAL_INSTANCE"] = _instance
for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DATA_KEY", "PORTAL_ENV", "MAIL_SERVER"):
    os.environ.pop(name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("PORTAL_TEST_DB", "sqlite"),
        help="Database backend for the whole run.",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"portal database backend: {config.getoption('--db')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of PostgreSQL itself belong to the PostgreSQL run (``make test`` runs both)."""
    if config.getoption("--db") == "postgresql":
        return
    elsewhere = [item for item in items if item.get_closest_marker("postgresql_only")]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql_only")]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_instance, ignore_errors=True)


def base_config(uri: str, **extra: object) -> dict[str, object]:
    config: dict[str, object] = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "DATA_KEY": TEST_KEY,
        "SQLALCHEMY_DATABASE_URI": uri,
        "ARGON2_PARAMS": FAST_ARGON2,
        "REDIS_URL": "",
        "JOBS_INLINE": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "SERVER_NAME": None,
    }
    config.update(extra)
    return config


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--db"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(backend: str) -> Iterator[PostgresServer | None]:
    if backend != "postgresql":
        yield None
        return
    server = PostgresServer.start()
    yield server
    server.stop()


def _migrate(uri: str) -> None:
    from flask_migrate import upgrade

    from portal import create_app

    app = create_app(base_config(uri))
    with app.app_context():
        upgrade()
        from portal.extensions import dispose_engines

        dispose_engines()


@pytest.fixture(scope="session")
def database_template(
    backend: str, postgres_server: PostgresServer | None, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A migrated, empty database that each test copies."""
    if postgres_server is not None:
        postgres_server.execute("CREATE DATABASE portal_template")
        _migrate(postgres_server.url("portal_template"))
        return "portal_template"
    path = tmp_path_factory.mktemp("template") / "portal.db"
    _migrate(f"sqlite:///{path}")
    return str(path)


_counter = itertools.count()


@pytest.fixture
def database_url(
    backend: str, database_template: str, postgres_server: PostgresServer | None, tmp_path: Path
) -> Iterator[str]:
    """A fresh copy of the migrated database for one test."""
    if postgres_server is not None:
        name = f"portal_test_{os.getpid()}_{next(_counter)}"
        postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE {database_template}")
        yield postgres_server.url(name)
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    target = tmp_path / "portal.db"
    shutil.copyfile(database_template, target)
    yield f"sqlite:///{target}"


@pytest.fixture
def make_app(database_url: str) -> Iterator[object]:
    """Build apps on this test's database with extra settings."""
    apps: list[Flask] = []

    def build(**extra: object) -> Flask:
        from portal import create_app
        from portal.extensions import limiter

        app = create_app(base_config(database_url, **extra))
        with app.app_context():
            limiter.reset()
        apps.append(app)
        return app

    yield build
    from portal.extensions import db, dispose_engines

    _join_background_jobs()
    for app in apps:
        with app.app_context():
            db.session.remove()
            dispose_engines()
    if database_url.startswith("postgresql"):
        _no_connection_left_open()


def _join_background_jobs() -> None:
    """Wait for embedded mode's bulk threads (``bulk.sending.start_in_background``): one that
    still holds a connection when the pool is disposed would leave it open."""
    for thread in threading.enumerate():
        if thread.name.startswith("bulk-"):
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} still runs a minute after its test"


def _no_connection_left_open() -> None:
    """Collect this test's garbage now: a PostgreSQL connection it left open fails this test,
    not whichever later test the collector happens to run in."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    left = [str(w.message) for w in caught if "deleted while still open" in str(w.message)]
    assert not left, f"the test left {len(left)} database connection(s) open: {left[0]}"


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


# ---------------------------------------------------------------- staff helpers

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
SECRET_TEXT = re.compile(r'<p class="secret" id="totp-key">([A-Z2-7 ]+)</p>')


@dataclass
class Staff:
    id: int
    email: str
    password: str
    secret: str | None
    role: str


def totp_code(secret: str, offset_steps: int = 0) -> str:
    import time

    totp = pyotp.TOTP(secret)
    return totp.at(int(time.time()) + 30 * offset_steps)


class Portal:
    """A test client that behaves like a person in a browser (CSRF included)."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def csrf(self) -> str:
        page = self.client.get("/auth/login", follow_redirects=True).get_data(as_text=True)
        match = CSRF_META.search(page)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def post(self, url: str, data: dict[str, str] | None = None, **kwargs):
        payload = {"csrf_token": self.csrf(), **(data or {})}
        return self.client.post(url, data=payload, **kwargs)

    def htmx_post(self, url: str, data: dict[str, str] | None = None, **kwargs):
        token = self.csrf()
        headers = {"HX-Request": "true", "X-CSRFToken": token, **kwargs.pop("headers", {})}
        return self.client.post(url, data=data or {}, headers=headers, **kwargs)

    def password_step(self, email: str, password: str):
        return self.post("/auth/login", {"email": email, "password": password})

    def sign_in(self, staff: Staff, offset_steps: int = 0):
        first = self.password_step(staff.email, staff.password)
        assert first.status_code == 302, first.get_data(as_text=True)
        assert staff.secret
        return self.post("/auth/code", {"code": totp_code(staff.secret, offset_steps)})


@pytest.fixture
def portal(app: Flask) -> Portal:
    return Portal(app, app.test_client())


@pytest.fixture
def make_staff(app: Flask):
    """Create staff accounts, enrolled in TOTP unless asked otherwise."""
    from portal import storage
    from portal.accounts import admin
    from portal.accounts.models import User
    from portal.clock import utcnow
    from portal.extensions import db

    counter = itertools.count(1)

    def build(
        role: str = "agent",
        team: str | None = "Customer Care",
        enrolled: bool = True,
        email: str | None = None,
        password: str = "correct horse battery",
    ) -> Staff:
        number = next(counter)
        address = email or f"{role}{number}@example.test"
        with app.app_context():
            team_row = None
            if team:
                team_row = admin.find_team(team) or admin.create_team(team, by="test")
            user, _ = admin.create_user(
                address, f"{role.title()} {number}", role, team_row, by="test", password=password
            )
            secret = None
            if enrolled:
                secret = pyotp.random_base32(32)
                user = db.session.get(User, user.id)
                user.totp_blob_id = storage.put(secret.encode(), kind="totp_secret")
                user.totp_confirmed_at = utcnow()
                db.session.commit()
            return Staff(user.id, address, password, secret, role)

    return build


@pytest.fixture
def signed_in(portal: Portal, make_staff):
    """A Portal signed in as a new user of the given role."""

    def build(role: str = "agent", **kwargs: object) -> tuple[Portal, Staff]:
        staff = make_staff(role, **kwargs)
        response = portal.sign_in(staff)
        assert response.status_code == 302, response.get_data(as_text=True)
        return portal, staff

    return build


def demo_agent():
    """The seeded demo agent (inside an app context, after ``portal seed-demo``)."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.extensions import db

    return db.session.execute(select(User).where(User.email == "agent@demo.example")).scalar_one()


def demo_template(name: str = "Refund authorization"):
    """A seeded demo template by name (inside an app context, after ``portal seed-demo``)."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.library.models import Template

    return db.session.execute(select(Template).where(Template.name == name)).scalar_one()


class ShownEvent:
    """An audit event as its readers see it: the stored row, with the personal fields (IP,
    browser, a recipient's label, personal data values) as ``audit.reveal`` gives them."""

    def __init__(self, revealed) -> None:
        self.revealed = revealed
        self.ip, self.user_agent = revealed.ip, revealed.user_agent
        self.actor_label, self.data = revealed.actor_label, revealed.data

    def __getattr__(self, name: str):
        return getattr(self.revealed.event, name)


def query_plan(stmt: object) -> str:
    """The database's EXPLAIN of a statement, its values inlined (inside an app context)."""
    from portal.extensions import db

    compiled = stmt.compile(  # type: ignore[attr-defined]
        dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    with db.engine.connect() as connection:
        return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))


def audit_events(app: Flask, event: str | None = None) -> list:
    """The audit events recorded so far (optionally one kind), oldest first, revealed
    (``ShownEvent``); the stored rows are ``.revealed.event``."""
    from sqlalchemy import select

    from portal.audit import AuditEvent, reveal
    from portal.extensions import db

    stmt = select(AuditEvent).order_by(AuditEvent.seq)
    if event:
        stmt = stmt.where(AuditEvent.event == event)
    if has_app_context() and current_app._get_current_object() is app:
        # inside the test's own app context: read in its session (SQLite allows one writer)
        return [ShownEvent(r) for r in reveal(db.session.execute(stmt).scalars())]
    with app.app_context():
        rows = [ShownEvent(r) for r in reveal(db.session.execute(stmt).scalars())]
        db.session.expunge_all()
        return rows


@pytest.fixture
def runner_for():
    """A CLI runner for a given app: ``runner_for(app).invoke(args=[...])``."""

    class Runner:
        def __init__(self, app: Flask) -> None:
            self.runner = app.test_cli_runner()

        def invoke(self, **kwargs):
            from portal.extensions import db

            try:
                return self.runner.invoke(**kwargs)
            finally:
                # a real CLI process ends here; in a test the shared session must let go
                # of SQLite's write lock before the test reads with another session
                if has_app_context():
                    db.session.rollback()

    return Runner


def write_p12(
    path: Path, *, days: int = 365, password: str = "seal-pass", now: datetime | None = None
) -> Path:
    """A self-signed sealing certificate as a PKCS#12 file, valid ``days`` from ``now``."""
    from portal.clock import utcnow
    from portal.documents import seal

    identity = seal.generate_self_signed("Test Org", now=now or utcnow(), days=days)
    path.write_bytes(seal.to_pkcs12(identity, password.encode()))
    return path
