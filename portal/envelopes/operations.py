"""Verbs of envelopes on the agent side: create and send, void, resend, correct an email, remind;
and the periodic work that follows a sending (reminders, expiry warnings, expiry).

The state machine lives here and in ``signing``: terminal envelopes never change, and a
link token (at least 128 bits, only its SHA-256 stored) dies whenever it is replaced. Sending
itself is in ``sending`` (its blocks in ``checks``), links in ``links``; their public names
are importable from here too, as callers always have.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from portal import audit, clock, jobs, mail
from portal.accounts.models import User
from portal.envelopes import checks
from portal.envelopes.checks import (
    AUTH_ALLOWED,
    MIN_ACCESS_CODE,
    EnvelopeError,
    RecipientInput,
    SendOptions,
)
from portal.envelopes.links import (
    TOKEN_BYTES,
    active_now,
    invite,
    issue_token,
    link_for,
    retire_token,
    token_digest,
)
from portal.envelopes.models import Envelope, EnvelopeStatus, Recipient
from portal.envelopes.sending import (
    StoredDocument,
    create_and_send,
    document_for,
    preview,
    send_new,
    store_document,
)
from portal.extensions import db

# "Remind now" waits this long after the recipient's last email (a link or a reminder).
REMIND_NOW_EVERY = timedelta(minutes=30)

__all__ = [
    "AUTH_ALLOWED",
    "MIN_ACCESS_CODE",
    "TOKEN_BYTES",
    "EnvelopeError",
    "RecipientInput",
    "SendOptions",
    "StoredDocument",
    "active_now",
    "create_and_send",
    "document_for",
    "invite",
    "issue_token",
    "link_for",
    "preview",
    "send_new",
    "store_document",
    "token_digest",
]


def lock(envelope_id: int) -> Envelope:
    """The envelope, read afresh under a row lock, for a change that first checks its state.

    (PostgreSQL; on SQLite a writing transaction holds the database's write lock already.)
    Whatever changes an envelope's state, or one of its recipients', locks the envelope first
    and its recipients after, always in that order: two such changes run one after the other
    and the second sees what the first did, and neither waits for a lock the other holds.
    """
    return db.session.execute(
        select(Envelope)
        .where(Envelope.id == envelope_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def lock_recipient(recipient_id: int) -> Recipient:
    """The recipient, read afresh under row locks on its envelope and then on it (``lock``'s
    order): an agent's change and the recipient's own action run one after the other."""
    envelope_id = select(Recipient.envelope_id).where(Recipient.id == recipient_id)
    lock(db.session.execute(envelope_id).scalar_one())
    return db.session.execute(
        select(Recipient)
        .where(Recipient.id == recipient_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def expire(envelope: Envelope) -> None:
    """Mark a sent envelope expired (in the caller's transaction); its links stop at once."""
    envelope.status = EnvelopeStatus.EXPIRED.value
    envelope.finished_at = clock.utcnow()
    audit.record("envelope.expired", actor="system", subject=envelope)


@jobs.periodic(every=300)
def expire_overdue() -> str:
    """Expire sent envelopes past their date, so their links stop and the console says so."""
    now = clock.utcnow()
    overdue = db.session.execute(  # (one being signed or voided right now waits for next time)
        select(Envelope)
        .where(Envelope.status == "sent", Envelope.expires_at <= now)
        .with_for_update(skip_locked=True)
    ).scalars()
    count = 0
    for envelope in overdue:
        expire(envelope)
        count += 1
    db.session.commit()
    return f"{count} envelopes expired"


def delivery(recipient: Recipient) -> mail.Message | None:
    """The latest email sent to the recipient about this envelope (to show bounces)."""
    return db.session.execute(
        select(mail.Message)
        .where(mail.Message.recipient_id == recipient.id, mail.Message.kind != "notice")
        .order_by(mail.Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()


EXPIRY_WARNING = timedelta(days=2)


@jobs.periodic(every=900)
def warn_before_expiry() -> str:
    """Two days before an envelope expires, tell whoever still has to act (once)."""
    now = clock.utcnow()
    soon = db.session.execute(
        select(Envelope)
        .where(
            Envelope.status == "sent",
            Envelope.expiry_warned_at.is_(None),
            Envelope.expires_at <= now + EXPIRY_WARNING,
            Envelope.expires_at > now,
        )
        .with_for_update(skip_locked=True)  # (one being changed right now: next time)
    ).scalars()
    warned = 0
    for envelope in soon:
        for recipient in active_now(envelope):
            if recipient.locked_at is None:
                invite(recipient, "system", reminder=True, expiring=True)
                warned += 1
        envelope.expiry_warned_at = now
    db.session.commit()
    return f"{warned} expiry warnings sent"


@jobs.periodic(every=900)
def send_reminders() -> str:
    """Remind whoever's turn it is, every N hours after the last email, at most M times."""
    now = clock.utcnow()
    sent = 0
    candidates = db.session.execute(select(Envelope).where(Envelope.status == "sent"))
    for envelope in candidates.scalars().all():
        if not _reminder_due(envelope, now):
            continue
        # Read again under the envelope's lock: a recipient finishing, or the agent voiding,
        # at this moment is seen here (no reminder) and waits for this envelope only.
        db.session.expire_all()
        envelope = lock(envelope.id)
        for recipient in _reminder_due(envelope, now) if envelope.status == "sent" else []:
            invite(recipient, "system", reminder=True)
            recipient.reminders_sent += 1
            recipient.last_reminded_at = now
            sent += 1
        db.session.commit()
    return f"{sent} reminders sent"


def _reminder_due(envelope: Envelope, now: datetime) -> list[Recipient]:
    """Whose turn it is and who is due a reminder (the template's every N hours, at most M)."""
    every = timedelta(hours=int(envelope.settings.get("reminder_every_hours") or 48))
    most = int(envelope.settings.get("reminder_max") or 0)
    due = []
    for recipient in active_now(envelope):
        last = recipient.last_reminded_at or recipient.sent_at
        if recipient.locked_at or last is None or recipient.reminders_sent >= most:
            continue
        if now - clock.as_utc(last) >= every:
            due.append(recipient)
    return due


def _live(envelope: Envelope) -> None:
    if envelope.terminal:
        raise EnvelopeError(f"This envelope is {envelope.status} and can no longer change.")


def void(envelope: Envelope, reason: str, by: User) -> None:
    """Cancel a sent envelope; every link dies at once and recipients see the reason."""
    envelope = lock(envelope.id)
    _live(envelope)
    if not reason.strip():
        raise EnvelopeError("Give the reason; recipients will see it.")
    envelope.status = EnvelopeStatus.VOIDED.value
    envelope.void_reason = reason.strip()[:500]
    envelope.finished_at = clock.utcnow()
    audit.record(
        "envelope.voided", actor=by, subject=envelope, data={"reason": envelope.void_reason}
    )
    db.session.commit()


def resend(recipient: Recipient, by: User) -> str:
    """Send the recipient a new link (the old one stops working); returns the new link."""
    recipient = lock_recipient(recipient.id)
    envelope = recipient.envelope
    _live(envelope)
    if recipient.finished:
        raise EnvelopeError(f"{recipient.name} has already finished.")
    if recipient not in active_now(envelope):
        raise EnvelopeError(f"It is not {recipient.name}'s turn yet.")
    link = invite(recipient, by)
    db.session.commit()
    return link


def correct_email(recipient: Recipient, email: str, by: User) -> str | None:
    """Fix a recipient's email; the old link dies and, if it is their turn, a new one is sent."""
    recipient = lock_recipient(recipient.id)
    envelope = recipient.envelope
    _live(envelope)
    if recipient.finished:
        raise EnvelopeError(f"{recipient.name} has already finished.")
    address = checks.email_address(email, "That email")
    old = recipient.email
    recipient.email = address
    retire_token(recipient, "reassigned")
    audit.record(
        "envelope.recipient_corrected",
        actor=by,
        subject=envelope,
        data={
            "recipient": recipient.id,
            "from": mail.mask_address(old),
            "to": mail.mask_address(address),
        },
    )
    link = invite(recipient, by) if recipient in active_now(envelope) else None
    db.session.commit()
    return link


def remind_now(recipient: Recipient, by: User) -> None:
    """Email the recipient a reminder now (with a fresh link: the old one stops working).

    Only for someone whose turn it is and who can still act (not finished, not locked), and
    at most once per ``REMIND_NOW_EVERY`` after their last email. Manual reminders move the
    next automatic one on, and do not count against the template's maximum.
    """
    recipient = lock_recipient(recipient.id)
    envelope = recipient.envelope
    _live(envelope)
    if recipient.kind == "cc":
        raise EnvelopeError(f"{recipient.name} gets the signed copy at the end; nothing to remind.")
    ensure_can_act(recipient)
    now = clock.utcnow()
    emailed = [clock.as_utc(t) for t in (recipient.sent_at, recipient.last_reminded_at) if t]
    if emailed and now - max(emailed) < REMIND_NOW_EVERY:
        wait = REMIND_NOW_EVERY - (now - max(emailed))
        minutes = max(1, int(wait.total_seconds() + 59) // 60)
        raise EnvelopeError(
            f"{recipient.name} was emailed less than {_minutes(REMIND_NOW_EVERY)} ago; "
            f"you can remind them again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
    invite(recipient, by, reminder=True)
    recipient.last_reminded_at = now
    db.session.commit()


def ensure_can_act(recipient: Recipient) -> None:
    """Refuse (``EnvelopeError``) unless it is the recipient's turn and they can still act:
    not finished, not locked (reminders, embedded signing links)."""
    if recipient.finished:
        raise EnvelopeError(f"{recipient.name} has already finished.")
    if recipient.locked_at is not None:
        raise EnvelopeError(
            f"{recipient.name} is locked after too many wrong codes; send a new link instead."
        )
    if recipient not in active_now(recipient.envelope):
        raise EnvelopeError(f"It is not {recipient.name}'s turn yet.")


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
