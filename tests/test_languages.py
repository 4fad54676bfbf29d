"""Documents in the signer's language: a Spanish signer gets the Spanish document, pages,
emails and certificate; parallel signers with different languages share one document in
the language the agent picks; the send form offers it."""

from __future__ import annotations

import io
import re

from pypdf import PdfReader
from sqlalchemy import select

from portal import storage
from portal.envelopes import operations as envelopes
from portal.envelopes.checks import EnvelopeError, RecipientInput, SendOptions
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from tests.conftest import Portal, audit_events, demo_agent, demo_template
from tests.test_sealing import _sealed_bytes, _sign
from tests.test_signing import _path, sent  # noqa: F401


def _pdf_text(data: bytes, pages: slice = slice(None)) -> str:
    reader = PdfReader(io.BytesIO(data))
    return " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages[pages])


def _document(app, envelope_id: int) -> tuple[str, str, int]:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        data = storage.get(envelope.document_blob_id)
        return envelope.document_locale, _pdf_text(data), envelope.page_count


def test_spanish_signer_gets_the_spanish_refund_pages_emails_and_certificate(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent(locale="es")
    locale, text, page_count = _document(app, envelope_id)
    assert locale == "es"
    assert "Autorización de reembolso" in text and "Datos del reembolso" in text
    assert "Refund authorization" not in text
    with app.app_context():
        invite = db.session.execute(select(Message).where(Message.kind == "signing_request"))
        invite = invite.scalar_one()
        assert invite.subject.startswith("Documento pendiente de firma: Autorización de reembolso")
        assert "para que lo lea y lo firme" in invite.text_body and "Refund" not in invite.subject
    events = audit_events(app, "envelope.created")
    assert events[-1].data["language"] == "es"

    client = app.test_client()
    client.get(_path(link))
    consent_page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Derecho a una copia en papel" in consent_page
    _sign(app, link, public_id)
    consented = audit_events(app, "recipient.consented")
    assert consented[-1].data == {"disclosure": "2026-12", "language": "es"}

    sealed = _sealed_bytes(app, envelope_id)
    document = _pdf_text(sealed, slice(0, page_count))
    assert "Autorización de reembolso" in document
    certificate = _pdf_text(sealed, slice(page_count, None))
    assert "Document language Spanish" in certificate
    assert "as shown in Spanish" in certificate
    assert "Derecho a una copia en papel" in certificate
    assert "Requisitos técnicos" in certificate
    assert "Your right to paper" not in certificate, "only the text shown is quoted"
    assert re.search(r"2026-12, Spanish", certificate)
    with app.app_context():
        copy = db.session.execute(select(Message).where(Message.kind == "completed")).scalar_one()
        assert copy.subject == "Documento completado: Autorización de reembolso"
        assert "Todas las partes han completado" in copy.text_body


def test_english_signer_still_gets_the_english_document(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent()
    locale, text, page_count = _document(app, envelope_id)
    assert locale == "en" and "Refund authorization" in text
    _sign(app, link, public_id)
    certificate = _pdf_text(_sealed_bytes(app, envelope_id), slice(page_count, None))
    assert "Document language English" in certificate
    assert "Your right to paper" in certificate and "Derecho a una copia" not in certificate


def _parallel_addendum(app, locales: tuple[str, str], language: str = ""):
    """The service-change addendum with a Spanish variant, sent to two parallel signers."""
    from portal.library import variants
    from portal.library.demo import SERVICE_CHANGE_BODY

    with app.app_context():
        agent = demo_agent()
        template = demo_template("Service-change addendum")
        approved = library.approved_version(template)
        author = approved.created_by
        draft = library.new_draft(template, by=author)
        spanish = SERVICE_CHANGE_BODY.replace("# Service-change addendum", "# Anexo de cambio")
        variants.save_text(draft, "es", spanish, by=author)
        library.set_roles(
            draft,
            [
                {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
                {"key": "account_manager", "name": "Co-signer", "kind": "signer", "order": 2},
            ],
            by=author,
        )
        library.set_settings(draft, {**draft.settings, "routing": "parallel"}, by=author)
        library.add_field(draft, "signature", draft.page_count, None, "account_manager", by=author)
        library.submit(draft, by=author)
        reviewer = db.session.execute(
            select(type(agent)).where(type(agent).email == "compliance@demo.example")
        ).scalar_one()
        library.approve(draft, by=reviewer)
        values = {k.key: k.sample for k in library.merge_keys(draft)}
        people = [
            RecipientInput(role="customer", name="Ana", email="ana@example.com", locale=locales[0]),
            RecipientInput(
                role="account_manager", name="Bob", email="bob@example.com", locale=locales[1]
            ),
        ]
        envelope, _links = envelopes.create_and_send(
            draft, values, people, by=agent, options=SendOptions(language=language)
        )
        messages = {
            m.to_address: m
            for m in db.session.execute(
                select(Message).where(Message.kind == "signing_request")
            ).scalars()
        }
        return envelope.id, envelope.document_locale, messages


def test_parallel_signers_share_the_first_signers_language_by_default(app, sent):  # noqa: F811
    envelope_id, locale, messages = _parallel_addendum(app, ("es", "en"))
    assert locale == "es"
    assert "Anexo de cambio" in _document(app, envelope_id)[1]
    # Each signer's email stays in their own language.
    assert "para que lo lea y lo firme" in messages["ana@example.com"].text_body
    assert "to read and sign" in messages["bob@example.com"].text_body
    assert "Anexo de cambio" in messages["bob@example.com"].subject  # the document's title


def test_the_agent_picks_the_document_language_for_mixed_signers(app, sent):  # noqa: F811
    envelope_id, locale, _messages = _parallel_addendum(app, ("es", "en"), language="en")
    assert locale == "en"
    assert "Service-change addendum" in _document(app, envelope_id)[1]


def test_a_language_the_template_lacks_is_refused_when_chosen(app, sent):  # noqa: F811
    with app.app_context():
        version = library.approved_version(demo_template("Service-change addendum"))
        from portal.envelopes import checks

        try:
            checks.options(version, language="es")
        except EnvelopeError as exc:
            assert "has no Spanish document" in str(exc)
        else:
            raise AssertionError("a missing language was accepted")


def test_the_send_form_offers_and_sends_the_chosen_document_language(app, make_staff, runner_for):
    from tests.test_sending import agent, form_key, refund_form, text_of  # noqa: F401

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        version_id = library.approved_version(demo_template()).id
    portal = Portal(app, app.test_client())
    assert portal.sign_in(make_staff("agent", team="Customer Care")).status_code == 302
    page = text_of(portal.client.get(f"/envelopes/new/{version_id}"))
    assert '<label for="document_language">Document language</label>' in page
    assert '<option value="es" >Español</option>' in page

    refused = portal.post(
        f"/envelopes/new/{version_id}",
        refund_form(form_key(portal, version_id), document_language="fr"),
    )
    assert refused.status_code == 422
    assert "This template has no fr document" in text_of(refused)
    with app.app_context():
        assert db.session.execute(select(Envelope.id)).first() is None

    preview = portal.post(
        f"/envelopes/preview/{version_id}",
        refund_form(form_key(portal, version_id), document_language="es"),
    )
    assert "Autorización de reembolso" in _pdf_text(preview.data)

    sent_form = portal.post(
        f"/envelopes/new/{version_id}",
        refund_form(form_key(portal, version_id), document_language="es"),
    )
    assert sent_form.status_code == 303
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        assert envelope.document_locale == "es" and envelope.title == "Autorización de reembolso"
        assert envelope.recipients[0].locale == "en"  # their pages and emails stay English
        invite = db.session.execute(
            select(Message).where(Message.kind == "signing_request")
        ).scalar_one()
        assert invite.subject.startswith("Please sign: Autorización de reembolso")
        public_id = envelope.public_id
    page = text_of(portal.client.get(f"/envelopes/{public_id}"))
    assert '<dd id="document-language">Spanish</dd>' in page
