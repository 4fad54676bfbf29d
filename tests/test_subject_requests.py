"""Data-subject requests: what is held about one customer email, the export of it all, and
erasure of what no retention period or hold protects (with the reasons for the rest)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.documents.seal import check_seal
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.records import holds
from tests.conftest import audit_events, demo_agent
from tests.test_holds import send_refund
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401

ZOE_SHA = hashlib.sha256(b"zoe@example.com").hexdigest()


def _lookup(portal, email: str):
    return portal.post("/records/subject", {"email": email})


def test_the_page_shows_what_is_held_about_one_email_whatever_its_case(
    app,
    sent,  # noqa: F811
    signed_in,
):
    mine, _, _ = sent()
    upper, _, _ = send_refund(app, "ZOE@example.COM")
    other, _, _ = send_refund(app, "someone@example.com", name="Someone Else")
    portal, _ = signed_in("compliance")
    assert "Customer email" in portal.client.get("/records/subject").get_data(as_text=True)
    page = _lookup(portal, "Zoe@Example.com").get_data(as_text=True)
    assert '<span id="held-count">2</span>' in page
    assert f'data-envelope="{mine}"' in page and f'data-envelope="{upper}"' in page
    assert f'data-envelope="{other}"' not in page
    assert "It has not ended yet." in page  # what erasure would do with each


def test_bad_input_and_agents(app, signed_in, make_staff):
    portal, _ = signed_in("compliance")
    for value, message in (
        ("", "Enter the customer&#39;s email."),
        ("not-an-email", "The email is not valid"),
        ("x" * 1_000_000 + "@example.com", "longer than"),
    ):
        response = _lookup(portal, value)
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    refused = portal.post("/records/subject/erase", {"email": "zoe@example.com", "reference": ""})
    assert refused.status_code == 422
    assert "The reason or request reference is required." in refused.get_data(as_text=True)
    assert audit_events(app, "subject.erasure_requested") == []
    bad_export = portal.post("/records/subject/export", {"email": "nope"})
    assert bad_export.status_code == 422

    agent = make_staff("agent")
    client = app.test_client()
    from tests.conftest import Portal

    other = Portal(app, client)
    other.sign_in(agent)
    assert other.client.get("/records/subject").status_code == 403
    for url in ("/records/subject", "/records/subject/export", "/records/subject/erase"):
        assert other.post(url, {"email": "zoe@example.com", "reference": "x"}).status_code == 403


def test_export_holds_their_sealed_documents_data_and_events(app, sent, signed_in):  # noqa: F811
    signed_id, public_id, link = sent()
    _sign(app, link, public_id)
    waiting, _, _ = send_refund(app, "zoe@example.com")
    send_refund(app, "other@example.com", name="Other Person")
    portal, officer = signed_in("compliance")

    response = portal.post("/records/subject/export", {"email": "ZOE@example.com"})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    content = response.get_data()
    response.close()
    bundle = zipfile.ZipFile(io.BytesIO(content))
    manifest = list(csv.DictReader(io.StringIO(bundle.read("manifest.csv").decode("utf-8-sig"))))
    assert sorted(bundle.namelist()) == sorted([r["File"] for r in manifest] + ["manifest.csv"])
    for row in manifest:
        assert hashlib.sha256(bundle.read(row["File"])).hexdigest() == row["SHA-256"]
    documents = [r for r in manifest if r["Kind"] == "sealed_pdf"]
    assert [int(r["Envelope id"]) for r in documents] == [signed_id]
    assert check_seal(bundle.read(documents[0]["File"])).outcome == "intact"

    data = json.loads(bundle.read("data.json"))
    assert data["email"] == "zoe@example.com"
    by_id = {e["id"]: e for e in data["envelopes"]}
    assert set(by_id) == {signed_id, waiting}
    signed = by_id[signed_id]
    assert signed["status"] == "completed"
    assert signed["recipients"][0]["name"] == "Zoë Łukasiewicz"
    assert signed["recipients"][0]["values"], "the values they entered"
    assert "recipient.signed" in [e["event"] for e in signed["events"]]
    assert all(e["ip"] for e in signed["events"] if e["event"] == "recipient.signed")

    people = list(csv.DictReader(io.StringIO(bundle.read("data.csv").decode("utf-8-sig"))))
    assert sorted(int(p["Envelope id"]) for p in people) == sorted([signed_id, waiting])
    assert {p["Email"] for p in people} == {"zoe@example.com"}
    events = list(csv.DictReader(io.StringIO(bundle.read("events.csv").decode("utf-8-sig"))))
    assert "Signed" in [e["Event"] for e in events]
    assert "Other Person" not in bundle.read("data.json").decode()

    recorded = audit_events(app, "subject.exported")
    assert len(recorded) == 1
    assert recorded[0].actor_id == str(officer.id)
    assert recorded[0].data["email_sha256"] == ZOE_SHA
    assert recorded[0].data["envelopes"] == 2
    assert recorded[0].data["sha256"] == hashlib.sha256(content).hexdigest()
    assert "zoe@example.com" not in recorded[0].data_json.lower()


def _end(app, envelope_id: int, *, retained_days: int) -> None:
    """Void the envelope and give it a retention date ``retained_days`` from now."""
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelopes.void(envelope, "Customer asked", by=demo_agent())
        envelope = db.session.get(Envelope, envelope_id)
        envelope.retention_until = clock.utcnow() + timedelta(days=retained_days)
        db.session.commit()


def test_erasure_purges_only_what_nothing_protects_and_says_why_the_rest_is_kept(
    app,
    sent,  # noqa: F811
    signed_in,
):
    due, _, _ = sent()
    held, _, _ = send_refund(app, "Zoe@example.com")
    kept, _, _ = send_refund(app, "zoe@example.com")
    open_, _, _ = send_refund(app, "zoe@example.com")
    stranger, _, _ = send_refund(app, "stranger@example.com", name="Stranger")
    _end(app, due, retained_days=-1)
    _end(app, held, retained_days=-1)
    _end(app, kept, retained_days=400)
    _end(app, stranger, retained_days=-1)
    portal, officer = signed_in("compliance")
    placed = portal.post(
        "/records/holds/new",
        {"name": "Audit 2026", "case_ref": "A-1", "reason": "Regulator", "scope": "envelopes",
         "envelope": [str(held)]},
    )  # fmt: skip
    assert placed.status_code == 303

    response = portal.post(
        "/records/subject/erase", {"email": "zoe@example.com", "reference": "DSR-77"}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Erasure done: 1 purged, 3 kept" in page
    until = (clock.utcnow() + timedelta(days=400)).strftime("%Y-%m-%d")
    assert "On legal hold: Audit 2026." in page
    assert f"Kept until {until}" in page
    assert "It has not ended yet." in page
    assert '<span id="held-count">3</span>' in page  # what is left about them

    with app.app_context():
        purged = db.session.get(Envelope, due)
        assert purged.purged_at is not None
        people = db.session.scalars(select(Recipient).where(Recipient.envelope_id == due)).all()
        assert all(p.email == "" and "Zoë" not in p.name for p in people)
        for other in (held, kept, open_, stranger):
            assert db.session.get(Envelope, other).purged_at is None, other
        assert holds.hold_reasons([held]) == {held: ["Audit 2026"]}

    assert [e.subject_id for e in audit_events(app, "envelope.purged")] == [str(due)]
    requested = audit_events(app, "subject.erasure_requested")
    assert len(requested) == 1
    event = requested[0]
    assert event.actor_id == str(officer.id)
    assert event.data["email_sha256"] == ZOE_SHA and event.data["reference"] == "DSR-77"
    assert event.data["purged"] == 1 and event.data["kept"] == 3
    outcome = {o["envelope"]: o for o in event.data["envelopes"]}
    assert outcome[due]["purged"] is True
    assert outcome[held]["kept_because"] == "On legal hold: Audit 2026."
    assert outcome[kept]["kept_until"].startswith(until)
    assert outcome[open_]["kept_because"] == "It has not ended yet."
    assert "zoe@example.com" not in event.data_json.lower()


@pytest.mark.browser
def test_the_request_page_in_chromium(app, sent, desktop, make_staff):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from tests.browser import describe_violations, serious_violations

    first, _, _ = sent()
    officer = make_staff("compliance")
    page = desktop.page
    desktop.sign_in(officer)
    desktop.goto("/records/")
    page.get_by_role("link", name="Data-subject requests").click()
    page.get_by_label("Customer email").fill("ZOE@example.com")
    page.get_by_role("button", name="Show what is held").click()
    expect(page.locator("#held-count")).to_have_text("1")
    expect(page.locator(f'tr[data-envelope="{first}"]')).to_contain_text("It has not ended yet.")
    assert "ZOE@example.com" not in page.url and "zoe" not in page.url.lower()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export everything (ZIP)").click()
    assert "data.json" in zipfile.ZipFile(download.value.path()).namelist()
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)
    desktop.screenshot("desktop-subject.png")
    desktop.assert_clean()


def test_a_purge_that_fails_is_reported_and_the_others_go_on(app, sent, signed_in, monkeypatch):  # noqa: F811
    from portal.records import subjects

    broken, _, _ = sent()
    fine, _, _ = send_refund(app, "zoe@example.com")
    _end(app, broken, retained_days=-1)
    _end(app, fine, retained_days=-1)
    real = subjects.purge_envelope

    def flaky(envelope, **kwargs):
        if envelope.id == broken:
            raise RuntimeError("disk on fire")
        return real(envelope, **kwargs)

    monkeypatch.setattr(subjects, "purge_envelope", flaky)
    portal, _ = signed_in("compliance")
    response = portal.post(
        "/records/subject/erase", {"email": "zoe@example.com", "reference": "DSR-78"}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Erasure done: 1 purged, 1 kept" in page
    assert "The purge failed (RuntimeError); ask again to retry it." in page
    with app.app_context():
        assert db.session.get(Envelope, broken).purged_at is None
        assert db.session.get(Envelope, fine).purged_at is not None
    [event] = audit_events(app, "subject.erasure_requested")
    assert {o["envelope"]: o["purged"] for o in event.data["envelopes"]} == {
        broken: False,
        fine: True,
    }


def test_export_has_every_event_of_theirs_and_nothing_of_the_other_recipient(
    app,
    sent,  # noqa: F811
    signed_in,
):
    """A shared envelope (the customer, then an account manager): their export has what they
    did, what was done about them (mail to them, a bounce, a corrected address) and the
    envelope's own events; not what the manager did or had done to them, nor staff views."""
    from portal import audit, mail
    from portal.library import operations as library
    from tests.conftest import demo_template

    with app.app_context():
        version = library.approved_version(demo_template("Service-change addendum"))
        values = {k.key: k.sample for k in library.merge_keys(version)}
        envelope, _ = envelopes.create_and_send(
            version,
            values,
            [
                envelopes.RecipientInput(role="customer", name="Zoë Łukasiewicz",
                                         email="zoe@example.com"),
                envelopes.RecipientInput(role="account_manager", name="Sam Manager",
                                         email="sam@example.com"),
            ],
            by=demo_agent(),
        )  # fmt: skip
        envelope_id, public_id = envelope.id, envelope.public_id
        zoe, sam = envelope.recipients
        zoe_id, sam_id = zoe.id, sam.id
        to_zoe = db.session.scalars(
            select(mail.Message).where(mail.Message.recipient_id == zoe_id)
        ).first()
        assert to_zoe is not None
        mail.mark_bounced(to_zoe, "550 mailbox unavailable")
        db.session.commit()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        zoe = db.session.get(Recipient, zoe_id)
        audit.record("recipient.document_viewed", actor=zoe, subject=zoe.envelope,
                     data={"page": 1})  # fmt: skip
        db.session.commit()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.99"}):
        sam = db.session.get(Recipient, sam_id)
        audit.record("recipient.opened", actor=sam, subject=sam.envelope)
        db.session.commit()
        envelopes.correct_email(db.session.get(Recipient, sam_id), "samuel@example.com",
                                by=demo_agent())  # fmt: skip
    portal, _ = signed_in("compliance")
    assert portal.client.get(f"/envelopes/{public_id}").status_code == 200  # a staff view

    response = portal.post("/records/subject/export", {"email": "zoe@example.com"})
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(response.get_data()))
    response.close()
    document = bundle.read("data.json").decode()
    (shared,) = json.loads(document)["envelopes"]
    assert shared["id"] == envelope_id
    names = [e["event"] for e in shared["events"]]
    for expected in ("envelope.created", "envelope.sent", "mail.bounced",
                     "recipient.document_viewed"):  # fmt: skip
        assert expected in names, (expected, names)
    assert "recipient.opened" not in names  # the manager's
    assert "envelope.recipient_corrected" not in names  # the manager's address
    assert "envelope.viewed" not in names  # staff's activity
    for event in shared["events"]:
        data = event["data"] or {}
        assert (
            data.get("recipient_id", zoe_id) == zoe_id and data.get("recipient", zoe_id) == zoe_id
        )
    bounced = next(e for e in shared["events"] if e["event"] == "mail.bounced")
    assert bounced["data"]["recipient_id"] == zoe_id and bounced["data"]["to"] == "z***@example.com"
    viewed = next(e for e in shared["events"] if e["event"] == "recipient.document_viewed")
    assert viewed["ip"] == "198.51.100.7"
    created = next(e for e in shared["events"] if e["event"] == "envelope.created")
    assert [r["role"] for r in created["data"]["recipients"]] == ["customer"]
    assert created["ip"] is None  # the agent's address is not theirs
    everything = document + bundle.read("events.csv").decode("utf-8-sig")
    for other in ("s***@example.com", "Sam Manager", "sam@example.com", "203.0.113.99"):
        assert other not in everything, other
    with app.app_context():  # the envelope's trail does hold all of it (read through reveal)
        trail = [e for e in audit_events(app) if e.subject_id == str(envelope_id)]
        assert {"recipient.opened", "envelope.recipient_corrected", "envelope.viewed"} <= {
            e.event for e in trail
        }
