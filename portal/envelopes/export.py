"""The console's list as a CSV file: every envelope that matches, not just the page.

Streamed in keyset batches of ``BATCH`` envelopes, each its own short read (writers never
wait for an export, and memory stays the same for ten rows or a million), through
``portal.exports`` (BOM, formula cells neutralised). When the stream ends (or the person
stops it) the export is an audit event: who, with which filters, how many rows, whether the
file was complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select

from portal import audit, exports
from portal.accounts.models import Team, User
from portal.envelopes.console import STATUS_LABELS, ListQuery, matching, pages_of
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db, write_lock

BATCH = 1000
EVENT = "envelope.list_exported"
HEADER = (
    "Envelope",
    "Document",
    "Status",
    "Sealing",
    "Ticket",
    "Team",
    "Sent by",
    "Sent (UTC)",
    "Expires (UTC)",
    "Finished (UTC)",
    "Recipients",
)


def _statement(query: ListQuery, user: User) -> Any:
    # (the sort columns under their own names: ``pages_of`` takes its cursor from them)
    stmt = (
        select(
            Envelope.id.label("id"),
            Envelope.public_id,
            Envelope.title.label("title"),
            Envelope.status.label("status"),
            Envelope.seal_status,
            Envelope.ticket_id,
            Team.name.label("team"),
            User.name.label("sender"),
            Envelope.created_at.label("created_at"),
            Envelope.sent_at,
            Envelope.expires_at,
            Envelope.finished_at,
        )
        .outerjoin(Team, Team.id == Envelope.team_id)
        .join(User, User.id == Envelope.created_by_id)
    )
    return matching(stmt, query, user)


def _recipients(envelope_ids: Sequence[int]) -> dict[int, list[str]]:
    people: dict[int, list[str]] = {i: [] for i in envelope_ids}
    rows = db.session.execute(
        select(
            Recipient.envelope_id,
            Recipient.name,
            Recipient.email,
            Recipient.phone,
            Recipient.role_name,
            Recipient.status,
        )
        .where(Recipient.envelope_id.in_(envelope_ids))
        .order_by(Recipient.envelope_id, Recipient.order, Recipient.id)
    )
    for envelope_id, name, email, phone, role, status in rows:
        phone_part = f", {phone}" if phone else ""
        people[envelope_id].append(f"{name} <{email}>{phone_part} ({role}: {status})")
    return people


def rows(query: ListQuery, user: User) -> Iterator[tuple[Any, ...]]:
    """The CSV rows (without the header) of every matching envelope, in the list's order."""
    stmt = _statement(query, user)
    for batch in pages_of(stmt, query, BATCH):
        people = _recipients([row.id for row in batch])
        for row in batch:
            yield (
                row.public_id,
                row.title,
                STATUS_LABELS.get(row.status, row.status),
                row.seal_status or "",
                row.ticket_id,
                row.team,
                row.sender,
                row.sent_at or row.created_at,
                row.expires_at,
                row.finished_at,
                "; ".join(people[row.id]),
            )


def stream(query: ListQuery, user: User) -> Iterator[bytes]:
    """The CSV file in chunks; the audit event is recorded once the stream ends."""
    return exports.csv_stream_recorded(
        HEADER,
        rows(query, user),
        lambda written, complete: record(query, user, written.rows, complete),
    )


def record(query: ListQuery, user: User, count: int, complete: bool) -> None:
    """The export as an audit event (a GET that writes: it takes the write lock first)."""
    write_lock()
    audit.record(
        EVENT,
        actor=user,
        data={"filters": query.params(), "rows": count, "complete": complete},
    )
    db.session.commit()
