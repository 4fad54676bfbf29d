"""Access audit: who (staff) viewed, downloaded or exported what, read from the audit chain.

Two views of the same events: an envelope's accesses, newest first (the "Who accessed"
section of its page), and one staff member's accesses in a period (a page and a CSV file).
Both are keyset pages over the chain's indexes (``ix_audit_event_subject`` and
``ix_audit_event_actor``: type, id, sequence number), so the hundredth page costs what the
first does. Events are read through ``audit.reveal`` (their IP addresses may be encrypted).

What counts as access: ``envelope.viewed`` (the envelope page, its document as sent, its page
images; see ``portal.envelopes.viewing``), downloads of the sealed PDF and audit report, the
filled-in preview, and, for a staff member, the exports and reports they made.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from portal import audit, exports
from portal.accounts.models import User
from portal.envelopes import viewing
from portal.envelopes.models import Envelope
from portal.extensions import db, write_lock
from portal.records.periods import Period

ENVELOPE_EVENTS = (
    viewing.EVENT,
    "envelope.document_downloaded",
    "envelope.report_downloaded",
    "envelope.filled_document_viewed",
)
STAFF_EVENTS = (
    *ENVELOPE_EVENTS,
    "records.exported",
    "records.export_downloaded",
    "envelope.list_exported",
    "bulk.report_downloaded",
    "subject.exported",
)
PAGE_SIZE = 50
CSV_BATCH = 1000
KIND = "access_report"
CSV_HEADER = ("Time (UTC)", "Staff", "What", "Envelope", "Document", "Detail", "IP address")
_CURSOR_LENGTH = 19


@dataclass(frozen=True)
class Access:
    """One access as the pages show it."""

    seq: int
    at: datetime
    staff_id: int | None
    staff: str
    what: str
    envelope_id: str | None  # public id
    title: str | None
    detail: str
    ip: str | None


@dataclass(frozen=True)
class Page:
    rows: list[Access]
    next_before: int | None  # the cursor of the next (older) page, if any


def cursor(value: str | None) -> int | None:
    """A ``before`` cursor from the query string (None when absent or not a number)."""
    value = (value or "").strip()
    if not value or len(value) > _CURSOR_LENGTH or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _what(event: str, data: dict[str, Any]) -> str:
    if event == viewing.EVENT:
        return viewing.WHAT.get(str(data.get("what") or ""), "Envelope")
    return audit.label(event)


def _detail(event: str, data: dict[str, Any]) -> str:
    parts = []
    if data.get("kind"):
        parts.append(str(data["kind"]).replace("_", " "))
    if data.get("rows") is not None:
        parts.append(f"{data['rows']} rows")
    if data.get("interim"):
        parts.append("interim")
    if data.get("sha256"):
        parts.append(f"SHA-256 {str(data['sha256'])[:16]}…")
    return ", ".join(parts)


def _rows(events: Sequence[audit.AuditEvent]) -> list[Access]:
    revealed = audit.reveal(events)
    staff_ids = {int(e.actor_id or 0) for e in events if (e.actor_id or "").isdigit()}
    names = {
        row.id: row.name
        for row in db.session.execute(select(User.id, User.name).where(User.id.in_(staff_ids)))
    }
    envelope_ids = {
        int(e.subject_id or 0)
        for e in events
        if e.subject_type == "envelope" and (e.subject_id or "").isdigit()
    }
    envelopes = {
        str(row.id): row
        for row in db.session.execute(
            select(Envelope.id, Envelope.public_id, Envelope.title).where(
                Envelope.id.in_(envelope_ids)
            )
        )
    }
    out = []
    for seen in revealed:
        event = seen.event
        staff_id = int(event.actor_id or 0) if (event.actor_id or "").isdigit() else None
        envelope = (
            envelopes.get(event.subject_id or "") if event.subject_type == "envelope" else None
        )
        out.append(
            Access(
                seq=event.seq,
                at=event.occurred,
                staff_id=staff_id,
                staff=names.get(staff_id or 0) or seen.actor_label or "Unknown",
                what=_what(event.event, seen.data),
                envelope_id=envelope.public_id if envelope else None,
                title=envelope.title if envelope else None,
                detail=_detail(event.event, seen.data),
                ip="(erased)" if seen.erased else seen.ip,
            )
        )
    return out


def _page(stmt: Any, before: int | None, size: int) -> Page:
    ev = audit.AuditEvent
    if before is not None:
        stmt = stmt.where(ev.seq < before)
    events = list(db.session.execute(stmt.order_by(ev.seq.desc()).limit(size + 1)).scalars())
    more = len(events) > size
    events = events[:size]
    return Page(_rows(events), events[-1].seq if more and events else None)


def envelope_access(envelope: Envelope, before: int | None = None, size: int | None = None) -> Page:
    """Staff accesses of one envelope, newest first (``PAGE_SIZE`` a page)."""
    ev = audit.AuditEvent
    stmt = select(ev).where(
        ev.subject_type == "envelope",
        ev.subject_id == str(envelope.id),
        ev.actor_type == "user",
        ev.event.in_(ENVELOPE_EVENTS),
    )
    return _page(stmt, before, size or PAGE_SIZE)


def _by_staff(user_id: int, period: Period) -> Any:
    ev = audit.AuditEvent
    return select(ev).where(
        ev.actor_type == "user",
        ev.actor_id == str(user_id),
        ev.event.in_(STAFF_EVENTS),
        ev.occurred_at >= audit.iso_time(period.start),
        ev.occurred_at < audit.iso_time(period.end),
    )


def staff_access(
    user_id: int, period: Period, before: int | None = None, size: int | None = None
) -> Page:
    """What one staff member viewed, downloaded or exported in a period, newest first."""
    return _page(_by_staff(user_id, period), before, size or PAGE_SIZE)


def staff_rows(user_id: int, period: Period) -> Iterator[tuple[Any, ...]]:
    """Every access of the period as CSV rows, newest first, read in short keyset batches."""
    before: int | None = None
    while True:
        page = staff_access(user_id, period, before, CSV_BATCH)
        db.session.rollback()  # each batch its own short read
        for row in page.rows:
            yield (row.at, row.staff, row.what, row.envelope_id, row.title, row.detail, row.ip)
        if page.next_before is None:
            return
        before = page.next_before


def staff_csv(staff: User, period: Period, by: User) -> Iterator[bytes]:
    """The staff member's access report as a CSV file, in chunks; when the stream ends it is
    recorded as ``records.exported`` (kind ``access_report``, rows, SHA-256 of the file)."""
    staff_id, by_id = staff.id, by.id

    def finished(written: exports.Written, complete: bool) -> None:
        write_lock()
        audit.record(
            "records.exported",
            actor=db.session.get(User, by_id),
            data={
                "kind": KIND,
                "filters": {"staff": staff_id, **period.params()},
                "rows": written.rows,
                "sha256": written.digest.hexdigest(),
                "complete": complete,
            },
        )
        db.session.commit()

    return exports.csv_stream_recorded(CSV_HEADER, staff_rows(staff_id, period), finished)


def staff_choices() -> list[tuple[int, str, str]]:
    """(id, name, role) of every staff account, for the access report's index."""
    rows = db.session.execute(select(User.id, User.name, User.role).order_by(User.name)).all()
    return [(int(r.id), str(r.name), str(r.role)) for r in rows]
