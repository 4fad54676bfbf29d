"""Template library: uploads, fields, roles, settings, versions, approval and access."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

import pytest
from pypdf import PdfReader, PdfWriter
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal import clock
from portal.accounts.models import User
from portal.documents.geometry import Rect
from portal.documents.inspect import PdfProblem, inspect_pdf
from portal.extensions import db
from portal.library import diff, rules
from portal.library import operations as ops
from portal.library.models import Field, Template, TemplateVersion
from portal.storage import Blob
from tests.conftest import Portal, audit_events
from tests.test_documents import BAD_UPLOADS, good_pdf


def _user(staff) -> User:
    return db.session.get(User, staff.id)


def _team():
    from portal.accounts.admin import find_team

    return find_team("Customer Care")


def _upload(portal: Portal, data: bytes, name: str = "refund.pdf", filename: str = "refund.pdf"):
    # Encoded in memory: the test client would spool a large body to a temporary file
    # that it never closes.
    boundary, body = encode_multipart(
        {
            "csrf_token": portal.csrf(),
            "name": name,
            "document_type": "refund_authorization",
            "team": "0",
            "source": "pdf",
            "file": FileStorage(io.BytesIO(data), filename, content_type="application/pdf"),
        }
    )
    return portal.client.post(
        "/library/new", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def _approved(app, author, reviewer, data: bytes | None = None) -> int:
    """A template with one approved version; returns the version id."""
    with app.app_context():
        version = ops.create_from_pdf(
            "Refund", "refund_authorization", _team(), data or good_pdf(), "r.pdf", by=_user(author)
        )
        ops.add_field(version, "signature", 1, None, "customer", by=_user(author))
        ops.submit(version, by=_user(author))
        ops.approve(version, by=_user(reviewer))
        return version.id


# ------------------------------------------------------------------ uploads


def test_admin_uploads_a_pdf_and_gets_a_draft_with_page_images(signed_in):
    portal, _admin = signed_in("admin")
    response = _upload(portal, good_pdf())
    assert response.status_code == 302
    page = portal.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Refund" in page and "Draft" in page
    with portal.app.app_context():
        version = db.session.execute(select(TemplateVersion)).scalar_one()
        assert version.images_status == "ready" and version.page_count == 2
        version_id = version.id
    image = portal.client.get(f"/library/versions/{version_id}/pages/1.png")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    assert "private" in image.headers["Cache-Control"] and image.headers["ETag"]
    again = portal.client.get(
        f"/library/versions/{version_id}/pages/1.png",
        headers={"If-None-Match": image.headers["ETag"]},
    )
    assert again.status_code == 304
    events = [e.event for e in audit_events(portal.app) if e.event.startswith("template.")]
    assert events == ["template.created", "template.version_created"]


@pytest.mark.parametrize(("build", "message"), BAD_UPLOADS)
def test_bad_uploads_are_refused_with_their_message_and_nothing_is_stored(
    signed_in, build, message
):
    portal, _ = signed_in("admin")
    data = build()
    with pytest.raises(PdfProblem) as expected:
        inspect_pdf(data, "refund.pdf")
    response = _upload(portal, data)
    assert response.status_code == 422
    assert str(expected.value) in html.unescape(response.get_data(as_text=True))
    with portal.app.app_context():
        assert db.session.execute(select(func.count(Template.id))).scalar_one() == 0
        assert (
            db.session.execute(
                select(func.count(Blob.id)).where(Blob.kind != "totp_secret")
            ).scalar_one()
            == 0
        )
    events = [e for e in audit_events(portal.app) if e.event.startswith("template.")]
    assert [e.event for e in events] == ["template.upload_refused"]  # and nothing else
    assert events[0].data["reason"] == str(expected.value)


def test_upload_over_the_request_limit_gets_the_friendly_413(signed_in):
    portal, _ = signed_in("admin")
    response = _upload(portal, b"%PDF-1.7\n" + b"0" * (31 * 1024 * 1024))
    assert response.status_code == 413
    assert "That upload is too large" in response.get_data(as_text=True)


def test_agents_cannot_create_templates(signed_in):
    portal, _ = signed_in("agent")
    assert portal.client.get("/library/new").status_code == 403
    assert _upload(portal, good_pdf()).status_code == 403


# ------------------------------------------------------------------ fields and geometry


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_field_geometry_round_trips_on_rotated_and_non_a4_pages(app, make_staff, rotation):
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(612, 792))  # US Letter
    pdf.drawString(72, 700, "Letter page")
    pdf.showPage()
    pdf.save()
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(buffer.getvalue())))
    writer.pages[0].rotate(rotation)
    out = io.BytesIO()
    writer.write(out)
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf(
            "Letter", "other", None, out.getvalue(), "l.pdf", by=_user(admin)
        )
        placed = Rect(100, 150, 180, 50)
        field = ops.add_field(version, "signature", 1, placed, "customer", by=_user(admin))
        shown = ops.display_rect(field)
        assert (round(shown.x, 6), round(shown.y, 6), round(shown.w, 6), round(shown.h, 6)) == (
            100,
            150,
            180,
            50,
        )
        box = ops.page_box(version, 1)
        assert (box.display_width, box.display_height) == (
            (792, 612) if rotation in (90, 270) else (612, 792)
        )
        # the stored rectangle is in the unrotated page's PDF space and inside the page
        assert (
            field.x >= 0 and field.x + field.w <= 612 and field.y >= 0 and field.y + field.h <= 792
        )
        if rotation == 0:
            assert (field.x, field.y) == (100, 792 - 150 - 50)


def test_fields_are_kept_inside_the_page(app, make_staff):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("A4", "other", None, good_pdf(), "a.pdf", by=_user(admin))
        field = ops.add_field(
            version, "text", 1, Rect(580, 830, 100, 40), "customer", by=_user(admin)
        )
        shown = ops.display_rect(field)
        box = ops.page_box(version, 1)
        assert shown.x + shown.w <= box.display_width + 1e-6
        assert shown.y + shown.h <= box.display_height + 1e-6


def test_field_properties_are_validated(app, make_staff):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("A4", "other", None, good_pdf(), "a.pdf", by=_user(admin))
        field = ops.add_field(version, "text", 1, None, "customer", by=_user(admin))
        other = ops.add_field(version, "checkbox", 1, None, "customer", by=_user(admin))
        with pytest.raises(ops.LibraryError, match="not a valid regular expression"):
            ops.update_field(field, {"validation": {"pattern": "([a-z"}}, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="another field"):
            ops.update_field(
                field, {"condition": {"field": "nope", "equals": "x"}}, by=_user(admin)
            )
        with pytest.raises(ops.LibraryError, match="not one of this template's merge fields"):
            ops.update_field(field, {"merge_key": "customer.name"}, by=_user(admin))
        db.session.rollback()
        ops.update_field(
            field,
            {"key": "iban", "label": "IBAN", "condition": {"field": other.key, "equals": "true"}},
            by=_user(admin),
        )
        assert field.key == "iban" and field.condition == {"field": other.key, "equals": "true"}
        assert audit_events(app, "template.field_changed")[-1].data["changes"]["key"] == "iban"


# ------------------------------------------------------------------ conditions and validation


def test_conditional_field_is_shown_and_required_only_when_the_other_value_matches(app, make_staff):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("A4", "other", None, good_pdf(), "a.pdf", by=_user(admin))
        method = ops.add_field(version, "radio", 1, None, "customer", by=_user(admin))
        ops.update_field(method, {"key": "method", "options": ["card", "bank"]}, by=_user(admin))
        iban = ops.add_field(version, "text", 1, None, "customer", by=_user(admin))
        ops.update_field(
            iban,
            {
                "key": "iban",
                "label": "IBAN",
                "condition": {"field": "method", "equals": "bank"},
                "validation": {
                    "pattern": "[A-Z]{2}[0-9]{2}[A-Z0-9]{8,30}",
                    "pattern_hint": "an IBAN",
                },
            },
            by=_user(admin),
        )
        assert not rules.is_visible(iban, {"method": "card"})
        assert rules.problem(iban, "", {"method": "card"}) is None
        assert rules.is_required(iban, {"method": "bank"})
        assert rules.problem(iban, "", {"method": "bank"}) == "IBAN is required."
        assert (
            rules.problem(iban, "not an iban", {"method": "bank"}) == "IBAN does not match an IBAN."
        )
        assert rules.problem(iban, "DE89370400440532013000", {"method": "bank"}) is None
        assert rules.problem(method, "cash", {}) == "Choose one of the options for Radio."


@pytest.mark.parametrize(
    ("field_type", "validation", "value", "expected"),
    [
        ("number", {"min": 1, "max": 500}, "abc", "Amount must be a number."),
        ("number", {"min": 1, "max": 500}, "0", "Amount must be at least 1."),
        ("number", {"min": 1, "max": 500}, "1,200", "Amount must be at most 500."),
        ("number", {"min": 1, "max": 500}, "149.90", None),
        ("date", {"min": "2025-01-01"}, "2024-12-31", "Amount must be on or after 2025-01-01."),
        ("date", {}, "31/12/2025", "Amount must be a date (YYYY-MM-DD)."),
        ("text", {"min_length": 3}, "ab", "Amount must be at least 3 characters."),
        ("text", {"max_length": 3}, "abcd", "Amount must be at most 3 characters."),
    ],
)
def test_value_validation(field_type, validation, value, expected):
    field = Field(
        key="amount",
        type=field_type,
        label="Amount",
        required=True,
        options=[],
        validation=validation,
        condition=None,
    )
    assert rules.problem(field, value, {}) == expected


# ------------------------------------------------------------------ lifecycle and permissions


def test_only_compliance_or_admin_other_than_the_submitter_approve(app, make_staff):
    admin, compliance, agent = make_staff("admin"), make_staff("compliance"), make_staff("agent")
    with app.app_context():
        version = ops.create_from_pdf("R", "other", _team(), good_pdf(), "r.pdf", by=_user(admin))
        with pytest.raises(ops.LibraryError, match="Place a signature field for Customer"):
            ops.submit(version, by=_user(admin))
        ops.add_field(version, "signature", 1, None, "customer", by=_user(admin))
        ops.submit(version, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="Only compliance or an admin"):
            ops.approve(version, by=_user(agent))
        with pytest.raises(ops.LibraryError, match="someone else in compliance must review"):
            ops.approve(version, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="Say what needs to change"):
            ops.reject(version, by=_user(compliance), comment=" ")
        ops.approve(version, by=_user(compliance), comment="Legal checked clause 3.")
        assert version.status == "approved"
        assert version.template.last_reviewed_at is not None
    (event,) = audit_events(app, "template.approved")
    assert (
        event.actor_id == str(compliance.id) and event.data["comment"] == "Legal checked clause 3."
    )


def test_review_routes_refuse_agents_with_403(signed_in, make_staff, app):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("R", "other", _team(), good_pdf(), "r.pdf", by=_user(admin))
        ops.add_field(version, "signature", 1, None, "customer", by=_user(admin))
        ops.submit(version, by=_user(admin))
        version_id = version.id
    portal, _ = signed_in("agent")
    response = portal.post(f"/library/versions/{version_id}/approve", {"comment": ""})
    assert response.status_code == 403
    assert audit_events(app, "template.approved") == []


def test_rejected_version_returns_to_draft_with_the_comment(app, make_staff):
    admin, compliance = make_staff("admin"), make_staff("compliance")
    with app.app_context():
        version = ops.create_from_pdf("R", "other", _team(), good_pdf(), "r.pdf", by=_user(admin))
        ops.add_field(version, "signature", 1, None, "customer", by=_user(admin))
        ops.submit(version, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="can no longer be changed"):
            ops.add_field(version, "text", 1, None, "customer", by=_user(admin))
        ops.reject(version, by=_user(compliance), comment="Add the cooling-off clause.")
        assert version.status == "draft" and version.review_comment == "Add the cooling-off clause."
        ops.add_field(version, "text", 1, None, "customer", by=_user(admin))


def test_only_the_latest_approved_version_can_be_sent(app, make_staff):
    admin, compliance = make_staff("admin"), make_staff("compliance")
    first_id = _approved(app, admin, compliance)
    with app.app_context():
        first = db.session.get(TemplateVersion, first_id)
        ops.ensure_sendable(first)
        draft = ops.new_draft(first.template, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="is a draft that has not been approved"):
            ops.ensure_sendable(draft)
        ops.submit(draft, by=_user(admin))
        with pytest.raises(ops.LibraryError, match="waiting for compliance review"):
            ops.ensure_sendable(draft)
        ops.ensure_sendable(first)  # still the approved one while v2 is in review
        ops.approve(draft, by=_user(compliance))
        with pytest.raises(ops.LibraryError, match="replaced by a newer approved version"):
            ops.ensure_sendable(first)
        ops.ensure_sendable(draft)
        ops.retire(draft.template, by=_user(compliance), reason="Replaced by the new refund form.")
        for version in (first, draft):
            with pytest.raises(ops.LibraryError, match="retired"):
                ops.ensure_sendable(version)
        assert ops.approved_version(draft.template) is None
    assert audit_events(app, "template.retired")[0].data == {
        "reason": "Replaced by the new refund form."
    }


def test_version_diff_lists_added_removed_moved_and_edited_fields_and_settings(app, make_staff):
    admin, compliance = make_staff("admin"), make_staff("compliance")
    first_id = _approved(app, admin, compliance)
    with app.app_context():
        first = db.session.get(TemplateVersion, first_id)
        draft = ops.new_draft(first.template, by=_user(admin))
        signature = draft.fields[0]
        ops.move_field(signature, 2, Rect(50, 60, 180, 50), by=_user(admin))
        ops.update_field(signature, {"label": "Customer signature"}, by=_user(admin))
        ops.add_field(draft, "date_signed", 2, None, "customer", by=_user(admin))
        ops.set_settings(draft, {**draft.settings, "expiry_days": 14}, by=_user(admin))
        changes = diff.compare(first, draft)
        assert changes.added == ["date_signed_1"]
        assert changes.removed == []
        assert [c.key for c in changes.moved] == ["signature_1"] and changes.moved[0].changes[
            "page"
        ] == (1, 2)
        assert changes.edited[0].changes == {"label": ("Signature", "Customer signature")}
        assert changes.settings == {"expiry_days": (30, 14)}
        assert not changes.source_changed
        ops.delete_field(draft.fields[-1], by=_user(admin))
        assert diff.compare(first, draft).added == []


def test_version_page_shows_what_changed(signed_in, make_staff, app):
    portal, admin = signed_in("admin")
    compliance = make_staff("compliance")
    first_id = _approved(app, admin, compliance)
    with app.app_context():
        first = db.session.get(TemplateVersion, first_id)
        draft = ops.new_draft(first.template, by=_user(admin))
        ops.update_field(draft.fields[0], {"label": "Sign here"}, by=_user(admin))
        draft_id = draft.id
    page = portal.client.get(f"/library/versions/{draft_id}").get_data(as_text=True)
    assert "What changed since version 1" in page
    assert "Sign here" in page and "Edited" in page


def test_settings_are_validated(app, make_staff):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("R", "other", None, good_pdf(), "r.pdf", by=_user(admin))
        assert (
            version.settings["reminder_every_hours"] == 48 and version.settings["expiry_days"] == 30
        )
        assert version.settings["folder"] == "Customer Documents"
        for bad, message in [
            ({"expiry_days": 91}, "between 1 and 90"),
            ({"routing": "random"}, "sequential or parallel"),
            ({"default_auth": "sms"}, "prove who they are"),
        ]:
            with pytest.raises(ops.LibraryError, match=message):
                ops.set_settings(version, {**version.settings, **bad}, by=_user(admin))
            db.session.rollback()


def test_roles_need_a_signer_and_keep_their_fields(app, make_staff):
    admin = make_staff("admin")
    with app.app_context():
        version = ops.create_from_pdf("R", "other", None, good_pdf(), "r.pdf", by=_user(admin))
        ops.set_roles(
            version,
            [
                {"name": "Customer", "key": "customer", "kind": "signer", "order": 1},
                {"name": "Account manager", "kind": "approver", "order": 2},
            ],
            by=_user(admin),
        )
        assert [r["key"] for r in version.roles] == ["customer", "account_manager"]
        ops.add_field(version, "text", 1, None, "account_manager", by=_user(admin))
        with pytest.raises(ops.LibraryError, match="Fields still belong to account_manager"):
            ops.set_roles(
                version,
                [{"name": "Customer", "key": "customer", "kind": "signer"}],
                by=_user(admin),
            )
        db.session.rollback()
        with pytest.raises(ops.LibraryError, match="at least one signer"):
            ops.set_roles(version, [{"name": "Boss", "kind": "approver"}], by=_user(admin))


# ------------------------------------------------------------------ what agents see


def test_agents_see_only_approved_templates_of_their_team(app, make_staff, signed_in):
    admin, compliance = make_staff("admin"), make_staff("compliance")
    approved_id = _approved(app, admin, compliance)
    with app.app_context():
        ops.create_from_pdf(
            "Draft addendum", "other", _team(), good_pdf(), "d.pdf", by=_user(admin)
        )
        from portal.accounts.admin import create_team

        other = create_team("Billing", by="test")
        elsewhere = ops.create_from_pdf(
            "Billing form", "other", other, good_pdf(), "b.pdf", by=_user(admin)
        )
        ops.add_field(elsewhere, "signature", 1, None, "customer", by=_user(admin))
        ops.submit(elsewhere, by=_user(admin))
        ops.approve(elsewhere, by=_user(compliance))
        draft_id = db.session.execute(
            select(TemplateVersion.id).where(TemplateVersion.status == "draft")
        ).scalar_one()
    portal, _ = signed_in("agent")
    listing = portal.client.get("/library/").get_data(as_text=True)
    assert "Refund" in listing
    assert "Draft addendum" not in listing and "Billing form" not in listing
    assert portal.client.get(f"/library/versions/{approved_id}").status_code == 200
    assert portal.client.get(f"/library/versions/{draft_id}").status_code == 404
    assert portal.client.get(f"/library/versions/{draft_id}/pages/1.png").status_code == 404
    console = portal.client.get("/console").get_data(as_text=True)
    assert "Refund" in console and "Billing form" not in console and "Draft addendum" not in console


def test_library_search_by_name_type_and_status(signed_in, make_staff, app):
    portal, admin = signed_in("admin")
    compliance = make_staff("compliance")
    _approved(app, admin, compliance)
    with app.app_context():
        ops.create_from_pdf(
            "Warranty return",
            "warranty_acknowledgement",
            _team(),
            good_pdf(),
            "w.pdf",
            by=_user(admin),
        )
    rows = portal.client.get("/library/?q=warr", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "Warranty return" in rows and "Refund" not in rows and "<html" not in rows
    rows = portal.client.get("/library/?status=approved", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "Refund" in rows and "Warranty return" not in rows
    rows = portal.client.get(
        "/library/?type=warranty_acknowledgement", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "Warranty return" in rows and "Refund" not in rows


def test_templates_not_reviewed_for_twelve_months_are_flagged(signed_in, make_staff, app):
    portal, admin = signed_in("admin")
    compliance = make_staff("compliance")
    version_id = _approved(app, admin, compliance)
    rows = portal.client.get(
        "/library/?status=review_due", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "Refund" not in rows
    with app.app_context():
        template = db.session.get(TemplateVersion, version_id).template
        template.last_reviewed_at = clock.utcnow() - timedelta(days=366)
        db.session.commit()
    rows = portal.client.get(
        "/library/?status=review_due", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "Annual review due" in rows and "Refund" in rows
    with app.app_context():
        template = db.session.get(TemplateVersion, version_id).template
        ops.confirm_review(template, by=_user(compliance))
        assert not ops.review_due(template)
    assert audit_events(app, "template.review_confirmed")


# ------------------------------------------------------------------ authored documents


def test_authored_template_shows_body_problems_inline(signed_in):
    portal, _ = signed_in("admin")
    response = portal.post(
        "/library/new",
        {"name": "Consent", "document_type": "consent_form", "team": "0", "source": "authored"},
    )
    assert response.status_code == 302
    version_url = response.headers["Location"]
    version_id = int(re.search(r"/versions/(\d+)", version_url).group(1))
    page = portal.client.get(version_url).get_data(as_text=True)
    assert "Document text" in page
    bad = portal.post(
        f"/library/versions/{version_id}/body",
        {
            "body": "# Consent\n\nHello {{ customer.nmae }}\n{% if x %}",
            "merge_keys": "customer.name | Customer name | Jane",
        },
    )
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "customer.nmae" in text and "saved but not rendered" in text
    good = portal.post(
        f"/library/versions/{version_id}/body",
        {
            "body": "# Consent\n\nI, {{ customer.name }}, agree.",
            "merge_keys": "customer.name | Customer name | Jane",
        },
    )
    assert good.status_code == 302
    with portal.app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        assert version.source_sha256 and version.images_status == "ready"
        from portal import storage

        text = PdfReader(io.BytesIO(storage.get(version.source_blob_id))).pages[0].extract_text()
        assert "I, Jane, agree." in text


def test_seed_demo_adds_two_approved_templates_once(ctx, runner_for):
    first = runner_for(ctx).invoke(args=["portal", "seed-demo"])
    second = runner_for(ctx).invoke(args=["portal", "seed-demo"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert "Refund authorization" in first.output and "Refund authorization" not in second.output
    templates = list(db.session.execute(select(Template).order_by(Template.name)).scalars())
    assert [t.name for t in templates] == ["Refund authorization", "Service-change addendum"]
    for template in templates:
        version = ops.approved_version(template)
        assert version is not None and version.images_status == "ready"
        ops.ensure_sendable(version)
    addendum = templates[1]
    assert [r["kind"] for r in ops.approved_version(addendum).roles] == ["signer", "approver"]
    refund_fields = {f.key: f for f in ops.approved_version(templates[0]).fields}
    assert refund_fields["receipt_photo"].required is False
    assert refund_fields["full_name"].merge_key == "customer.name"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc"])
def test_impossible_positions_are_refused_without_an_error_page(signed_in, app, value):
    portal, admin = signed_in("admin")
    with app.app_context():
        version = ops.create_from_pdf("A4", "other", None, good_pdf(), "a.pdf", by=_user(admin))
        field = ops.add_field(version, "text", 1, None, "customer", by=_user(admin))
        version_id, field_id = version.id, field.id
        before = (field.x, field.y)
    added = portal.htmx_post(
        f"/library/versions/{version_id}/fields",
        {"type": "text", "role": "customer", "page": "1", "x": value, "y": "10"},
    )
    moved = portal.htmx_post(
        f"/library/versions/{version_id}/fields/{field_id}/place",
        {
            f"p{field_id}-page": "1",
            f"p{field_id}-x": value,
            f"p{field_id}-y": "10",
            f"p{field_id}-w": "50",
            f"p{field_id}-h": "20",
        },
    )
    assert added.status_code == 422 and moved.status_code == 422
    with app.app_context():
        assert len(db.session.get(TemplateVersion, version_id).fields) == 1
        assert (db.session.get(Field, field_id).x, db.session.get(Field, field_id).y) == before
