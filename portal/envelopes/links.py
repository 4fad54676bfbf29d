"""Signing links: random tokens of which only the SHA-256 is kept, and the emails that carry them.

A link dies whenever it is replaced (a new link, a reminder, a corrected email); the retired
token's hash is kept so its page can say why it no longer works.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import current_app

from portal import audit, clock, mail
from portal.accounts import contacts
from portal.accounts.models import User
from portal.envelopes.models import Envelope, Recipient, RecipientStatus, RetiredLink
from portal.extensions import db

TOKEN_BYTES = 24  # 192 bits


def token_digest(token: str) -> str:
    """How a link token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def link_for(token: str) -> str:
    """The signing link a recipient opens."""
    return f"{current_app.config['PUBLIC_BASE_URL']}/s/{token}"


def retire_token(recipient: Recipient, reason: str) -> None:
    if recipient.token_hash:
        db.session.add(
            RetiredLink(token_hash=recipient.token_hash, recipient_id=recipient.id, reason=reason)
        )
        recipient.token_hash = None


def issue_token(recipient: Recipient) -> str:
    retire_token(recipient, "replaced")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    recipient.token_hash = token_digest(token)
    return token


def active_now(envelope: Envelope) -> list[Recipient]:
    """Recipients whose turn it is (all signers and approvers when routing is parallel)."""
    acting = [r for r in envelope.recipients if r.kind != "cc" and not r.finished]
    if not acting:
        return []
    if envelope.routing == "parallel":
        return acting
    first = min(r.order for r in acting)
    return [r for r in acting if r.order == first]


def invite(
    recipient: Recipient, by: User | str, reminder: bool = False, expiring: bool = False
) -> str:
    """Give the recipient a fresh link and email it; returns the link (shown to the agent).

    A reminder is the same email with a reminder's words (and, like every email, a new link).
    """
    token = issue_token(recipient)
    envelope = recipient.envelope
    recipient.status = (
        RecipientStatus.SENT.value
        if recipient.status == RecipientStatus.WAITING.value
        else recipient.status
    )
    if not reminder:
        recipient.sent_at = clock.utcnow()
    link = link_for(token)
    subject, text, html = mail.render(
        "signing_request",
        recipient.locale,
        recipient_name=recipient.name,
        sender_name=contacts.shown_name(envelope.created_by),
        title=envelope.title,
        kind=recipient.kind,
        link=link,
        expires_at=envelope.expires_at,
        reminder=reminder,
        expiring=expiring,
        personal_message=str((envelope.settings or {}).get("message") or ""),
    )
    mail.queue(
        recipient.email,
        recipient.name,
        subject,
        text,
        html,
        kind="reminder" if reminder else "signing_request",
        locale=recipient.locale,
        envelope_id=envelope.id,
        recipient_id=recipient.id,
    )
    audit.record(
        "envelope.expiry_warning_sent"
        if expiring
        else "envelope.reminder_sent"
        if reminder
        else "envelope.link_sent",
        actor=by,
        subject=envelope,
        data={"recipient": recipient.id, "email": mail.mask_address(recipient.email)},
    )
    return link
