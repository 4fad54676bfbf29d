"""Language variants in the template library: checked against the base (merge keys, pages,
fields), shown as missing / out of date in the editor, approved with the version; an
uploaded template's Spanish PDF with its own field placement reaches a Spanish signer."""

from __future__ import annotations

import html
import io

import pytest
from pypdf import PdfReader
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal import storage
from portal.accounts.models import User
from portal.documents.authoring import REFUND_EXAMPLE, REFUND_MERGE_KEYS
from portal.envelopes import operations as envelopes
from portal.envelopes import sealing
from portal.envelopes.checks import RecipientInput
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as ops
from portal.library import variants
from portal.library.demo_es import REFUND_EXAMPLE_ES
from portal.library.errors import LibraryError
from portal.library.models import TemplateVersion
from tests.conftest import Portal, audit_events
from tests.test_documents import BAD_UPLOADS
from tests.test_sealing import _sealed_bytes, _sign

KEYS = [{"key": k.key, "label": k.label, "sample": k.sample} for k in REFUND_MERGE_KEYS]


def _user(staff) -> User:
    return db.session.get(User, staff.id)


def _pdf(*lines: str) -> bytes:
    """A one-page A4 PDF with these lines of text."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    for index, line in enumerate(lines):
        c.drawString(72, 760 - 20 * index, line)
    c.showPage()
    c.save()
    return out.getvalue()


def _authored(app, author) -> int:
    with app.app_context():
        version, problems = ops.create_authored(
            "Refund", "refund_authorization", None, REFUND_EXAMPLE, KEYS, by=_user(author)
        )
        assert not problems
        ops.add_field(version, "signature", version.page_count, None, "customer", by=_user(author))
        return version.id


def _post_upload(portal: Portal, url: str, data: bytes, filename: str = "es.pdf"):
    boundary, body = encode_multipart(
        {
            "csrf_token": portal.csrf(),
            "file": FileStorage(io.BytesIO(data), filename, content_type="application/pdf"),
        }
    )
    return portal.client.post(
        url, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


# ------------------------------------------------------------------ authored variants


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("{{ order.date }}", "12/05/2025"), "it leaves out {{ order.date }}"),
        (
            lambda t: t + "\nSu referencia: {{ customer.phone }}\n",
            'Unknown merge field "{{ customer.phone }}"',
        ),
        (
            lambda t: t.replace("{{ order.date }}", "{{ order.date }} ({{ refund.method }})"),
            "",
        ),
        (lambda t: t + "\n{% for x in y %}\n{% endfor %}\n", "not allowed in documents"),
        (
            lambda t: t + "\n\n" + "Texto adicional muy largo.\n\n" * 120,
            "fills 6 pages and the English text 2",
        ),
    ],
)
def test_a_spanish_text_that_does_not_match_the_base_is_refused(app, make_staff, change, message):
    author = make_staff("admin")
    version_id = _authored(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        if not message:  # using a key the base also uses elsewhere is fine
            variants.save_text(version, "es", change(REFUND_EXAMPLE_ES), by=_user(author))
            assert version.variant("es") is not None
            return
        with pytest.raises(LibraryError) as refused:
            variants.save_text(version, "es", change(REFUND_EXAMPLE_ES), by=_user(author))
        assert message in str(refused.value)
        db.session.rollback()
        assert db.session.get(TemplateVersion, version_id).variants == []
    assert not audit_events(app, "template.variant_saved")


def test_a_spanish_text_that_adds_a_merge_key_names_it(app, make_staff):
    author = make_staff("admin")
    version_id = _authored(app, author)
    base_without_date = REFUND_EXAMPLE.replace("| Order date | {{ order.date }} |\n", "")
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        ops.update_body(version, base_without_date, KEYS, by=_user(author))
        with pytest.raises(LibraryError) as refused:
            variants.save_text(version, "es", REFUND_EXAMPLE_ES, by=_user(author))
        assert "it uses {{ order.date }}, which the base text does not" in str(refused.value)


def test_editor_shows_missing_then_ready_then_out_of_date(app, signed_in):
    portal, author = signed_in("admin")
    version_id = _authored(app, author)
    page = portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    assert "Missing</span>\n      Spanish: recipients who read Spanish get the English" in page

    saved = portal.post(
        f"/library/versions/{version_id}/languages/es/text", {"body": REFUND_EXAMPLE_ES}
    )
    assert saved.status_code == 302
    page = portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    assert "Ready</span>\n      Spanish" in page and "Open the Spanish PDF" in page
    pdf = portal.client.get(f"/library/versions/{version_id}/languages/es.pdf").data
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Autorización de reembolso" in text and "Página 1 de" in text
    events = audit_events(app, "template.variant_saved")
    assert events[-1].data["language"] == "es"

    changed = REFUND_EXAMPLE.replace("Thank you for contacting us", "Thanks for contacting us")
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        ops.update_body(version, changed, KEYS, by=_user(author))
    page = portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    assert (
        "Out of date</span>\n      Spanish: the English document changed after it was saved" in page
    )
    refused = portal.post(f"/library/versions/{version_id}/submit")
    page = portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    assert "The Spanish document is out of date" in html.unescape(page)
    with app.app_context():
        assert db.session.get(TemplateVersion, version_id).status == "draft"
    assert refused.status_code == 302


def test_a_refused_text_is_shown_with_its_message_and_kept_in_the_box(app, signed_in):
    portal, author = signed_in("admin")
    version_id = _authored(app, author)
    wrong = REFUND_EXAMPLE_ES.replace("{{ refund.amount }}", "149,90 €")
    response = portal.post(f"/library/versions/{version_id}/languages/es/text", {"body": wrong})
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert (
        "must use the same merge fields as the English text: it leaves out {{ refund.amount }}"
        in page
    )
    assert "149,90 €" in page


def test_approval_covers_every_language_and_an_approved_version_takes_none(app, make_staff):
    author, reviewer = make_staff("admin"), make_staff("compliance")
    version_id = _authored(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        variants.save_text(version, "es", REFUND_EXAMPLE_ES, by=_user(author))
        ops.submit(version, by=_user(author))
        with pytest.raises(LibraryError, match="can no longer be changed"):
            variants.save_text(version, "es", REFUND_EXAMPLE_ES + "\nMás.\n", by=_user(author))
        db.session.rollback()
        ops.approve(db.session.get(TemplateVersion, version_id), by=_user(reviewer))
        version = db.session.get(TemplateVersion, version_id)
        spanish_sha = version.variant("es").source_sha256
        with pytest.raises(LibraryError, match="can no longer be changed"):
            variants.remove(version, "es", by=_user(author))
        db.session.rollback()
        draft = ops.new_draft(
            db.session.get(TemplateVersion, version_id).template, by=_user(author)
        )
        assert draft.variant("es").authored_body == REFUND_EXAMPLE_ES  # the next draft has it
    approved = audit_events(app, "template.approved")
    assert approved[-1].data["languages"] == {"es": spanish_sha}


def test_review_page_shows_every_language(app, make_staff, portal):
    author, reviewer = make_staff("admin"), make_staff("compliance")
    version_id = _authored(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        variants.save_text(version, "es", REFUND_EXAMPLE_ES, by=_user(author))
        ops.submit(version, by=_user(author))
    portal.sign_in(reviewer)
    page = html.unescape(
        portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    )
    assert "Approve" in page
    assert "Open the Spanish PDF" in page and "Spanish text" in page
    assert "Estimado/a {{ customer.name }}" in page


# ------------------------------------------------------------------ uploaded PDFs


def _pdf_template(app, author, reviewer=None) -> int:
    with app.app_context():
        version = ops.create_from_pdf(
            "Return form", "return_acknowledgement", None, _pdf("Return form", "Sign below"),
            "return.pdf", by=_user(author),
        )  # fmt: skip
        ops.add_field(version, "signature", 1, None, "customer", by=_user(author))
        return version.id


def test_uploaded_spanish_pdf_is_checked_like_any_upload(app, signed_in):
    portal, author = signed_in("admin")
    version_id = _pdf_template(app, author)
    make, message = BAD_UPLOADS[2].values
    response = _post_upload(portal, f"/library/versions/{version_id}/languages/es/pdf", make())
    assert response.status_code == 302
    page = html.unescape(portal.client.get(response.location).get_data(as_text=True))
    assert message.replace("This file", "“es.pdf”") in page
    with app.app_context():
        assert db.session.get(TemplateVersion, version_id).variants == []
    assert audit_events(app, "template.upload_refused")


def test_spanish_signer_of_an_uploaded_template_gets_the_spanish_pdf_with_its_placement(
    app, signed_in, make_staff
):
    portal, author = signed_in("admin")
    reviewer = make_staff("compliance")
    version_id = _pdf_template(app, author)
    spanish = _pdf("Formulario de devolución", "Firme abajo")
    url = f"/library/versions/{version_id}/languages/es"
    assert _post_upload(portal, f"{url}/pdf", spanish).status_code == 302
    page = portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    assert "Ready</span>\n      Spanish" in page
    moved = portal.post(
        f"{url}/fields/signature_1",
        {f"ves-signature_1-{k}": v for k, v in
         {"page": "1", "x": "300", "y": "100", "w": "180", "h": "50"}.items()},
    )  # fmt: skip
    assert moved.status_code == 302
    assert audit_events(app, "template.variant_field_placed")[-1].data["field"] == "signature_1"
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        placed = version.variant("es").placements["signature_1"]
        assert placed["x"] == pytest.approx(300) and placed["y"] == pytest.approx(
            842 - 150, abs=0.5
        )
        base = version.fields[0]
        assert (base.x, base.y) != (placed["x"], placed["y"])
        ops.submit(version, by=_user(author))
        ops.approve(version, by=_user(reviewer))
        envelope, links = envelopes.create_and_send(
            version,
            {},
            [RecipientInput(role="customer", name="Lucía", email="lucia@example.com", locale="es")],
            by=_user(author),
        )
        envelope_id, public_id = envelope.id, envelope.public_id
        link = next(iter(links.values()))
        assert envelope.document_locale == "es"
        assert storage.get(envelope.document_blob_id) == spanish
    _sign(app, link, public_id, adoption="typed", name="Lucía Pérez")
    sealed = _sealed_bytes(app, envelope_id)
    reader = PdfReader(io.BytesIO(sealed))
    assert "Formulario de devolución" in reader.pages[0].extract_text()
    # The typed signature is stamped where the Spanish PDF has the field.
    assert "Lucía Pérez" in reader.pages[0].extract_text()
    with app.app_context():
        (stamp,) = sealing.stamps(db.session.get(Envelope, envelope_id))
        assert (stamp.rect.x, stamp.rect.y) == (placed["x"], placed["y"])
    certificate = " ".join(p.extract_text() for p in reader.pages[1:])
    assert "Derecho a una copia en papel" in certificate


def test_a_field_added_after_the_spanish_pdf_must_be_placed_before_submitting(app, make_staff):
    author = make_staff("admin")
    version_id = _pdf_template(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        variants.save_pdf(version, "es", _pdf("Formulario"), "es.pdf", by=_user(author))
        ops.add_field(version, "date_signed", 1, None, "customer", by=_user(author))
        with pytest.raises(LibraryError, match="Place date_signed_1 on the Spanish PDF"):
            ops.submit(version, by=_user(author))
        db.session.rollback()
        assert variants.states(db.session.get(TemplateVersion, version_id))[0].unplaced == (
            "date_signed_1",
        )
