"""Page images of an envelope's document (authored documents differ from their template)."""

from __future__ import annotations

from portal import jobs
from portal.envelopes.models import Envelope
from portal.library.images import PageImages


@jobs.job(queue="pdf", timeout=600)
def render_envelope_pages(envelope_id: int) -> str:
    """Render the merged document's pages once, as encrypted images (idempotent)."""
    return ENVELOPES.render(envelope_id)


ENVELOPES = PageImages(
    Envelope, render_envelope_pages, Envelope.document_blob_id, Envelope.document_blob_id
)


@jobs.periodic(every=300)
def sweep_envelope_images() -> str:
    """Envelope documents whose page images are stuck: ask again, or fail them."""
    return f"{ENVELOPES.sweep()} looked at"
