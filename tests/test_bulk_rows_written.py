"""What a bulk send's chunk writes through its fast paths (``portal.inserts`` and, on
PostgreSQL, the one-statement marking of rows): every column as the ordinary statements
store it, the chain intact and every customer's personal fields sealed and readable."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal import audit, inserts, mail
from portal.bulk.models import BulkRow
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.mail import Message
from portal.records.keys import AuditRef, PersonalKey
from tests.bulk_helpers import (  # noqa: F401 - bulk_threads_end is a fixture
    Bulk,
    approved_pdf_template,
    bulk_threads_end,
    to_csv,
)
from tests.conftest import audit_events

ROWS = inserts.SMALL + 5  # enough rows for the fast paths


@pytest.fixture
def bulk(app, runner_for, signed_in) -> Bulk:
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    version_id = approved_pdf_template(app)
    portal, _staff = signed_in("agent", team="Customer Care")
    return Bulk(app, portal, version_id)


def _file(bulk: Bulk) -> str:
    rows = []
    for n in range(ROWS):
        rows.append(
            {
                "customer.name": f"Client {n}",
                "Customer: email": f"client{n}@example.com",
                "plan": "basic",
                "Ticket": f"CASE-{n}",
            }
        )
    return to_csv(bulk.headings(), rows)


def test_a_chunk_writes_rows_emails_keys_and_events_as_the_ordinary_statements(app, bulk):
    public_id = bulk.uploaded(_file(bulk))
    bulk.send(public_id)
    batch = bulk.wait(public_id)
    assert batch.state == "finished" and batch.created_count == ROWS
    with app.app_context():
        envelopes = list(db.session.scalars(select(Envelope).order_by(Envelope.id)))
        assert len(envelopes) == ROWS
        by_id = {e.id: e for e in envelopes}
        # the rows: marked created with their envelope, one email each, when, no error
        rows = list(db.session.scalars(select(BulkRow).order_by(BulkRow.number)))
        assert [r.state for r in rows] == ["created"] * ROWS
        assert [r.envelope_id for r in rows] == [e.id for e in envelopes]
        assert all(r.emails == 1 and r.error is None for r in rows)
        assert all(r.created_at == by_id[r.envelope_id].created_at for r in rows)
        # the signing emails: one per customer, to them, read back as written
        mails = list(
            db.session.scalars(
                select(Message).where(Message.kind == "signing_request").order_by(Message.id)
            )
        )
        people = {p.id: p for p in db.session.scalars(select(Recipient).order_by(Recipient.id))}
        assert len(mails) == ROWS
        for message in mails:
            person = people[message.recipient_id]
            assert message.envelope_id == person.envelope_id
            assert message.to_address == person.email and message.to_name == person.name
            assert message.created_at == by_id[person.envelope_id].created_at
            assert message.status == "queued" and message.attempts == 0
            assert person.name in message.text_body and "/s/" in message.text_body
        # one key per envelope, wrapped under the current DATA_KEY; one audit_ref per event
        keys = list(db.session.scalars(select(PersonalKey).order_by(PersonalKey.envelope_id)))
        assert [k.envelope_id for k in keys] == [e.id for e in envelopes]
        assert all(k.wrapped and k.nonce and k.key_id and k.created_at for k in keys)
        events = db.session.scalar(select(func.count()).select_from(audit.AuditEvent))
        refs = db.session.scalar(select(func.count()).select_from(AuditRef))
        assert events == refs
        for ref in db.session.scalars(select(AuditRef).where(AuditRef.envelope_id.is_not(None))):
            assert ref.team_id == by_id[ref.envelope_id].team_id
        assert audit.verify().ok
        stored = db.session.scalars(
            select(audit.AuditEvent).where(audit.AuditEvent.event == "envelope.link_sent")
        ).all()
        assert stored and all("@example.com" not in (e.data_json or "") for e in stored)
        masked = {p.id: mail.mask_address(p.email) for p in people.values()}
    sent = audit_events(app, "envelope.link_sent")
    assert len(sent) == ROWS
    assert all(e.data["email"] == masked[e.data["recipient"]] for e in sent)
    created = audit_events(app, "envelope.created")
    assert sorted(e.data["ticket"] for e in created) == sorted(f"CASE-{n}" for n in range(ROWS))
