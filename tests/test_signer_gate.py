"""The signer's document stays behind the gate of the signing page.

The document page, its page images and its PDF answer only a recipient who may see the
document now: disclosure accepted, code entered, not locked, their turn, the envelope still
out for signature and the link the live one. Otherwise they return nothing of the document:
the PDF leads to the page that explains why, an image is a bare 403 or 410. The first sight
of the document is recorded once (``recipient.document_viewed``), each PDF download too.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.mail import Message
from tests.conftest import audit_events, demo_agent
from tests.test_signing import _csrf, _path, sent  # noqa: F401 - the fixture
from tests.test_signing_reads import _together

PDF = b"%PDF"
IMAGES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}  # magic numbers
ACCESS_CODE = "blue-4711"


def _open(app, link):
    client = app.test_client()
    assert client.get(_path(link)).status_code == 302
    return client


def _consent(client, public_id):
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return token


def _email_code(app) -> str:
    with app.app_context():
        message = db.session.execute(select(Message).where(Message.kind == "otp")).scalar_one()
        return re.search(r"\b(\d{6})\b", message.text_body).group(1)


def _seeing(app, sent):  # noqa: F811
    """A link-only customer's browser, on the document (disclosure accepted)."""
    envelope_id, public_id, link = sent()
    client = _open(app, link)
    _consent(client, public_id)
    _served(client, public_id)
    return envelope_id, public_id, client


def _approver(app, envelope_id: int):
    """A browser whose session is for the addendum's approver (second in turn)."""
    with app.app_context():
        manager = db.session.get(Envelope, envelope_id).recipients[1]
        assert manager.kind == "approver"
        rid, token_hash = manager.id, manager.token_hash
    client = app.test_client()
    with client.session_transaction() as state:
        state["signer"] = {"rid": rid, "th": token_hash}
    return client


def _refused(client, public_id, image_status: int, explanation: str) -> None:
    """The PDF and a page image give nothing of the document; the PDF explains why."""
    image = client.get(f"/sign/{public_id}/pages/1.png")
    assert image.status_code == image_status
    assert image.data == b"" and image.mimetype not in IMAGES
    pdf = client.get(f"/sign/{public_id}/document.pdf", follow_redirects=True)
    assert pdf.mimetype == "text/html" and PDF not in pdf.data
    assert explanation in pdf.get_data(as_text=True)


def _served(client, public_id) -> None:
    image = client.get(f"/sign/{public_id}/pages/1.png")
    assert image.status_code == 200 and image.data.startswith(IMAGES[image.mimetype])
    pdf = client.get(f"/sign/{public_id}/document.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(PDF)


# ---------------------------------------------------------------- before proving who they are


@pytest.mark.parametrize("auth_method", ["link", "email_otp", "access_code"])
def test_nothing_of_the_document_before_the_disclosure_is_accepted(app, sent, auth_method):  # noqa: F811
    _id, public_id, link = sent(auth_method=auth_method, access_code=ACCESS_CODE)
    client = _open(app, link)
    _refused(client, public_id, 403, "Before you start")
    assert audit_events(app, "recipient.document_viewed") == []
    assert audit_events(app, "recipient.document_downloaded") == []


def test_nothing_of_the_document_before_the_email_code_then_all_of_it(app, sent):  # noqa: F811
    _id, public_id, link = sent(auth_method="email_otp")
    client = _open(app, link)
    token = _consent(client, public_id)
    _refused(client, public_id, 403, "Email me a code")
    client.post(f"/sign/{public_id}/code/send", data={"csrf_token": token})
    _refused(client, public_id, 403, "Confirm it is you")
    assert audit_events(app, "recipient.document_viewed") == []
    code = _email_code(app)
    assert (
        client.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": code})
    ).status_code == 302
    _served(client, public_id)


def test_nothing_of_the_document_before_the_access_code_then_all_of_it(app, sent):  # noqa: F811
    _id, public_id, link = sent(auth_method="access_code", access_code=ACCESS_CODE)
    client = _open(app, link)
    token = _consent(client, public_id)
    _refused(client, public_id, 403, "Enter your access code")
    assert (
        client.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": ACCESS_CODE})
    ).status_code == 302
    _served(client, public_id)


def test_a_link_only_recipient_sees_it_after_the_disclosure(app, sent):  # noqa: F811
    _seeing(app, sent)


# ---------------------------------------------------------------- stopped


def test_a_locked_recipient_gets_nothing(app, sent):  # noqa: F811
    _id, public_id, link = sent(auth_method="access_code", access_code=ACCESS_CODE)
    client = _open(app, link)
    token = _consent(client, public_id)
    for _ in range(5):
        client.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": "red-0000"})
    _refused(client, public_id, 403, "This document is locked")
    assert audit_events(app, "recipient.locked")


def test_a_voided_envelope_shows_nothing_to_a_recipient_who_saw_it(app, sent):  # noqa: F811
    envelope_id, public_id, client = _seeing(app, sent)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelopes.void(envelope, "Customer cancelled the order.", by=envelope.created_by)
    _refused(client, public_id, 410, "Customer cancelled the order.")
    pdf = client.get(f"/sign/{public_id}/document.pdf")
    assert pdf.status_code == 410 and "This document was cancelled" in pdf.get_data(as_text=True)


def test_an_expired_envelope_shows_nothing_and_expires_once(app, sent, monkeypatch):  # noqa: F811
    _id, public_id, link = sent()
    client = _open(app, link)
    _consent(client, public_id)
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=31))
    _refused(client, public_id, 410, "This link has expired")
    assert len(audit_events(app, "envelope.expired")) == 1


def test_a_declined_envelope_shows_nothing_to_anyone(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent("Service-change addendum")
    customer = _open(app, link)
    token = _consent(customer, public_id)
    customer.post(f"/sign/{public_id}/decline", data={"csrf_token": token, "reason": "No"})
    _refused(customer, public_id, 403, "You declined this document")  # finished
    _refused(_approver(app, envelope_id), public_id, 410, "This document was declined")


@pytest.mark.parametrize(
    ("template", "envelope_status"),
    [("Refund authorization", "completed"), ("Service-change addendum", "sent")],
)
def test_a_signer_who_finished_gets_the_done_page_not_the_original(
    app,
    sent,  # noqa: F811
    template,
    envelope_status,
):
    """Completed, or still waiting for the approver: either way the signer has finished."""
    envelope_id, public_id, link = sent(template)
    client = _open(app, link)
    token = _consent(client, public_id)
    client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë", "agree": "yes"},
    )
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).status == envelope_status
    _refused(client, public_id, 403, "Thank you, you have signed")


def test_a_recipient_whose_turn_has_not_come_gets_nothing(app, sent):  # noqa: F811
    envelope_id, public_id, _link = sent("Service-change addendum")
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).recipients[1].status == "waiting"
    _refused(_approver(app, envelope_id), public_id, 403, "It is not your turn yet")


def test_a_replaced_link_gets_nothing(app, sent):  # noqa: F811
    envelope_id, public_id, client = _seeing(app, sent)
    with app.app_context():
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        envelopes.resend(recipient, by=demo_agent())
    assert client.get(f"/sign/{public_id}/pages/1.png").status_code == 404
    pdf = client.get(f"/sign/{public_id}/document.pdf")
    assert pdf.status_code == 404 and PDF not in pdf.data


# ---------------------------------------------------------------- audit


def test_the_first_sight_is_recorded_once_however_many_tabs_and_images(app, sent):  # noqa: F811
    _id, public_id, link = sent()
    first = _open(app, link)
    _consent(first, public_id)
    with first.session_transaction() as state:
        signer = dict(state["signer"])
    tabs = [first, app.test_client(), app.test_client()]
    for tab in tabs[1:]:
        with tab.session_transaction() as state:
            state["signer"] = signer
    paths = [
        f"/sign/{public_id}",
        f"/sign/{public_id}/pages/1.png",
        f"/sign/{public_id}/pages/2.png",
    ]
    responses = _together(*(lambda t=t, p=p: t.get(p) for t, p in zip(tabs, paths, strict=True)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "Adopt and sign" in responses[0].get_data(as_text=True)
    for tab in tabs:
        assert tab.get(f"/sign/{public_id}").status_code == 200
        assert tab.get(f"/sign/{public_id}/pages/1.png").status_code == 200
    (viewed,) = audit_events(app, "recipient.document_viewed")
    assert viewed.data["via"] in ("page", "image")
    with app.app_context():
        recipient = db.session.execute(select(Recipient)).scalar_one()
        assert recipient.document_viewed_at is not None
        assert viewed.data["document_sha256"] == recipient.envelope.original_sha256
    assert audit_events(app, "recipient.document_downloaded") == []


def test_each_download_is_recorded_and_the_first_counts_as_the_first_sight(app, sent):  # noqa: F811
    _id, public_id, link = sent()
    client = _open(app, link)
    _consent(client, public_id)
    for _ in range(2):
        assert client.get(f"/sign/{public_id}/document.pdf").data.startswith(PDF)
    downloads = audit_events(app, "recipient.document_downloaded")
    assert len(downloads) == 2 and all(d.ip == "127.0.0.1" for d in downloads)
    (viewed,) = audit_events(app, "recipient.document_viewed")
    assert viewed.data["via"] == "pdf"
    assert client.get(f"/sign/{public_id}").status_code == 200
    assert len(audit_events(app, "recipient.document_viewed")) == 1


def test_refused_requests_record_no_sight(app, sent):  # noqa: F811
    _id, public_id, link = sent(auth_method="email_otp")
    client = _open(app, link)
    _consent(client, public_id)
    for path in ("", "/pages/1.png", "/document.pdf"):
        client.get(f"/sign/{public_id}{path}")
    assert audit_events(app, "recipient.document_viewed") == []
    assert audit_events(app, "recipient.document_downloaded") == []
    with app.app_context():
        assert db.session.execute(select(Recipient)).scalar_one().document_viewed_at is None
