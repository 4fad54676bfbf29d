"""Names that are printed (file names, people, titles) lose the invisible characters that
reorder text: "invoice<RLO>fdp.exe" would otherwise read as "invoiceexe.pdf"."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal.documents.certificate import AttachmentEvidence, PartyEvidence, render_certificate
from portal.documents.geometry import Rect
from portal.documents.stamp import Stamp, stamp_pdf
from portal.text import printable
from tests.conftest import Portal, audit_events
from tests.test_certificate import _data, _flat
from tests.test_stamp import PageSpec, _box, build_pdf, text_in

RLO = "\u202e"
TRICK = f"invoice{RLO}fdp.exe"
REORDERING = re.compile("[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


@pytest.mark.parametrize(
    ("given", "printed"),
    [
        (TRICK, "invoicefdp.exe"),
        ("\u2067Zoë\u2069 \u200fŁukasiewicz\u200e", "Zoë Łukasiewicz"),
        ("a\u202ab\u202bc\u202cd\u202de\u2066f\u2068g\u061ch", "abcdefgh"),
        ("zero\u200bwidth\ufeff\u2060joiner", "zerowidthjoiner"),
        ("Persian\u200cword and emoji \U0001f469\u200d\U0001f4bb", None),  # joiners stay
        ("tab\tand\nlines\x00", "tab\tand\nlines"),
    ],
)
def test_printable_removes_what_reorders_or_hides_text(given, printed):
    assert printable(given) == (given if printed is None else printed)


def test_the_certificate_prints_invoice_fdp_exe_as_it_is():
    pdf = render_certificate(
        _data(
            title=f"Refund {RLO}ORD-104233",
            sender=PartyEvidence(f"Maria{RLO} Agent", "maria@example.com", "192.0.2.10"),
            attachments=[AttachmentEvidence("Proof of purchase", TRICK, "ab" * 32, 2048)],
        )
    )
    text = "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "invoicefdp.exe" in _flat(text)
    assert "Maria Agent" in _flat(text) and "Refund ORD-104233" in _flat(text)
    assert not REORDERING.search(text)


def test_stamped_values_are_printed_without_reordering_characters():
    spec = PageSpec()
    rect = Rect(72, 600, 300, 24)
    result = stamp_pdf(
        build_pdf([spec]), [_box(spec)], [Stamp(page=1, rect=rect, kind="text", text=TRICK)]
    )
    assert text_in(result, 0, rect).strip() == "invoicefdp.exe"
    extracted = PdfReader(io.BytesIO(result)).pages[0].extract_text()
    assert "invoicefdp.exe" in extracted and not REORDERING.search(extracted)


def test_emails_print_names_and_titles_without_reordering_characters(ctx):
    from portal import mail

    subject, text, html = mail.render(
        "signing_request",
        recipient_name=f"Zo{RLO}ë",
        sender_name=f"Maria{RLO}",
        title=f"Refund {RLO}ORD-1",
        kind="signer",
        link="http://127.0.0.1:5000/s/x",
        expires_at=None,
        reminder=False,
        expiring=False,
    )
    for part in (subject, text, html):
        assert not REORDERING.search(part), part
    assert "Zoë" in text and "Refund ORD-1" in subject
    message = mail.queue(
        "zoe@example.com", f"Zo{RLO}ë", subject, text, html, kind="signing_request",
        attachment=("blob", TRICK),
    )  # fmt: skip
    assert message.to_name == "Zoë" and message.attachment_name == "invoicefdp.exe"


def test_a_signers_attachment_name_is_stored_without_the_override(app, runner_for):
    from werkzeug.datastructures import FileStorage

    from portal.envelopes.models import FieldValue
    from portal.extensions import db
    from tests.test_input_hygiene import PNG, send_refund

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        envelope, link = send_refund("Zoë", "zoe@example.com")
        public_id = envelope.public_id
    signer = Portal(app, app.test_client())
    signer.client.get(link)
    signer.post(f"/sign/{public_id}/consent", {"decision": "accept"})
    receipt = FileStorage(io.BytesIO(PNG), f"receipt{RLO}gnp.exe", content_type="image/png")
    done = signer.post(
        f"/sign/{public_id}/sign",
        {"adoption": "typed", "typed_name": "Zoë", "agree": "yes", "f-receipt_photo": receipt},
    )
    assert done.status_code == 302, done.get_data(as_text=True)
    with app.app_context():
        stored = db.session.execute(
            select(FieldValue.value).where(FieldValue.field_key == "receipt_photo")
        ).scalar_one()
    assert stored == "receiptgnp.exe"
    assert audit_events(app, "envelope.sealed")
