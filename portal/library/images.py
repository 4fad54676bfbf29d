"""Page images of template versions, rendered once by a job on the ``pdf`` queue."""

from __future__ import annotations

from portal import jobs, storage
from portal.documents.pages import store_page_images
from portal.extensions import db
from portal.library.models import TemplateVersion


@jobs.job(queue="pdf", timeout=600)
def render_page_images(version_id: int) -> None:
    """Render each page of a version once, as encrypted PNG blobs (idempotent)."""
    version = db.session.get(TemplateVersion, version_id)
    if version is None or version.images_status == "ready" or not version.source_blob_id:
        return
    wanted = version.source_sha256
    try:
        pages = store_page_images(storage.get(version.source_blob_id), version.pages)
    except Exception as exc:
        db.session.rollback()
        version = db.session.get(TemplateVersion, version_id)
        if version is not None:
            version.images_status = "failed"
            version.images_error = f"{type(exc).__name__}: {exc}"[:500]
            db.session.commit()
        raise
    db.session.refresh(version)
    if version.source_sha256 != wanted:
        db.session.rollback()  # the source changed meanwhile; the newer job renders it
        return
    version.pages = pages
    version.images_status = "ready"
    version.images_error = None
    db.session.commit()
