"""Bulk send picks each row's document language as the send form does."""

from __future__ import annotations

import io

from pypdf import PdfReader
from sqlalchemy import select

from portal import storage
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.bulk_helpers import bulk_threads_end, refund_row, to_csv  # noqa: F401 - fixture
from tests.conftest import audit_events
from tests.test_bulk import bulk  # noqa: F401 - fixture


def test_a_batch_sends_each_customer_the_document_in_their_language(app, bulk):  # noqa: F811
    headings = bulk.headings()
    language = next(h for h in headings if "language" in h.lower())
    rows = [refund_row(1), refund_row(2), refund_row(3)]
    rows[1][language] = "es"
    public_id = bulk.uploaded(to_csv(headings, rows))
    bulk.send(public_id)
    batch = bulk.wait(public_id)
    assert batch.state == "finished" and batch.created_count == 3
    with app.app_context():
        envelopes = list(db.session.scalars(select(Envelope).order_by(Envelope.id)))
        assert [e.document_locale for e in envelopes] == ["en", "es", "en"]
        texts = [
            PdfReader(io.BytesIO(storage.get(e.document_blob_id))).pages[0].extract_text()
            for e in envelopes
        ]
        assert "Autorización de reembolso" in texts[1] and "Refund authorization" in texts[0]
        assert all(e.images_requested_at is not None for e in envelopes)
    created = audit_events(app, "envelope.created")
    assert [e.data["language"] for e in created] == ["en", "es", "en"]
