"""Fixes from a walk-through of the portal as a customer sees it: how the sender is named on
the sealed certificate, the sealed copy's file name, dates on signer pages and the mail's
plain-text wording."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from pypdf import PdfReader
from sqlalchemy import select

from portal import storage
from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.test_api_contacts import _opened, api_sent  # noqa: F401  (a fixture)


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
