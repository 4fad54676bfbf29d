"""Agent side of envelopes: create and send from an approved template, void, resend, correct."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal import storage
from portal.accounts.models import User
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import Template
from portal.mail import Message
from tests.bench.common import REFUND_VALUES
from tests.conftest import audit_events, demo_agent


@pytest.fixture
def demo(ctx, runner_for, make_staff):
    """The demo templates, approved, and an agent of their team."""
    result = runner_for(ctx).invoke(args=["portal", "seed-demo"])
    assert result.exit_code == 0, result.output
    agent = demo_agent()
    templates = {t.name: t for t in db.session.execute(select(Template)).scalars()}
    return agent, templates


def _refund(demo, **recipient):
    agent, templates = demo
    version = library.approved_version(templates["Refund authorization"])
    person = RecipientInput(
        role="customer", name="Zoë Łukasiewicz", email="zoe@example.com", **recipient
    )
    return envelopes.create_and_send(version, REFUND_VALUES, [person], by=agent, ticket_id="T-1001")


def test_sending_the_refund_creates_the_envelope_and_emails_a_link(demo):
    envelope, links = _refund(demo)
    (recipient,) = envelope.recipients
    assert envelope.status == "sent" and recipient.status == "sent"
    link = links[recipient.id]
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 22 and envelopes.token_digest(token) == recipient.token_hash
    assert token not in str(recipient.token_hash)
    # the customer's values are merged into the document they will sign, and its hash kept
    from io import BytesIO

    from pypdf import PdfReader

    text = PdfReader(BytesIO(storage.get(envelope.document_blob_id))).pages[0].extract_text()
    assert "ORD-77" in text and "Zoë Łukasiewicz" in text
    (message,) = db.session.execute(select(Message)).scalars()
    assert message.to_address == "zoe@example.com" and link in message.text_body
    assert message.subject.startswith("Please sign: Refund authorization")
    events = [e.event for e in audit_events(envelope_app())]
    assert (
        "envelope.created" in events
        and "envelope.sent" in events
        and "envelope.link_sent" in events
    )


def envelope_app():
    from flask import current_app

    return current_app._get_current_object()


def test_spanish_recipients_get_the_email_in_spanish(demo):
    _refund(demo, locale="es")
    (message,) = db.session.execute(select(Message)).scalars()
    assert message.subject.startswith("Documento pendiente de firma")
    assert "Hola, Zoë" in message.text_body


def test_missing_merge_values_and_bad_emails_change_nothing(demo):
    agent, templates = demo
    version = library.approved_version(templates["Refund authorization"])
    person = RecipientInput(role="customer", name="Zoë", email="zoe@example.com")
    with pytest.raises(envelopes.EnvelopeError, match="Fill in Refund amount"):
        envelopes.create_and_send(
            version, {**REFUND_VALUES, "refund.amount": " "}, [person], by=agent
        )
    db.session.rollback()
    bad = RecipientInput(role="customer", name="Zoë", email="not-an-email")
    with pytest.raises(envelopes.EnvelopeError, match="email of the Customer is not valid"):
        envelopes.create_and_send(version, REFUND_VALUES, [bad], by=agent)
    db.session.rollback()
    assert db.session.execute(select(Envelope)).first() is None
    assert db.session.execute(select(Message)).first() is None


def test_only_the_current_approved_version_can_be_sent(demo, make_staff):
    agent, templates = demo
    template = templates["Refund authorization"]
    admin = db.session.execute(select(User).where(User.email == "admin@demo.example")).scalar_one()
    draft = library.new_draft(template, by=admin)
    person = RecipientInput(role="customer", name="Zoë", email="zoe@example.com")
    with pytest.raises(envelopes.EnvelopeError, match="draft that has not been approved"):
        envelopes.create_and_send(draft, REFUND_VALUES, [person], by=agent)


def test_access_code_is_required_when_chosen_and_stored_hashed(demo):
    with pytest.raises(envelopes.EnvelopeError, match="access code of at least 4"):
        _refund(demo, auth_method="access_code", access_code="12")
    db.session.rollback()
    envelope, _ = _refund(demo, auth_method="access_code", access_code="4711-blue")
    (recipient,) = envelope.recipients
    assert recipient.access_code_hash and "4711-blue" not in recipient.access_code_hash


def test_sequential_routing_invites_the_approver_only_later(demo):
    agent, templates = demo
    version = library.approved_version(templates["Service-change addendum"])
    values = {k.key: k.sample for k in library.merge_keys(version)}
    envelope, links = envelopes.create_and_send(
        version,
        values,
        [
            RecipientInput(role="customer", name="Jordan Rivera", email="jordan@example.com"),
            RecipientInput(role="account_manager", name="Sam Manager", email="sam@example.com"),
        ],
        by=agent,
    )
    customer, manager = envelope.recipients
    assert customer.status == "sent" and manager.status == "waiting"
    assert list(links) == [customer.id] and manager.token_hash is None
    with pytest.raises(envelopes.EnvelopeError, match="not Sam Manager's turn"):
        envelopes.resend(manager, by=agent)


def test_void_kills_every_link_and_is_final(demo):
    agent, _ = demo
    envelope, _ = _refund(demo)
    with pytest.raises(envelopes.EnvelopeError, match="Give the reason"):
        envelopes.void(envelope, " ", by=agent)
    envelopes.void(envelope, "Customer asked to cancel the refund.", by=agent)
    assert envelope.status == "voided" and envelope.void_reason.startswith("Customer asked")
    with pytest.raises(envelopes.EnvelopeError, match="voided and can no longer change"):
        envelopes.void(envelope, "again", by=agent)
    with pytest.raises(envelopes.EnvelopeError, match="voided"):
        envelopes.resend(envelope.recipients[0], by=agent)


def test_resend_and_correct_email_replace_the_link(demo):
    agent, _ = demo
    envelope, links = _refund(demo)
    (recipient,) = envelope.recipients
    first = recipient.token_hash
    second_link = envelopes.resend(recipient, by=agent)
    assert recipient.token_hash != first and second_link != links[recipient.id]
    third_link = envelopes.correct_email(recipient, "zoe.l@example.com", by=agent)
    assert recipient.email == "zoe.l@example.com" and third_link not in (second_link,)
    assert envelopes.token_digest(third_link.rsplit("/", 1)[1]) == recipient.token_hash
    messages = list(db.session.execute(select(Message).order_by(Message.id)).scalars())
    assert [m.to_address for m in messages] == [
        "zoe@example.com",
        "zoe@example.com",
        "zoe.l@example.com",
    ]
    corrected = audit_events(envelope_app(), "envelope.recipient_corrected")
    assert corrected[0].data["from"].startswith("z") and "@example.com" in corrected[0].data["to"]
    assert re.fullmatch(r"z\*+@example\.com", corrected[0].data["from"])
