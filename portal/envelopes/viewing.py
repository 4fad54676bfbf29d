"""Staff views of an envelope, recorded in the audit chain ("who accessed this record").

Viewing is access too: every look a staff member takes at an envelope's page, its document
as sent or one of its page images is an ``envelope.viewed`` event whose data says ``what``
(downloads of the sealed PDF and the audit report, and the filled-in preview, keep their own
events). Views are GET requests, which read without the write lock: the page or file is read
and made first, then ``record_view`` takes the lock only to append the event, as
``sealing.record_download`` does.

Page images come in bursts (a document of 12 pages is 12 requests, scrolling back and forth
many more): the images of one envelope that one staff member looks at within
``IMAGE_WINDOW`` are one view. A repeat inside the window is found by a read, and records
nothing, so it costs no write lock either; requests of one burst that arrive together are
checked again once they hold the chain's head, so they record one view, not several.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from portal import audit, clock
from portal.envelopes.models import Envelope
from portal.extensions import db, write_lock

EVENT = "envelope.viewed"
LABEL = "Viewed by staff"
IMAGE_WINDOW = timedelta(minutes=10)
# What was viewed (the event's ``what``), in words.
WHAT = {
    "page": "Envelope page",
    "original": "Document as sent",
    "page_image": "Page images",
}

audit.add_labels({EVENT: LABEL})


def _seen_lately(envelope_id: int, user_id: int, what: str, window: timedelta) -> bool:
    since = audit.iso_time(clock.utcnow() - window)
    recent = db.session.execute(
        select(audit.AuditEvent)
        .where(
            audit.AuditEvent.subject_type == "envelope",
            audit.AuditEvent.subject_id == str(envelope_id),
            audit.AuditEvent.event == EVENT,
            audit.AuditEvent.actor_type == "user",
            audit.AuditEvent.actor_id == str(user_id),
            audit.AuditEvent.occurred_at >= since,
        )
        .order_by(audit.AuditEvent.seq.desc())
        .limit(20)
    ).scalars()
    return any(seen.data.get("what") == what for seen in audit.reveal(recent))


def record_view(
    envelope: Envelope, what: str, user: Any, *, once_within: timedelta | None = None
) -> bool:
    """Record that ``user`` (staff) viewed ``what`` of ``envelope``; call it once the page or
    file is made (it ends the request's read transaction). With ``once_within``, a view of
    the same thing by the same person that recent is not recorded again. True if recorded."""
    envelope_id, user_id = envelope.id, int(user.id)
    if once_within is not None and _seen_lately(envelope_id, user_id, what, once_within):
        db.session.rollback()
        return False
    write_lock()
    if once_within is not None:
        # The chain's head first: writers of events queue there, so another request of the
        # same burst has committed its view before this one looks again (READ COMMITTED on
        # PostgreSQL; SQLite's write lock already serialises them).
        head = select(audit.AuditHead).where(audit.AuditHead.id == 1).with_for_update()
        db.session.execute(head).scalar_one()
        if _seen_lately(envelope_id, user_id, what, once_within):
            db.session.rollback()  # another request of the burst recorded it meanwhile
            return False
    subject = ("envelope", str(envelope_id), None)
    audit.record(EVENT, actor=user, subject=subject, data={"what": what})
    db.session.commit()
    return True
