"""Refused uploads and rate-limited attempts leave an audit event (and only one per window)."""

from __future__ import annotations

import hashlib
import html
import io

from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal.audit import AuditEvent
from portal.documents.inspect import PdfProblem, inspect_pdf
from portal.extensions import db
from portal.records import keys
from tests import test_input_hygiene as hygiene
from tests.conftest import Portal, audit_events
from tests.test_input_hygiene import PNG, World
from tests.test_library import _upload
from tests.test_signing import _path, sent  # noqa: F401

world = hygiene.world  # the fixture: demo content, a draft, a sent envelope

NOT_A_PDF = b"GIF89a this is not a PDF at all"


def _reason(data: bytes, filename: str) -> str:
    try:
        inspect_pdf(data, filename)
    except PdfProblem as exc:
        return str(exc)
    raise AssertionError("the file was accepted")


def test_a_refused_template_upload_is_recorded_with_its_file_and_reason(signed_in):
    from portal.extensions import db
    from portal.library.models import Template

    portal, staff = signed_in("admin")
    response = _upload(portal, NOT_A_PDF, filename="contract.pdf")
    assert response.status_code == 422
    reason = _reason(NOT_A_PDF, "contract.pdf")
    assert reason in html.unescape(response.get_data(as_text=True))
    [event] = audit_events(portal.app, "template.upload_refused")
    assert event.actor_id == str(staff.id) and event.subject_type is None
    assert event.data == {
        "file": "contract.pdf",
        "size": len(NOT_A_PDF),
        "sha256": hashlib.sha256(NOT_A_PDF).hexdigest(),
        "reason": reason,
    }
    with portal.app.app_context():
        assert db.session.scalar(select(func.count(Template.id))) == 0


def test_a_refused_replacement_pdf_is_recorded_against_the_version(world: World):
    url = f"/library/versions/{world.draft_id}/source"
    upload = FileStorage(io.BytesIO(NOT_A_PDF), "new.pdf", content_type="application/pdf")
    response = world.admin.post(url, {"file": upload})
    assert response.status_code == 302
    page = world.admin.client.get(f"/library/versions/{world.draft_id}").get_data(as_text=True)
    reason = _reason(NOT_A_PDF, "new.pdf")
    assert reason in html.unescape(page)
    [event] = audit_events(world.app, "template.upload_refused")
    assert (event.subject_type, event.subject_id) == ("template_version", str(world.draft_id))
    assert event.data["file"] == "new.pdf" and event.data["reason"] == reason
    assert audit_events(world.app, "template.source_replaced") == []


def test_a_refused_attachment_is_recorded_and_nothing_is_signed(world: World):
    signer = hygiene._signer(world)
    text = b"just some text, not a photo"
    big = PNG + b"0" * (10 * 1024 * 1024)
    for data, name, reason, message in (
        (text, "receipt.txt", "not a JPEG, PNG or PDF", "Attach a photo (JPEG or PNG) or a PDF."),
        (big, "huge.png", "larger than 10 MB", "That file is larger than 10 MB."),
    ):
        # encoded in memory: the test client would spool a large body to a file it never closes
        boundary, body = encode_multipart(
            {
                "csrf_token": signer.csrf(),
                "adoption": "typed",
                "typed_name": "Zoë",
                "agree": "yes",
                "f-receipt_photo": FileStorage(io.BytesIO(data), name, content_type="image/png"),
            }
        )
        response = signer.client.post(
            f"/sign/{world.public_id}/sign",
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        assert response.status_code == 422
        assert message in html.unescape(response.get_data(as_text=True))
        event = audit_events(world.app, "recipient.attachment_refused")[-1]
        assert event.actor_type == "recipient" and event.actor_id == str(world.recipient_id)
        assert event.data == {
            "field": "receipt_photo",
            "file": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "reason": reason,
        }
    assert len(audit_events(world.app, "recipient.attachment_refused")) == 2
    assert audit_events(world.app, "recipient.signed") == []


def test_rate_limited_sign_in_is_recorded_once_per_address_and_window(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    portal = Portal(app, app.test_client())
    codes = [portal.password_step("x@example.test", "wrong wrong").status_code for _ in range(12)]
    assert codes[:3] == [200, 200, 200] and set(codes[3:]) == {429}
    other = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    for _ in range(5):
        portal.post("/auth/login", {"email": "x@example.test", "password": "nope"}, **other)
    events = audit_events(app, "security.rate_limited")
    assert [(e.data["endpoint"], e.data["ip"]) for e in events] == [
        ("auth.login", "127.0.0.1"),
        ("auth.login", "203.0.113.9"),
    ]
    assert events[0].data["limit"] == "3 per 1 minute" and events[0].actor_type == "anonymous"
    assert events[1].ip == "203.0.113.9"


def test_a_rate_limited_get_is_recorded_although_the_request_only_reads(app):
    client = app.test_client()
    codes = [client.get("/s/not-a-real-token").status_code for _ in range(35)]
    assert 429 not in codes[:30] and set(codes[30:]) == {429}
    assert "Too many attempts" in client.get("/s/not-a-real-token").get_data(as_text=True)
    [event] = audit_events(app, "security.rate_limited")
    assert event.data == {"endpoint": "signing.link", "limit": "30 per 1 minute", "ip": "127.0.0.1"}


def test_a_signed_in_user_who_is_rate_limited_is_named(make_app, make_staff):
    app = make_app(LOGIN_RATE_LIMIT="2 per minute")
    staff = make_staff("agent")
    portal = Portal(app, app.test_client())
    assert portal.sign_in(staff).status_code == 302  # two limited posts: login and code
    codes = [
        portal.post("/account/recovery-codes", {"password": "wrong wrong wrong"}).status_code
        for _ in range(4)
    ]
    assert codes == [422, 422, 429, 429]
    [event] = audit_events(app, "security.rate_limited")
    assert event.actor_type == "user" and event.actor_id == str(staff.id)
    assert event.data["endpoint"] == "account.recovery_codes"


def test_a_rate_limited_signer_is_recorded_with_the_envelope_and_erased_with_it(app, sent):  # noqa: F811
    """The signer's address is personal data of the envelope: sealed with it, shredded with it."""
    envelope_id, _public_id, link = sent()
    client = app.test_client()
    signer_ip = {"environ_base": {"REMOTE_ADDR": "198.51.100.23"}}
    codes = [client.get(_path(link), **signer_ip).status_code for _ in range(32)]
    assert set(codes[30:]) == {429}
    [event] = audit_events(app, "security.rate_limited")
    assert (event.subject_type, event.subject_id) == ("envelope", str(envelope_id))
    assert event.ip == "198.51.100.23" and event.data["endpoint"] == "signing.link"
    with app.app_context():
        stored = db.session.execute(
            select(AuditEvent.ip, AuditEvent.data_json).where(
                AuditEvent.event == "security.rate_limited"
            )
        ).one()
        assert "198.51.100.23" not in str(stored)
        keys.shred(envelope_id)
        db.session.commit()
    [event] = audit_events(app, "security.rate_limited")
    assert event.revealed.erased and event.ip != "198.51.100.23"
