"""The records exports: the audit events CSV and the envelopes CSV of a search, downloaded at
once or made by a job (progress, parts stored encrypted, download for the requester and admins),
each one a ``records.exported`` event whose SHA-256 is the file's; old files pruned."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import audit, clock
from portal import exports as portal_exports
from portal.accounts.models import User
from portal.extensions import db
from portal.records import exports, holds, keys
from portal.records.exports import RecordsExport, RecordsExportPart
from portal.storage import Blob
from tests.conftest import audit_events
from tests.test_console_lists import get, signed_in_as, text_of
from tests.test_records_search import DAY, Trail

HOSTILE = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def trail(app, make_staff) -> Trail:
    return Trail(app, make_staff)


def table_of(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM, for spreadsheets"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def export(portal, kind: str, **filters: str):
    return portal.post("/records/exports", {"kind": kind, **filters})


def test_audit_events_csv_has_every_field_escaped_and_is_audited(app, trail, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)  # several batches, each its own read
    public_id, envelope_id = trail.envelope(HOSTILE, "ana@example.com", ticket="TCK-1")
    opened = trail.event("recipient.opened", envelope_id=envelope_id, ip="203.0.113.7")
    declined = trail.event(
        "recipient.declined",
        envelope_id=envelope_id,
        data={"reason": "-1+1 and\rmore", "note": "@SUM(A1)"},
    )
    voided = trail.event("envelope.voided", envelope_id=envelope_id, actor=trail.agent.id)
    trail.event("auth.logout", actor=trail.agent.id)  # not about the envelope
    portal = trail.portal()

    response = export(portal, "audit", envelope=public_id)
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    body = response.get_data()
    table = table_of(body)
    assert table[0] == list(exports.AUDIT_HEADER)
    assert len(table[0]) == 14 and "Data (JSON)" in table[0]
    rows = {int(row[0]): dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert list(rows) == [opened, declined, voided], "oldest first, only the search's events"
    first = rows[opened]
    assert first["Event"] == "recipient.opened" and first["Label"] == "Link opened"
    assert first["IP address"] == "203.0.113.7", "personal fields revealed (sealed in the chain)"
    assert first["Subject type"] == "envelope" and first["Subject id"] == str(envelope_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["Time (UTC)"])
    assert re.fullmatch(r"[0-9a-f]{64}", first["Hash"]) and len(first["Previous hash"]) == 64
    data = json.loads(rows[declined]["Data (JSON)"])
    assert data == {"reason": "-1+1 and\rmore", "note": "@SUM(A1)"}, "the data in clear, as JSON"
    assert rows[voided]["Actor type"] == "user" and rows[voided]["Actor id"] == str(trail.agent.id)
    with app.app_context():
        (stored,) = audit.reveal(
            db.session.execute(select(audit.AuditEvent).where(audit.AuditEvent.seq == voided))
            .scalars()
            .all()
        )
        assert rows[voided]["Hash"] == stored.event.hash
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in table for cell in r)

    (recorded,) = audit_events(app, exports.EVENT)
    assert recorded.actor_id == str(trail.officer.id)
    assert recorded.data["kind"] == "audit" and recorded.data["rows"] == 3
    assert recorded.data["filters"] == {"envelope": public_id}
    assert recorded.data["sha256"] == hashlib.sha256(body).hexdigest(), "the file's SHA-256"
    assert recorded.data["complete"] is True


def test_formula_payloads_in_names_are_escaped(app, trail):
    _public, envelope_id = trail.envelope("Ana", "ana@example.com")
    with app.app_context():
        actor = ("recipient", "7", "+1 (555) 0100")
        audit.record("recipient.signed", actor=actor, subject=("envelope", str(envelope_id), None),
                     data={"name": "\t=cmd|' /C calc'!A0"}, user_agent="=1+2")  # fmt: skip
        db.session.commit()
    body = export(trail.portal(), "audit", event="recipient.signed").get_data()
    header, row = table_of(body)
    cells = dict(zip(header, row, strict=True))
    assert cells["Actor"] == "'+1 (555) 0100"
    assert cells["User agent"] == "'=1+2"
    assert json.loads(cells["Data (JSON)"]) == {"name": "\t=cmd|' /C calc'!A0"}


def test_envelopes_csv_has_a_row_per_recipient_with_times_seal_retention_and_hold(app, trail):
    public_id, envelope_id = trail.envelope("Ana Lopez", "ana@example.com", ticket="=TCK")
    other, _ = trail.envelope("Ben Okafor", "ben@example.com")
    with app.app_context():
        from portal.envelopes.models import Envelope, Recipient

        envelope = db.session.get(Envelope, envelope_id)
        envelope.status = "completed"
        envelope.finished_at = DAY + timedelta(hours=5, minutes=30)
        envelope.seal_status = "sealed"
        envelope.sealed_sha256 = "ab" * 32
        envelope.retention_until = DAY + timedelta(days=365 * 7)
        envelope.recipients.append(
            Recipient(
                role="witness",
                role_name="Witness",
                kind="cc",
                name="@Wit",
                order=2,
                email="wit@example.com",
                status="copied",
            )
        )
        officer = db.session.get(User, trail.officer.id)
        holds.place(name="Case 42", case_ref="C-42", reason="Litigation", scope="envelopes",
                    by=officer, chosen=[envelope_id])  # fmt: skip
        db.session.commit()
    body = export(trail.portal(), "envelopes", customer="ana@example.com").get_data()
    table = table_of(body)
    assert table[0] == list(exports.ENVELOPE_HEADER)
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [(r["Envelope"], r["Recipient email"]) for r in rows] == [
        (public_id, "ana@example.com"),
        (public_id, "wit@example.com"),
    ], "a row per recipient; only the search's envelopes"
    assert other not in body.decode("utf-8-sig")
    first = rows[0]
    assert first["Title"] == "Refund authorization" and first["Template"] == "Refund authorization"
    assert first["Template version"] == "1" and first["Team"] == "Customer Care"
    assert first["Recipient"] == "Ana Lopez" and first["Recipient role"] == "Customer"
    assert first["Status"] == "Completed"
    assert first["Sent (UTC)"] == "2026-11-20 10:00:00 UTC"
    assert first["Completed (UTC)"] == "2026-11-20 15:30:00 UTC" and first["Voided (UTC)"] == ""
    assert first["Time to complete (hours)"] == "5.50"
    assert first["Seal status"] == "sealed" and first["Sealed SHA-256"] == "ab" * 32
    assert first["Ticket"] == "'=TCK"
    assert first["Retention until (UTC)"].startswith("2033-11-")
    assert first["Legal hold"] == "Case 42"
    assert rows[1]["Recipient"] == "'@Wit" and rows[1]["Recipient kind"] == "cc"
    (recorded,) = audit_events(app, exports.EVENT)
    assert recorded.data["kind"] == "envelopes" and recorded.data["rows"] == 2
    assert recorded.data["sha256"] == hashlib.sha256(body).hexdigest()


def test_large_exports_run_as_jobs_with_progress_and_a_download_for_the_requester(
    make_app, make_staff, monkeypatch
):
    app = make_app(EXPORT_INLINE_ROWS=3)
    monkeypatch.setattr(exports, "PART_BYTES", 1000)  # several encrypted parts
    monkeypatch.setattr(portal_exports, "LINES_PER_CHUNK", 5)
    monkeypatch.setattr(portal_exports, "CHUNK_CHARS", 100)  # (a chunk per batch of 5)
    monkeypatch.setattr(exports, "BATCH", 5)
    trail = Trail(app, make_staff)
    with app.app_context():
        audit.record_many(
            audit.Pending("auth.logout", actor=("user", "1", f"user{n}@example.com"))
            for n in range(40)
        )
        db.session.commit()
    portal = trail.portal()
    small = export(portal, "audit", event="auth.logout", staff="1")
    assert small.status_code == 303, "more than 3 rows: a job"
    status_url = small.headers["Location"]
    assert re.fullmatch(r"/records/exports/[0-9a-f]{32}", status_url)
    page = get(portal, status_url)  # (jobs run inline here: it is done)
    assert "Ready: 40 of 40 rows (100%)" in text_of(page)
    assert "every 1s" not in page, "a finished export stops polling"
    download = re.search(r'href="(/records/exports/[0-9a-f]{32}/download)"', page).group(1)
    body = portal.client.get(download).get_data()
    table = table_of(body)
    assert len(table) == 41 and table[0] == list(exports.AUDIT_HEADER)
    digest = hashlib.sha256(body).hexdigest()
    assert digest in page, "the page shows the file's SHA-256"
    (recorded,) = audit_events(app, exports.EVENT)
    assert recorded.data["sha256"] == digest and recorded.data["rows"] == 40
    assert recorded.data["filters"] == {"event": "auth.logout", "staff": "1"}
    assert recorded.data["mode"] == "job"
    assert audit_events(app, "records.export_downloaded")
    with app.app_context():
        made = db.session.execute(select(RecordsExport)).scalar_one()
        parts = db.session.execute(select(RecordsExportPart)).scalars().all()
        assert made.state == "ready" and len(parts) > 3, "stored in parts"
        blob = db.session.get(Blob, parts[0].blob_id)
        assert b"auth.logout" not in blob.ciphertext, "encrypted at rest"
    assert "Audit events" in get(portal, "/records/exports")

    # only the requester and admins
    other = signed_in_as(app, trail.world.staff("compliance"))
    assert other.client.get(status_url).status_code == 403
    assert other.client.get(download).status_code == 403
    admin = signed_in_as(app, trail.world.staff("admin"))
    assert admin.client.get(download).get_data() == body
    agent = signed_in_as(app, trail.agent)
    assert agent.client.get(status_url).status_code == 403
    assert agent.client.get(download).status_code == 403


def test_a_running_export_polls_its_progress(app, trail):
    with app.app_context():
        running = RecordsExport(
            public_id="a" * 32, kind="audit", filters={}, state="running", rows_total=200,
            rows_done=50, size=0, requested_by_id=trail.officer.id,
        )  # fmt: skip
        db.session.add(running)
        db.session.commit()
    portal = trail.portal()
    fragment = portal.client.get(f"/records/exports/{'a' * 32}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and 'hx-trigger="every 1s"' in body
    assert "Being made: 50 of 200 rows (25%)" in text_of(body)
    assert 'value="25"' in body
    assert portal.client.get(f"/records/exports/{'a' * 32}/download").status_code == 409
    assert portal.client.get(f"/records/exports/{'b' * 32}").status_code == 404


def test_old_files_are_pruned(app, trail, monkeypatch):
    app.config["EXPORT_INLINE_ROWS"] = 0
    trail.event("auth.logout")
    response = export(trail.portal(), "audit")
    assert response.status_code == 303
    with app.app_context():
        made = db.session.execute(select(RecordsExport)).scalar_one()
        blobs = [p.blob_id for p in db.session.execute(select(RecordsExportPart)).scalars()]
        assert made.state == "ready" and blobs
        later = clock.utcnow() + timedelta(days=exports.KEEP_DAYS, hours=1)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    with app.app_context():
        assert exports.prune_exports() == "1 pruned"
        made = db.session.execute(select(RecordsExport)).scalar_one()
        assert made.state == "expired"
        assert db.session.execute(select(RecordsExportPart)).first() is None
        assert all(db.session.get(Blob, blob) is None for blob in blobs)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"kind": "passwords"}, "Choose what to export"),
        ({"kind": "audit", "from": "2026-02-31"}, "From must be a date such as 2026-12-31"),
        ({"kind": "audit", "event": "no.such"}, "There is no event type"),
        ({"kind": "audit", "customer": "x" * 100_000}, "longer than any real one"),
    ],
)
def test_bad_export_requests_say_why(trail, form, message):
    response = trail.portal().post("/records/exports", form)
    assert response.status_code == 400
    assert message in text_of(response.get_data(as_text=True))


def test_a_job_waits_in_the_queue_then_a_real_rq_worker_makes_it(
    make_app, make_staff, redis_server, monkeypatch
):
    from redis import Redis
    from rq import Queue, SimpleWorker

    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False, EXPORT_INLINE_ROWS=1)
    trail = Trail(app, make_staff)
    trail.event("auth.logout", actor=trail.agent.id)
    trail.event("auth.logout", actor=trail.agent.id)
    portal = trail.portal()
    try:
        response = export(portal, "audit", event="auth.logout")
        assert response.status_code == 303
        waiting = portal.client.get(response.headers["Location"], headers={"HX-Request": "true"})
        body = waiting.get_data(as_text=True)
        assert "Waiting to start: 0 rows (0%)" in text_of(body)
        assert 'hx-trigger="every 1s"' in body, "polls while it waits"
        assert Queue("default", connection=conn).count == 1
        with app.app_context():
            SimpleWorker([Queue("default", connection=conn)], connection=conn).work(burst=True)
        done = get(portal, response.headers["Location"])
        assert "Ready: 2 of 2 rows (100%)" in text_of(done) and "every 1s" not in done
        (recorded,) = audit_events(app, exports.EVENT)
        assert recorded.data["rows"] == 2 and recorded.data["mode"] == "job"
    finally:
        conn.flushdb()
        conn.close()


def test_an_export_whose_job_was_lost_is_asked_for_again(app, trail):
    trail.event("auth.logout")
    with app.app_context():
        lost = RecordsExport(
            public_id="c" * 32, kind="audit", filters={"event": "auth.logout"}, state="queued",
            rows_done=0, size=0, requested_by_id=trail.officer.id,
            created_at=clock.utcnow() - timedelta(minutes=30),
        )  # fmt: skip
        fresh = RecordsExport(
            public_id="d" * 32, kind="audit", filters={}, state="queued", rows_done=0, size=0,
            requested_by_id=trail.officer.id, created_at=clock.utcnow(),
        )  # fmt: skip
        db.session.add_all([lost, fresh])
        db.session.commit()
        assert exports.sweep_exports() == "1 asked for again"  # (jobs run inline here)
        db.session.expire_all()
        states = dict(
            db.session.execute(select(RecordsExport.public_id, RecordsExport.state)).all()
        )
    assert states == {"c" * 32: "ready", "d" * 32: "queued"}
    (recorded,) = audit_events(app, exports.EVENT)
    assert recorded.data["rows"] == 1 and recorded.data["export"] == "c" * 32


def test_reveal_rows_reads_every_event_as_reveal_does(ctx):
    # The export's reveal (stored columns as tuples, keys read per batch) against
    # ``audit.reveal``: sealed events of three envelopes, one of them shredded, events with
    # nothing sealed, recipient and staff actors.
    for n, envelope_id in enumerate([41, 42, 41, 43, 42]):
        audit.record(
            "recipient.signed",
            actor=("recipient", str(n), f"=person{n}@example.com"),
            subject=("envelope", str(envelope_id), "Refund"),
            data={"recipient": n, "printed_name": f"Person {n}", "kind": "typed"},
        )
    audit.record("auth.login", actor=("user", "1", "agent@demo.example"), data={"method": "pw"})
    audit.record("envelope.test", subject=("envelope", "44", None), data={"count": 2})
    db.session.commit()
    keys.shred(42)
    db.session.commit()
    stored = list(
        db.session.execute(select(audit.AuditEvent).order_by(audit.AuditEvent.seq)).scalars()
    )
    expected = [
        (r.actor_label, r.ip, r.user_agent, audit.encode_data(r.data)) for r in audit.reveal(stored)
    ]
    opener = keys.Opener()
    shown = audit.reveal_rows(
        [(e.seq, e.actor_type, e.actor_label, e.ip, e.user_agent, e.data_json) for e in stored],
        opener,
        db.session.connection(),
    )
    got = [
        (e.actor_label, e.ip, e.user_agent, e.data_json) if one is None else one
        for e, one in zip(stored, shown, strict=True)
    ]
    assert got == expected
    by_envelope = {e.subject_id: one for e, one in zip(stored, shown, strict=True) if one}
    assert by_envelope["42"][:3] == ("erased", "erased", "erased")
    assert "Person 4" not in by_envelope["42"][3] and "Person 3" in by_envelope["43"][3]
    assert sum(one is None for one in shown) >= 2, "nothing sealed: written as stored"
    db.session.rollback()
    # a second read of the same keys (another batch) refuses a key shredded meanwhile
    keys.shred(41)
    db.session.commit()
    again = audit.reveal_rows(
        [(e.seq, e.actor_type, e.actor_label, e.ip, e.user_agent, e.data_json) for e in stored],
        opener,
        db.session.connection(),
    )
    assert [one[1] for e, one in zip(stored, again, strict=True) if e.subject_id == "41"] == [
        "erased",
        "erased",
    ]
    db.session.rollback()


def test_audit_lines_are_what_the_csv_writer_writes(ctx):
    # The export writes its lines itself; for any cells (commas, quotes, line breaks,
    # formula starts, empty and missing values, non-ASCII) they must be csv.writer's bytes
    # for the same cells made safe.
    rng = random.Random(12)
    pieces = [
        "a",
        "é",
        "😀",
        " ",
        ",",
        '"',
        "\r",
        "\n",
        "\r\n",
        "=",
        "+",
        "-",
        "@",
        "\t",
        "'",
        "x y",
    ]

    def text(empty_too: bool = True) -> str | None:
        if empty_too and rng.random() < 0.15:
            return rng.choice([None, ""])
        return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))

    rows = []
    for seq in range(1, 3001):
        event = rng.choice(["auth.login", "recipient.signed", text(False)])
        rows.append(
            (seq, "2026-01-02T03:04:05.000006Z", event, text(False), text(), text(), text(),
             text(), text(), text(), text(), rng.choice(["a" * 64, text(False)]), "b" * 64)
        )  # fmt: skip
    lines = exports._audit_rows(rows, [None] * len(rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for seq, at, event, a_type, a_id, actor, s_type, s_id, ip, agent, data, prev, digest in rows:
        cells = [event, audit.LABELS.get(event, event), a_type, a_id, actor, s_type, s_id]
        cells += [ip, agent, data]
        writer.writerow([seq, at, *(portal_exports.safe_cell(c) for c in cells), prev, digest])
    assert "".join(lines) == buffer.getvalue()
    assert any('"' in line[:-2] for line in lines) and any("'=" in line for line in lines)
