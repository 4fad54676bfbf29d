"""Webhook endpoints, their secrets, and the outbox of messages written with each change.

Events come from the audit chain: every change records its audit events in the transaction
that makes it, and ``audit.subscribe(_outbox)`` hands them here as they are written. Events
that a webhook type names become one ``WebhookMessage`` per enabled endpoint of the event's
team that wants that type, in the same transaction (a rolled-back change sends nothing; a
committed one is never lost, Redis or not), and a delivery is asked for after the commit
(``portal.integrations.delivery``). A team without endpoints costs one indexed query per
``record`` call that wrote a webhook-worthy event, nothing for the others.

Payloads carry ids, statuses, the template and the ticket reference, times; never document
bytes, codes, tokens, names, emails, phones or IP addresses.

Secrets are ``whsec_`` + base64 of 32 random bytes, kept encrypted under DATA_KEY
(``storage.wrap``). Rotation keeps the previous secret valid (and signing) for 24 hours.
"""

from __future__ import annotations

import base64
import enum
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    Text,
    delete,
    select,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from portal import audit, clock, inserts, jobs, storage
from portal.accounts.models import Team, User
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import Model, db
from portal.integrations import schemas, ssrf

ALL = "*"
ROTATION_GRACE = timedelta(hours=24)
SECRET_BYTES = 32
MAX_DESCRIPTION = 200
REPLAY_LIMIT = 1000

# Webhook types, for people (the admin's choice of events).
TYPES = {
    "envelope.created": "Envelope created",
    "envelope.sent": "Envelope sent",
    "envelope.viewed": "Envelope first viewed",
    "envelope.completed": "Envelope completed",
    "envelope.sealed": "Document sealed",
    "envelope.seal_failed": "Sealing failed",
    "envelope.declined": "Envelope declined",
    "envelope.voided": "Envelope voided",
    "envelope.expired": "Envelope expired",
    "recipient.viewed": "Recipient opened the link",
    "recipient.authenticated": "Recipient's identity checked",
    "recipient.signed": "Recipient signed",
    "recipient.approved": "Recipient approved",
    "recipient.declined": "Recipient declined",
    "recipient.bounced": "Recipient's email bounced",
    "recipient.locked": "Recipient locked after wrong codes",
    "bulk.finished": "Bulk send finished",
}
TEST_TYPE = "webhook.test"

# Audit event -> the webhook types it gives (some only when the envelope is then in a state).
FROM_AUDIT: dict[str, tuple[str, ...]] = {
    "envelope.created": ("envelope.created",),
    "envelope.sent": ("envelope.sent",),
    "envelope.completed": ("envelope.completed",),
    "envelope.sealed": ("envelope.sealed",),
    "envelope.seal_failed": ("envelope.seal_failed",),
    "envelope.voided": ("envelope.voided",),
    "envelope.expired": ("envelope.expired",),
    "recipient.opened": ("recipient.viewed", "envelope.viewed"),
    "recipient.authenticated": ("recipient.authenticated",),
    "recipient.signed": ("recipient.signed",),
    "recipient.approved": ("recipient.approved",),
    "recipient.declined": ("recipient.declined", "envelope.declined"),
    "recipient.locked": ("recipient.locked",),
    "mail.bounced": ("recipient.bounced",),
    "bulk.finished": ("bulk.finished",),
}

audit.add_labels(
    {
        "webhook.endpoint_created": "Webhook endpoint added",
        "webhook.endpoint_changed": "Webhook endpoint changed",
        "webhook.endpoint_deleted": "Webhook endpoint deleted",
        "webhook.endpoint_disabled": "Webhook endpoint disabled after failing deliveries",
        "webhook.secret_rotated": "Webhook secret rotated",
        "webhook.secret_revealed": "Webhook secret shown",
        "webhook.test_sent": "Webhook test event sent",
        "webhook.redelivered": "Webhook message sent again",
        "webhook.replayed": "Webhook messages replayed",
    }
)


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(Model):
    """A team's receiver of webhooks: URL, the types it wants, its secret(s)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret_nonce: Mapped[bytes] = mapped_column(LargeBinary(storage.NONCE_BYTES))
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    previous_nonce: Mapped[bytes | None] = mapped_column(LargeBinary(storage.NONCE_BYTES))
    previous_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("webhook_endpoint", str(self.id), self.url[:255])

    def wants(self, webhook_type: str) -> bool:
        types = self.event_types or []
        return ALL in types or webhook_type in types


class WebhookMessage(Model):
    """One event for one endpoint (the outbox row): the body exactly as signed and sent."""

    __tablename__ = "webhook_message"
    __table_args__ = (
        Index("ix_webhook_message_due", "status", "next_attempt_at"),
        # An endpoint's log, newest first, and a replay, oldest first: read in index order,
        # never by sorting all of a busy endpoint's messages.
        Index("ix_webhook_message_endpoint_order", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id header
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id"))
    envelope_id: Mapped[int | None] = mapped_column(Integer, index=True)  # for purges
    type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # in this round of retries
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(300))


class WebhookAttempt(Model):
    """One try of one message: what the receiver answered (bounded, see ``delivery``)."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_message.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered | failed | timeout | refused
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(300))
    response: Mapped[str | None] = mapped_column(Text)  # its first 1 KB


class EndpointError(ValueError):
    """What an admin asked for cannot be saved; the message says why."""


# ---------------------------------------------------------------- secrets


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes)."""
    return "whsec_" + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def _aad(endpoint: WebhookEndpoint) -> str:
    return f"webhook-secret:{endpoint.id}"


def _store_secret(endpoint: WebhookEndpoint, secret: str) -> None:
    endpoint.secret_nonce, endpoint.secret_wrapped = storage.wrap(
        storage.current_key(), _aad(endpoint), secret.encode("ascii")
    )


def secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's current secret in clear (for signing; shown to admins via ``reveal``)."""
    raw = storage.unwrap(
        storage.current_key(), _aad(endpoint), endpoint.secret_nonce, endpoint.secret_wrapped
    )
    return raw.decode("ascii")


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during
    the 24 hours after a rotation."""
    found = [secret(endpoint)]
    if (
        endpoint.previous_wrapped is not None
        and endpoint.previous_nonce is not None
        and endpoint.previous_until is not None
        and clock.as_utc(endpoint.previous_until) > now
    ):
        raw = storage.unwrap(
            storage.current_key(),
            _aad(endpoint),
            endpoint.previous_nonce,
            endpoint.previous_wrapped,
        )
        found.append(raw.decode("ascii"))
    return found


def rewrap_secrets(old_key: bytes) -> int:
    """Re-wrap the endpoints' secrets sealed under ``old_key`` with the current DATA_KEY
    (``flask portal rotate-data-key``); returns how many. Commits."""
    current, count = storage.current_key(), 0
    for endpoint in db.session.execute(select(WebhookEndpoint)).scalars():
        for nonce_name, wrapped_name in _SLOTS:
            nonce, wrapped = getattr(endpoint, nonce_name), getattr(endpoint, wrapped_name)
            if nonce is None or wrapped is None:
                continue
            try:
                storage.unwrap(current, _aad(endpoint), nonce, wrapped)
                continue  # already under the current key
            except storage.BlobError:
                raw = storage.unwrap(old_key, _aad(endpoint), nonce, wrapped)
            fresh = storage.wrap(current, _aad(endpoint), raw)
            setattr(endpoint, nonce_name, fresh[0])
            setattr(endpoint, wrapped_name, fresh[1])
            count += 1
    db.session.commit()
    return count


_SLOTS = (("secret_nonce", "secret_wrapped"), ("previous_nonce", "previous_wrapped"))


# ---------------------------------------------------------------- endpoints (admin verbs)


def _clean(url: str, description: str, types: Iterable[str]) -> tuple[str, str, list[str]]:
    url = url.strip()
    if not url:
        raise EndpointError("Enter the URL that receives the webhooks.")
    try:
        ssrf.check(url)
    except ssrf.Refused as exc:
        raise EndpointError(str(exc)) from exc
    chosen = sorted({t for t in types if t in TYPES or t == ALL})
    if not chosen:
        raise EndpointError("Choose at least one event (or all events).")
    if ALL in chosen:
        chosen = [ALL]
    return url, " ".join(description.split())[:MAX_DESCRIPTION], chosen


def team_endpoints(team_id: int | None = None) -> list[WebhookEndpoint]:
    """Endpoints (of one team, or all), by team and id."""
    stmt = select(WebhookEndpoint).order_by(WebhookEndpoint.team_id, WebhookEndpoint.id)
    if team_id is not None:
        stmt = stmt.where(WebhookEndpoint.team_id == team_id)
    return list(db.session.execute(stmt).scalars())


def create_endpoint(
    team: Team, url: str, description: str, types: Iterable[str], *, by: User
) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint (checked as ``ssrf.check`` does); returns it and its new secret."""
    url, description, chosen = _clean(url, description, types)
    endpoint = WebhookEndpoint(
        team_id=team.id,
        url=url,
        description=description,
        event_types=chosen,
        enabled=True,
        created_at=clock.utcnow(),
        secret_nonce=b"",
        secret_wrapped=b"",
    )
    db.session.add(endpoint)
    db.session.flush()
    fresh = new_secret()
    _store_secret(endpoint, fresh)
    audit.record(
        "webhook.endpoint_created",
        actor=by,
        subject=endpoint,
        data={"url": url, "events": chosen, "team": team.id},
    )
    return endpoint, fresh


def change_endpoint(
    endpoint: WebhookEndpoint,
    url: str,
    description: str,
    types: Iterable[str],
    enabled: bool,
    *,
    by: User,
) -> None:
    """Change an endpoint's URL, description, types or enabled flag."""
    url, description, chosen = _clean(url, description, types)
    changed = {
        name: value
        for name, value in (
            ("url", url),
            ("description", description),
            ("events", chosen),
            ("enabled", enabled),
        )
        if value != getattr(endpoint, "event_types" if name == "events" else name)
    }
    if not changed:
        return
    endpoint.url, endpoint.description, endpoint.event_types = url, description, chosen
    again = enabled and not endpoint.enabled
    if again:
        endpoint.disabled_reason = None
        endpoint.failing_since = None
    endpoint.enabled = enabled
    audit.record("webhook.endpoint_changed", actor=by, subject=endpoint, data=changed)
    if again:
        _nudge(endpoint.id)  # what waited meanwhile goes out now


def delete_endpoint(endpoint: WebhookEndpoint, *, by: User) -> None:
    """Delete an endpoint with its messages and their attempts."""
    audit.record("webhook.endpoint_deleted", actor=by, subject=endpoint, data={"url": endpoint.url})
    messages = select(WebhookMessage.id).where(WebhookMessage.endpoint_id == endpoint.id)
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
    db.session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id))
    db.session.delete(endpoint)


def reveal_secret(endpoint: WebhookEndpoint, *, by: User) -> str:
    """The current secret, shown to an admin (audited)."""
    audit.record("webhook.secret_revealed", actor=by, subject=endpoint)
    return secret(endpoint)


def rotate_secret(endpoint: WebhookEndpoint, *, by: User) -> str:
    """A new secret; the old one stays valid (deliveries carry both signatures) for 24 hours."""
    endpoint.previous_nonce, endpoint.previous_wrapped = (
        endpoint.secret_nonce,
        endpoint.secret_wrapped,
    )
    endpoint.previous_until = clock.utcnow() + ROTATION_GRACE
    fresh = new_secret()
    _store_secret(endpoint, fresh)
    audit.record(
        "webhook.secret_rotated",
        actor=by,
        subject=endpoint,
        data={"expires_at": audit.iso_time(endpoint.previous_until)},
    )
    return fresh


def send_test(endpoint: WebhookEndpoint, *, by: User) -> WebhookMessage:
    """Queue a ``webhook.test`` message to this endpoint (whatever types it wants)."""
    now = clock.utcnow()
    message = WebhookMessage(**_row(endpoint.id, None, TEST_TYPE, now, {"endpoint": endpoint.id}))
    db.session.add(message)
    db.session.flush()
    audit.record("webhook.test_sent", actor=by, subject=endpoint, data={"message": message.id})
    _nudge(endpoint.id)
    return message


def redeliver(message: WebhookMessage, *, by: User) -> None:
    """Send a message again now (a new round of retries), whatever its status."""
    _requeue(message)
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id)
    audit.record("webhook.redelivered", actor=by, subject=endpoint, data={"message": message.id})
    _nudge(message.endpoint_id)


def replay_since(endpoint: WebhookEndpoint, since: datetime, *, by: User) -> int:
    """Send again the endpoint's messages created since ``since`` (at most ``REPLAY_LIMIT``,
    the oldest first); returns how many."""
    messages = list(
        db.session.execute(
            select(WebhookMessage)
            .where(WebhookMessage.endpoint_id == endpoint.id, WebhookMessage.created_at >= since)
            .order_by(WebhookMessage.id)
            .limit(REPLAY_LIMIT)
        ).scalars()
    )
    for message in messages:
        _requeue(message)
    audit.record(
        "webhook.replayed",
        actor=by,
        subject=endpoint,
        data={"since": audit.iso_time(since), "count": len(messages)},
    )
    if messages:
        _nudge(endpoint.id)
    return len(messages)


def _requeue(message: WebhookMessage) -> None:
    message.status = MessageStatus.PENDING.value
    message.attempts = 0
    message.next_attempt_at = clock.utcnow()
    message.last_error = None


def log_query(endpoint_id: int, limit: int = 50) -> Select[WebhookMessage]:
    """An endpoint's latest messages, newest first (``ix_webhook_message_endpoint_order``)."""
    return (
        select(WebhookMessage)
        .where(WebhookMessage.endpoint_id == endpoint_id)
        .order_by(WebhookMessage.id.desc())
        .limit(limit)
    )


def messages_of(endpoint: WebhookEndpoint, limit: int = 50) -> list[WebhookMessage]:
    """The endpoint's latest messages, newest first."""
    return list(db.session.execute(log_query(endpoint.id, limit)).scalars())


def attempts_of(message: WebhookMessage) -> list[WebhookAttempt]:
    """A message's attempts, newest first (bounded by ``delivery.KEEP_ATTEMPTS``)."""
    return list(
        db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id == message.id)
            .order_by(WebhookAttempt.id.desc())
        ).scalars()
    )


def forget_envelope(envelope_id: int) -> None:
    """Delete an envelope's messages and their attempts (a purge)."""
    messages = select(WebhookMessage.id).where(WebhookMessage.envelope_id == envelope_id)
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
    db.session.execute(delete(WebhookMessage).where(WebhookMessage.envelope_id == envelope_id))


# ---------------------------------------------------------------- the outbox


_iso = schemas.utc_text  # as the API writes times


_BODY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _row(
    endpoint_id: int, envelope_id: int | None, webhook_type: str, now: datetime, data: Any
) -> dict[str, Any]:
    body = _BODY.encode({"type": webhook_type, "timestamp": _iso(now), "data": data})
    return {
        "public_id": f"msg_{uuid.uuid4().hex}",
        "endpoint_id": endpoint_id,
        "envelope_id": envelope_id,
        "type": webhook_type,
        "body": body,
        "created_at": now,
        "status": MessageStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
    }


def envelope_data(envelope: Envelope) -> dict[str, Any]:
    """What a payload says of an envelope: ids, statuses, template, ticket, times."""
    return {
        "id": envelope.public_id,
        "status": envelope.status,
        "seal_status": envelope.seal_status,
        "template": envelope.title,
        "template_version": envelope.template_version_id,
        "ticket_id": envelope.ticket_id,
        "ticket_url": envelope.ticket_url,
        "created_at": _iso(envelope.created_at),
        "sent_at": _iso(envelope.sent_at),
        "expires_at": _iso(envelope.expires_at),
        "finished_at": _iso(envelope.finished_at),
        "sealed_at": _iso(envelope.sealed_at),
        "sealed_sha256": envelope.sealed_sha256,
    }


def recipient_data(recipient: Recipient) -> dict[str, Any]:
    """What a payload says of a recipient: no name, email or phone."""
    return {
        "id": recipient.id,
        "role": recipient.role,
        "kind": recipient.kind,
        "status": recipient.status,
        "order": recipient.order,
    }


def _recipient_of(item: audit.Pending) -> Recipient | None:
    actor = item.actor
    if isinstance(actor, Recipient):
        return actor
    data = item.data or {}
    found = data.get("recipient_id", data.get("recipient"))
    if isinstance(actor, tuple) and actor and actor[0] == "recipient" and actor[1]:
        found = actor[1]
    if isinstance(found, int) or (isinstance(found, str) and found.isdigit()):
        return db.session.get(Recipient, int(found))
    return None


def _types_of(item: audit.Pending, envelope: Envelope | None) -> list[str]:
    types = list(FROM_AUDIT[item.event])
    if item.event == "recipient.declined" and (envelope is None or envelope.status != "declined"):
        types.remove("envelope.declined")
    if item.event == "recipient.opened":
        first = envelope is not None and (
            sum(1 for r in envelope.recipients if r.viewed_at is not None) <= 1
        )
        if not first:
            types.remove("envelope.viewed")
    return types


def _payload(item: audit.Pending, webhook_type: str, envelope: Envelope | None) -> dict[str, Any]:
    if webhook_type == "bulk.finished":
        subject = item.subject
        counts = dict(item.data or {})
        return {"bulk": {"id": getattr(subject, "public_id", None), **counts}}
    data: dict[str, Any] = {}
    if envelope is not None:
        data["envelope"] = envelope_data(envelope)
    if webhook_type.startswith("recipient."):
        recipient = _recipient_of(item)
        if recipient is not None:
            data["recipient"] = recipient_data(recipient)
    return data


def _outbox(items: Sequence[audit.Pending], refs: Sequence[Mapping[str, Any]]) -> None:
    """The audit subscriber: messages for the events just recorded (see the module's note)."""
    wanted = [i for i, item in enumerate(items) if item.event in FROM_AUDIT]
    if not wanted:
        return
    teams = {refs[i]["team_id"] for i in wanted} - {None}
    if not teams:
        return
    endpoints = list(
        db.session.execute(
            select(WebhookEndpoint).where(
                WebhookEndpoint.enabled.is_(True), WebhookEndpoint.team_id.in_(teams)
            )
        ).scalars()
    )
    if not endpoints:
        return
    by_team: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in endpoints:
        by_team.setdefault(endpoint.team_id, []).append(endpoint)
    now = clock.utcnow()
    envelopes = _envelopes(
        {refs[i]["envelope_id"] for i in wanted if refs[i]["team_id"] in by_team}
    )
    rows: list[dict[str, Any]] = []
    for i in wanted:
        item, ref = items[i], refs[i]
        receivers = by_team.get(ref["team_id"], [])
        if not receivers:
            continue
        envelope_id = ref["envelope_id"]
        envelope = envelopes.get(envelope_id) if envelope_id is not None else None
        for webhook_type in _types_of(item, envelope):
            takers = [e for e in receivers if e.wants(webhook_type)]
            if not takers:
                continue
            data = _payload(item, webhook_type, envelope)
            rows.extend(_row(e.id, envelope_id, webhook_type, now, data) for e in takers)
    if rows:
        inserts.insert_rows(db.session, cast(Table, WebhookMessage.__table__), rows)
        for endpoint_id in {row["endpoint_id"] for row in rows}:
            _nudge(endpoint_id)


def _envelopes(ids: set[int | None]) -> dict[int, Envelope]:
    """The envelopes of these ids (those the session holds already, the others in one query
    per 500: a bulk send's chunk records thousands of events)."""
    found: dict[int, Envelope] = {}
    wanted = sorted(i for i in ids if i is not None)
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        found.update(
            (e.id, e)
            for e in db.session.execute(select(Envelope).where(Envelope.id.in_(part))).scalars()
        )
    return found


_NUDGED = "portal.webhooks_nudged"


def _nudge(endpoint_id: int) -> None:
    """Ask (once per transaction and endpoint) for the endpoint's due messages to be sent."""
    from portal.integrations import delivery  # (delivery imports this module)

    asked = db.session.info.setdefault(_NUDGED, set())
    if endpoint_id not in asked:
        asked.add(endpoint_id)
        jobs.enqueue(delivery.deliver_endpoint, endpoint_id)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_nudges(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_NUDGED, None)


audit.subscribe(_outbox)
