"""What the envelope page tells about an envelope from the records: the event timeline from the
audit chain, the approvers' comments, the values each recipient filled in, and the document
stamped with those values so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from portal import audit, storage
from portal.accounts.models import User
from portal.documents import sandbox
from portal.documents.inspect import PageBox
from portal.documents.stamp import stamp_pdf
from portal.envelopes import sealing, viewing
from portal.envelopes.checks import EnvelopeError
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.extensions import db, write_lock


@dataclass(frozen=True)
class Entry:
    """One event as the page shows it: when (UTC), what, who, from where, and a detail."""

    at: datetime
    event: str
    label: str
    who: str
    ip: str | None
    detail: str


@dataclass(frozen=True)
class Comment:
    """What an approver said with their decision."""

    name: str
    role_name: str
    verdict: str  # approved | rejected
    text: str
    at: datetime


@dataclass(frozen=True)
class Filled:
    """One value a recipient filled in, as the page shows it."""

    label: str
    value: str


def _who(event: audit.Revealed, people: dict[str, Recipient], staff: dict[str, str]) -> str:
    if event.actor_type == "recipient" and event.actor_id in people:
        person = people[event.actor_id]
        return f"{person.name} ({person.role_name})"
    if event.actor_type == "user" and event.actor_id in staff:
        return staff[event.actor_id]
    if event.actor_type == "system":
        return "The portal"
    return event.actor_label or event.actor_type


def _staff_names(events: list[audit.Revealed]) -> dict[str, str]:
    ids = {int(e.actor_id or 0) for e in events if e.actor_type == "user"} - {0}
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.name).where(User.id.in_(ids))).all()
    return {str(row.id): str(row.name) for row in rows}


def _detail(event: audit.Revealed, people: dict[str, Recipient]) -> str:
    data = event.data
    named = people.get(str(data.get("recipient") or data.get("recipient_id") or ""))
    parts = []
    if named is not None and event.actor_type != "recipient":
        parts.append(named.name)
    for key, label in (("reason", "reason"), ("comment", "comment"), ("field", "field")):
        if data.get(key):
            parts.append(f"{label}: {data[key]}")
    if event.name.startswith("mail.") and data.get("to"):
        parts.append(f"{data.get('kind', 'email')} to {data['to']}")
    elif data.get("to") and data.get("from"):
        parts.append(f"{data['from']} → {data['to']}")
    if data.get("adoption"):
        parts.append(f"{data['adoption']} signature")
    if data.get("earlier"):
        parts.append(f"sent again after {len(data['earlier'])} earlier")
    if event.erased:
        parts.append("personal data erased")
    return " · ".join(str(p) for p in parts)


def entries(envelope: Envelope, events: list[audit.Revealed]) -> list[Entry]:
    """The envelope's events (``sealing.envelope_events``), oldest first, in words."""
    people = {str(r.id): r for r in envelope.recipients}
    staff = _staff_names(events)
    return [
        Entry(
            at=e.occurred,
            event=e.name,
            label=audit.label(e.name),
            who=_who(e, people, staff),
            ip=e.ip,
            detail=_detail(e, people),
        )
        for e in events
    ]


def comments(envelope: Envelope, events: list[audit.Revealed]) -> list[Comment]:
    """Each approver's comment: with an approval or a rejection, from the envelope's events."""
    people = {str(r.id): r for r in envelope.recipients if r.kind == "approver"}
    found = []
    for event in events:
        person = people.get(event.actor_id or "")
        if person is None or event.actor_type != "recipient":
            continue
        text = str(event.data.get("comment") or event.data.get("reason") or "")
        if event.name == "recipient.approved" and text:
            found.append(Comment(person.name, person.role_name, "approved", text, event.occurred))
        elif event.name == "recipient.declined":
            found.append(Comment(person.name, person.role_name, "rejected", text, event.occurred))
    return found


def story(envelope: Envelope) -> tuple[list[Entry], list[Comment]]:
    """The timeline and the approvers' comments, from one read of the audit chain."""
    events = sealing.envelope_events(envelope)
    # Staff views are in the page's "Who accessed" section, not in the envelope's story.
    events = [e for e in events if e.name != viewing.EVENT]
    return entries(envelope, events), comments(envelope, events)


def _shown(kind: str, value: FieldValue) -> str:
    text = value.value or ""
    if kind in ("signature", "initials"):
        return "Drawn signature" if text == "drawn" else f"Typed: {text}"
    if kind == "checkbox":
        return "Ticked" if text == "true" else "Not ticked"
    if kind == "attachment":
        return f"Attached: {text}"
    return text


def filled(envelope: Envelope) -> dict[int, list[Filled]]:
    """The values each recipient filled in so far, by recipient id, in the template's order."""
    fields = {f.key: f for f in envelope.version.fields}
    order = {key: index for index, key in enumerate(fields)}
    values = db.session.execute(
        select(FieldValue).where(FieldValue.envelope_id == envelope.id)
    ).scalars()
    out: dict[int, list[tuple[int, Filled]]] = {}
    for value in values:
        item = fields.get(value.field_key)
        if item is None or not value.value:
            continue
        shown = Filled(item.label or item.key, _shown(item.type, value))
        out.setdefault(value.recipient_id, []).append((order[item.key], shown))
    return {rid: [f for _, f in sorted(items, key=lambda p: p[0])] for rid, items in out.items()}


def filled_document(envelope: Envelope, by: Any) -> bytes:
    """The document as sent with every value filled in so far stamped where its field is.

    The original and the signers' drawings came from outside, so the stamping runs in the
    PDF sandbox (``EnvelopeError`` when it cannot); the view is recorded
    (``envelope.filled_document_viewed``): it shows what the customer entered.
    """
    original = storage.get(envelope.document_blob_id)
    pages = [PageBox.from_record(p) for p in envelope.pages]
    marks = sealing.stamps(envelope)
    metadata = {"/Title": f"{envelope.title} (filled in so far, not sealed)"}
    try:
        stamped = sandbox.run(stamp_pdf, original, pages, marks, metadata=metadata)
    except sandbox.Busy as exc:
        raise EnvelopeError("The portal is busy with other documents; try again shortly.") from exc
    except (sandbox.Overrun, ValueError) as exc:
        raise EnvelopeError(f"The filled-in document could not be made: {exc}") from exc
    write_lock()
    audit.record(
        "envelope.filled_document_viewed",
        actor=by,
        subject=envelope,
        data={"values": len(marks)},
    )
    db.session.commit()
    return stamped
