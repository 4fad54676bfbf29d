"""Fixes from a walk-through of the portal as a customer sees it: how the sender is named on
the sealed certificate, the sealed copy's file name, dates on signer pages and the mail's
plain-text wording."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal import storage
from portal.documents.authoring.examples import REFUND_EXAMPLE
from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library.demo_es import REFUND_EXAMPLE_ES
from portal.mail import Message
from portal.signing import reading
from tests.test_api_contacts import _opened, api_sent  # noqa: F401  (a fixture)
from tests.test_reading import _opened as _opened_reading
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401  (a fixture)


def test_the_certificate_of_an_api_sent_envelope_names_the_team_not_the_key(app, api_sent):  # noqa: F811
    public_id, link, _creator = api_sent
    customer, token = _opened(app, public_id, link)
    signed = customer.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Ana Muñoz", "agree": "yes"},
    )
    assert signed.status_code == 302, signed.get_data(as_text=True)
    with app.app_context():
        envelope = db.session.execute(
            select(Envelope).where(Envelope.public_id == public_id)
        ).scalar_one()
        assert envelope.seal_status == "sealed", envelope.seal_error
        reader = PdfReader(io.BytesIO(storage.get(envelope.sealed_blob_id)))
        certificate = "\n".join(
            reader.pages[i].extract_text() for i in range(envelope.page_count, len(reader.pages))
        )
    flat = re.sub(r"\s+", " ", certificate)
    # the disclosure as accepted: the team, as on the consent page (the timeline's actor
    # column still records the key that acted, as evidence)
    accepted = flat.split("Text of the disclosure accepted:")[1].split("Copies delivered")[0]
    assert "You can ask Customer Care for a paper copy" in accepted, accepted
    assert "API key" not in accepted, accepted
    assert "Sender Name Customer Care Email" in flat, flat


def test_the_sealed_copy_s_file_name_keeps_accented_letters_without_their_accents():
    envelope = SimpleNamespace(title="Autorización de reembolso — Peña", public_id="abcdef123456")
    assert sealing.download_name(envelope) == (  # type: ignore[arg-type]
        "Autorizacion-de-reembolso--Pena-signed-abcdef12.pdf"
    )
    only_foreign = SimpleNamespace(title="退款授权", public_id="abcdef123456")
    assert sealing.download_name(only_foreign, "as-sent") == "document-as-sent-abcdef12.pdf"  # type: ignore[arg-type]


def test_the_plain_text_signing_request_does_not_ask_for_a_reply(app, sent):  # noqa: F811
    sent()
    with app.app_context():
        (request,) = db.session.execute(
            select(Message).where(Message.kind == "signing_request")
        ).scalars()
        text = request.text_body
    assert "you can ignore it or contact Alex Agent." in text, text
    assert "reply to" not in text.lower()


def test_the_demo_refund_tells_the_customer_to_contact_the_sender_not_to_reply():
    assert "Contact the person who sent it to you instead" in REFUND_EXAMPLE
    assert "Póngase en contacto con quien se lo envió" in REFUND_EXAMPLE_ES
    for text in (REFUND_EXAMPLE, REFUND_EXAMPLE_ES):
        assert "Reply to us" not in text and "Responda a nuestro mensaje" not in text
    # the Spanish variant keeps the English document's merge keys
    keys = set(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", REFUND_EXAMPLE))
    assert keys and set(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", REFUND_EXAMPLE_ES)) == keys


@pytest.mark.parametrize(
    ("locale", "month_names"),
    [
        ("en", ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")),
        ("es", ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
                "septiembre", "octubre", "noviembre", "diciembre")),
    ],
)  # fmt: skip
def test_the_done_page_writes_the_copy_s_last_day_in_the_signer_s_language(
    app,
    sent,  # noqa: F811
    locale,
    month_names,
):
    envelope_id, public_id, link = sent(locale=locale)
    client = _sign(app, link, public_id, adoption="typed")
    page = client.get(f"/sign/{public_id}", follow_redirects=True).get_data(as_text=True)
    with app.app_context():
        until = sealing.copy_until(db.session.get(Envelope, envelope_id))
    hint = re.search(r'<p class="hint">(.*?)</p>', page, re.S).group(1)
    shown = re.sub(r"<[^>]+>", "", hint)
    month = month_names[until.month - 1]
    if locale == "es":
        assert f"hasta el {until.day} de {month} de {until.year}" in shown, shown
    else:
        assert f"until {month} {until.day}, {until.year}" in shown, shown
    assert not re.search(r"\d{4}-\d{2}-\d{2}", shown), shown
    assert f'datetime="{until:%Y-%m-%d}"' in hint  # machine-readable stays ISO


def test_the_new_key_form_has_a_text_name_and_says_records_read_has_no_endpoint(app, signed_in):
    portal, _ = signed_in("admin")
    page = portal.client.get("/admin/integrations/keys/new").get_data(as_text=True)
    assert '<input type="text" id="key-name" name="name"' in page
    assert "Reserved for the records endpoints (no endpoint yet)" in page
    assert "Read records (retention and holds)" not in page
    assert 'value="records:read"' in page  # still a valid scope for keys that have it


def _document_page(app, sent):  # noqa: F811
    _, public_id, link = sent()
    client, _token = _opened_reading(app, link, public_id)
    return public_id, client.get(f"/sign/{public_id}").get_data(as_text=True)


def test_the_signing_page_offers_one_pdf_link_the_reading_view_s(app, sent):  # noqa: F811
    public_id, page = _document_page(app, sent)
    assert '<article class="reading"' in page
    assert page.count(f'href="/sign/{public_id}/document.pdf"') == 1
    assert "View as PDF" in page and "Open it as a PDF" not in page


def test_without_the_reading_view_the_lede_offers_the_pdf(app, sent, monkeypatch):  # noqa: F811
    monkeypatch.setattr(reading, "view", lambda *args, **kwargs: None)
    public_id, page = _document_page(app, sent)
    assert '<article class="reading"' not in page
    assert page.count(f'href="/sign/{public_id}/document.pdf"') == 1
    assert "Open it as a PDF" in page and "View as PDF" not in page
