"""No duplicate sends from the console.

Every send form carries a random key made when it was shown (``new_key``). The envelope it
creates is stored with that key (unique), in the same transaction, so a double submit, a
reload or a retried request finds the envelope the first one made and lands on the same
result instead of sending again. Two submits at the same moment queue on the key's unique
index: the second waits for the first and then finds its envelope.

Separately, ``earlier_sends`` finds what looks like the same sending done already (the same
template to the same email for the same ticket within ``DUPLICATE_WINDOW``): the form warns,
links to it, and sends only when the agent confirms (``envelope.duplicate_confirmed``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, Integer, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from portal import audit, clock
from portal.accounts.access import team_scope
from portal.accounts.models import User
from portal.envelopes import handover
from portal.envelopes.checks import EnvelopeError, RecipientInput, SendOptions
from portal.envelopes.models import Envelope, Recipient
from portal.envelopes.sending import send_new
from portal.extensions import Model, db
from portal.library.models import TemplateVersion

DUPLICATE_WINDOW = timedelta(hours=24)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_SHOWN = 5


class SendKey(Model):
    """The key of one rendered send form and the envelope it created."""

    __tablename__ = "send_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # SHA-256 of what the form sent (access codes aside): the same key with other details
    # is a form used again after editing, not a repeat of the same request.
    fingerprint: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    envelope_id: Mapped[int | None] = mapped_column(ForeignKey("envelope.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)


class FormExpired(EnvelopeError):
    """The form has no valid key (an old page, a hand-made request): show it afresh."""


class FormReused(FormExpired):
    """The form's key already sent an envelope, and the details differ now (a page kept open
    or gone back to and edited): nothing was sent; a fresh form sends them."""

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(
            f"This form already sent {envelope.title}. The details have changed since, so "
            "nothing was sent: check them and press Send to send them as a new envelope."
        )
        self.public_id = envelope.public_id


@dataclass(frozen=True)
class EarlierSend:
    """An envelope that looks like the one about to be sent (for the warning)."""

    public_id: str
    title: str
    sent_at: datetime | None
    status: str
    sender: str
    emails: tuple[str, ...]


class DuplicateWarning(EnvelopeError):
    """The same sending was done within the window; nothing was sent."""

    def __init__(self, earlier: Sequence[EarlierSend]) -> None:
        super().__init__("This was sent already in the last 24 hours.")
        self.earlier = list(earlier)


def new_key() -> str:
    """A fresh key for a send form (192 random bits)."""
    return secrets.token_urlsafe(24)


def fingerprint(
    version: TemplateVersion,
    merge_data: Mapping[str, str],
    recipients: Sequence[RecipientInput],
    ticket_id: str,
    ticket_url: str,
    options: SendOptions,
) -> str:
    """What one submit of a send form asks for, as a SHA-256 (access codes left out)."""
    facts = {
        "version": version.id,
        "merge": dict(merge_data),
        "recipients": [{**asdict(r), "access_code": None} for r in recipients],
        "ticket": [ticket_id, ticket_url],
        "options": asdict(options),
    }
    canonical = json.dumps(facts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _sent_with(key: str, by: User, asked: str) -> Envelope | None:
    row = db.session.execute(select(SendKey).where(SendKey.key == key)).scalar_one_or_none()
    if row is None:
        return None
    envelope = db.session.get(Envelope, row.envelope_id) if row.envelope_id else None
    if row.user_id != by.id or envelope is None:
        raise FormExpired("This form was used already. Open the form again to send.")
    if row.fingerprint != asked:
        raise FormReused(envelope)
    return envelope


def earlier_sends(envelope: Envelope, by: User) -> list[EarlierSend]:
    """Envelopes the user may see, other than this one, that sent the same template to one of
    its signers' or approvers' emails for the same ticket (or both without one) within the
    window, and were not voided; newest first."""
    emails = sorted({r.email.lower() for r in envelope.recipients if r.kind != "cc"})
    since = clock.utcnow() - DUPLICATE_WINDOW
    same_ticket = (
        Envelope.ticket_id.is_(None)
        if envelope.ticket_id is None
        else Envelope.ticket_id == envelope.ticket_id
    )
    stmt = (
        select(Envelope)
        .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
        .where(
            Envelope.id != envelope.id,
            TemplateVersion.template_id == envelope.version.template_id,
            Envelope.created_at >= since,
            Envelope.status != "voided",
            same_ticket,
            Envelope.recipients.any(
                (func.lower(Recipient.email).in_(emails)) & (Recipient.kind != "cc")
            ),
        )
        .order_by(Envelope.created_at.desc(), Envelope.id.desc())
        .limit(_SHOWN)
    )
    found = db.session.execute(team_scope(stmt, Envelope.team_id, by)).scalars()
    return [
        EarlierSend(
            public_id=e.public_id,
            title=e.title,
            sent_at=e.sent_at,
            status=e.status,
            sender=e.created_by.name,
            emails=tuple(r.email for r in e.recipients if r.email.lower() in emails),
        )
        for e in found
    ]


def send_once(
    key: str,
    by: User,
    version: TemplateVersion,
    merge_data: Mapping[str, str],
    recipients: Sequence[RecipientInput],
    *,
    ticket_id: str = "",
    ticket_url: str = "",
    options: SendOptions | None = None,
    confirm_duplicate: bool = False,
) -> Envelope:
    """Send what the form gave, once per form key; the envelope (made now or before).

    The new links are kept for this staff session's next view of the result page
    (``handover``). Raises ``DuplicateWarning`` (nothing sent) when ``earlier_sends`` finds
    one and the agent has not confirmed, ``FormExpired`` for a missing or foreign key, and
    ``EnvelopeError`` for anything the checks refuse; ``FormReused`` (a ``FormExpired``) when
    the key sent an envelope with other details.
    """
    if not KEY_PATTERN.match(key or ""):
        raise FormExpired("This form has expired. Check the details and send again.")
    options = options or SendOptions()
    asked = fingerprint(version, merge_data, recipients, ticket_id, ticket_url, options)
    done = _sent_with(key, by, asked)
    if done is not None:
        return done
    claim = SendKey(key=key, user_id=by.id, fingerprint=asked)
    db.session.add(claim)
    try:
        db.session.flush()  # a concurrent submit of the same form waits here for the first
    except IntegrityError:
        db.session.rollback()
        done = _sent_with(key, by, asked)
        if done is None:  # (the first one failed and rolled back meanwhile)
            raise FormExpired("This form was being sent twice at once; send it again.") from None
        return done
    envelope, links = send_new(
        version, merge_data, recipients, by, ticket_id, ticket_url, options=options
    )
    earlier = earlier_sends(envelope, by)
    if earlier and not confirm_duplicate:
        db.session.rollback()
        raise DuplicateWarning(earlier)
    if earlier:
        audit.record(
            "envelope.duplicate_confirmed",
            actor=by,
            subject=envelope,
            data={"earlier": [e.public_id for e in earlier]},
        )
    claim.envelope_id = envelope.id
    handover.keep(envelope, links, "Sent")
    db.session.commit()
    return envelope
