"""The approver's side: what the earlier recipients entered, one decision (Approve, or Reject
with a reason), the sealed copy like the signers', and a done page that says only what is true."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.mail import Message
from tests.conftest import audit_events
from tests.test_signing import _csrf, _path, sent  # noqa: F401  (fixture)

ADDENDUM = "Service-change addendum"


def _customer_signs(app, public_id: str, link: str, name: str = "Jordan Rivera"):
    """The customer consents and signs with a typed name; returns their client."""
    client, token = _consented(app, public_id, _path(link))
    signed = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": name,
            "agree": "yes",
        },
    )
    assert signed.status_code == 302
    return client


def _approver(app, public_id: str, link: str | None = None):
    """The approver opens the link emailed to them and accepts the disclosure."""
    if link is None:
        with app.app_context():
            message = db.session.execute(
                select(Message).where(Message.to_address == "sam@example.com")
            ).scalar_one()
            link = re.search(r"http://127.0.0.1:5000(/s/\S+)", message.text_body).group(1)
    return _consented(app, public_id, link)


def _consented(app, public_id: str, path: str):
    """A new browser session opens the link at ``path`` and accepts the disclosure; returns
    the client and its CSRF token."""
    client = app.test_client()
    client.get(path)
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token


def _primary_buttons(html: str) -> list[str]:
    """The labels of the page's primary buttons (class "button" without a variant)."""
    return re.findall(r'<(?:button|a|summary)[^>]*class="button\s*"[^>]*>([^<]*)<', html)


def test_the_approver_sees_what_the_customer_entered_and_one_decision(app, sent):  # noqa: F811
    _envelope_id, public_id, link = sent(ADDENDUM)
    _customer_signs(app, public_id, link)
    approver, _token = _approver(app, public_id)
    page = approver.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "What was filled in" in page
    assert "Jordan Rivera" in page and "Signed as “Jordan Rivera”" in page
    assert "Your decision" in page
    assert _primary_buttons(page) == ["Approve"]
    assert ">Reject</summary>" in page
    assert "Decline to sign" not in page and "Adopt and sign" not in page


def test_the_approver_opens_the_document_with_the_values_stamped(app, sent):  # noqa: F811
    _envelope_id, public_id, link = sent(ADDENDUM)
    customer = _customer_signs(app, public_id, link)
    approver, _token = _approver(app, public_id)
    filled = approver.get(f"/sign/{public_id}/filled.pdf")
    assert filled.status_code == 200 and filled.mimetype == "application/pdf"
    assert filled.data.startswith(b"%PDF-")
    viewed = audit_events(app, "envelope.filled_document_viewed")
    assert len(viewed) == 1 and viewed[0].actor_type == "recipient"
    # only the approver: the customer (finished) is shown their done page instead
    assert customer.get(f"/sign/{public_id}/filled.pdf").status_code in (303, 404, 410)


def test_a_customer_gets_no_filled_in_preview(app, sent):  # noqa: F811
    _envelope_id, public_id, link = sent()
    client, _token = _consented(app, public_id, _path(link))
    assert client.get(f"/sign/{public_id}/filled.pdf").status_code == 404
    assert audit_events(app, "envelope.filled_document_viewed") == []


def test_rejecting_asks_for_a_reason_and_changes_nothing_without_one(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent(ADDENDUM)
    customer = _customer_signs(app, public_id, link)
    approver, token = _approver(app, public_id)
    silent = approver.post(
        f"/sign/{public_id}/review", data={"csrf_token": token, "decision": "reject"}
    )
    text = silent.get_data(as_text=True)
    assert silent.status_code == 422 and "Say why you reject it" in text
    assert '<details class="reject" open>' in text
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).status == "sent"
    approver.post(
        f"/sign/{public_id}/review",
        data={"csrf_token": token, "decision": "reject", "comment": "Wrong plan"},
    )
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "declined"
    assert audit_events(app, "recipient.declined")[0].data == {"reason": "Wrong plan"}
    # The customer's done page does not promise a copy that will never come.
    done = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Someone else declined the document" in done and "There is no signed copy." in done
    assert "email" not in done.split("<main", 1)[1].split("</main>", 1)[0].lower()


def test_the_done_page_does_not_claim_an_email_that_failed(app, sent):  # noqa: F811
    _envelope_id, public_id, link = sent()
    client = _customer_signs(app, public_id, link, "Zoë Łukasiewicz")
    queued = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "It is also on its way to you by email." in queued
    with app.app_context():
        message = db.session.execute(
            select(Message).where(Message.kind == "completed")
        ).scalar_one()
        message.status = "failed"
        db.session.commit()
    failed = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Download your signed copy" in failed
    assert "emailed" not in failed and "by email" not in failed
