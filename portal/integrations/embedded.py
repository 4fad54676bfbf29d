"""Embedded signing links: a single-use link, valid for 5 minutes, for a chat or kiosk hand-off.

A CRM asks for one through the API and hands it to the customer in front of the agent (or in
the chat). Opening it starts the same signing session as the emailed link; it replaces
nothing (the emailed link keeps working) and proves nothing about who opens it: when the
recipient signs with a code (email code, access code), the code is asked for again in the new
session, even if they had given it before.

The link carries its recipient, its expiry and the recipient's live emailed link it was issued
beside (a fingerprint of that link's hash), signed with the app's secret; nothing is stored
when it is issued. Its first use is stored as a retired link (``RetiredLink``, the table that
explains dead links): the primary key on the link's SHA-256 makes a second use fail even when
two taps race. A link whose emailed link has since been replaced dies with it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import IntegrityError, NoResultFound

from portal import audit, clock
from portal.accounts.models import User
from portal.envelopes import operations as envelopes
from portal.envelopes.checks import EnvelopeError
from portal.envelopes.models import Recipient, RecipientStatus, RetiredLink
from portal.extensions import db, write_lock
from portal.signing import access

VALID_FOR = timedelta(minutes=5)
USED = "embedded_used"  # RetiredLink.reason of a used embedded link
_SALT = "portal.embedded-signing-link"

audit.add_labels(
    {
        "recipient.embedded_link_issued": "Embedded signing link issued",
        "recipient.embedded_link_opened": "Embedded signing link opened",
        "recipient.embedded_link_refused": "Embedded signing link refused",
    }
)


@dataclass(frozen=True)
class EmbeddedLink:
    """What the API answers: the link and when it stops working (UTC)."""

    url: str
    expires_at: datetime


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(str(current_app.config["SECRET_KEY"]), salt=_SALT)


def _bound(recipient: Recipient) -> str:
    """The fingerprint of the recipient's live emailed link (empty: none)."""
    return (recipient.token_hash or "")[:16]


def _refuse_unless_ready(recipient: Recipient) -> None:
    if recipient.envelope.terminal:
        raise EnvelopeError(
            f"This envelope is {recipient.envelope.status} and can no longer be signed."
        )
    if recipient.kind == "cc":
        raise EnvelopeError(
            f"{recipient.name} gets the signed copy at the end; there is nothing to sign."
        )
    envelopes.ensure_can_act(recipient)


def issue(recipient: Recipient, by: User) -> EmbeddedLink:
    """A fresh embedded link for a recipient whose turn it is (``EnvelopeError`` if none may
    be given: the envelope stopped, the recipient finished, locked, a cc, or not due yet)."""
    recipient = envelopes.lock_recipient(recipient.id)
    _refuse_unless_ready(recipient)
    expires_at = clock.utcnow().replace(microsecond=0) + VALID_FOR
    payload = [recipient.id, int(expires_at.timestamp()), secrets.token_urlsafe(12)]
    token = str(_serializer().dumps([*payload, _bound(recipient)]))
    audit.record(
        "recipient.embedded_link_issued",
        actor=by,
        subject=recipient.envelope,
        data={
            "recipient": recipient.id,
            "link_id": envelopes.token_digest(token)[:16],
            "expires_at": audit.iso_time(expires_at),
        },
    )
    db.session.commit()
    url = f"{current_app.config['PUBLIC_BASE_URL']}/s/embedded/{token}"
    return EmbeddedLink(url=url, expires_at=expires_at)


def _read(token: str) -> tuple[int, datetime, str] | None:
    """The recipient id, expiry and bound link of a genuine token, or None."""
    try:
        payload: Any = _serializer().loads(token)
    except BadSignature:
        return None
    if (
        not isinstance(payload, list)
        or len(payload) != 4
        or not all(isinstance(part, int) for part in payload[:2])
        or not isinstance(payload[3], str)
    ):
        return None
    recipient_id, expires, _nonce, bound = payload
    return recipient_id, datetime.fromtimestamp(expires, UTC), bound


def _refused(recipient: Recipient, digest: str, why: str) -> tuple[Recipient, str]:
    audit.record(
        "recipient.embedded_link_refused",
        actor=recipient,
        subject=recipient.envelope,
        data={"recipient": recipient.id, "link_id": digest[:16], "why": why},
    )
    db.session.commit()
    return recipient, "unknown"


def open_link(token: str) -> tuple[Recipient | None, str | None]:
    """Use an embedded link once: the recipient (whose browser session may now start), or
    (recipient or None, the reason the signing pages explain) when it does nothing.

    A used, expired or forged link is "unknown" (the page: this link does not work, ask for a
    new one); a link whose emailed link was replaced since is "replaced".
    """
    read = _read(token)
    if read is None:
        return None, "unknown"
    recipient_id, expires_at, bound = read
    digest = envelopes.token_digest(token)
    write_lock()
    try:
        recipient = envelopes.lock_recipient(recipient_id)
    except NoResultFound:  # (purged since)
        return None, "unknown"
    if db.session.get(RetiredLink, digest) is not None:
        return _refused(recipient, digest, "used")
    if expires_at <= clock.utcnow():
        return _refused(recipient, digest, "expired")
    reason = access.blocked_reason(recipient)
    if reason is None and _bound(recipient) != bound:
        reason = "replaced"
    if reason:
        return recipient, reason
    _start(recipient, digest)
    try:
        db.session.commit()
    except IntegrityError:  # another tap used it a moment ago
        db.session.rollback()
        return None, "unknown"
    return recipient, None


def _start(recipient: Recipient, digest: str) -> None:
    """Mark the link used and the recipient opened; a code is asked for again."""
    db.session.add(RetiredLink(token_hash=digest, recipient_id=recipient.id, reason=USED))
    again = recipient.auth_method != "link" and recipient.authenticated_at is not None
    if again:
        recipient.authenticated_at = None
    audit.record(
        "recipient.embedded_link_opened",
        actor=recipient,
        subject=recipient.envelope,
        data={
            "recipient": recipient.id,
            "link_id": digest[:16],
            "method": recipient.auth_method,
            "authentication_asked_again": again,
        },
    )
    if recipient.viewed_at is None:
        recipient.viewed_at = clock.utcnow()
        recipient.status = RecipientStatus.VIEWED.value
        audit.record("recipient.opened", actor=recipient, subject=recipient.envelope)
