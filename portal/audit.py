"""The append-only, hash-chained audit log.

Each event's ``hash`` is SHA-256 over the previous event's hash and a canonical JSON
encoding of the event itself, so editing, removing or reordering any event breaks every
hash after it. ``audit_head`` holds the last sequence number and hash; writers lock that
one row, which serialises them without forking the chain. Database triggers (see the
first migration) refuse UPDATE and DELETE on ``audit_event``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from flask import has_request_context, request
from sqlalchemy import BigInteger, Integer, String, Table, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock, inserts, text
from portal.extensions import Model, db

GENESIS = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_FIELDS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DATA = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
SECRET_KEYS = ("password", "secret", "token", "code", "otp")
SECRET_EXEMPT = ("reason_code", "status_code", "response_code")

# What compliance reads instead of the event's machine name.
LABELS = {
    "auth.login.failed": "Sign-in failed",
    "auth.login.password_ok": "Password accepted",
    "auth.login.succeeded": "Signed in",
    "auth.mfa.failed": "Code refused",
    "auth.mfa.enrolment_started": "Authenticator set-up started",
    "auth.mfa.enrolled": "Authenticator set up",
    "auth.account.locked": "Account locked",
    "auth.recovery_code.used": "Recovery code used",
    "auth.recovery_codes.regenerated": "New recovery codes made",
    "auth.reauth.failed": "Password re-entry failed",
    "auth.password.changed": "Password changed",
    "auth.logout": "Signed out",
    "auth.session.timed_out": "Session timed out",
    "user.created": "Account created",
    "user.deactivated": "Account deactivated",
    "user.reactivated": "Account reactivated",
    "user.unlocked": "Account unlocked",
    "user.role_changed": "Role changed",
    "user.team_changed": "Team changed",
    "user.mfa_reset": "Authenticator reset",
    "user.password_reset": "Password reset by admin",
    "user.sessions_ended": "Sessions ended by admin",
    "team.created": "Team created",
    "template.upload_refused": "Template upload refused",
    "template.images_retried": "Page images asked for again",
    "bulk.upload_refused": "Bulk send file refused",
    "bulk.created": "Bulk send file uploaded",
    "bulk.validated": "Bulk send rows checked",
    "bulk.rows_excluded": "Bulk send rows left out",
    "bulk.rows_included": "Bulk send rows taken back",
    "bulk.discarded": "Bulk send upload discarded",
    "bulk.started": "Bulk send started",
    "bulk.cancelled": "Bulk send cancelled",
    "bulk.finished": "Bulk send finished",
    "bulk.voided": "Bulk send envelopes voided",
    "bulk.report_downloaded": "Bulk send report downloaded",
    "envelope.created": "Envelope created",
    "envelope.sent": "Envelope sent",
    "envelope.link_sent": "Signing link sent",
    "envelope.reminder_sent": "Reminder sent",
    "envelope.expiry_warning_sent": "Expiry warning sent",
    "envelope.recipient_corrected": "Recipient email corrected",
    "envelope.voided": "Envelope voided",
    "envelope.expired": "Envelope expired",
    "envelope.completed": "Envelope completed",
    "envelope.sealed": "Document sealed",
    "envelope.seal_failed": "Sealing failed",
    "envelope.seal_retried": "Sealing retried",
    "envelope.document_downloaded": "Sealed document downloaded",
    "envelope.report_downloaded": "Audit report downloaded",
    "envelope.list_exported": "Envelope list exported (CSV)",
    "envelope.duplicate_confirmed": "Sent again after a repeat warning",
    "envelope.filled_document_viewed": "Filled-in document viewed",
    "recipient.opened": "Link opened",
    "recipient.consented": "Disclosure accepted",
    "recipient.code_sent": "Code sent",
    "recipient.authenticated": "Identity checked",
    "recipient.authentication_failed": "Wrong code entered",
    "recipient.document_viewed": "Document viewed",
    "recipient.document_downloaded": "Document as sent downloaded",
    "recipient.locked": "Locked after wrong codes",
    "recipient.field_completed": "Field completed",
    "recipient.attachment_refused": "Attachment refused",
    "recipient.signed": "Signed",
    "recipient.approved": "Approved",
    "recipient.declined": "Declined",
    "recipient.copy_downloaded": "Signed copy downloaded",
    "mail.sent": "Email delivered to the mail server",
    "mail.failed": "Email delivery failed",
    "mail.abandoned": "Email delivery given up",
    "mail.bounced": "Email bounced",
    "mail.delayed": "Email delayed",
    "security.rate_limited": "Too many attempts (rate limited)",
    "audit.personal_data_encrypted": "Personal data in the audit trail encrypted (migration)",
}


def add_labels(labels: Mapping[str, str]) -> None:
    """Name a package's events for people (each package registers its own when imported)."""
    LABELS.update(labels)


def label(event: str) -> str:
    """A person-readable name for an event (the machine name when none is known)."""
    return LABELS.get(event, event)


class AuditEvent(Model):
    """One entry of the chain. Never updated, never deleted."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # ISO 8601 UTC text ("2026-11-26T09:37:44.123456Z"): exactly the string the hash covers,
    # and it sorts like the time it names, so range queries work on it directly.
    occurred_at: Mapped[str] = mapped_column(String(27), index=True)
    event: Mapped[str] = mapped_column(String(80), index=True)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(255))
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # Canonical JSON text (sorted keys, no spaces), stored exactly as hashed.
    data_json: Mapped[str] = mapped_column("data", Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    @property
    def data(self) -> dict[str, Any]:
        value = json.loads(self.data_json or "{}")
        return value if isinstance(value, dict) else {}

    @property
    def occurred(self) -> datetime:
        return datetime.strptime(self.occurred_at, TIME_FORMAT).replace(tzinfo=UTC)

    __table_args__ = (
        db.Index("ix_audit_event_subject", "subject_type", "subject_id", "seq"),
        db.Index("ix_audit_event_actor", "actor_type", "actor_id", "seq"),
    )


class AuditHead(Model):
    """The single row that holds the chain's last sequence number and hash."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Auditable(Protocol):
    """Anything that can be an actor or a subject: ``(type, id, label)``."""

    @property
    def audit_ref(self) -> tuple[str, str, str]: ...


Ref = Auditable | tuple[str, str | None, str | None] | str | None


def _ref(value: Ref) -> tuple[str, str | None, str | None]:
    if value is None:
        return ("system", None, None)
    if isinstance(value, str):
        return (value, None, None)
    if isinstance(value, tuple):
        return value
    return value.audit_ref


def mask(data: Mapping[str, Any]) -> dict[str, Any]:
    """Replace values whose key names a secret (codes, tokens, passwords) with ``***``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if _secret(key) and value not in (None, ""):
            out[key] = "***"
        elif type(value) in _NOT_MAPPINGS:  # (the common case, without an ABC check)
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


_NOT_MAPPINGS = frozenset({str, int, float, bool, type(None), list, tuple})


@functools.lru_cache(maxsize=1024)
def _secret(key: str) -> bool:
    # Whether a data key names a secret (asked once per key name: a bulk send asks thousands)
    lowered = key.lower()
    return lowered not in SECRET_EXEMPT and any(word in lowered for word in SECRET_KEYS)


def iso_time(value: datetime) -> str:
    """The stored and hashed form of a moment: ISO 8601 in UTC with microseconds."""
    return clock.as_utc(value).strftime(TIME_FORMAT)


def encode_data(data: Mapping[str, Any]) -> str:
    """Canonical JSON of event data: sorted keys, no whitespace, Unicode kept."""
    return _DATA.encode(data)


def canonical(
    seq: int,
    occurred_at: str,
    event: str,
    actor_type: str,
    actor_id: str | None,
    actor_label: str | None,
    subject_type: str | None,
    subject_id: str | None,
    ip: str | None,
    user_agent: str | None,
    data_json: str,
) -> bytes:
    """The exact bytes an event's hash covers (besides the previous hash).

    A JSON array of the event's fields, a newline, then the stored data JSON. Every
    part is stored as text exactly as hashed, so verification never re-encodes.
    """
    head = _FIELDS.encode(
        [
            seq,
            occurred_at,
            event,
            actor_type,
            actor_id,
            actor_label,
            subject_type,
            subject_id,
            ip,
            user_agent,
        ]
    )
    return f"{head}\n{data_json}".encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    """SHA-256 over the previous hash and the canonical body."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def request_origin() -> tuple[str | None, str | None]:
    """The request's IP address and User-Agent as stored (None outside a request)."""
    if not has_request_context():
        return (None, None)
    # Headers are not checked like form fields (portal.web): drop what cannot be stored.
    agent = text.without_controls(request.headers.get("User-Agent", ""))[:512]
    ip = text.without_controls(request.remote_addr or "")[:64]
    return (ip or None, agent or None)


def _origin_of(actor: Ref) -> tuple[str | None, str | None]:
    """The request's IP address and User-Agent for an event by ``actor``; none for the portal
    itself: what it does on its own (completing an envelope, inviting the next signer) may
    happen during someone's request, but it is not that person's act or address."""
    if _ref(actor)[0] == "system":
        return (None, None)
    return request_origin()


def _fields(
    seq: int,
    occurred_at: str,
    event: str,
    actor: Ref,
    subject: Ref,
    data: Mapping[str, Any] | None,
    ip: str | None,
    user_agent: str | None,
    ring: keys.Ring,
    refs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The stored (and hashed) columns of one event, but its hashes: personal fields of an
    envelope's event sealed under its key (``portal.records.keys``); its ``audit_ref`` row
    goes into ``refs``."""
    actor_ref = _ref(actor)
    subject_type, subject_id, _label = _ref(subject) if subject is not None else (None, None, None)
    row = {
        "seq": seq,
        "occurred_at": occurred_at,
        "event": event,
        "actor_type": actor_ref[0],
        "actor_id": actor_ref[1],
        "actor_label": (actor_ref[2] or "")[:255] or None,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "ip": ip,
        "user_agent": user_agent,
    }
    stored = mask(data or {})
    envelope_id = keys.envelope_of(subject_type, subject_id)
    if envelope_id is not None:
        stored = ring.seal(envelope_id, row, stored)
    row["data_json"] = encode_data(stored)
    team = ring.team(subject, actor, envelope_id)
    refs.append({"seq": seq, "envelope_id": envelope_id, "team_id": team, "ip": ip})
    return row


# Told of the events each ``record`` / ``record_many`` call has just written, inside its
# transaction: the events (as ``Pending``) and their ``audit_ref`` rows (``envelope_id``,
# ``team_id``), in the same order. Feature packages subscribe at import (webhooks' outbox).
Subscriber = Callable[[Sequence["Pending"], Sequence[Mapping[str, Any]]], None]
_SUBSCRIBERS: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call ``subscriber`` with the events every later ``record`` / ``record_many`` writes."""
    if subscriber not in _SUBSCRIBERS:
        _SUBSCRIBERS.append(subscriber)


def lock_head() -> AuditHead:
    """Lock the chain's head row (every writer of the chain does, first)."""
    return _lock_head()


def _lock_head() -> AuditHead:
    return db.session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()


def record(
    event: str,
    *,
    actor: Ref = None,
    subject: Ref = None,
    data: Mapping[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent:
    """Append an event to the chain inside the caller's transaction."""
    head = _lock_head()
    req_ip, req_agent = _origin_of(actor)
    ring, refs = keys.Ring(), list[dict[str, Any]]()
    fields = _fields(
        head.seq + 1,
        iso_time(clock.utcnow()),
        event,
        actor,
        subject,
        data,
        ip or req_ip,
        user_agent or req_agent,
        ring,
        refs,
    )
    digest = chain_hash(head.hash, canonical(**fields))
    entry = AuditEvent(**fields, prev_hash=head.hash, hash=digest)
    db.session.add(entry)
    head.seq = entry.seq
    head.hash = digest
    db.session.flush()
    ring.flush(refs)
    for subscriber in _SUBSCRIBERS:
        subscriber([Pending(event, actor, subject, data)], refs)
    return entry


@dataclass(frozen=True)
class Pending:
    """One event for ``record_many``: what ``record`` takes, as a value."""

    event: str
    actor: Ref = None
    subject: Ref = None
    data: Mapping[str, Any] | None = None


def record_many(
    events: Iterable[Pending], *, created: Mapping[int, int | None] | None = None
) -> int:
    """Append many events to the chain inside the caller's transaction; returns how many.

    The same events, in the same order, as that many ``record`` calls (same canonical
    encoding, same chain, the request's IP and User-Agent), with one lock of the head and one
    multi-row INSERT: thousands of events (a bulk send's chunk) in a fraction of the time.
    ``created``: envelopes the caller has just inserted (id -> team), whose keys (none yet)
    and teams need no look-up.
    """
    head = _lock_head()
    ip, agent = request_origin()
    occurred_at = iso_time(clock.utcnow())
    seq, prev = head.seq, head.hash
    rows: list[dict[str, Any]] = []
    encode, sha256 = _FIELDS.encode, hashlib.sha256
    items = list(events)
    ring, refs = keys.Ring(), list[dict[str, Any]]()
    if created:
        ring.created(created)
    envelope_ids = {
        keys.envelope_of(*_ref(item.subject)[:2]) for item in items if item.subject is not None
    } - {None}
    ring.load(cast(set[int], envelope_ids))  # one read of the envelopes' keys and teams
    ring.load_teams(cast(set[int], envelope_ids))
    for item in items:
        seq += 1
        origin = (None, None) if _ref(item.actor)[0] == "system" else (ip, agent)
        row = _fields(
            seq, occurred_at, item.event, item.actor, item.subject, item.data, *origin, ring, refs
        )
        row["data"] = data = row.pop("data_json")  # the table's column name
        # ``chain_hash(prev, canonical(...))``, written out as ``_check`` does
        body = encode([row[name] for name in _COLUMN_NAMES[:10]])
        row["prev_hash"] = prev
        row["hash"] = prev = sha256(f"{prev}\n{body}\n{data}".encode()).hexdigest()
        rows.append(row)
    if rows:
        inserts.insert_rows(db.session, cast(Table, AuditEvent.__table__), rows)
        head.seq, head.hash = seq, prev
        db.session.flush()
        ring.flush(refs)
        for subscriber in _SUBSCRIBERS:
            subscriber(items, refs)
    return len(rows)


@dataclass(frozen=True)
class Verification:
    """Outcome of checking the whole chain."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""


_COLUMN_NAMES = (
    "seq", "occurred_at", "event", "actor_type", "actor_id", "actor_label", "subject_type",
    "subject_id", "ip", "user_agent", "data", "prev_hash", "hash",
)  # fmt: skip


def _rows(
    conn: Any, batch: int, after: int, progress: Callable[[int], None] | None
) -> Iterator[Sequence[Any]]:
    """Stream the events after sequence number ``after`` in order, in keyset batches of plain
    DB-API rows, each batch read in a transaction of its own (see ``verify``).

    The driver's own cursor is used because every column is stored as the text that was
    hashed: there is nothing to convert, and verification runs near hashing speed.
    """
    columns = ", ".join(_COLUMN_NAMES)
    cursor = conn.cursor()
    last = after
    try:
        while True:
            # ``last`` is an int read back from the table: safe to place in the statement.
            cursor.execute(
                f"SELECT {columns} FROM audit_event WHERE seq > {int(last)} "  # noqa: S608
                f"ORDER BY seq LIMIT {int(batch)}"
            )
            rows = cursor.fetchall()
            conn.rollback()  # the batch's read transaction ends here (see ``verify``)
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
            if progress is not None:
                progress(last)
    finally:
        cursor.close()


def _check(rows: Iterable[Sequence[Any]], count: int, prev: str) -> tuple[Verification, str]:
    """``verify_rows`` going on from the ``count``-th event, whose hash is ``prev``: the
    outcome and the hash of the last event checked.

    Equivalent to ``chain_hash(prev, canonical(...))`` per row, written out so that a
    million events verify at close to the speed of hashing their bytes.
    """
    encode = _FIELDS.encode
    sha256 = hashlib.sha256
    for row in rows:
        seq, linked, digest = row[0], row[11], row[12]
        if seq != count + 1:
            return Verification(False, count, count + 1, f"event {count + 1} is missing"), prev
        if linked != prev:
            return Verification(False, count, seq, "does not link to the event before it"), prev
        body = f"{linked}\n{encode(list(row[:10]))}\n{row[10]}"
        if sha256(body.encode()).hexdigest() != digest:
            return Verification(False, count, seq, "content does not match its hash"), prev
        prev = digest
        count += 1
    return Verification(True, count), prev


def verify_rows(rows: Iterable[Sequence[Any]]) -> Verification:
    """Check sequence numbers, links and hashes of stored rows given in sequence order."""
    return _check(rows, 0, GENESIS)[0]


def verify(batch: int = 5000, progress: Callable[[int], None] | None = None) -> Verification:
    """Check the whole chain as committed, and that the head points at its last event.

    It reads on a connection of its own, outside the caller's transaction, one short read
    transaction per batch: nothing stays open between batches, so however long the chain,
    writers never wait on the check (SQLite takes no lock for reading) and SQLite's WAL can be
    checkpointed meanwhile. Events appended while it runs are checked too: the head is read
    once the rows run out, and the events it counts beyond them are read before it is
    compared. ``progress`` is told how many events were checked after each batch.
    """
    count, last_hash, counted = 0, GENESIS, 0
    conn = db.engine.raw_connection()
    try:
        while True:
            result, last_hash = _check(_rows(conn, batch, count, progress), count, last_hash)
            if not result.ok:
                return result
            if result.count < counted:  # the head counts events that are not there
                return Verification(
                    False, result.count, result.count + 1, f"event {result.count + 1} is missing"
                )
            count = result.count
            head = _head(conn)
            if head is None:
                return Verification(False, count, 1, "the chain head is missing")
            head_seq, head_hash = head
            if head_seq < count:
                return Verification(False, count, head_seq + 1, "the chain goes on past its head")
            if head_seq == count:
                if count and head_hash != last_hash:
                    return Verification(False, count, count, "the head does not match")
                return result
            counted = head_seq  # appended since the rows ran out (or missing): read on
    finally:
        conn.close()


def _head(conn: Any) -> tuple[int, str] | None:
    """The chain head's sequence number and hash, read in a transaction of its own."""
    cursor = conn.cursor()
    try:
        cursor.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        row = cursor.fetchone()
    finally:
        cursor.close()
        conn.rollback()
    return None if row is None else (int(row[0]), str(row[1]))


@dataclass(frozen=True)
class Revealed:
    """An event as people read it: its personal fields (IP, browser, a customer's name or email
    as actor, personal data values) in plain text, or ``erased`` once its key is destroyed
    (then ``ip``, ``user_agent`` and a recipient actor's label read ``"erased"`` and ``data``
    holds the values kept in clear)."""

    event: AuditEvent
    ip: str | None
    user_agent: str | None
    actor_label: str | None
    data: dict[str, Any]
    erased: bool = False

    # The event's own columns, for readers that go through ``reveal``.
    @property
    def name(self) -> str:
        return self.event.event

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def occurred(self) -> datetime:
        return self.event.occurred

    @property
    def actor_type(self) -> str:
        return self.event.actor_type

    @property
    def actor_id(self) -> str | None:
        return self.event.actor_id

    @property
    def subject_type(self) -> str | None:
        return self.event.subject_type

    @property
    def subject_id(self) -> str | None:
        return self.event.subject_id


def reveal(events: Iterable[AuditEvent]) -> list[Revealed]:
    """The events with their personal fields readable (every reader of events goes through
    this: the chain stores customers' personal fields encrypted, see ``portal.records.keys``).

    Each envelope's key is read and unwrapped once for all its events.
    """
    events = list(events)
    parts = [e.data for e in events]
    sealed = {keys.token_envelope(d.get(keys.PERSONAL)) for d in parts} - {None}
    ring = keys.Ring() if sealed else None
    if ring is not None:
        ring.load(cast(set[int], sealed))
    out = []
    for event, data in zip(events, parts, strict=True):
        token = data.pop(keys.PERSONAL, None)
        if token is None:
            out.append(Revealed(event, event.ip, event.user_agent, event.actor_label, data))
            continue
        envelope_id = keys.token_envelope(token)
        key = None if ring is None or envelope_id is None else ring.cache.get(envelope_id)
        if key is None:
            recipient = event.actor_type == "recipient"
            label = keys.ERASED if recipient else event.actor_label
            out.append(Revealed(event, keys.ERASED, keys.ERASED, label, data, erased=True))
            continue
        personal = keys.open_sealed(key, event.seq, str(token))
        data.update(personal.get("data") or {})
        out.append(
            Revealed(
                event,
                personal.get("ip", event.ip),
                personal.get("user_agent", event.user_agent),
                personal.get("actor_label", event.actor_label),
                data,
            )
        )
    return out


# What a stored event's data holds when part of it is sealed under its envelope's key.
SEALED_MARK = '"personal":'
_DECODE = json.JSONDecoder().decode
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def reveal_rows(
    rows: Sequence[Sequence[Any]], opener: keys.Opener, conn: Any
) -> list[tuple[str | None, str | None, str | None, str] | None]:
    """``reveal`` for exports, on stored columns read as tuples ``(seq, actor_type,
    actor_label, ip, user_agent, data_json)``: for each row, None when its data has nothing
    sealed (``reveal`` gives its stored columns: write them as they are), else ``(actor_label,
    ip, user_agent, data as canonical JSON)`` as ``reveal`` gives them. The envelopes' keys
    are read once for all the rows through ``opener`` on ``conn`` (the caller's
    transaction); no object is built per event."""
    out: list[tuple[str | None, str | None, str | None, str] | None] = [None] * len(rows)
    parsed: list[tuple[int, dict[str, Any], Any, int | None]] = []
    for i, (_seq, _type, _label, _ip, _agent, data_json) in enumerate(rows):
        if SEALED_MARK not in data_json:
            continue
        data = _DECODE(data_json)
        if not isinstance(data, dict):
            data = {}
        token = data.pop(keys.PERSONAL, None)
        parsed.append((i, data, token, keys.token_envelope(token)))
    wanted = {envelope_id for _, _, _, envelope_id in parsed if envelope_id is not None}
    ciphers = opener.ciphers(conn, wanted) if wanted else {}
    encode = _ENCODE  # (``encode_data``, without a call per event)
    for i, data, token, envelope_id in parsed:
        seq, actor_type, label, ip, agent, _ = rows[i]
        if token is None:
            out[i] = (label, ip, agent, encode(data))
            continue
        cipher = None if envelope_id is None else ciphers.get(envelope_id)
        if cipher is None:
            shown = keys.ERASED if actor_type == "recipient" else label
            out[i] = (shown, keys.ERASED, keys.ERASED, encode(data))
            continue
        personal = keys.open_with(cipher, seq, str(token))
        data.update(personal.get("data") or {})
        out[i] = (
            personal.get("actor_label", label),
            personal.get("ip", ip),
            personal.get("user_agent", agent),
            encode(data),
        )
    return out


def history(subject: Ref, limit: int = 50) -> list[Revealed]:
    """The latest events about one subject, newest first (revealed)."""
    s_type, s_id, _ = _ref(subject)
    return reveal(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.subject_type == s_type, AuditEvent.subject_id == s_id)
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        ).scalars()
    )


# The chain's key ring sits above the chain (it knows the envelope's table); imported last so
# that its models are registered with the chain's and its import of this module finds it whole.
from portal.records import keys  # noqa: E402
