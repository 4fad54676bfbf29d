"""Verbs of the signing side: consent, sign, approve, decline, and what follows them.

Every verb re-reads the recipient under a row lock and checks the state machine again, so
two tabs or a double tap submit once: the second finds the recipient finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from portal import audit, clock, mail, storage
from portal.envelopes import disclosure, sealing
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, FieldValue, Recipient, RecipientStatus
from portal.envelopes.operations import active_now, invite
from portal.extensions import db, write_lock
from portal.signing import access
from portal.signing.values import Checked


class SigningError(ValueError):
    """The action cannot be taken now; ``reason`` names the page that explains why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Origin:
    """Where a signer's action came from (evidence for the certificate)."""

    ip: str | None
    user_agent: str | None


def _origin() -> Origin:
    return Origin(*audit.request_origin())


def locked(recipient_id: int) -> Recipient:
    """The recipient, re-read under row locks on its envelope and then on it (PostgreSQL;
    SQLite serialises writers): an agent voiding or correcting it waits, or is waited for."""
    db.session.expire_all()
    return envelopes.lock_recipient(recipient_id)


def _ready(recipient_id: int) -> Recipient:
    recipient = locked(recipient_id)
    reason = access.blocked_reason(recipient)
    if reason:
        raise SigningError(reason)
    return recipient


@dataclass(frozen=True)
class CopyMail:
    """How the sealed copy's email to a recipient stands: queued or sent, attached or linked."""

    sent: bool
    attached: bool


def copy_mail(recipient: Recipient) -> CopyMail | None:
    """The completion email with the sealed copy for this recipient, unless there is none or
    it failed or bounced (then the done page does not say it was emailed)."""
    message = db.session.execute(
        select(mail.Message)
        .where(mail.Message.recipient_id == recipient.id, mail.Message.kind == "completed")
        .order_by(mail.Message.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if message is None or message.status not in (mail.Status.QUEUED, mail.Status.SENT):
        return None
    return CopyMail(message.status == mail.Status.SENT, message.attachment_blob_id is not None)


def needs_consent(recipient: access.SignerState) -> bool:
    return recipient.consent_version != disclosure.VERSION


def needs_code(recipient: access.SignerState) -> bool:
    return recipient.auth_method != "link" and recipient.authenticated_at is None


def next_step(recipient: access.SignerState, reason: str | None) -> str | None:
    """What stands between the recipient and the document, given ``access.blocked_state``'s
    reason: "finished", that reason, "consent", "code", or None when they may see it."""
    if recipient.finished:
        return "finished"
    if reason:
        return reason
    if needs_consent(recipient):
        return "consent"
    if needs_code(recipient):
        return "code"
    return None


def show_document(recipient_id: int, token_hash: str | None, via: str) -> str | None:
    """Record that the recipient is shown the document: the first time, once however many
    tabs race (``recipient.document_viewed``), and each PDF (``recipient.document_downloaded``).

    Everything is read again under the locks first (the envelope may have been voided or the
    link replaced a moment ago); returns ``next_step`` as it is then.
    """
    write_lock()
    recipient = locked(recipient_id)
    if recipient.token_hash != token_hash:
        step: str | None = "replaced"
    else:
        step = next_step(recipient, access.blocked_reason(recipient))
    if step is None:
        envelope = recipient.envelope
        data = {"via": via, "document_sha256": envelope.original_sha256}
        if recipient.document_viewed_at is None:
            recipient.document_viewed_at = clock.utcnow()
            audit.record("recipient.document_viewed", actor=recipient, subject=envelope, data=data)
        if via == "pdf":
            audit.record("recipient.document_downloaded", actor=recipient, subject=envelope,
                         data=data)  # fmt: skip
    db.session.commit()
    return step


def give_consent(recipient_id: int) -> None:
    """Record acceptance of the current disclosure (version, time, IP, browser)."""
    recipient = _ready(recipient_id)
    recipient.consent_version = disclosure.VERSION
    recipient.consent_locale = disclosure.language(recipient.locale)  # the text shown
    recipient.consented_at = clock.utcnow()
    audit.record(
        "recipient.consented",
        actor=recipient,
        subject=recipient.envelope,
        data={"disclosure": disclosure.VERSION, "language": recipient.consent_locale},
    )
    db.session.commit()


def _finish(recipient: Recipient, status: str) -> None:
    origin = _origin()
    recipient.status = status
    recipient.finished_at = clock.utcnow()
    recipient.finished_ip, recipient.finished_user_agent = origin.ip, origin.user_agent


def decline(recipient_id: int, reason: str) -> None:
    """Decline the envelope (declining the disclosure counts too); it ends for everyone."""
    recipient = _ready(recipient_id)
    text = " ".join(reason.split())[:500] or "No reason given."
    _finish(recipient, RecipientStatus.DECLINED.value)
    recipient.decline_reason = text
    envelope = recipient.envelope
    envelope.status = "declined"
    envelope.finished_at = recipient.finished_at
    audit.record("recipient.declined", actor=recipient, subject=envelope, data={"reason": text})
    access.tell_sender(recipient, "envelope_declined", reason=text)
    db.session.commit()


def attachments_refused(recipient_id: int, refused: list[dict[str, Any]]) -> None:
    """Record each attachment refused for its type or size (``recipient.attachment_refused``),
    in a transaction of its own: nothing else of the submission is stored."""
    write_lock()
    recipient = db.session.get(Recipient, recipient_id)
    if recipient is None:
        return
    for facts in refused:
        audit.record(
            "recipient.attachment_refused", actor=recipient, subject=recipient.envelope, data=facts
        )
    db.session.commit()


def sign(recipient_id: int, checked: Checked, adoption: str) -> None:
    """Store the checked values and the adopted signature; then move the envelope on."""
    recipient = _ready(recipient_id)
    if recipient.kind != "signer":
        raise SigningError("not_a_signer")
    if needs_consent(recipient) or needs_code(recipient):
        raise SigningError("not_ready")
    envelope = recipient.envelope
    signature_blob = (
        storage.put(checked.signature_png, kind="signature_image")
        if checked.signature_png
        else None
    )
    for key, value in checked.values.items():
        blob_id = signature_blob if value == "drawn" else None
        if key in checked.files:
            blob_id = storage.put(checked.files[key][0], kind="attachment")
        db.session.add(
            FieldValue(
                envelope_id=envelope.id,
                recipient_id=recipient.id,
                field_key=key,
                value=value,
                blob_id=blob_id,
            )
        )
    _finish(recipient, RecipientStatus.SIGNED.value)
    recipient.adoption = adoption
    for key in checked.values:
        audit.record("recipient.field_completed", actor=recipient, subject=envelope,
                     data={"field": key})  # fmt: skip
    audit.record(
        "recipient.signed",
        actor=recipient,
        subject=envelope,
        data={
            "adoption": adoption,
            "fields": len(checked.values),
            "document_sha256": envelope.original_sha256,
        },
    )
    _advance(envelope)
    db.session.commit()


def review(recipient_id: int, approve: bool, comment: str) -> None:
    """An approver approves, or rejects (which declines the envelope)."""
    recipient = _ready(recipient_id)
    if recipient.kind != "approver":
        raise SigningError("not_an_approver")
    if needs_consent(recipient) or needs_code(recipient):
        raise SigningError("not_ready")
    text = " ".join(comment.split())[:500]
    if not approve:
        db.session.rollback()
        decline(recipient_id, text or "Rejected by the approver.")
        return
    _finish(recipient, RecipientStatus.APPROVED.value)
    audit.record("recipient.approved", actor=recipient, subject=recipient.envelope,
                 data={"comment": text or None})  # fmt: skip
    _advance(recipient.envelope)
    db.session.commit()


def _advance(envelope: Envelope) -> None:
    """Invite whoever is next, or complete the envelope when everyone required has finished."""
    waiting = active_now(envelope)
    if waiting:
        for recipient in waiting:
            if recipient.status == RecipientStatus.WAITING.value:
                invite(recipient, "system")
        return
    envelope.status = "completed"
    envelope.finished_at = clock.utcnow()
    audit.record("envelope.completed", actor="system", subject=envelope,
                 data={"document_sha256": envelope.original_sha256})  # fmt: skip
    for recipient in envelope.recipients:
        if recipient.kind == "cc":
            recipient.status = RecipientStatus.COPIED.value
            recipient.finished_at = envelope.finished_at
    # The signed copy goes to signers, approvers and cc recipients (sealing.COPY_KINDS; the
    # agent hears) once sealed.
    sealing.request(envelope)
