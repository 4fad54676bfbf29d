"""Field labels in the document's language: a variant carries a label per field, edited in
the version's Languages section (a missing one is a warning and shows the English label,
frozen once submitted), and the signer pages show them wherever a label is shown."""

from __future__ import annotations

import html

import pytest

from portal.envelopes import operations as envelopes
from portal.envelopes.checks import RecipientInput
from portal.extensions import db
from portal.library import operations as ops
from portal.library import variants
from portal.library.demo import SERVICE_CHANGE_ROLES
from portal.library.demo_es import REFUND_EXAMPLE_ES
from portal.library.errors import LibraryError
from portal.library.models import TemplateVersion
from tests.conftest import audit_events
from tests.test_approver import _approver, _customer_signs
from tests.test_languages_library import _authored, _pdf, _pdf_template, _post_upload, _user
from tests.test_signing import _csrf, _path, sent  # noqa: F401

SPANISH = ("Firma del cliente", "Fecha de firma", "Nombre completo", "Foto del recibo")
ENGLISH = ("Customer signature", "Date signed", "Full name", "Photo of the receipt")


def _editor(portal, version_id: int) -> str:
    return html.unescape(
        portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    )


def _document_page(app, link: str, public_id: str):
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token, html.unescape(client.get(f"/sign/{public_id}").get_data(as_text=True))


def test_spanish_signer_sees_spanish_labels_on_the_reading_view(app, sent):  # noqa: F811
    _, public_id, link = sent(locale="es")
    _, _, page = _document_page(app, link, public_id)
    assert 'class="reading"' in page, "the authored refund is shown as reflowing text"
    for label in SPANISH[:3]:  # where each sits in the text
        assert f'<span class="reading-field-label">{label}</span>' in page, label
    assert "Foto del recibo" in page  # "Sus datos": the attachment's input
    for label in ENGLISH:
        assert label not in page, label


def test_english_signer_keeps_the_english_labels(app, sent):  # noqa: F811
    _, public_id, link = sent()
    _, _, page = _document_page(app, link, public_id)
    assert '<span class="reading-field-label">Customer signature</span>' in page
    assert "Photo of the receipt" in page and "Foto del recibo" not in page


def _spanish_pdf_version(app, portal, author, reviewer) -> int:
    """An uploaded return form with a signature and a required attachment, a Spanish PDF, and
    a Spanish label for the attachment only (saved through the editor)."""
    version_id = _pdf_template(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        field = ops.add_field(version, "attachment", 1, None, "customer", by=_user(author))
        ops.update_field(field, {"label": "Receipt", "required": True}, by=_user(author))
        sign = version.fields[0]
        ops.update_field(sign, {"label": "Customer signature"}, by=_user(author))
        keys = [f.key for f in version.fields]
    url = f"/library/versions/{version_id}/languages/es"
    assert _post_upload(portal, f"{url}/pdf", _pdf("Formulario de devolución")).status_code == 302
    page = html.unescape(
        portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    )
    assert "Labels missing" in page and "Customer signature, Receipt show the English label" in page
    saved = portal.post(f"{url}/labels", {f"label-{keys[1]}": "  Recibo\u200e "})
    assert saved.status_code == 302
    page = html.unescape(
        portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    )
    assert "Spanish field labels saved." in page
    assert "Customer signature shows the English label" in page, "the missing one, a warning"
    assert audit_events(app, "template.variant_labels_saved")[-1].data == {
        "language": "es",
        "labelled": [keys[1]],
    }
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        assert version.variant("es").labels == {keys[1]: "Recibo"}
        ops.submit(version, by=_user(author))  # a missing label does not block
        ops.approve(version, by=_user(reviewer))
    return version_id


def test_uploaded_pdf_field_boxes_and_errors_use_the_spanish_labels(app, signed_in, make_staff):
    portal, author = signed_in("admin")
    version_id = _spanish_pdf_version(app, portal, author, make_staff("compliance"))
    with app.app_context():
        envelope, links = envelopes.create_and_send(
            db.session.get(TemplateVersion, version_id),
            {},
            [RecipientInput(role="customer", name="Lucía", email="lucia@example.com", locale="es")],
            by=_user(author),
        )
        public_id, link = envelope.public_id, next(iter(links.values()))
    client, token, page = _document_page(app, link, public_id)
    assert 'class="reading"' not in page, "an uploaded PDF is shown as page images"
    assert '<span class="marker-tag" aria-hidden="true">Recibo</span>' in page
    assert "Receipt" not in page
    # The signature has no Spanish label: it falls back to the English one.
    assert '<span class="marker-tag" aria-hidden="true">Customer signature</span>' in page
    refused = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Lucía Pérez",
            "agree": "yes",
        },
    )
    shown = html.unescape(refused.get_data(as_text=True))
    assert "Adjunte Recibo." in shown and "Receipt" not in shown


def test_labels_cannot_change_after_submission(app, signed_in, make_staff):
    portal, author = signed_in("admin")
    version_id = _spanish_pdf_version(app, portal, author, make_staff("compliance"))
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        key = version.fields[0].key
    refused = portal.post(
        f"/library/versions/{version_id}/languages/es/labels", {f"label-{key}": "X"}
    )
    assert refused.status_code in (302, 403, 404)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        assert key not in (version.variant("es").labels or {})
        with pytest.raises(LibraryError, match="can no longer be changed"):
            variants.save_labels(version, "es", {key: "Firma"}, by=_user(author))
    page = html.unescape(
        portal.client.get(f"/library/versions/{version_id}").get_data(as_text=True)
    )
    assert "Save Spanish labels" not in page
    assert '<dl class="kv" id="labels-es">' in page and "Recibo" in page


def test_labels_need_the_variant_and_are_bounded(app, make_staff):
    author = make_staff("admin")
    version_id = _authored(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        key = version.fields[0].key
        with pytest.raises(LibraryError, match="Save the Spanish document first"):
            variants.save_labels(version, "es", {key: "Firma"}, by=_user(author))
        variants.save_text(version, "es", REFUND_EXAMPLE_ES, by=_user(author))
        with pytest.raises(LibraryError, match="longer than 200 characters"):
            variants.save_labels(version, "es", {key: "F" * 201}, by=_user(author))
        db.session.rollback()
        version = db.session.get(TemplateVersion, version_id)
        assert not version.variant("es").labels
        variants.save_labels(version, "es", {key: "Firma", "nope": "x"}, by=_user(author))
        assert version.variant("es").labels == {key: "Firma"}
        draft_labels = dict(version.variant("es").labels)
        ops.submit(version, by=_user(author))
    assert draft_labels == {key: "Firma"}


def test_the_approver_sees_the_spanish_labels_of_what_was_filled_in(app, make_staff):
    author, reviewer = make_staff("admin"), make_staff("compliance")
    version_id = _pdf_template(app, author)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        ops.set_roles(version, SERVICE_CHANGE_ROLES, by=_user(author))
        sign = version.fields[0]
        ops.update_field(sign, {"label": "Customer signature"}, by=_user(author))
        variants.save_pdf(version, "es", _pdf("Formulario"), "es.pdf", by=_user(author))
        variants.save_labels(version, "es", {sign.key: "Firma del cliente"}, by=_user(author))
        ops.submit(version, by=_user(author))
        ops.approve(version, by=_user(reviewer))
        envelope, links = envelopes.create_and_send(
            db.session.get(TemplateVersion, version_id),
            {},
            [
                RecipientInput(
                    role="customer", name="Lucía", email="lucia@example.com", locale="es"
                ),
                RecipientInput(role="account_manager", name="Sam", email="sam@example.com"),
            ],
            by=_user(author),
        )
        public_id, link = envelope.public_id, next(iter(links.values()))
        assert envelope.document_locale == "es"
    _customer_signs(app, public_id, link, name="Lucía Pérez")
    approver, _token = _approver(app, public_id)
    page = html.unescape(approver.get(f"/sign/{public_id}").get_data(as_text=True))
    assert "What was filled in" in page, "the approver's own pages are in English"
    assert "<dt>Firma del cliente</dt>" in page and "Customer signature" not in page
