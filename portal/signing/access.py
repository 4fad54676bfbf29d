"""Who may open what: links, their replacements, turns, locks and the lazy expiry."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Protocol

from flask import current_app
from sqlalchemy import select

from portal import audit, clock, mail
from portal.accounts import contacts, credentials
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Recipient, RecipientStatus, RetiredLink
from portal.envelopes.operations import token_digest
from portal.extensions import db, write_lock

OTP_MINUTES = 10
MAX_AUTH_ATTEMPTS = 5


class SignerState(Protocol):
    """What the signer's steps read of a recipient (the row, or a page's read-only view)."""

    @property
    def status(self) -> str: ...

    @property
    def locked_at(self) -> datetime | None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def consent_version(self) -> str | None: ...

    @property
    def auth_method(self) -> str: ...

    @property
    def authenticated_at(self) -> datetime | None: ...


class EnvelopeState(Protocol):
    """What ``blocked_reason`` reads of an envelope (the row, or a page's read-only view)."""

    @property
    def id(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def expires_at(self) -> datetime | None: ...


def _overdue(envelope: EnvelopeState) -> bool:
    expires_at = envelope.expires_at
    return (
        envelope.status == "sent"
        and expires_at is not None
        and clock.as_utc(expires_at) <= clock.utcnow()
    )


def blocked_reason(recipient: Recipient) -> str | None:
    """Why this recipient cannot act now (a page explains each reason), or None."""
    return blocked_state(recipient, recipient.envelope)


def blocked_state(recipient: SignerState, envelope: EnvelopeState) -> str | None:
    """``blocked_reason`` from what the caller read of the recipient and of its envelope."""
    status = envelope.status
    if _overdue(envelope):
        status = expire(envelope)
    if status != "sent":
        return status  # voided | declined | completed | expired
    if recipient.finished:
        return "finished"
    if recipient.locked_at is not None:
        return "locked"
    if recipient.status == RecipientStatus.WAITING.value:
        return "not_your_turn"
    return None


def expire(envelope: EnvelopeState) -> str:
    """Expire an overdue envelope found while opening it (the sweeper does the same).

    Checked again under a lock first: another request may have expired it a moment ago.
    Returns the envelope's status after that.
    """
    envelope_id = envelope.id
    write_lock()
    envelope = envelopes.lock(envelope_id)
    if _overdue(envelope):
        envelopes.expire(envelope)
    status = envelope.status
    db.session.commit()
    return status


def _by_token(digest: str, lock: bool = False) -> Recipient | None:
    stmt = select(Recipient).where(Recipient.token_hash == digest)
    if lock:
        stmt = stmt.with_for_update()
    return db.session.execute(stmt).scalar_one_or_none()


def open_link(token: str) -> tuple[Recipient | None, str | None]:
    """The recipient of a live link, or (recipient or None, the reason it does nothing)."""
    digest = token_digest(token)
    recipient = _by_token(digest)
    if recipient is not None and recipient.viewed_at is None and not blocked_reason(recipient):
        # The first open is recorded once: read everything again under the write lock
        # (SQLite) or a row lock (PostgreSQL), since another tab may have been first.
        envelope_id = recipient.envelope_id
        write_lock()
        db.session.expire_all()
        envelopes.lock(envelope_id)  # the envelope first, as every writer does
        recipient = _by_token(digest, lock=True)
    if recipient is None:
        retired = db.session.get(RetiredLink, digest)
        return None, retired.reason if retired else "unknown"
    reason = blocked_reason(recipient)
    if reason:
        return recipient, reason
    if recipient.viewed_at is None:
        recipient.viewed_at = clock.utcnow()
        recipient.status = RecipientStatus.VIEWED.value
        audit.record("recipient.opened", actor=recipient, subject=recipient.envelope)
        db.session.commit()
    return recipient, None


def _otp_digest(recipient: Recipient, code: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"{recipient.id}:{code}".encode(), hashlib.sha256).hexdigest()


def send_code(recipient: Recipient) -> None:
    """Email a fresh 6-digit code, valid for 10 minutes and once."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    recipient.otp_hash = _otp_digest(recipient, code)
    recipient.otp_expires_at = clock.utcnow() + timedelta(minutes=OTP_MINUTES)
    subject, text, html = mail.render(
        "signing_code", recipient.locale, recipient_name=recipient.name, code=code,
        title=recipient.envelope.title, minutes=OTP_MINUTES,
    )  # fmt: skip
    mail.queue(
        recipient.email, recipient.name, subject, text, html, kind="otp",
        locale=recipient.locale, envelope_id=recipient.envelope_id, recipient_id=recipient.id,
    )  # fmt: skip
    audit.record(
        "recipient.code_sent",
        actor=recipient,
        subject=recipient.envelope,
        data={"email": mail.mask_address(recipient.email)},
    )
    db.session.commit()


def _code_matches(recipient: Recipient, code: str) -> str | None:
    """None when the code is right, else why not."""
    clean = "".join(code.split())
    if recipient.auth_method == "access_code":
        ok = credentials.check_password(recipient.access_code_hash, clean)
        return None if ok else "wrong_code"
    if recipient.otp_hash is None or recipient.otp_expires_at is None:
        return "no_code"
    if clock.as_utc(recipient.otp_expires_at) <= clock.utcnow():
        return "expired_code"
    if not hmac.compare_digest(recipient.otp_hash, _otp_digest(recipient, clean)):
        return "wrong_code"
    return None


def check_code(recipient: Recipient, code: str) -> str | None:
    """Verify an email code or access code; returns None or the reason it failed.

    Five wrong tries lock the recipient, and the agent who sent the envelope is told.
    """
    reason = _code_matches(recipient, code)
    if reason is None:
        recipient.authenticated_at = clock.utcnow()
        recipient.otp_hash = None  # single use
        audit.record(
            "recipient.authenticated",
            actor=recipient,
            subject=recipient.envelope,
            data={"method": recipient.auth_method},
        )
        db.session.commit()
        return None
    recipient.auth_attempts = (recipient.auth_attempts or 0) + 1
    audit.record(
        "recipient.authentication_failed",
        actor=recipient,
        subject=recipient.envelope,
        data={
            "method": recipient.auth_method,
            "reason": reason,
            "attempt": recipient.auth_attempts,
        },
    )
    if recipient.auth_attempts >= MAX_AUTH_ATTEMPTS:
        recipient.locked_at = clock.utcnow()
        audit.record("recipient.locked", actor="system", subject=recipient.envelope,
                     data={"recipient": recipient.id})  # fmt: skip
        tell_sender(recipient, "recipient_locked")
        reason = "locked"
    db.session.commit()
    return reason


def tell_sender(recipient: Recipient, template: str, **context: str) -> None:
    sender = contacts.notify(recipient.envelope.created_by)  # an API key's: its creator
    subject, text, html = mail.render(
        template, "en", sender_name=sender.name, recipient_name=recipient.name,
        title=recipient.envelope.title, public_id=recipient.envelope.public_id, **context,
    )  # fmt: skip
    mail.queue(sender.email, sender.name, subject, text, html, kind="notice",
               envelope_id=recipient.envelope_id, recipient_id=recipient.id)  # fmt: skip
