"""Reading on a phone, without a browser: the reading view of an authored document (its text,
fields in place, escaped, the same bytes as the PDF), page images at two widths for uploaded
PDFs (srcset, lazy loading, cached privately, the gate), labelled field boxes."""

from __future__ import annotations

import hashlib

from portal.documents import authoring
from portal.documents.authoring import rendering
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.test_signing import _csrf, _path, sent  # noqa: F401

HOSTILE = "**Bob** <script>alert(1)</script> {{ 7*7 }} | x <img src=x onerror=alert(2)>"


def _opened(app, link: str, public_id: str):
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token


def test_authored_document_reads_as_text_with_fields_in_place(app, sent):  # noqa: F811
    _, public_id, link = sent()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    reading = page[page.index('<article class="reading"') : page.index("</article>")]
    assert "<h2>Refund authorization</h2>" in reading and "<h3>Refund details</h3>" in reading
    assert '<td data-label="Information">' in reading
    assert 'class="doc-pages"' not in page, "no page images for an authored text"
    assert f'href="/sign/{public_id}/document.pdf">View as PDF</a>' in reading
    # the fields come after the last paragraph, where the PDF has them, in reading order
    last = reading.index("Please keep a copy of this document")
    sign = reading.index('data-key="customer_signature"')
    assert (
        last
        < sign
        < reading.index('data-key="date_signed"')
        < reading.index('data-key="full_name"')
    )
    assert 'href="#adopt-heading"' in reading and "Sign here" in reading
    assert 'href="#f-full_name"' in reading and "Zoë Łukasiewicz" in reading  # prefilled
    assert 'href="#f-receipt_photo"' in reading and "Tap to fill in (optional)" in reading
    # the inputs keep their names in the form
    assert 'name="f-receipt_photo"' in page and 'name="typed_name"' in page


def test_reading_view_is_from_the_bytes_sent_and_escaped(app, sent, monkeypatch):  # noqa: F811
    from tests.test_envelopes import REFUND_VALUES

    monkeypatch.setitem(REFUND_VALUES, "refund.reason", HOSTILE)
    envelope_id, public_id, link = sent()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "**Bob** &lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }} | x &lt;img" in page
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        version = envelope.version
        keys = [authoring.MergeKey(k["key"], k["label"], k["sample"]) for k in version.merge_keys]
        pdf, _ = rendering.laid_out(
            version.authored_body, envelope.merge_data, keys, title=version.template.name
        )
        assert hashlib.sha256(pdf).hexdigest() == envelope.original_sha256
        assert pdf == authoring.render_pdf(
            version.authored_body, envelope.merge_data, keys, title=version.template.name
        )


def uploaded_refund(app) -> str:
    """The refund form as an uploaded 2-page PDF (fields on both pages), approved and sent to
    one customer with a link only (after seed-demo); returns the envelope's public id."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.documents.geometry import Rect
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.library import operations as library

    pdf = authoring.render_pdf(
        authoring.REFUND_EXAMPLE,
        {k.key: k.sample for k in authoring.REFUND_MERGE_KEYS},
        authoring.REFUND_MERGE_KEYS,
        title="Refund authorization",
    )
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.email == "admin@demo.example")).one()
        reviewer = db.session.scalars(
            select(User).where(User.email == "compliance@demo.example")
        ).one()
        version = library.create_from_pdf(
            "Refund form (PDF)", "refund_authorization", admin.team, pdf, "refund.pdf", by=admin
        )
        note = library.add_field(version, "text", 1, Rect(300, 330, 220, 22), "customer", by=admin)
        library.update_field(note, {"label": "Your note", "key": "order_note", "required": False},
                             by=admin)  # fmt: skip
        sign = library.add_field(version, "signature", 2, Rect(57, 680, 200, 54), "customer",
                                 by=admin)  # fmt: skip
        library.update_field(sign, {"label": "Customer signature", "key": "customer_signature"},
                             by=admin)  # fmt: skip
        library.add_field(version, "date_signed", 2, Rect(300, 710, 120, 22), "customer", by=admin)
        library.submit(version, by=admin)
        library.approve(version, by=reviewer)
        person = RecipientInput(role="customer", name="Zoë Łukasiewicz", email="zoe@example.com",
                                auth_method="link")  # fmt: skip
        envelope, _ = envelopes.create_and_send(version, {}, [person], by=admin)
        return envelope.public_id


def test_a_spanish_signer_reads_the_spanish_text(app, sent):  # noqa: F811
    _, public_id, link = sent(locale="es")
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    reading = page[page.index('<article class="reading"') : page.index("</article>")]
    assert 'lang="es"' in reading and "Autorización de reembolso" in reading
    assert "Datos del reembolso" in reading and "Refund details" not in reading
    assert "Firme aquí" in reading and "Ver como PDF" in reading
