"""Page images of template versions (and, through ``PageImages``, of envelopes), rendered
once by a job on the ``pdf`` queue.

A request (``request``) marks the images pending, counts nothing yet and asks for the job.
The job counts an attempt, renders in the sandbox with no transaction open, and stores the
images in one short transaction, unless the document changed meanwhile. A file the renderer
refuses (it never finishes drawing, needs too much memory, or its images would be too large)
fails at once with the reason, which the editor shows with a "try again" button; a busy
sandbox or an unexpected error is tried again, and a sweeper asks again for images still
pending ``SWEEP_MINUTES`` after the last request, up to ``MAX_ATTEMPTS`` tries, after which
they fail with a reason too. Nothing stays pending for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select

from portal import clock, jobs, storage
from portal.documents import sandbox
from portal.documents.pages import PageImageProblem, render_pages, store_page_images
from portal.extensions import db
from portal.library.models import TemplateVersion

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
SWEEP_MINUTES = 10
SWEEP_BATCH = 50


class HasPageImages(Protocol):
    """A row whose document gets page images (a template version, an envelope)."""

    id: int
    pages: list[dict[str, Any]]
    images_status: str
    images_error: str | None
    images_attempts: int
    images_requested_at: Any


@dataclass(frozen=True)
class PageImages:
    """Where a kind of row keeps its document, and which job renders it."""

    model: Any
    job: Any
    source_blob: Any  # the column with the document's blob id
    fingerprint: Any  # a column that changes when the document is replaced

    def request(self, owner: HasPageImages) -> None:
        """Mark the images pending and ask for them after the caller's commit."""
        owner.images_status = "pending"
        owner.images_error = None
        owner.images_attempts = 0
        owner.images_requested_at = clock.utcnow()
        jobs.enqueue(self.job, owner.id)

    def render(self, owner_id: int) -> str:
        """The job's body: render once, store, or record why not (see the module docstring)."""
        owner = db.session.get(self.model, owner_id)
        blob_id = getattr(owner, self.source_blob.key, None) if owner is not None else None
        if owner is None or owner.images_status != "pending" or not blob_id:
            db.session.rollback()
            return "nothing to do"
        owner.images_attempts = (owner.images_attempts or 0) + 1
        attempt = owner.images_attempts
        wanted = getattr(owner, self.fingerprint.key)
        data = storage.get(blob_id)
        db.session.commit()  # the attempt counts; no transaction while the sandbox renders
        try:
            rendered = render_pages(data)
        except PageImageProblem as exc:
            self._finish(owner_id, wanted, error=str(exc))
            return "failed"
        except sandbox.Busy:
            raise  # RQ tries again; the sweeper too
        except Exception as exc:
            log.exception("Page images of %s %s failed", self.model.__name__, owner_id)
            if attempt >= MAX_ATTEMPTS:
                self._finish(owner_id, wanted, error=_unexpected(type(exc).__name__))
            raise
        return self._finish(owner_id, wanted, rendered=rendered)

    def _finish(
        self, owner_id: int, wanted: Any, *, error: str | None = None, rendered: Any = None
    ) -> str:
        owner = db.session.execute(
            select(self.model).where(self.model.id == owner_id).with_for_update()
        ).scalar_one_or_none()
        if owner is None or getattr(owner, self.fingerprint.key) != wanted:
            db.session.rollback()  # the document changed meanwhile: its own request renders it
            return "document replaced"
        if error is not None:
            owner.images_status = "failed"
            owner.images_error = error[:1000]
        else:
            owner.pages = store_page_images(owner.pages, rendered)
            owner.images_status = "ready"
            owner.images_error = None
        db.session.commit()
        return owner.images_status

    def sweep(self) -> int:
        """Ask again for images pending too long; fail those out of tries. Returns how many."""
        cutoff = clock.utcnow() - timedelta(minutes=SWEEP_MINUTES)
        stuck = list(
            db.session.execute(
                select(self.model)
                .where(
                    self.model.images_status == "pending",
                    or_(
                        self.model.images_requested_at.is_(None),
                        self.model.images_requested_at < cutoff,
                    ),
                )
                .order_by(self.model.id)
                .limit(SWEEP_BATCH)
            ).scalars()
        )
        for owner in stuck:
            if (owner.images_attempts or 0) >= MAX_ATTEMPTS:
                owner.images_status = "failed"
                owner.images_error = (
                    f"The page images could not be made after {owner.images_attempts} tries. "
                    "Try again; if it keeps failing, print the PDF to a new file and upload that."
                )
            else:
                owner.images_requested_at = clock.utcnow()
                jobs.enqueue(self.job, owner.id)
        db.session.commit()
        return len(stuck)


def _unexpected(kind: str) -> str:
    return (
        f"The page images could not be made ({kind}) after {MAX_ATTEMPTS} tries. Try again; "
        "if it keeps failing, tell your admin."
    )


@jobs.job(queue="pdf", timeout=600)
def render_page_images(version_id: int) -> str:
    """Render each page of a version once, as encrypted images (idempotent)."""
    return VERSIONS.render(version_id)


VERSIONS = PageImages(
    TemplateVersion,
    render_page_images,
    TemplateVersion.source_blob_id,
    TemplateVersion.source_sha256,
)


@jobs.periodic(every=300)
def sweep_version_images() -> str:
    """Template versions whose page images are stuck: ask again, or fail them."""
    return f"{VERSIONS.sweep()} looked at"
