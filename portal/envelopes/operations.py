"""Verbs of envelopes on the agent side: create and send, void, resend, correct an email.

The state machine lives here and in ``signing``: terminal envelopes never change, and a
link token (at least 128 bits, only its SHA-256 stored) dies whenever it is replaced.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select

from portal import audit, clock, jobs, mail, storage
from portal.accounts import credentials
from portal.accounts.models import User
from portal.documents import authoring
from portal.documents.inspect import inspect_generated_pdf
from portal.envelopes import images
from portal.envelopes.models import (
    Envelope,
    EnvelopeStatus,
    Recipient,
    RecipientStatus,
    RetiredLink,
)
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import TemplateVersion

TOKEN_BYTES = 24  # 192 bits
LOCALES = ("en", "es")
# What each template default allows an agent to choose (never weaker than the default).
AUTH_ALLOWED = {
    "link": ("link", "email_otp", "access_code"),
    "email_otp": ("email_otp", "access_code"),
    "access_code": ("access_code",),
}
MIN_ACCESS_CODE = 4


class EnvelopeError(ValueError):
    """A request that cannot be carried out; nothing was changed and the message says why."""


@dataclass(frozen=True)
class RecipientInput:
    """What the agent enters for one role."""

    role: str
    name: str
    email: str
    phone: str = ""
    locale: str = "en"
    auth_method: str = ""
    access_code: str = ""


def token_digest(token: str) -> str:
    """How a link token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def link_for(token: str) -> str:
    """The signing link a recipient opens."""
    return f"{current_app.config['PUBLIC_BASE_URL']}/s/{token}"


def _retire_token(recipient: Recipient, reason: str) -> None:
    if recipient.token_hash:
        db.session.add(
            RetiredLink(token_hash=recipient.token_hash, recipient_id=recipient.id, reason=reason)
        )
        recipient.token_hash = None


def _issue_token(recipient: Recipient) -> str:
    _retire_token(recipient, "replaced")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    recipient.token_hash = token_digest(token)
    return token


def _document_for(version: TemplateVersion, values: Mapping[str, str]) -> bytes:
    """The exact bytes the recipients will see: the PDF, or the authored text merged."""
    if version.source_kind == "authored":
        keys = library.merge_keys(version)
        try:
            pdf = authoring.render_pdf(
                version.authored_body or "", values, keys, title=version.template.name
            )
        except authoring.AuthoringError as exc:
            raise EnvelopeError(str(exc)) from exc
        pages = inspect_generated_pdf(pdf).page_count
        if pages != version.page_count:
            raise EnvelopeError(
                f"With these values the document has {pages} pages instead of "
                f"{version.page_count}, so the fields would not line up. Shorten the longest "
                "values or ask compliance to adjust the template."
            )
        return pdf
    if not version.source_blob_id:
        raise EnvelopeError("This template has no document.")
    return storage.get(version.source_blob_id)


def _attach_pages(envelope: Envelope, version: TemplateVersion) -> None:
    """An uploaded PDF is sent as it is, so its page images are the template's; an authored
    document is merged with the customer's values and gets its own."""
    envelope.pages = [dict(page) for page in version.pages]
    if version.source_kind == "authored":
        for page in envelope.pages:
            page["image_blob_id"] = None
        images.ENVELOPES.request(envelope)
    else:
        envelope.images_status = version.images_status


def preview(version: TemplateVersion, merge_data: Mapping[str, str]) -> bytes:
    """The document exactly as the customer would get it with these values (nothing stored)."""
    try:
        library.ensure_sendable(version)
    except library.LibraryError as exc:
        raise EnvelopeError(str(exc)) from exc
    return _document_for(version, _clean_merge_data(version, merge_data))


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


def _clean_merge_data(version: TemplateVersion, values: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    missing = []
    for key in library.merge_keys(version):
        value = " ".join(str(values.get(key.key) or "").split())[:500]
        if not value:
            missing.append(key.label)
        clean[key.key] = value
    if missing:
        raise EnvelopeError(f"Fill in {', '.join(missing)}.")
    return clean


def _clean_recipient(
    role: Mapping[str, Any], given: RecipientInput, default_auth: str
) -> Recipient:
    name = " ".join(given.name.split())[:200]
    if not name:
        raise EnvelopeError(f"Enter the name of the {role['name']}.")
    try:
        email = validate_email(given.email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise EnvelopeError(f"The email of the {role['name']} is not valid: {exc}") from exc
    auth = given.auth_method or default_auth
    if role["kind"] == "cc":
        auth = "link"
    elif auth not in AUTH_ALLOWED.get(default_auth, ("link",)):
        raise EnvelopeError(
            f"This template needs at least {default_auth.replace('_', ' ')} for the {role['name']}."
        )
    recipient = Recipient(
        role=str(role["key"]),
        role_name=str(role["name"]),
        kind=str(role["kind"]),
        order=int(role["order"]),
        name=name,
        email=email,
        phone=" ".join(given.phone.split())[:40] or None,
        locale=given.locale if given.locale in LOCALES else "en",
        auth_method=auth,
        status=RecipientStatus.WAITING.value,
    )
    if auth == "access_code":
        code = given.access_code.strip()
        if len(code) < MIN_ACCESS_CODE:
            raise EnvelopeError(
                f"Give the {role['name']} an access code of at least {MIN_ACCESS_CODE} characters."
            )
        recipient.access_code_hash = credentials.hash_password(code)
    return recipient


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
    token = _issue_token(recipient)
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
        sender_name=envelope.created_by.name,
        title=envelope.title,
        kind=recipient.kind,
        link=link,
        expires_at=envelope.expires_at,
        reminder=reminder,
        expiring=expiring,
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


def create_and_send(
    version: TemplateVersion,
    merge_data: Mapping[str, str],
    recipients: Sequence[RecipientInput],
    by: User,
    ticket_id: str = "",
    ticket_url: str = "",
) -> tuple[Envelope, dict[int, str]]:
    """Create an envelope from the approved version and send it; returns it and the new links."""
    try:
        library.ensure_sendable(version)
    except library.LibraryError as exc:
        raise EnvelopeError(str(exc)) from exc
    values = _clean_merge_data(version, merge_data)
    given = {r.role: r for r in recipients}
    settings = dict(version.settings or {})
    people = []
    for role in version.roles:
        if role["key"] not in given:
            raise EnvelopeError(f"Enter the {role['name']}.")
        people.append(
            _clean_recipient(role, given[role["key"]], str(settings.get("default_auth") or "link"))
        )
    if ticket_url and not ticket_url.startswith(("https://", "http://")):
        raise EnvelopeError("The ticket link must start with https://.")
    document = _document_for(version, values)
    now = clock.utcnow()
    expires_at = now + timedelta(days=int(settings.get("expiry_days") or 30))
    envelope = Envelope(
        public_id=uuid.uuid4().hex,
        version=version,
        team_id=version.template.team_id if by.team_id is None else by.team_id,
        created_by=by,
        title=version.template.name,
        status=EnvelopeStatus.SENT.value,
        merge_data=values,
        ticket_id=ticket_id.strip()[:120] or None,
        ticket_url=ticket_url.strip()[:500] or None,
        routing=str(settings.get("routing") or "sequential"),
        settings=settings,
        document_blob_id=storage.put(document, kind="envelope_document"),
        original_sha256=hashlib.sha256(document).hexdigest(),
        page_count=version.page_count,
        sent_at=now,
        expires_at=expires_at,
    )
    db.session.add(envelope)
    for person in people:
        envelope.recipients.append(person)
    db.session.flush()
    _attach_pages(envelope, version)
    audit.record(
        "envelope.created",
        actor=by,
        subject=envelope,
        data={
            "template": version.template.name,
            "version": version.number,
            "sha256": envelope.original_sha256,
            "ticket": envelope.ticket_id,
            "recipients": [
                {
                    "role": p.role,
                    "kind": p.kind,
                    "email": mail.mask_address(p.email),
                    "auth": p.auth_method,
                }
                for p in people
            ],
        },
    )
    links = {r.id: invite(r, by) for r in active_now(envelope)}
    audit.record(
        "envelope.sent",
        actor=by,
        subject=envelope,
        data={"expires_at": audit.iso_time(expires_at)},
    )
    db.session.commit()
    return envelope, links


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
    try:
        address = validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise EnvelopeError(f"That email is not valid: {exc}") from exc
    old = recipient.email
    recipient.email = address
    _retire_token(recipient, "reassigned")
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
