"""Page images of an envelope's document (authored documents differ from their template)."""

from __future__ import annotations

from portal import jobs, storage
from portal.documents.pages import store_page_images
from portal.envelopes.models import Envelope
from portal.extensions import db


@jobs.job(queue="pdf", timeout=600)
def render_envelope_pages(envelope_id: int) -> None:
    """Render the merged document's pages once, as encrypted PNG blobs (idempotent)."""
    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None or envelope.images_status == "ready":
        return
    try:
        pages = store_page_images(storage.get(envelope.document_blob_id), envelope.pages)
    except Exception:
        db.session.rollback()
        envelope = db.session.get(Envelope, envelope_id)
        if envelope is not None:
            envelope.images_status = "failed"
            db.session.commit()
        raise
    envelope.pages = pages
    envelope.images_status = "ready"
    db.session.commit()
