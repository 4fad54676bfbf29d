"""Purging an envelope: what goes (files, people's data, the audit key), what stays (the
tombstone), that nothing personal remains anywhere in the database or the decrypted audit
chain, that the chain still verifies, and that a purge killed midway is all or nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import LargeBinary, select

from portal import audit, clock, storage
from portal.envelopes import operations as envelopes
from portal.envelopes.checks import SendOptions
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import TemplateVersion
from portal.mail import Message
from portal.records import purge
from portal.records.retention import RetentionPolicy
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES
from tests.test_sealing import _sign
from tests.test_signing import _path

ROOT = Path(__file__).resolve().parents[1]

ZOE = {"name": "Zoë Łukasiewicz", "email": "zoe.purge@example.com", "phone": "+44 7700 900123"}
KAI = {"name": "Kai Otherperson", "email": "kai.kept@example.net", "phone": "+1 555 0100 77"}


@pytest.fixture
def seeded(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


def send_refund(app, person: dict[str, str], message: str = "") -> tuple[int, str, str]:
    """Send the demo refund to ``person`` (their name and email in the merge data too)."""
    with app.app_context():
        version = library.approved_version(demo_template("Refund authorization"))
        values = {
            **REFUND_VALUES,
            "customer.name": person["name"],
            "customer.email": person["email"],
        }
        people = [
            envelopes.RecipientInput(
                role="customer", name=person["name"], email=person["email"], phone=person["phone"]
            )
        ]
        envelope, links = envelopes.create_and_send(
            version,
            values,
            people,
            by=demo_agent(),
            ticket_id="T-4711",
            options=SendOptions(message=f"Hello {person['name']}, {message}"),
        )
        return envelope.id, envelope.public_id, next(iter(links.values()))


def signed(app, person: dict[str, str]) -> tuple[int, str]:
    """A refund sent to ``person``, signed with a drawn signature, completed and sealed."""
    envelope_id, public_id, link = send_refund(app, person, "please sign")
    _sign(app, link, public_id, name=person["name"])
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "completed" and envelope.seal_status == "sealed"
        assert envelope.retention_until is not None
    return envelope_id, public_id


def later(app, envelope_id: int, days: int = 1) -> None:
    """Move the clock past the envelope's retention date (the rest of the test runs then)."""
    with app.app_context():
        until = clock.as_utc(db.session.get(Envelope, envelope_id).retention_until)
    clock.travel_to(until + timedelta(days=days))


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.reset()


def needles(person: dict[str, str]) -> list[str]:
    surname = person["name"].split()[-1]
    return [person["email"], person["name"], surname, person["phone"], person["phone"][-8:]]


def scan_database(words: list[str]) -> list[str]:
    """Every table's text, JSON and binary cells that contain one of ``words`` (any case)."""
    hits = []
    lowered = [w.casefold() for w in words]
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)).mappings():
            for name, value in row.items():
                if value is None or isinstance(value, int | float | bool):
                    continue
                if isinstance(table.c[name].type, LargeBinary) or isinstance(value, bytes):
                    data = bytes(value)
                    found = [w for w in words if w.encode() in data]
                elif isinstance(value, dict | list):
                    text = json.dumps(value, ensure_ascii=False).casefold()
                    escaped = json.dumps(value).casefold()
                    found = [w for w, low in zip(words, lowered, strict=True)
                             if low in text or low in escaped]  # fmt: skip
                else:
                    text = str(value).casefold()
                    found = [w for w, low in zip(words, lowered, strict=True) if low in text]
                hits += [f"{table.name}.{name}: {w}" for w in found]
    return hits


def scan_audit(words: list[str]) -> list[str]:
    events = list(
        db.session.execute(select(audit.AuditEvent).order_by(audit.AuditEvent.seq)).scalars()
    )
    hits = []
    for seen in audit.reveal(events):
        text = json.dumps(
            [seen.ip, seen.user_agent, seen.actor_label, seen.data], ensure_ascii=False
        ).casefold()
        hits += [f"{seen.event.seq} {seen.event.event}: {w}" for w in words if w.casefold() in text]
    return hits


def test_purge_leaves_no_personal_data_of_the_recipients_anywhere(seeded, runner_for):
    app = seeded
    zoe_id, _ = signed(app, ZOE)
    kai_id, _ = signed(app, KAI)
    with app.app_context():
        zoe = db.session.get(Envelope, zoe_id)
        sealed_sha, version_id = zoe.sealed_sha256, zoe.template_version_id
        own_blobs = {zoe.document_blob_id, zoe.sealed_blob_id}
        own_blobs |= {p["image_blob_id"] for p in zoe.pages if p.get("image_blob_id")}
        own_blobs |= {
            v.blob_id
            for v in db.session.execute(
                select(FieldValue).where(FieldValue.envelope_id == zoe_id)
            ).scalars()
            if v.blob_id
        }
        stored_phone = db.session.execute(
            select(Recipient.phone).where(Recipient.envelope_id == zoe_id)
        ).scalar_one()
        # before: the scan finds them (so it can find them at all)
        assert scan_database([ZOE["email"], ZOE["name"]])
        assert scan_audit([ZOE["email"]])
        kai_blobs = {db.session.get(Envelope, kai_id).sealed_blob_id}
    assert len(own_blobs) >= 4  # document, sealed PDF, page images, the drawn signature

    later(app, zoe_id)
    with app.app_context():
        purge.purge_envelope(
            db.session.get(Envelope, zoe_id), reason="Retention period ended", actor=None
        )

    with app.app_context():
        words = [*needles(ZOE), stored_phone]
        assert scan_database(words) == []
        assert scan_audit(words) == []
        tomb = db.session.get(Envelope, zoe_id)
        assert tomb.purged_at is not None and tomb.purge_action == "both"
        assert tomb.sealed_sha256 == sealed_sha and tomb.template_version_id == version_id
        assert tomb.finished_at is not None and tomb.sent_at is not None
        assert tomb.document_blob_id is None and tomb.sealed_blob_id is None
        assert all(db.session.get(storage.Blob, b) is None for b in own_blobs)
        assert not db.session.execute(
            select(FieldValue).where(FieldValue.envelope_id == zoe_id)
        ).first()
        assert not db.session.execute(select(Message).where(Message.envelope_id == zoe_id)).first()
        # the other customer's envelope is untouched
        kai = db.session.get(Envelope, kai_id)
        assert kai.purged_at is None and kai.recipients[0].email == KAI["email"]
        assert kai.merge_data["customer.name"] == KAI["name"]
        assert all(db.session.get(storage.Blob, b) is not None for b in kai_blobs)
        assert scan_audit([KAI["email"]])  # its events still read
        assert storage.get(kai.sealed_blob_id)[:5] == b"%PDF-"
    [event] = audit_events(app, "envelope.purged")
    assert event.subject_id == str(zoe_id)
    assert event.data["kind"] == "both" and event.data["sealed_sha256"] == sealed_sha
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "verify-audit"])
    assert result.exit_code == 0, result.output
    assert "Audit chain intact" in result.output
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        # Nor in the database's files: freed pages are overwritten and the log emptied.
        path = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
        on_disk = b"".join(
            f.read_bytes() for f in (path, path.with_name(path.name + "-wal")) if f.exists()
        )
        assert len(on_disk) > 100_000  # (the database is there)
        assert [w for w in (ZOE["email"], ZOE["name"]) if w.encode() in on_disk] == []
        assert KAI["email"].encode() in on_disk  # (the check can find what is kept)


def test_purge_keeps_blobs_a_template_or_another_envelope_uses(seeded):
    app = seeded
    first, _, _ = send_refund(app, ZOE)
    second, _, _ = send_refund(app, KAI)
    with app.app_context():
        a, b = db.session.get(Envelope, first), db.session.get(Envelope, second)
        b.document_blob_id = a.document_blob_id  # as bulk send files one PDF for many
        template_blob = storage.put(b"%PDF-1.7 template", kind="template_source")
        version_id = a.template_version_id
        shared_doc = a.document_blob_id
        db.session.commit()
        envelopes.void(a, "Sent by mistake", by=demo_agent())
        db.session.commit()
    later(app, first)
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, first), reason="test", actor=None)
        assert db.session.get(storage.Blob, shared_doc) is not None  # the other envelope's
        b = db.session.get(Envelope, second)
        assert storage.get(b.document_blob_id)[:5] == b"%PDF-"
        # a document that is a template's own source stays too
        version = db.session.get(TemplateVersion, version_id)
        version.source_blob_id = template_blob
        own_doc = b.document_blob_id
        b.document_blob_id = template_blob
        db.session.commit()
        envelopes.void(b, "Sent by mistake", by=demo_agent())
        db.session.commit()
    later(app, second)
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, second), reason="test", actor=None)
        assert storage.get(template_blob) == b"%PDF-1.7 template"
        assert db.session.get(storage.Blob, own_doc) is not None  # (no longer its document)


def test_protection_says_why_and_purge_refuses(seeded):
    app = seeded
    envelope_id, _, _ = send_refund(app, ZOE)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert purge.protection(envelope) == "It has not ended yet."
        with pytest.raises(purge.PurgeRefused, match="not ended"):
            purge.purge_envelope(envelope, reason="x", actor=None)
        envelopes.void(db.session.get(Envelope, envelope_id), "Wrong customer", by=demo_agent())
        db.session.commit()
        envelope = db.session.get(Envelope, envelope_id)
        why = purge.protection(envelope)
        assert why is not None and why.startswith("Kept until ") and "Standard" in why
    later(app, envelope_id)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert purge.protection(envelope) is None
        purge.purge_envelope(envelope, reason="x", actor=None)
        assert purge.protection(db.session.get(Envelope, envelope_id)).startswith("Purged already")


@pytest.mark.parametrize("action", ["anonymise", "purge_documents"])
def test_the_policy_action_decides_what_goes(seeded, action):
    app = seeded
    envelope_id, _ = signed(app, ZOE)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        policy = RetentionPolicy(
            name=f"Only {action}", years=2, clock_start="any_end", action=action
        )
        db.session.add(policy)
        db.session.flush()
        envelope.retention_policy_id = policy.id
        sealed_blob = envelope.sealed_blob_id
        db.session.commit()
    later(app, envelope_id)
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, envelope_id), reason="x", actor=None)
        envelope = db.session.get(Envelope, envelope_id)
        recipient = envelope.recipients[0]
        if action == "anonymise":
            assert db.session.get(storage.Blob, sealed_blob) is not None
            assert recipient.email == "" and recipient.name == purge.PURGED_NAME
            assert scan_database([ZOE["email"]]) == []
        else:
            assert db.session.get(storage.Blob, sealed_blob) is None
            assert recipient.email == ZOE["email"]  # people's data stays under this policy
        assert envelope.purge_action == action


# ---------------------------------------------------------------- killed midway

CHILD = """
import os, sys, time
from datetime import datetime
from tests.conftest import base_config
from portal import clock, create_app
from portal.extensions import db
from portal.envelopes.models import Envelope
from portal.records import purge

url, envelope_id, stop_at, marker, moment = sys.argv[1:6]
app = create_app(base_config(url))

def pause(step):
    if step == stop_at:
        with open(marker + ".tmp", "w") as out:
            out.write(step)
        os.replace(marker + ".tmp", marker)
        time.sleep(600)

purge.STEP_HOOKS.append(pause)
clock.travel_to(datetime.fromisoformat(moment))
with app.app_context():
    purge.purge_envelope(db.session.get(Envelope, int(envelope_id)), reason="x", actor=None)
"""


@pytest.mark.parametrize("stop_at", ["documents:blobs", "anonymise:rows", "recorded"])
def test_a_purge_killed_midway_leaves_it_untouched_and_a_rerun_finishes(
    seeded, database_url, tmp_path, runner_for, stop_at
):
    app = seeded
    envelope_id, _ = signed(app, ZOE)
    with app.app_context():
        until = clock.as_utc(db.session.get(Envelope, envelope_id).retention_until)
        blobs = db.session.query(storage.Blob).count()
        events = db.session.query(audit.AuditEvent).count()
        db.session.commit()
    marker, errors = tmp_path / "paused", tmp_path / "child-errors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with errors.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, str(envelope_id), stop_at, str(marker),
             (until + timedelta(days=1)).isoformat()],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.05)
        assert marker.read_text() == stop_at
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.purged_at is None and envelope.sealed_blob_id is not None
        assert envelope.recipients[0].email == ZOE["email"]
        assert db.session.query(storage.Blob).count() == blobs
        assert db.session.query(audit.AuditEvent).count() == events
        assert storage.get(envelope.sealed_blob_id)[:5] == b"%PDF-"
        db.session.commit()
    clock.travel_to(until + timedelta(days=1))
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, envelope_id), reason="rerun", actor=None)
        assert db.session.get(Envelope, envelope_id).purged_at is not None
        assert scan_database(needles(ZOE)) == []
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "verify-audit"]).exit_code == 0


# ---------------------------------------------------------------- the tombstone in the console


def test_the_console_shows_a_tombstone_and_downloads_say_when_and_why(seeded, signed_in):
    app = seeded
    envelope_id, public_id = signed(app, ZOE)
    later(app, envelope_id)
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, envelope_id), reason="x", actor=None)
        sealed_sha = db.session.get(Envelope, envelope_id).sealed_sha256
        day = clock.utcnow().strftime("%Y-%m-%d")
    clock.reset()  # (signing in checks a code of the real time)
    portal, _ = signed_in("agent")
    page = portal.client.get(f"/envelopes/{public_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Purged" in text and sealed_sha in text
    assert ZOE["email"] not in text and "Łukasiewicz" not in text
    note = f"The document was purged under the retention policy Standard on {day}."
    assert note in text
    for path in ("sealed.pdf", "audit-report.pdf", "filled.pdf"):
        download = portal.client.get(f"/envelopes/{public_id}/{path}", follow_redirects=True)
        assert download.status_code == 200, path
        assert note in download.get_data(as_text=True), path
    image = portal.client.get(f"/envelopes/{public_id}/pages/1.png")
    assert image.status_code in (404, 410)
    listing = portal.client.get("/console").get_data(as_text=True)
    row = listing[listing.index(f"/envelopes/{public_id}") :].split("</tr>")[0]
    assert "Purged" in row and ZOE["email"] not in listing


def test_a_signing_link_of_a_purged_envelope_is_dead(seeded):
    app = seeded
    envelope_id, _, link = send_refund(app, ZOE)
    with app.app_context():
        envelopes.void(db.session.get(Envelope, envelope_id), "x", by=demo_agent())
        db.session.commit()
    later(app, envelope_id)
    with app.app_context():
        purge.purge_envelope(db.session.get(Envelope, envelope_id), reason="x", actor=None)
    response = app.test_client().get(_path(link), follow_redirects=True)
    assert response.status_code in (200, 404, 410)
    assert ZOE["name"] not in response.get_data(as_text=True)


@pytest.mark.postgresql_only
def test_a_hold_placed_while_a_purge_starts_is_waited_for(seeded, make_staff):
    import threading

    from portal.accounts.models import User
    from portal.records import holds

    app = seeded
    envelope_id, _, _ = send_refund(app, ZOE)
    officer_id = make_staff("compliance").id
    with app.app_context():
        envelopes.void(db.session.get(Envelope, envelope_id), "x", by=demo_agent())
        db.session.commit()
    later(app, envelope_id)
    placed, go = threading.Event(), threading.Event()
    outcome: list[str] = []

    def place_hold() -> None:
        with app.app_context():
            holds.place(name="Late hold", case_ref="L-1", reason="Just in time", scope="email",
                        email=ZOE["email"], by=db.session.get(User, officer_id))  # fmt: skip
            placed.set()
            go.wait(30)
            db.session.commit()

    def run_purge() -> None:
        with app.app_context():
            try:
                purge.purge_envelope(db.session.get(Envelope, envelope_id), reason="x", actor=None)
                outcome.append("purged")
            except purge.PurgeRefused as exc:
                outcome.append(str(exc))

    holder = threading.Thread(target=place_hold)
    holder.start()
    assert placed.wait(30)
    purger = threading.Thread(target=run_purge)
    purger.start()
    purger.join(1.0)
    assert purger.is_alive() and not outcome  # waiting for the hold's transaction
    go.set()
    holder.join(30)
    purger.join(30)
    assert outcome == ["On legal hold: Late hold."]
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).purged_at is None
