"""The agent's console: send from an approved template, hand over the link, follow up."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from portal.envelopes.idempotency import new_key
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from tests.conftest import Portal, audit_events, demo_template
from tests.test_envelopes import REFUND_VALUES


def _demo_agent(app, runner_for) -> tuple[Portal, int]:
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        template = demo_template()
        version_id = library.approved_version(template).id
    portal = Portal(app, app.test_client())
    first = portal.password_step("agent@demo.example", "demo-agent-pass-1")
    assert first.headers["Location"].endswith("/auth/enrol")
    page = portal.client.get("/auth/enrol").get_data(as_text=True)
    import pyotp

    secret = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    portal.post("/auth/enrol", {"code": pyotp.TOTP(secret).now()})
    return portal, version_id


def _form(**overrides: str) -> dict[str, str]:
    data = {f"m-{key}": value for key, value in REFUND_VALUES.items()}
    data.update(
        {
            "r-customer-name": "Zoë <script>alert(1)</script>",
            "r-customer-email": "zoe@example.com",
            "r-customer-locale": "en",
            "r-customer-auth": "link",
            "ticket_id": "T-42",
            "ticket_url": "https://crm.example.com/tickets/42",
            "send_key": new_key(),  # (the form's own, made when it is shown)
        }
    )
    data.update(overrides)
    return data


def test_agent_sends_the_refund_and_sees_link_and_qr(app, runner_for):
    portal, version_id = _demo_agent(app, runner_for)
    console = portal.client.get("/console").get_data(as_text=True)
    assert f"/envelopes/new/{version_id}" in console and "No envelopes yet" in console
    response = portal.post(f"/envelopes/new/{version_id}", _form(), follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Sent" in page
    link = re.search(r'id="link-\d+">([^<]+)<', page).group(1)
    assert link.startswith("http://127.0.0.1:5000/s/")
    assert "<svg" in page, "a QR code for a customer in front of the agent"
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    with app.app_context():
        message = db.session.execute(select(Message)).scalar_one()
        assert link in message.text_body and "<script>" not in message.html_body
    console = portal.client.get("/console").get_data(as_text=True)
    assert "Refund authorization" in console and "Link sent" in console and "T-42" in console
    rows = portal.client.get("/console?q=T-42", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "Refund authorization" in rows and "<html" not in rows
    assert "Refund" not in portal.client.get(
        "/console?q=nobody", headers={"HX-Request": "true"}
    ).get_data(as_text=True)


def test_bad_details_are_shown_and_nothing_is_sent(app, runner_for):
    portal, version_id = _demo_agent(app, runner_for)
    response = portal.post(
        f"/envelopes/new/{version_id}", _form(**{"m-refund.amount": "", "r-customer-email": "nope"})
    )
    assert response.status_code == 422
    assert "Fill in Refund amount" in html.unescape(response.get_data(as_text=True))
    with app.app_context():
        assert db.session.execute(select(Envelope)).first() is None


def test_follow_up_resend_correct_and_void(app, runner_for):
    portal, version_id = _demo_agent(app, runner_for)
    portal.post(f"/envelopes/new/{version_id}", _form())
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        public_id, recipient_id = envelope.public_id, envelope.recipients[0].id
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Send a new link" in page and "Void envelope" in page
    again = portal.post(
        f"/envelopes/{public_id}/recipients/{recipient_id}/resend", follow_redirects=True
    ).get_data(as_text=True)
    assert "New link sent" in again
    fixed = portal.post(
        f"/envelopes/{public_id}/recipients/{recipient_id}/email",
        {"email": "zoe.l@example.com"},
        follow_redirects=True,
    )
    assert "Email corrected" in fixed.get_data(as_text=True)
    refused = portal.post(f"/envelopes/{public_id}/void", {"reason": ""})
    assert refused.status_code == 422
    assert "Give the reason" in refused.get_data(as_text=True)
    portal.post(f"/envelopes/{public_id}/void", {"reason": "Duplicate request"})
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Voided: Duplicate request" in page and "Send a new link" not in page
    assert [e.event for e in audit_events(app, "envelope.voided")] == ["envelope.voided"]


def test_other_teams_cannot_see_or_send(app, runner_for, make_staff):
    portal, version_id = _demo_agent(app, runner_for)
    portal.post(f"/envelopes/new/{version_id}", _form())
    with app.app_context():
        public_id = db.session.execute(select(Envelope.public_id)).scalar_one()
    outsider = make_staff("agent", team="Billing")
    other = Portal(app, app.test_client())
    other.sign_in(outsider, offset_steps=1)
    assert other.client.get(f"/envelopes/{public_id}").status_code == 404
    assert other.client.get(f"/envelopes/new/{version_id}").status_code == 404
    assert "Refund authorization" not in other.client.get("/console").get_data(as_text=True)
