"""Data-subject requests: for one customer email, what is held about them, an export of it
all, and erasure of what no retention period or hold protects.

The customer is found by email whatever its case (``holds.envelopes_of_email``). Events of
the requests name the customer by the SHA-256 of the normalised email, never the email
itself: the chain is append-only, and the address must not outlive the envelopes it erases.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any

from sqlalchemy import func, select

from portal import audit, clock, exports, mail, storage
from portal.accounts.models import User
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.extensions import db, write_lock
from portal.records import holds
from portal.records.purge import PurgeRefused, protection, purge_envelope

log = logging.getLogger(__name__)

audit.add_labels(
    {
        "subject.exported": "Data-subject export",
        "subject.erasure_requested": "Data-subject erasure requested",
    }
)

MAX_REFERENCE = 120
RECIPIENT_COLUMNS = (
    "Envelope id", "Document", "Envelope status", "Name", "Email", "Phone", "Role", "Kind",
    "Status", "Sent", "Viewed", "Consented", "Authentication", "Finished", "Decline reason",
    "IP address", "Browser",
)  # fmt: skip
EVENT_COLUMNS = ("Seq", "Time (UTC)", "Event", "Envelope id", "IP address", "Browser", "Data")


class SubjectError(ValueError):
    """The request cannot be carried out as asked; the message says why."""


def subject_ref(email: str) -> tuple[str, str, None]:
    """The audit subject of a data-subject request: the email's SHA-256, not the email."""
    return ("data_subject", holds.email_digest(email)[:32], None)


@dataclass
class Held:
    """One envelope held about the customer, as the request page shows it."""

    envelope: Envelope
    recipients: list[Recipient]  # the customer's own rows
    holds: list[str]
    protection: str | None  # why erasure would keep it (None: erasure purges it)


def _theirs(envelope: Envelope, email: str) -> list[Recipient]:
    return [r for r in envelope.recipients if r.email.lower() == email]


def held(email: str) -> list[Held]:
    """Every envelope held about the customer, newest first, with what protects each."""
    found: list[Held] = []
    for ids in holds.id_batches(holds.envelopes_of_email(email), size=200):
        envelopes = holds.envelopes_by_id(ids)
        reasons = holds.hold_reasons(ids)
        for envelope in envelopes:
            found.append(
                Held(
                    envelope,
                    _theirs(envelope, email),
                    reasons.get(envelope.id, []),
                    protection(envelope),
                )
            )
    found.sort(key=lambda h: h.envelope.id, reverse=True)
    return found


# ---------------------------------------------------------------- export


def _time(value: datetime | None) -> str | None:
    return clock.as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _recipient_data(recipient: Recipient) -> dict[str, Any]:
    return {
        "name": recipient.name, "email": recipient.email, "phone": recipient.phone,
        "role": recipient.role_name, "kind": recipient.kind, "status": recipient.status,
        "sent_at": _time(recipient.sent_at), "viewed_at": _time(recipient.viewed_at),
        "consented_at": _time(recipient.consented_at),
        "consent_version": recipient.consent_version, "auth_method": recipient.auth_method,
        "authenticated_at": _time(recipient.authenticated_at),
        "finished_at": _time(recipient.finished_at), "decline_reason": recipient.decline_reason,
        "adoption": recipient.adoption, "ip": recipient.finished_ip,
        "user_agent": recipient.finished_user_agent,
    }  # fmt: skip


def _recipient_row(envelope: Envelope, r: Recipient) -> list[Any]:
    return [
        envelope.id, envelope.title, envelope.status, r.name, r.email, r.phone, r.role_name,
        r.kind, r.status, r.sent_at, r.viewed_at, r.consented_at, r.auth_method, r.finished_at,
        r.decline_reason, r.finished_ip, r.finished_user_agent,
    ]  # fmt: skip


def _values(recipient_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if not recipient_ids:
        return found
    rows = db.session.scalars(
        select(FieldValue)
        .where(FieldValue.recipient_id.in_(recipient_ids))
        .order_by(FieldValue.recipient_id, FieldValue.id)
    )
    for value in rows:
        found.setdefault(value.recipient_id, []).append(
            {
                "field": value.field_key,
                "value": value.value if value.blob_id is None else "(image or file)",
                "filled_at": _time(value.filled_at),
            }
        )
    return found


# Events about the whole envelope that concern each of its recipients: kept in their export,
# without the acting staff member's IP and browser, and (``envelope.created``) with only their
# own entry of the recipients' list.
ENVELOPE_WIDE = frozenset(
    {
        "envelope.created", "envelope.sent", "envelope.expired", "envelope.voided",
        "envelope.completed", "envelope.sealed", "envelope.purged",
    }
)  # fmt: skip


def _named_recipient(data: dict[str, Any]) -> int | None:
    """The recipient an event's data is about (``recipient_id`` or ``recipient``), if any."""
    for key in ("recipient_id", "recipient"):
        value = data.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return None


def _concerning(item: audit.Revealed, theirs: Sequence[Recipient]) -> audit.Revealed | None:
    """The event as their export shows it, or None when it does not concern them: what their
    recipient rows did (in full); what was done about them (mail to them, codes, bounces, a
    lockout, a corrected address: without the acting staff member's IP and browser); events
    of the whole envelope (the same, and only their entry in its list of recipients). What
    other recipients did or had done to them, and staff's own activity (views, notices to
    the sender), is left out."""
    ids = {r.id for r in theirs}
    event = item.event
    if event.actor_type == "recipient":
        actor = event.actor_id or ""
        return item if actor.isdigit() and int(actor) in ids else None
    named = _named_recipient(item.data)
    if named is None and event.event not in ENVELOPE_WIDE:
        return None
    if named is not None and named not in ids:
        return None
    data = dict(item.data)
    if isinstance(data.get("recipients"), list):
        own = {(mail.mask_address(r.email), r.role) for r in theirs}
        data["recipients"] = [
            entry for entry in data["recipients"]
            if isinstance(entry, dict) and (entry.get("email"), entry.get("role")) in own
        ]  # fmt: skip
    return replace(item, data=data, ip=None, user_agent=None, actor_label=None)


def _events(
    envelopes: Sequence[Envelope], mine: dict[int, list[Recipient]]
) -> dict[int, list[audit.Revealed]]:
    """Envelope id -> the events of it that concern them (``_concerning``), oldest first, read
    through ``audit.reveal`` (one statement for the batch of envelopes)."""
    found: dict[int, list[audit.Revealed]] = {e.id: [] for e in envelopes}
    if not envelopes:
        return found
    rows = db.session.scalars(
        select(audit.AuditEvent)
        .where(
            audit.AuditEvent.subject_type == "envelope",
            audit.AuditEvent.subject_id.in_([str(e.id) for e in envelopes]),
        )
        .order_by(audit.AuditEvent.seq)
    )
    for item in audit.reveal(rows):
        envelope_id = int(item.event.subject_id or 0)
        shown = _concerning(item, mine.get(envelope_id, []))
        if shown is not None:
            found[envelope_id].append(shown)
    return found


def _event_row(item: audit.Revealed) -> list[Any]:
    event = item.event
    data = "(erased)" if item.erased else audit.encode_data(item.data)
    return [event.seq, event.occurred_at, audit.label(event.event), event.subject_id, item.ip,
            item.user_agent, data]  # fmt: skip


def _envelope_data(
    envelope: Envelope,
    theirs: list[Recipient],
    values: dict[int, list[dict[str, Any]]],
    reasons: dict[int, list[str]],
    revealed: list[audit.Revealed],
) -> dict[str, Any]:
    """One envelope in ``data.json``: its facts, their rows and values, their events."""
    return {
        "id": envelope.id, "public_id": envelope.public_id, "document": envelope.title,
        "status": envelope.status, "created_at": _time(envelope.created_at),
        "sent_at": _time(envelope.sent_at), "finished_at": _time(envelope.finished_at),
        "sealed_sha256": envelope.sealed_sha256,
        "retention_until": _time(envelope.retention_until),
        "holds": reasons.get(envelope.id, []),
        "merge_data": envelope.merge_data,
        "recipients": [{**_recipient_data(r), "values": values.get(r.id, [])} for r in theirs],
        "events": [
            {"seq": i.event.seq, "time": i.event.occurred_at, "event": i.event.event,
             "label": audit.label(i.event.event), "ip": i.ip, "user_agent": i.user_agent,
             "data": None if i.erased else i.data, "erased": i.erased}
            for i in revealed
        ],
    }  # fmt: skip


@dataclass
class _Collected:
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    recipient_rows: list[list[Any]] = field(default_factory=list)
    event_rows: list[list[Any]] = field(default_factory=list)


def write_export(email: str, out: Any) -> int:
    """Write the customer's ZIP into ``out``: their sealed documents, ``data.json``,
    ``data.csv`` (their recipient rows) and ``events.csv``; returns how many envelopes."""
    with holds.Bundle(out) as bundle:
        collected = _Collected()
        for ids in holds.id_batches(holds.envelopes_of_email(email), size=50):
            envelopes = holds.envelopes_by_id(ids)
            reasons = holds.hold_reasons(ids)
            mine = {e.id: _theirs(e, email) for e in envelopes}
            values = _values([r.id for rs in mine.values() for r in rs])
            events = _events(envelopes, mine)
            for envelope in envelopes:
                theirs = mine[envelope.id]
                revealed = events[envelope.id]
                collected.envelopes.append(
                    _envelope_data(envelope, theirs, values, reasons, revealed)
                )
                collected.recipient_rows.extend(_recipient_row(envelope, r) for r in theirs)
                collected.event_rows.extend(_event_row(i) for i in revealed)
                if envelope.seal_status == "sealed" and envelope.sealed_blob_id:
                    bundle.add(
                        f"documents/{envelope.id}-{envelope.public_id}-signed.pdf",
                        storage.get(envelope.sealed_blob_id),
                        envelope_id=envelope.id,
                        kind="sealed_pdf",
                    )
            db.session.rollback()  # end the batch's read
        document = {"email": email, "generated_at": _time(clock.utcnow()),
                    "envelopes": collected.envelopes}  # fmt: skip
        bundle.add("data.json", json.dumps(document, indent=2, ensure_ascii=False).encode(),
                   envelope_id=None, kind="data_json")  # fmt: skip
        bundle.add("data.csv", _csv(RECIPIENT_COLUMNS, collected.recipient_rows),
                   envelope_id=None, kind="data_csv")  # fmt: skip
        bundle.add("events.csv", _csv(EVENT_COLUMNS, collected.event_rows),
                   envelope_id=None, kind="events_csv")  # fmt: skip
    return len(collected.envelopes)


def _csv(header: Sequence[str], rows: list[list[Any]]) -> bytes:
    return b"".join(exports.csv_stream(header, rows))


def export(email: str, by: User) -> tuple[IO[bytes], int]:
    """Build the customer's ZIP into an anonymous temporary file (no name on disk, gone once
    closed) and record ``subject.exported``; the caller sends and closes it."""
    wanted = holds.customer_email(email)
    handle = tempfile.TemporaryFile(prefix="subject-", suffix=".zip")  # noqa: SIM115
    try:
        count = write_export(wanted, handle)
        handle.seek(0)
        digest, size = holds.stream_sha256(handle)
        handle.seek(0)
        write_lock()
        audit.record(
            "subject.exported",
            actor=by,
            subject=subject_ref(wanted),
            data={"email_sha256": holds.email_digest(wanted), "envelopes": count,
                  "sha256": digest, "bytes": size},
        )  # fmt: skip
        db.session.commit()
    except BaseException:
        handle.close()
        raise
    return handle, count


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True)
class Outcome:
    """What erasure did with one envelope."""

    envelope_id: int
    title: str
    purged: bool
    reason: str | None = None  # why it is kept
    until: datetime | None = None  # kept until (its retention date), when known

    def data(self) -> dict[str, Any]:
        return {"envelope": self.envelope_id, "purged": self.purged, "kept_because": self.reason,
                "kept_until": _time(self.until)}  # fmt: skip


def erase(email: str, reference: object, by: User) -> list[Outcome]:
    """Purge at once every envelope of the customer that no retention period or hold
    protects; record, per envelope, why the rest is kept and until when
    (``subject.erasure_requested``). Each purge commits on its own (see ``purge_envelope``)."""
    wanted = holds.customer_email(email)
    why = holds.reason_text(reference, "The reason or request reference")
    ids = [i for batch in holds.id_batches(holds.envelopes_of_email(wanted), 500) for i in batch]
    outcomes: list[Outcome] = []
    for envelope_id in ids:
        envelope = db.session.get(Envelope, envelope_id)
        if envelope is None:
            continue
        title = envelope.title
        kept = protection(envelope)
        if kept is None:
            try:
                purge_envelope(envelope, reason=f"Data-subject erasure: {why}"[:200],
                               actor=by, action="both")  # fmt: skip
            except PurgeRefused as exc:
                kept = str(exc)
            except Exception as exc:  # one envelope's failure must not lose the others' record
                db.session.rollback()
                log.exception("Erasure could not purge envelope %s", envelope_id)
                kept = f"The purge failed ({type(exc).__name__}); ask again to retry it."
            else:
                outcomes.append(Outcome(envelope_id, title, True))
                continue
        envelope = db.session.get(Envelope, envelope_id)
        until = envelope.retention_until if envelope is not None else None
        if until is not None and clock.as_utc(until) <= clock.utcnow():
            until = None
        outcomes.append(Outcome(envelope_id, title, False, kept, until))
    write_lock()
    audit.record(
        "subject.erasure_requested",
        actor=by,
        subject=subject_ref(wanted),
        data={
            "email_sha256": holds.email_digest(wanted),
            "reference": why,
            "purged": sum(1 for o in outcomes if o.purged),
            "kept": sum(1 for o in outcomes if not o.purged),
            "envelopes": [o.data() for o in outcomes],
        },
    )
    db.session.commit()
    return outcomes


def count_of(email: str) -> int:
    stmt = holds.envelopes_of_email(email).subquery()
    return int(db.session.scalar(select(func.count()).select_from(stmt)) or 0)
