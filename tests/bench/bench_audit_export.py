"""The records centre's audit events CSV against PostgreSQL's own ``COPY ... TO STDOUT CSV``.

Goals (DESIGN.md, Quality gates): the export of 1,000,000 events streams in constant memory,
the exporting process under 150 MB RSS at its peak; and (this benchmark's own goal) its rate at
least half the rate of ``COPY (SELECT <the same columns> FROM audit_event ORDER BY seq) TO
STDOUT WITH CSV`` of the same table in the same run.

The chain is made fast (not through ``audit.record`` one by one): rows built in Python with
their hashes precomputed and customers' personal fields sealed under per-envelope keys as the
portal stores them (``keys.Ring.seal``), then loaded with ``COPY ... FROM STDIN``. About 40%
of the events are about envelopes (sealed), the rest staff sign-ins and admin work.

Ours is ``portal.records.exports.stream`` (what ``POST /records/exports`` sends: keyset batches
each its own read, personal fields revealed, cells checked for formulas, UTF-8 with BOM, the
file's SHA-256 and the ``records.exported`` event at the end), run in a process of its own
started for each round (``spawn``), so that its peak RSS (``VmHWM``) is its own; the time
counts from the first statement to the last byte, not the interpreter's start. The baseline
reads COPY's output to its end with psycopg in the parent. Rounds are interleaved; min, median
and max are printed, with the exporting process's own CPU time per row (which a busy machine
disturbs less than the rates). Sizes: 10,000 and ``BENCH_EXPORT_N`` (default 1,000,000) events.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bench.bench_audit_verify import USER_AGENTS, _Population
from tests.bench.common import base_config, bench_folder, start_postgres

NAME = "audit_export"
SIZES = (10_000, int(os.environ.get("BENCH_EXPORT_N", "1000000")))
ROUNDS = int(os.environ.get("BENCH_EXPORT_ROUNDS", "3"))
RATE_GOAL = 0.50
RSS_GOAL_MB = 150
ENVELOPES = 20_000
COLUMNS = (
    "seq", "occurred_at", "event", "actor_type", "actor_id", "actor_label", "subject_type",
    "subject_id", "ip", "user_agent", "data", "prev_hash", "hash",
)  # fmt: skip
COPY_SQL = (
    f"COPY (SELECT {', '.join(COLUMNS)} FROM audit_event ORDER BY seq) TO STDOUT WITH CSV HEADER"
)
FIRST = ("Ana", "Ben", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Inés", "Jamal")
LAST = ("García", "Smith", "Novak", "Okafor", "Tanaka", "Müller", "Rossi", "Silva", "Khan")


# ---------------------------------------------------------------- the chain, made fast


def _envelope_event(rng: random.Random, people: _Population) -> tuple[str, tuple, dict, bool]:
    """(event, actor, data, from a browser) of one event about an envelope."""
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    email = f"{name.lower().replace(' ', '.')}{rng.randrange(1000)}@example.com"
    roll = rng.random()
    if roll < 0.3:
        return "recipient.opened", ("recipient", str(rng.randrange(1, 60000)), email), {}, True
    if roll < 0.5:
        data = {"what": "page", "page": rng.randint(1, 4)}
        return "recipient.document_viewed", ("recipient", "1", email), data, True
    if roll < 0.65:
        data = {"adoption": rng.choice(("drawn", "typed")), "printed_name": name}
        return "recipient.signed", ("recipient", "1", email), data, True
    if roll < 0.85:
        data = {"to": email, "message_id": f"<{rng.getrandbits(64):x}@portal>", "kind": "link"}
        return "mail.sent", ("system", None, None), data, False
    data = {"recipients": [email], "ticket": f"TCK-{rng.randrange(100000)}"}
    return "envelope.sent", rng.choice(people.users), data, True


def _fill(app: Any, n: int, conninfo: str, seed: int = 20261205) -> None:
    """``n`` chained events (valid hashes, personal fields sealed) loaded with COPY."""
    import psycopg

    from portal.audit import GENESIS, canonical, chain_hash, encode_data, iso_time, mask
    from portal.extensions import db
    from portal.records import keys

    rng = random.Random(seed)
    people = _Population(rng)
    at = datetime(2024, 1, 8, 7, 58, 12, 345678, tzinfo=UTC)
    with app.app_context():
        ring = keys.Ring()
        with psycopg.connect(conninfo) as conn:
            # after the events already there (the officer's account, the migrations')
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            first, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            with conn.cursor() as cursor:
                columns = ", ".join(COLUMNS)
                with cursor.copy(f"COPY audit_event ({columns}) FROM STDIN") as copy:
                    for seq in range(first + 1, first + n + 1):
                        at += timedelta(microseconds=rng.randrange(2_000, 9_000_000))
                        subject: tuple[str | None, str | None] = (None, None)
                        if rng.random() < 0.4:
                            envelope_id = rng.randrange(1, ENVELOPES + 1)
                            event, actor, data, browser = _envelope_event(rng, people)
                            subject = ("envelope", str(envelope_id))
                        else:
                            envelope_id = None
                            event, actor, subject, data, browser = people.event()
                        row = {
                            "seq": seq,
                            "occurred_at": iso_time(at),
                            "event": event,
                            "actor_type": actor[0],
                            "actor_id": actor[1],
                            "actor_label": actor[2],
                            "subject_type": subject[0],
                            "subject_id": subject[1],
                            "ip": rng.choice(people.ips) if browser else None,
                            "user_agent": rng.choice(USER_AGENTS) if browser else None,
                        }
                        stored = mask(data)
                        if envelope_id is not None:
                            stored = ring.seal(envelope_id, row, stored)
                        row["data_json"] = encode_data(stored)
                        digest = chain_hash(prev, canonical(**row))
                        copy.write_row((*row.values(), prev, digest))
                        prev = digest
            last = first + n
            conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (last, prev))
        ring.flush([])  # the envelopes' keys
        db.session.commit()


# ---------------------------------------------------------------- the two contenders


def _copy_seconds(conninfo: str) -> tuple[float, int]:
    """COPY's CSV of the same columns read to its end: (seconds, bytes)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        size = 0
        with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for chunk in copy:
                size += len(chunk)
        return time.perf_counter() - started, size


def _memory(field: str) -> float:
    """This process's resident memory in MB from /proc: ``VmRSS`` now, ``VmHWM`` its peak.

    (Not ``ru_maxrss``: Linux keeps it across exec, so a child started by ``spawn`` reports
    the parent's size at the fork if that was larger.)"""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _ours_child(uri: str, folder: str, officer_id: int, out: Any) -> None:
    """In a process of its own: the export of every event, to its last byte."""
    os.environ["PORTAL_INSTANCE"] = os.path.join(folder, "instance")
    from sqlalchemy import text

    from portal import create_app
    from portal.extensions import db
    from portal.records import exports
    from portal.records.search import AuditQuery

    app = create_app(base_config(uri))
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connected before the clock starts
        db.session.rollback()
        before = _memory("VmRSS")  # the app loaded, connected
        started, cpu = time.perf_counter(), time.process_time()
        size = 0
        digest = hashlib.sha256()
        for chunk in exports.stream(exports.KINDS["audit"], AuditQuery(), officer_id):
            size += len(chunk)
            digest.update(chunk)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _memory("VmHWM")
    out.put((seconds, size, peak, before, cpu))


def _ours(uri: str, folder: str, officer_id: int) -> tuple[float, int, float, float, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_ours_child, args=(uri, folder, officer_id, out))
    child.start()
    result = out.get(timeout=3600)
    child.join()
    return result


# ---------------------------------------------------------------- running it


def _summary(values: list[float], unit: str, fmt: str = "{:,.0f}") -> str:
    return (
        " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
        + f" {unit} (min / median / max)"
    )


def _bench(server: Any, folder: str, n: int) -> None:
    from flask_migrate import upgrade

    from portal import create_app
    from portal.accounts import admin
    from portal.extensions import db, dispose_engines

    database = f"portal_export_{n}"
    server.execute(f"CREATE DATABASE {database}")
    uri = server.url(database)
    conninfo = f"host=127.0.0.1 port={server.port} user=postgres dbname={database}"
    app = create_app(base_config(uri))
    started = time.perf_counter()
    with app.app_context():
        upgrade()
        officer, _ = admin.create_user(
            "officer@bench.example", "Bench Officer", "compliance", None, by="bench",
            password="correct horse battery",
        )  # fmt: skip
        officer_id = officer.id
        db.session.commit()
        dispose_engines()
    _fill(app, n, conninfo)
    server.execute("VACUUM ANALYZE", database=database)
    made = time.perf_counter() - started
    print(f"  {NAME}[postgresql {n:,}]: {n:,} events made and loaded in {made:.1f} s", flush=True)

    ours_rates, copy_rates, ratios, peaks, loaded, cpus = [], [], [], [], [], []
    for _ in range(ROUNDS):  # interleaved, so drift in the machine's load hits both alike
        copy_seconds, copy_bytes = _copy_seconds(conninfo)
        seconds, size, peak, before, cpu = _ours(uri, folder, officer_id)
        cpus.append(cpu)
        copy_rates.append(n / copy_seconds)
        ours_rates.append(n / seconds)
        ratios.append(copy_seconds / seconds)
        peaks.append(peak)
        loaded.append(before)
    ratio, peak = statistics.median(ratios), max(peaks)
    rate_verdict = "OK" if ratio >= RATE_GOAL else "GOAL MISSED"
    rss_verdict = "OK" if peak < RSS_GOAL_MB else "GOAL MISSED"
    print(
        f"{NAME}[postgresql {n:,}]: ours {statistics.median(ours_rates):,.0f} rows/s / COPY"
        f" {statistics.median(copy_rates):,.0f} rows/s = {ratio:.2f} (goal >= {RATE_GOAL:.2f})"
        f" {rate_verdict}; peak RSS {peak:.0f} MB (goal < {RSS_GOAL_MB} MB) {rss_verdict}",
        flush=True,
    )
    print(f"  ours: {_summary(ours_rates, 'rows/s')}; {size / 1e6:,.0f} MB of CSV", flush=True)
    print(f"  COPY: {_summary(copy_rates, 'rows/s')}; {copy_bytes / 1e6:,.0f} MB", flush=True)
    print(f"  ratio: {_summary(ratios, '', '{:.2f}')}; peak RSS {_summary(peaks, 'MB')}")
    cpu_text = _summary([1e6 * c / n for c in cpus], "us a row", "{:.1f}")
    print(
        f"  the exporting process's own CPU: {cpu_text} (the rest of its time it waits for"
        " the database, or for the machine)",
        flush=True,
    )
    print(
        f"  the exporting process held {max(loaded):.0f} MB before the export began (the"
        f" portal's app loaded and connected): the export itself added"
        f" {max(p - b for p, b in zip(peaks, loaded, strict=True)):.0f} MB at most",
        flush=True,
    )
    with app.app_context():
        dispose_engines()


def run() -> None:
    server = start_postgres(NAME)
    if server is None:
        return
    try:
        with bench_folder() as folder:
            for n in SIZES:
                _bench(server, folder, n)
    finally:
        server.stop()


if __name__ == "__main__":
    run()
