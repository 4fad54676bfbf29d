"""Signing edge cases: parallel routing with cc, code expiry, attachments, drawn signatures."""

from __future__ import annotations

import base64
import io
import re
from datetime import timedelta

from PIL import Image
from sqlalchemy import select

from portal import clock, storage
from portal.accounts.models import User
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, FieldValue
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from portal.signing.values import decode_drawing
from tests.conftest import audit_events, demo_agent
from tests.test_documents import good_pdf
from tests.test_signing import REFUND_VALUES, _csrf, _path, sent  # noqa: F401


def _png(width=300, height=100, ink=True) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if ink:
        for x in range(20, 200):
            image.putpixel((x, 50), (0, 0, 90, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _open_and_consent(app, link, public_id):
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token


def test_drawings_must_be_real_pngs_with_ink():
    assert decode_drawing(_data_url(_png())) is not None
    assert decode_drawing(_data_url(_png(ink=False))) is None
    assert decode_drawing("data:image/png;base64,not-base64!") is None
    assert (
        decode_drawing("data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()) is None
    )


def test_drawn_signature_is_stored_as_an_image(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent()
    client, token = _open_and_consent(app, link, public_id)
    blank = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "drawn",
            "drawing": _data_url(_png(ink=False)),
            "agree": "yes",
        },
    )
    assert blank.status_code == 422 and "Draw your signature in the box" in blank.get_data(
        as_text=True
    )
    done = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "drawn",
            "drawing": _data_url(_png()),
            "agree": "yes",
        },
    )
    assert done.status_code == 302
    with app.app_context():
        value = db.session.execute(
            select(FieldValue).where(FieldValue.field_key == "customer_signature")
        ).scalar_one()
        assert value.value == "drawn" and storage.get(value.blob_id).startswith(b"\x89PNG")
        assert db.session.get(Envelope, envelope_id).recipients[0].adoption == "drawn"


def test_attachments_are_checked_by_content(app, sent):  # noqa: F811
    _, public_id, link = sent()
    client, token = _open_and_consent(app, link, public_id)
    fake = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Zoë",
            "agree": "yes",
            "f-receipt_photo": (io.BytesIO(b"MZ\x90\x00 not an image"), "receipt.jpg"),
        },
        content_type="multipart/form-data",
    )
    assert fake.status_code == 422 and "Attach a photo (JPEG or PNG) or a PDF." in fake.get_data(
        as_text=True
    )
    ok = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Zoë",
            "agree": "yes",
            "f-receipt_photo": (io.BytesIO(_png()), "receipt.png"),
        },
        content_type="multipart/form-data",
    )
    assert ok.status_code == 302
    with app.app_context():
        value = db.session.execute(
            select(FieldValue).where(FieldValue.field_key == "receipt_photo")
        ).scalar_one()
        assert value.value == "receipt.png" and storage.get(value.blob_id) == _png()


def test_an_expired_email_code_is_refused(app, sent, monkeypatch):  # noqa: F811
    _, public_id, link = sent(auth_method="email_otp")
    client, token = _open_and_consent(app, link, public_id)
    client.post(f"/sign/{public_id}/code/send", data={"csrf_token": token})
    with app.app_context():
        body = (
            db.session.execute(select(Message).where(Message.kind == "otp")).scalar_one().text_body
        )
        code = re.search(r"\b(\d{6})\b", body).group(1)
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=11))
    late = client.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": code})
    assert late.status_code == 422 and "That code has expired" in late.get_data(as_text=True)
    assert audit_events(app, "recipient.authentication_failed")[0].data["reason"] == "expired_code"


def test_access_code_opens_the_document(app, sent):  # noqa: F811
    _, public_id, link = sent(auth_method="access_code", access_code="blue-4711")
    client, token = _open_and_consent(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Enter your access code" in page
    assert (
        client.post(
            f"/sign/{public_id}/code", data={"csrf_token": token, "code": "red-4711"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/sign/{public_id}/code", data={"csrf_token": token, "code": "blue-4711"}
        ).status_code
        == 302
    )
    assert "Adopt and sign" in client.get(f"/sign/{public_id}").get_data(as_text=True)


def test_parallel_signers_and_a_cc(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        admin = db.session.execute(
            select(User).where(User.email == "admin@demo.example")
        ).scalar_one()
        compliance = db.session.execute(
            select(User).where(User.email == "compliance@demo.example")
        ).scalar_one()
        agent = demo_agent()
        version = library.create_from_pdf(
            "Joint consent", "consent_form", agent.team, good_pdf(), "c.pdf", by=admin
        )
        library.set_roles(version, [
            {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
            {"key": "partner", "name": "Partner", "kind": "signer", "order": 1},
            {"key": "records", "name": "Records office", "kind": "cc", "order": 2},
        ], by=admin)  # fmt: skip
        library.set_settings(version, {**version.settings, "routing": "parallel"}, by=admin)
        library.add_field(version, "signature", 1, None, "customer", by=admin)
        library.add_field(version, "signature", 1, None, "partner", by=admin)
        library.submit(version, by=admin)
        library.approve(version, by=compliance)
        envelope, links = envelopes.create_and_send(version, {}, [
            RecipientInput(role="customer", name="Ana", email="ana@example.com"),
            RecipientInput(role="partner", name="Ben", email="ben@example.com"),
            RecipientInput(role="records", name="Records", email="records@example.com"),
        ], by=agent)  # fmt: skip
        envelope_id, public_id = envelope.id, envelope.public_id
        ids = [r.id for r in envelope.recipients]
        assert len(links) == 2 and ids[2] not in links, "parallel: both signers at once; cc later"
        link_list = [links[ids[0]], links[ids[1]]]
    for link in link_list:
        client, token = _open_and_consent(app, link, public_id)
        client.post(
            f"/sign/{public_id}/sign",
            data={
                "csrf_token": token,
                "adoption": "typed",
                "typed_name": "Someone",
                "agree": "yes",
            },
        )
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "completed"
        assert [r.status for r in envelope.recipients] == ["signed", "signed", "copied"]
        completed = (
            db.session.execute(select(Message.to_address).where(Message.kind == "completed"))
            .scalars()
            .all()
        )
        assert "records@example.com" in completed


def test_reminders_follow_the_template_settings(app, sent, runner_for, monkeypatch):  # noqa: F811
    envelope_id, _public_id, first_link = sent()
    real = clock.utcnow

    def at(hours: float) -> None:
        monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(hours=hours))

    at(47)
    assert "0 reminders sent" in runner_for(app).invoke(args=["portal", "tick"]).output
    at(49)
    assert "1 reminders sent" in runner_for(app).invoke(args=["portal", "tick"]).output
    for hours in (98, 147, 196, 245):  # every 48 hours, at most 3 (the template's defaults)
        at(hours)
        runner_for(app).invoke(args=["portal", "tick"])
    with app.app_context():
        reminders = (
            db.session.execute(select(Message).where(Message.kind == "reminder")).scalars().all()
        )
        assert len(reminders) == 3
        assert reminders[0].subject.startswith("Reminder: Please sign")
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        assert recipient.reminders_sent == 3
    assert len(audit_events(app, "envelope.reminder_sent")) == 3
    # each reminder carries a new link; the first one now says it was replaced
    monkeypatch.setattr(clock, "utcnow", real)
    assert "This link has been replaced" in app.test_client().get(_path(first_link)).get_data(
        as_text=True
    )


def test_whoever_still_has_to_act_is_warned_once_before_expiry(app, sent, runner_for, monkeypatch):  # noqa: F811
    envelope_id, _public_id, _link = sent(locale="es")
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=27))
    assert "0 expiry warnings sent" in runner_for(app).invoke(args=["portal", "tick"]).output
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=28, hours=1))
    assert "1 expiry warnings sent" in runner_for(app).invoke(args=["portal", "tick"]).output
    assert "0 expiry warnings sent" in runner_for(app).invoke(args=["portal", "tick"]).output
    with app.app_context():
        messages = db.session.execute(select(Message).where(Message.kind == "reminder")).scalars()
        warnings = [m for m in messages if m.subject.startswith("Vence pronto")]
        assert len(warnings) == 1
        assert "El plazo para firmar este documento termina el" in warnings[0].text_body
        assert db.session.get(Envelope, envelope_id).expiry_warned_at is not None
    assert len(audit_events(app, "envelope.expiry_warning_sent")) == 1
