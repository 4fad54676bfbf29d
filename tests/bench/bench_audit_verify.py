"""Audit chain verification against a bare fetch-and-hash loop over the same rows.

Design budget: verifying the chain (``portal.audit.verify``) runs at >= 50% of the throughput
of a bare hashlib loop over the same bytes. The baseline reads the same rows with a bare
DB-API cursor (``sqlite3`` / ``psycopg``, values left as the database returns them as text)
and, per row, hashes the previous hash plus the row's stored values joined as one string:
the least work that fetches and hashes the same data. Ours is ``verify()`` in an app context.

Measured on SQLite, and on PostgreSQL when ``tests.services.PostgresServer`` can start one.
Environment: ``BENCH_AUDIT_N`` (events, default 100000), ``BENCH_PROFILE=1`` prints a cProfile
summary of one ``verify()`` run per backend.
"""

from __future__ import annotations

import cProfile
import hashlib
import io
import os
import pstats
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bench.common import base_config, bench_folder, start_postgres

N = int(os.environ.get("BENCH_AUDIT_N", "100000"))
INSERT_BATCH = 10_000
REPEATS = 3
BUDGET = 0.50
NAME = "audit_verify"

COLUMN_LIST = (
    "seq, occurred_at, event, actor_type, actor_id, actor_label, subject_type, subject_id, "
    "ip, user_agent, data, prev_hash, hash"
)
BASELINE_SQL = f"SELECT {COLUMN_LIST} FROM audit_event ORDER BY seq"

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
)
ROLES = ("agent", "supervisor", "admin")
FIRST = ("ana", "ben", "carla", "dmitri", "elena", "farid", "grace", "hugo", "ines", "jamal")
LAST = ("garcia", "smith", "novak", "okafor", "tanaka", "muller", "rossi", "silva", "khan")


# ---------------------------------------------------------------- realistic events


class _Population:
    """Staff accounts, addresses and browsers the generated events draw from."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.users: list[tuple[str, str, str]] = []
        for number in range(1, 241):
            name = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{number}"
            self.users.append(("user", str(number), f"{name}@example-support.test"))
        self.admins = self.users[:6]
        self.ips: list[str] = []
        for _ in range(400):
            if rng.random() < 0.85:
                octets = (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256))
                self.ips.append(f"{octets[0]}.{octets[1]}.{octets[2]}.{rng.randrange(1, 255)}")
            else:
                groups = ":".join(f"{rng.randrange(65536):x}" for _ in range(4))
                self.ips.append(f"2001:db8:{groups}::{rng.randrange(1, 65535):x}")

    def event(self) -> tuple[str, tuple[str, str | None, str | None], tuple, dict[str, Any], bool]:
        """(event, actor, subject, data, from a browser) for one plausible event."""
        rng = self.rng
        user = rng.choice(self.users)
        subject = ("user", user[1])
        roll = rng.random()
        if roll < 0.22:
            reason = rng.choice(("wrong_password", "wrong_password", "wrong_password", "locked"))
            data: dict[str, Any] = {"reason": reason}
            if reason == "wrong_password":
                data["attempt"] = rng.randint(1, 4)
            return "auth.login.failed", user, subject, data, True
        if roll < 0.26:
            email = f"{rng.choice(FIRST)}.{rng.choice(LAST)}@example-support.test"
            actor = ("anonymous", None, email)
            return "auth.login.failed", actor, (None, None), {"reason": "unknown_email"}, True
        if roll < 0.44:
            return "auth.login.password_ok", user, subject, {}, True
        if roll < 0.52:
            reason = rng.choice(("wrong_code", "wrong_code", "replayed_code"))
            data = {"reason": reason, "attempt": rng.randint(1, 4)}
            return "auth.mfa.failed", user, subject, data, True
        if roll < 0.68:
            method = "totp" if rng.random() < 0.97 else "recovery_code"
            return "auth.login.succeeded", user, subject, {"method": method}, True
        if roll < 0.78:
            return "auth.logout", user, subject, {}, True
        if roll < 0.86:
            timeout = rng.choice(("idle", "idle", "absolute"))
            return (
                "auth.session.timed_out",
                ("system", None, None),
                subject,
                {"timeout": timeout},
                False,
            )
        if roll < 0.90:
            data = {"failed_attempts": 5, "minutes": 15}
            return "auth.account.locked", user, subject, data, True
        admin = rng.choice(self.admins)
        if roll < 0.93:
            old, new = rng.sample(ROLES, 2)
            return "user.role_changed", admin, subject, {"from": old, "to": new}, True
        if roll < 0.96:
            data = {"email": user[2], "role": rng.choice(ROLES), "team": "Customer Care"}
            return "user.created", admin, subject, data, True
        if roll < 0.98:
            data = {"sessions_ended": rng.randint(0, 3)}
            return "user.password_reset", admin, subject, data, True
        return "user.mfa_reset", admin, subject, {"sessions_ended": rng.randint(0, 2)}, True


def _chain(n: int, seed: int = 20250106) -> Iterator[list[dict[str, Any]]]:
    """Batches of ``audit_event`` rows forming a valid chain of ``n`` events."""
    from portal.audit import GENESIS, canonical, chain_hash, encode_data, iso_time, mask

    rng = random.Random(seed)
    people = _Population(rng)
    at = datetime(2025, 1, 6, 7, 58, 12, 345678, tzinfo=UTC)
    prev = GENESIS
    batch: list[dict[str, Any]] = []
    for seq in range(1, n + 1):
        at += timedelta(microseconds=rng.randrange(200_000, 90_000_000))
        event, actor, subject, data, browser = people.event()
        ip = rng.choice(people.ips) if browser else None
        agent = rng.choice(USER_AGENTS) if browser else None
        fields = {
            "seq": seq,
            "occurred_at": iso_time(at),
            "event": event,
            "actor_type": actor[0],
            "actor_id": actor[1],
            "actor_label": actor[2],
            "subject_type": subject[0],
            "subject_id": subject[1],
            "ip": ip,
            "user_agent": agent,
            "data_json": encode_data(mask(data)),
        }
        digest = chain_hash(prev, canonical(**fields))
        row = {("data" if key == "data_json" else key): value for key, value in fields.items()}
        batch.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
        if len(batch) == INSERT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepare(uri: str) -> Any:
    """Migrate the database at ``uri``, fill it with ``N`` chained events, return the app."""
    from flask_migrate import upgrade
    from sqlalchemy import insert, update

    from portal import create_app
    from portal.audit import AuditEvent, AuditHead
    from portal.extensions import db

    app = create_app(base_config(uri))
    with app.app_context():
        upgrade()
        last: dict[str, Any] = {}
        for rows in _chain(N):
            db.session.execute(insert(AuditEvent.__table__), rows)
            db.session.commit()
            last = rows[-1]
        db.session.execute(
            update(AuditHead.__table__)
            .where(AuditHead.__table__.c.id == 1)
            .values(seq=last["seq"], hash=last["hash"])
        )
        db.session.commit()
        db.session.remove()
        if db.engine.dialect.name == "sqlite":
            # Outside any transaction (the engine opens each one with BEGIN IMMEDIATE).
            raw = db.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
    return app


# ---------------------------------------------------------------- the two contenders


def _bare_chain(rows: Iterable[tuple[Any, ...]]) -> int:
    """Per row: SHA-256 over the previous hash and the row's values joined as one string."""
    sha256 = hashlib.sha256
    prev = b"0" * 64
    count = 0
    for row in rows:
        digest = sha256(prev)
        digest.update("\x1f".join([str(value) for value in row]).encode())
        prev = digest.hexdigest().encode("ascii")
        count += 1
    return count


def _baseline_sqlite(path: str) -> Callable[[], int]:
    connection = sqlite3.connect(path)

    def bare() -> int:
        return _bare_chain(connection.execute(BASELINE_SQL))

    bare.close = connection.close  # type: ignore[attr-defined]
    return bare


def _baseline_postgresql(conninfo: str) -> Callable[[], int]:
    import psycopg
    from psycopg.types.string import TextLoader

    connection = psycopg.connect(conninfo, autocommit=True)
    # Leave JSON and timestamps as the text the server sends: the stored bytes, unparsed.
    for type_name in ("json", "jsonb", "timestamptz", "timestamp"):
        connection.adapters.register_loader(type_name, TextLoader)

    def bare() -> int:
        with connection.cursor() as cursor:
            cursor.execute(BASELINE_SQL)
            return _bare_chain(cursor)

    bare.close = connection.close  # type: ignore[attr-defined]
    return bare


def _ours(app: Any) -> Callable[[], int]:
    from portal.audit import verify
    from portal.extensions import db

    def ours() -> int:
        with app.app_context():
            try:
                result = verify()
            finally:
                db.session.remove()
        if not result.ok:
            raise AssertionError(f"verify() rejected a valid chain: {result}")
        return result.count

    return ours


def _timed(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = fn()
    elapsed = time.perf_counter() - started
    if count != N:
        raise AssertionError(f"{fn.__name__} saw {count} events, expected {N}")
    return elapsed


def _profile(label: str, fn: Callable[[], int]) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    print(f"--- cProfile of verify() on {label} (by own time)\n{out.getvalue()}", flush=True)


def _compare(label: str, ours: Callable[[], int], bare: Callable[[], int]) -> None:
    ours_best = bare_best = float("inf")
    for _ in range(REPEATS):  # interleaved so drift in machine load hits both alike
        bare_best = min(bare_best, _timed(bare))
        ours_best = min(ours_best, _timed(ours))
    ours_rate = N / ours_best
    bare_rate = N / bare_best
    ratio = bare_best / ours_best
    verdict = "OK" if ratio >= BUDGET else "OVER BUDGET"
    print(
        f"{NAME}[{label}]: ours {ours_rate:,.0f} events/s / baseline {bare_rate:,.0f} events/s"
        f" = {ratio:.2f} (budget {BUDGET:.2f}) {verdict}",
        flush=True,
    )
    print(
        f"  {label}: {N:,} events, best of {REPEATS}: verify() {ours_best:.3f} s,"
        f" bare cursor + sha256 loop {bare_best:.3f} s",
        flush=True,
    )
    if os.environ.get("BENCH_PROFILE"):
        _profile(label, ours)


def _dispose(app: Any) -> None:
    from portal.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _bench_sqlite(folder: str) -> None:
    path = os.path.join(folder, "bench.db")
    app = _prepare(f"sqlite:///{path}")
    bare = _baseline_sqlite(path)
    try:
        _compare("sqlite", _ours(app), bare)
    finally:
        bare.close()  # type: ignore[attr-defined]
        _dispose(app)


def _bench_postgresql() -> None:
    server = start_postgres(NAME)
    if server is None:
        return
    try:
        server.execute("CREATE DATABASE portal_bench")
        app = _prepare(server.url("portal_bench"))
        server.execute("VACUUM ANALYZE audit_event", database="portal_bench")
        bare = _baseline_postgresql(
            f"host=127.0.0.1 port={server.port} user=postgres dbname=portal_bench"
        )
        try:
            _compare("postgresql", _ours(app), bare)
        finally:
            bare.close()  # type: ignore[attr-defined]
            _dispose(app)
    finally:
        server.stop()


def run() -> None:
    with bench_folder() as folder:
        _bench_sqlite(folder)
        _bench_postgresql()
