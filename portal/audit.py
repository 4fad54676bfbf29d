"""The append-only, hash-chained audit log.

Each event's ``hash`` is SHA-256 over the previous event's hash and a canonical JSON
encoding of the event itself, so editing, removing or reordering any event breaks every
hash after it. ``audit_head`` holds the last sequence number and hash; writers lock that
one row, which serialises them without forking the chain. Database triggers (see the
first migration) refuse UPDATE and DELETE on ``audit_event``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from flask import has_request_context, request
from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import Model, db

GENESIS = "0" * 64
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
}


def label(event: str) -> str:
    """A person-readable name for an event (the machine name when none is known)."""
    return LABELS.get(event, event)


class AuditEvent(Model):
    """One entry of the chain. Never updated, never deleted."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(80), index=True)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(255))
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

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
        lowered = key.lower()
        secret = lowered not in SECRET_EXEMPT and any(word in lowered for word in SECRET_KEYS)
        if secret and value not in (None, ""):
            out[key] = "***"
        elif isinstance(value, Mapping):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


def _iso(value: datetime) -> str:
    return clock.as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    seq: int,
    occurred_at: datetime,
    event: str,
    actor: tuple[str, str | None, str | None],
    subject: tuple[str | None, str | None],
    ip: str | None,
    user_agent: str | None,
    data: Mapping[str, Any] | None,
) -> bytes:
    """The exact bytes an event's hash covers (besides the previous hash)."""
    body = {
        "seq": seq,
        "at": _iso(occurred_at),
        "event": event,
        "actor": list(actor),
        "subject": list(subject),
        "ip": ip,
        "ua": user_agent,
        "data": data or {},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    """SHA-256 over the previous hash and the canonical body."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def _request_origin() -> tuple[str | None, str | None]:
    if not has_request_context():
        return (None, None)
    agent = request.headers.get("User-Agent")
    return (request.remote_addr, agent[:512] if agent else None)


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
    head = db.session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    req_ip, req_agent = _request_origin()
    actor_ref = _ref(actor)
    subject_type, subject_id, _label = _ref(subject) if subject is not None else (None, None, None)
    seq = head.seq + 1
    now = clock.utcnow()
    clean = mask(data or {})
    body = canonical(
        seq,
        now,
        event,
        actor_ref,
        (subject_type, subject_id),
        ip or req_ip,
        user_agent or req_agent,
        clean,
    )
    entry = AuditEvent(
        seq=seq,
        occurred_at=now,
        event=event,
        actor_type=actor_ref[0],
        actor_id=actor_ref[1],
        actor_label=actor_ref[2],
        subject_type=subject_type,
        subject_id=subject_id,
        ip=ip or req_ip,
        user_agent=user_agent or req_agent,
        data=clean,
        prev_hash=head.hash,
        hash=chain_hash(head.hash, body),
    )
    db.session.add(entry)
    head.seq = seq
    head.hash = entry.hash
    db.session.flush()
    return entry


@dataclass(frozen=True)
class Verification:
    """Outcome of checking the whole chain."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""


COLUMNS = (
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.event,
    AuditEvent.actor_type,
    AuditEvent.actor_id,
    AuditEvent.actor_label,
    AuditEvent.subject_type,
    AuditEvent.subject_id,
    AuditEvent.ip,
    AuditEvent.user_agent,
    AuditEvent.data,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


def _rows(batch: int) -> Iterator[tuple[Any, ...]]:
    """Stream the chain in order in keyset batches, holding one batch at a time."""
    last = 0
    while True:
        rows = db.session.execute(
            select(*COLUMNS).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def verify_rows(rows: Iterable[tuple[Any, ...]]) -> Verification:
    """Check sequence numbers, links and hashes of events given in sequence order."""
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    for seq, at, event, a_type, a_id, a_label, s_type, s_id, ip, agent, data, prev, digest in rows:
        if seq != expected_seq:
            return Verification(False, count, expected_seq, f"event {expected_seq} is missing")
        if prev != expected_prev:
            return Verification(False, count, seq, "does not link to the event before it")
        body = canonical(seq, at, event, (a_type, a_id, a_label), (s_type, s_id), ip, agent, data)
        if chain_hash(prev, body) != digest:
            return Verification(False, count, seq, "content does not match its hash")
        expected_prev = digest
        expected_seq += 1
        count += 1
    return Verification(True, count)


def verify(batch: int = 5000) -> Verification:
    """Check the whole chain and that the head points at its last event."""
    result = verify_rows(_rows(batch))
    if not result.ok:
        return result
    head = db.session.get(AuditHead, 1)
    if head is None:
        return Verification(False, result.count, 1, "the chain head is missing")
    if head.seq != result.count:
        return Verification(
            False, result.count, result.count + 1, f"event {result.count + 1} is missing"
        )
    if result.count and head.hash != _last_hash():
        return Verification(False, result.count, result.count, "the head does not match")
    return result


def _last_hash() -> str:
    return db.session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar_one()


def history(subject: Ref, limit: int = 50) -> list[AuditEvent]:
    """The latest events about one subject, newest first."""
    s_type, s_id, _ = _ref(subject)
    return list(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.subject_type == s_type, AuditEvent.subject_id == s_id)
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        ).scalars()
    )
