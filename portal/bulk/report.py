"""What a batch did: progress, each row's outcome and its envelope's status, the CSV report.

A row's envelope status is read from the envelope as it goes on: ``signed`` (completed),
``declined``, ``voided``, ``expired``, ``bounced`` (its signing email bounced or failed),
``opened`` (a recipient opened their link), else ``sent``. Lists page by row number (keyset),
and the CSV report reads in short batches of rows, so it streams in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Select, case, exists, func, select
from sqlalchemy.orm import selectinload

from portal import clock, mail
from portal.accounts.access import team_scope
from portal.accounts.models import User
from portal.bulk import sending
from portal.bulk.models import BatchState, BulkBatch, BulkRow, RowState
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.library.models import TemplateVersion

PAGE = 100
REPORT_BATCH = 1000
OUTCOMES = {
    "created": "Sent",
    "pending": "Waiting",
    "failed": "Failed",
    "invalid": "Left out: problems",
    "excluded": "Left out by you",
    "cancelled": "Cancelled",
    "ready": "Ready",
}
STATUSES = ("sent", "opened", "signed", "declined", "bounced", "voided", "expired")

_bounced = exists().where(
    mail.Message.envelope_id == Envelope.id,
    mail.Message.kind == "signing_request",
    mail.Message.status.in_((mail.Status.BOUNCED.value, mail.Status.FAILED.value)),
)
_opened = exists().where(Recipient.envelope_id == Envelope.id, Recipient.viewed_at.is_not(None))
envelope_status = case(
    (Envelope.id.is_(None), ""),
    (Envelope.status == "completed", "signed"),
    (Envelope.status.in_(("declined", "voided", "expired")), Envelope.status),
    (_bounced, "bounced"),
    (_opened, "opened"),
    else_="sent",
)


@dataclass(frozen=True)
class Progress:
    """Where a sending batch stands."""

    state: str
    total: int  # rows being sent (not those left out before sending)
    created: int
    failed: int
    cancelled: int
    emails_sent: int
    emails_failed: int
    emails_waiting: int
    per_minute: float
    seconds_left: float | None

    @property
    def done(self) -> int:
        return self.created + self.failed + self.cancelled

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100


def progress(batch: BulkBatch) -> Progress:
    """The batch's counts, its rate of envelopes per minute and the time left at that rate."""
    pending = int(
        db.session.scalar(
            select(func.count())
            .select_from(BulkRow)
            .where(BulkRow.batch_id == batch.id, BulkRow.state == RowState.PENDING.value)
        )
        or 0
    )
    emails = dict(
        db.session.execute(
            select(mail.Message.status, func.count())
            .join(BulkRow, BulkRow.envelope_id == mail.Message.envelope_id)
            .where(BulkRow.batch_id == batch.id, mail.Message.kind == "signing_request")
            .group_by(mail.Message.status)
        ).all()
    )
    per_minute, left = 0.0, None
    if batch.started_at and batch.created_count:
        end = batch.finished_at or clock.utcnow()
        minutes = max((clock.as_utc(end) - clock.as_utc(batch.started_at)).total_seconds(), 1) / 60
        per_minute = batch.created_count / minutes
        pace = sending.mail_per_minute() / sending.emails_per_row(batch)
        if pace and batch.state == BatchState.SENDING.value:
            per_minute = min(per_minute, pace)  # a first chunk goes at once, then the pace
        left = pending / per_minute * 60 if pending else 0.0
    total = batch.created_count + batch.failed_count + batch.cancelled_count + pending
    return Progress(
        state=batch.state,
        total=total,
        created=batch.created_count,
        failed=batch.failed_count,
        cancelled=batch.cancelled_count,
        emails_sent=int(emails.get(mail.Status.SENT.value, 0)),
        emails_failed=int(
            emails.get(mail.Status.FAILED.value, 0) + emails.get(mail.Status.BOUNCED.value, 0)
        ),
        emails_waiting=int(emails.get(mail.Status.QUEUED.value, 0)),
        per_minute=per_minute,
        seconds_left=left,
    )


def _rows(batch: BulkBatch, outcome: str, status: str) -> Select[Any]:
    stmt = (
        select(BulkRow, Envelope.public_id, envelope_status.label("envelope_status"))
        .outerjoin(Envelope, Envelope.id == BulkRow.envelope_id)
        .where(BulkRow.batch_id == batch.id)
    )
    if outcome in OUTCOMES:
        stmt = stmt.where(BulkRow.state == outcome)
    if status in STATUSES:
        stmt = stmt.where(envelope_status == status)
    return stmt


@dataclass(frozen=True)
class RowView:
    """One row as the batch page and the report show it."""

    row: BulkRow
    envelope: str | None
    envelope_status: str

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.row.state, self.row.state)

    @property
    def problem(self) -> str:
        if self.row.error:
            return self.row.error
        return "; ".join(f"{p['column']}: {p['message']}" for p in self.row.problems or [])


def rows_page(
    batch: BulkBatch, outcome: str = "", status: str = "", after: int = 0, limit: int = PAGE
) -> list[RowView]:
    """A page of rows in row order after row ``after``, filtered by outcome and status."""
    stmt = (
        _rows(batch, outcome, status)
        .where(BulkRow.number > after)
        .order_by(BulkRow.number)
        .limit(limit)
    )
    return [
        RowView(row, public_id, str(st or "")) for row, public_id, st in db.session.execute(stmt)
    ]


def problem_rows(batch: BulkBatch, after: int = 0, limit: int = PAGE) -> list[BulkRow]:
    """Rows with problems, in row order after row ``after``."""
    return list(
        db.session.scalars(
            select(BulkRow)
            .where(
                BulkRow.batch_id == batch.id,
                BulkRow.state == RowState.INVALID.value,
                BulkRow.number > after,
            )
            .order_by(BulkRow.number)
            .limit(limit)
        )
    )


REPORT_HEADER = (
    "Row", "Outcome", "Envelope status", "Name", "Email", "Ticket", "Envelope",
    "Envelope page", "Problem", "Created (UTC)",
)  # fmt: skip


def report_rows(batch: BulkBatch) -> Iterator[Sequence[Any]]:
    """Every row of the report, read in short batches (each its own short read)."""
    base = current_app.config["PUBLIC_BASE_URL"]
    after = 0
    while page := rows_page(batch, after=after, limit=REPORT_BATCH):
        for view in page:
            row = view.row
            yield (
                row.number,
                view.outcome,
                view.envelope_status,
                row.name,
                row.email,
                row.ticket_id,
                view.envelope,
                f"{base}/envelopes/{view.envelope}" if view.envelope else "",
                view.problem,
                row.created_at,
            )
        after = page[-1].row.number
        db.session.rollback()  # no read transaction stays open between batches


def recent_batches(user: User, limit: int = 5) -> list[BulkBatch]:
    """The latest batches the user may see (not discarded drafts)."""
    stmt = team_scope(
        select(BulkBatch)
        .options(
            selectinload(BulkBatch.version).selectinload(TemplateVersion.template),
            selectinload(BulkBatch.created_by),
        )
        .where(BulkBatch.state != BatchState.DISCARDED.value)
        .order_by(BulkBatch.created_at.desc(), BulkBatch.id.desc())
        .limit(limit),
        BulkBatch.team_id,
        user,
    )
    return list(db.session.scalars(stmt))
