# ruff: noqa: F811  (the `sent` fixture is imported)
"""Embedded signing links: single use, five minutes, the code still asked, the email link kept.

The operation is what the API's ``.../embedded-link`` calls (``tests/test_api_actions.py``
asks for one through the API); here the agent stands in for the key's service user.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal import clock
from portal.envelopes import operations as envelopes
from portal.envelopes.checks import EnvelopeError
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.integrations import embedded
from tests.conftest import audit_events, demo_agent
from tests.test_signing import _csrf, _path, sent  # noqa: F401 - the fixture

ACCESS_CODE = "blue-4711"
GONE = "This link does not work"


@pytest.fixture(autouse=True)
def _real_time():
    yield
    clock.reset()


def _issue(app, envelope_id: int) -> embedded.EmbeddedLink:
    with app.app_context():
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        return embedded.issue(recipient, by=demo_agent())


def test_embedded_link_opens_a_signing_session_once_and_keeps_the_email_link(app, sent):
    envelope_id, public_id, email_link = sent()
    issued = _issue(app, envelope_id)
    assert issued.url.startswith("http://127.0.0.1:5000/s/embedded/")
    left = issued.expires_at - clock.utcnow()
    assert timedelta(minutes=4) < left <= timedelta(minutes=5)

    kiosk = app.test_client()
    opened = kiosk.get(_path(issued.url))
    assert opened.status_code == 302 and opened.headers["Location"] == f"/sign/{public_id}"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    page = kiosk.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Your right to paper" in page, "the same signing session: the disclosure first"

    again = app.test_client().get(_path(issued.url))
    assert again.status_code == 410 and GONE in again.get_data(as_text=True)
    assert kiosk.get(_path(issued.url)).status_code == 410, "not even in the same browser"

    phone = app.test_client()
    assert phone.get(_path(email_link)).status_code == 302, "the emailed link still works"
    assert "Your right to paper" in phone.get(f"/sign/{public_id}").get_data(as_text=True)

    [issued_event] = audit_events(app, "recipient.embedded_link_issued")
    assert issued_event.actor_label == "agent@demo.example"
    [opened_event] = audit_events(app, "recipient.embedded_link_opened")
    assert opened_event.data["link_id"] == issued_event.data["link_id"]
    refused = audit_events(app, "recipient.embedded_link_refused")
    assert [e.data["why"] for e in refused] == ["used", "used"]
    assert len(audit_events(app, "recipient.opened")) == 1
    assert "/s/embedded/" not in str([e.data for e in audit_events(app)]), "no link in the chain"


def test_embedded_link_stops_after_five_minutes(app, sent):
    envelope_id, _public_id, _link = sent()
    issued = _issue(app, envelope_id)
    clock.travel_to(clock.utcnow() + timedelta(minutes=5, seconds=1))
    late = app.test_client().get(_path(issued.url))
    assert late.status_code == 410 and GONE in late.get_data(as_text=True)
    assert audit_events(app, "recipient.embedded_link_refused")[0].data["why"] == "expired"
    assert not audit_events(app, "recipient.embedded_link_opened")


def test_embedded_link_opened_within_five_minutes_works(app, sent):
    envelope_id, _public_id, _link = sent()
    issued = _issue(app, envelope_id)
    clock.travel_to(clock.utcnow() + timedelta(minutes=4, seconds=50))
    assert app.test_client().get(_path(issued.url)).status_code == 302


def test_the_access_code_is_asked_again_even_after_it_was_given(app, sent):
    envelope_id, public_id, email_link = sent(auth_method="access_code", access_code=ACCESS_CODE)
    phone = app.test_client()
    phone.get(_path(email_link))
    token = _csrf(phone, f"/sign/{public_id}")
    phone.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    phone.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": ACCESS_CODE})
    assert "Adopt and sign" in phone.get(f"/sign/{public_id}").get_data(as_text=True)

    issued = _issue(app, envelope_id)
    kiosk = app.test_client()
    assert kiosk.get(_path(issued.url)).status_code == 302
    page = kiosk.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Enter your access code" in page and "Adopt and sign" not in page
    kiosk_token = _csrf(kiosk, f"/sign/{public_id}")
    wrong = kiosk.post(f"/sign/{public_id}/code", data={"csrf_token": kiosk_token, "code": "nope"})
    assert wrong.status_code == 422
    kiosk.post(f"/sign/{public_id}/code", data={"csrf_token": kiosk_token, "code": ACCESS_CODE})
    assert "Adopt and sign" in kiosk.get(f"/sign/{public_id}").get_data(as_text=True)
    opened = audit_events(app, "recipient.embedded_link_opened")[0]
    assert opened.data["authentication_asked_again"] is True
    assert opened.data["method"] == "access_code"


def test_a_tampered_or_foreign_link_does_nothing(app, sent):
    envelope_id, _public_id, _link = sent()
    issued = _issue(app, envelope_id)
    head, _, signature = issued.url.rpartition(".")
    forged = f"{head}.{'A' * len(signature)}"
    for url in (forged, issued.url.replace("/s/embedded/", "/s/embedded/x"), "/s/embedded/%00"):
        answer = app.test_client().get(_path(url))
        assert answer.status_code in (400, 410), url
        assert answer.status_code == 400 or GONE in answer.get_data(as_text=True)
    assert not audit_events(app, "recipient.embedded_link_opened")


def test_a_new_emailed_link_retires_the_embedded_one(app, sent):
    envelope_id, _public_id, _link = sent()
    issued = _issue(app, envelope_id)
    with app.app_context():
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        envelopes.resend(recipient, by=demo_agent())
    answer = app.test_client().get(_path(issued.url))
    assert answer.status_code == 410
    assert "This link has been replaced" in answer.get_data(as_text=True)


def test_no_embedded_link_for_a_voided_envelope_or_a_finished_recipient(app, sent):
    envelope_id, _public_id, _link = sent()
    issued = _issue(app, envelope_id)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelopes.void(envelope, "Wrong amount", by=demo_agent())
        with pytest.raises(EnvelopeError, match="voided and can no longer be signed"):
            embedded.issue(envelope.recipients[0], by=demo_agent())
    voided = app.test_client().get(_path(issued.url))
    assert voided.status_code == 410
    assert "This document was cancelled" in voided.get_data(as_text=True)
    assert len(audit_events(app, "recipient.embedded_link_issued")) == 1


def test_not_before_their_turn(app, sent):
    envelope_id, _public_id, _link = sent("Service-change addendum")
    with app.app_context():
        later = db.session.execute(
            db.select(Recipient).where(
                Recipient.envelope_id == envelope_id, Recipient.role == "account_manager"
            )
        ).scalar_one()
        with pytest.raises(EnvelopeError, match="not Sam Manager's turn yet"):
            embedded.issue(later, by=demo_agent())
