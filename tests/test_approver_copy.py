"""The approver receives the sealed copy like the signers: the completion email with the PDF
attached, delivered over SMTP, and the download on their done page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.mail import Message
from tests.conftest import audit_events
from tests.test_approver import ADDENDUM, _approver, _customer_signs
from tests.test_signing import sent  # noqa: F401  (fixture)


@pytest.fixture
def app(make_app, smtp_server):
    """The app delivers its mail to the test SMTP server (messages end up "sent")."""
    smtp_server.clear()
    return make_app(**smtp_server.config())


def test_the_approver_gets_the_sealed_copy_like_the_signers(app, sent, smtp_server):  # noqa: F811
    envelope_id, public_id, link = sent(ADDENDUM)
    customer = _customer_signs(app, public_id, link)
    waiting = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "We will email you the signed copy once everyone has finished." in waiting
    request = next(
        m.message.get_body(preferencelist=("plain",)).get_content()
        for m in smtp_server.messages
        if "sam@example.com" in m.rcpt_tos
    )
    link = re.search(r"https?://[^/\s]+(/s/[A-Za-z0-9_\-]+)", request).group(1)
    approver, token = _approver(app, public_id, link)
    approver.post(
        f"/sign/{public_id}/review",
        data={"csrf_token": token, "decision": "approve", "comment": "Plan change OK"},
    )
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "completed" and envelope.seal_status == "sealed"
        copies = db.session.execute(
            select(Message).where(Message.kind == "completed").order_by(Message.id)
        ).scalars()
        by_address = {m.to_address: m for m in copies}
        assert set(by_address) == {"jordan@example.com", "sam@example.com"}
        approver_copy = by_address["sam@example.com"]
        assert approver_copy.attachment_blob_id == envelope.sealed_blob_id
        assert approver_copy.status == "sent"
    received = [m for m in smtp_server.messages if "sam@example.com" in m.rcpt_tos]
    attached = [
        part.get_filename()
        for m in received
        for part in m.message.iter_attachments()
        if part.get_content_type() == "application/pdf"
    ]
    assert len(attached) == 1 and attached[0].endswith(".pdf")
    done = approver.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Thank you, you have approved" in done
    assert "We have also emailed it to you." in done
    assert "Download your signed copy" in done
    copy = approver.get(f"/sign/{public_id}/signed.pdf")
    assert copy.status_code == 200 and copy.data.startswith(b"%PDF-")
    downloaded = audit_events(app, "recipient.copy_downloaded")
    assert len(downloaded) == 1 and downloaded[0].actor_type == "recipient"
