"""Purging an envelope at the end of its retention period (or on a data subject's erasure).

``purge_envelope`` does everything in ONE transaction, committed at its end: the blobs live
in the database (``portal.storage``), so their deletion commits or rolls back with the rest.
A process killed midway (SIGKILL of the worker) leaves the envelope untouched; the next sweep
finds it still due and purges it whole. The steps, by the policy's action:

- documents (``purge_documents``, ``both``): the document as sent (unless another envelope or
  a template version uses the same blob: bulk send files every envelope of an uploaded PDF
  under the template's own blob), the sealed PDF (also attached to copies in the outbox),
  page images of its own (an uploaded PDF's are the template version's and stay), drawn
  signatures and attachments;
- personal data (``anonymise``, ``both``): recipients' names, emails, phones, IPs, browsers,
  decline reasons and codes; field values; the envelope's merge data, personal message, void
  reason and search text; its emails in the outbox (addresses and bodies); the bulk-send row
  that created it; link hand-overs, send keys and retired links; its review row; and the key
  of its audit events' personal fields (``keys.shred``), so the chain keeps verifying while
  what it held of them can no longer be read.

What stays is the tombstone: the envelope row with its id, template version, team, sender,
dates, SHA-256 of the original and of the sealed file, the policy and ``purged_at``; and the
``envelope.purged`` event, which carries no personal data.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, or_, select, text, update

from portal import audit, clock, mail, storage
from portal.accounts.models import User
from portal.envelopes import renewal
from portal.envelopes.handover import LinkHandover
from portal.envelopes.idempotency import SendKey
from portal.envelopes.models import TERMINAL, Envelope, FieldValue, Recipient, RetiredLink
from portal.extensions import db, write_lock
from portal.integrations import webhooks
from portal.library.models import TemplateVersion
from portal.records import keys
from portal.records.holds import LegalHold, hold_reasons
from portal.records.retention import Action, RetentionPolicy, RetentionReview

log = logging.getLogger(__name__)

PURGED_NAME = "(purged)"

# Called after each step with its name (tests stop a purge there, to kill it midway).
STEP_HOOKS: list[Callable[[str], None]] = []


class PurgeRefused(RuntimeError):
    """The envelope may not be purged now; the message says why."""


def _step(name: str) -> None:
    for hook in STEP_HOOKS:
        db.session.flush()
        hook(name)


def protection(envelope: Envelope) -> str | None:
    """Why the envelope may not be purged now (a hold, its retention date, not ended), or None."""
    if envelope.purged_at is not None:
        return f"Purged already on {envelope.purged_at:%Y-%m-%d}."
    if envelope.status not in TERMINAL:
        return "It has not ended yet."
    held = hold_reasons([envelope.id]).get(envelope.id)
    if held:
        return "On legal hold: " + ", ".join(held) + "."
    policy = db.session.get(RetentionPolicy, envelope.retention_policy_id or 0)
    name = f" under {policy.summary}" if policy is not None else ""
    if envelope.retention_until is None:
        return f"Its retention period has not started{name} (it starts when it is completed)."
    if clock.as_utc(envelope.retention_until) > clock.utcnow():
        return f"Kept until {clock.as_utc(envelope.retention_until):%Y-%m-%d}{name}."
    return None


def _lock(envelope: Envelope) -> Envelope:
    """Lock the envelope for the purge, after any hold being placed meanwhile is committed.

    On PostgreSQL the holds table is locked in SHARE mode for the purge's transaction first:
    a hold placed or released at the same moment (its INSERT or UPDATE) is waited for, and
    waits for the purge, so ``protection`` never misses a hold committed in between. (SQLite
    runs one writer at a time already.)"""
    write_lock()
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text(f"LOCK TABLE {LegalHold.__tablename__} IN SHARE MODE"))
    locked = db.session.execute(
        select(Envelope).where(Envelope.id == envelope.id).with_for_update()
    ).scalar_one()
    db.session.refresh(locked)
    return locked


OWN_KINDS = ("envelope_document", "sealed_pdf", "page_image", "signature_image", "attachment")


def _unshared(blob_ids: set[str], envelope: Envelope) -> set[str]:
    """The envelope's own blobs among these: of an envelope's kinds, and referred to by no
    other envelope and no template version (their sources and page images)."""
    if not blob_ids:
        return set()
    ids = list(blob_ids)
    used = set(
        db.session.execute(
            select(Envelope.document_blob_id).where(
                Envelope.id != envelope.id, Envelope.document_blob_id.in_(ids)
            )
        ).scalars()
    )
    used |= {
        blob_id
        for blob_id in db.session.execute(
            select(TemplateVersion.source_blob_id).where(TemplateVersion.source_blob_id.in_(ids))
        ).scalars()
        if blob_id
    }
    template_id = select(TemplateVersion.template_id).where(
        TemplateVersion.id == envelope.template_version_id
    )
    for pages in db.session.execute(
        select(TemplateVersion.pages).where(TemplateVersion.template_id.in_(template_id))
    ).scalars():
        used |= {str(p.get("image_blob_id")) for p in pages or [] if p.get("image_blob_id")}
    own = set(
        db.session.execute(
            select(storage.Blob.id).where(
                storage.Blob.id.in_(ids), storage.Blob.kind.in_(OWN_KINDS)
            )
        ).scalars()
    )
    return own - used


def _purge_documents(envelope: Envelope) -> int:
    """Delete the envelope's own files; returns how many blobs went."""
    candidates: set[str] = set()
    if envelope.document_blob_id:
        candidates.add(envelope.document_blob_id)
    if envelope.sealed_blob_id:
        candidates.add(envelope.sealed_blob_id)
    candidates |= renewal.earlier_blob_ids(envelope)  # sealed files before a seal renewal
    pages = []
    for page in envelope.pages or []:
        if page.get("image_blob_id"):
            candidates.add(str(page["image_blob_id"]))
        pages.append({**page, "image_blob_id": None})
    values = list(
        db.session.execute(
            select(FieldValue).where(
                FieldValue.envelope_id == envelope.id, FieldValue.blob_id.is_not(None)
            )
        ).scalars()
    )
    for value in values:
        assert value.blob_id is not None
        candidates.add(value.blob_id)
        value.blob_id = None
    doomed = _unshared(candidates, envelope)
    envelope.document_blob_id = None  # type: ignore[assignment]  # (a tombstone's)
    envelope.sealed_blob_id = None
    envelope.sealed_path = None
    envelope.pages = pages
    if envelope.images_status == "pending":
        envelope.images_status = "failed"
        envelope.images_error = "The document was purged."
    if envelope.seal_status in ("pending", "failed"):
        envelope.seal_status = "failed"
        envelope.seal_error = "The document was purged before it was sealed."
    db.session.execute(
        update(mail.Message)
        .where(mail.Message.envelope_id == envelope.id)
        .values(attachment_blob_id=None, attachment_name=None)
    )
    _step("documents:references")
    for blob_id in sorted(doomed):
        storage.delete(blob_id)
    _step("documents:blobs")
    return len(doomed)


def _bulk_rows() -> Any:
    from portal.bulk.models import BulkRow  # (bulk sits beside records; import when used)

    return BulkRow


def _anonymise(envelope: Envelope) -> int:
    """Remove the personal data of the envelope's people; returns how many recipients."""
    recipients = list(
        db.session.execute(select(Recipient).where(Recipient.envelope_id == envelope.id)).scalars()
    )
    recipient_ids = [r.id for r in recipients]
    for recipient in recipients:
        recipient.name = PURGED_NAME
        recipient.email = ""
        recipient.phone = None
        recipient.finished_ip = None
        recipient.finished_user_agent = None
        recipient.decline_reason = None
        recipient.token_hash = None
        recipient.access_code_hash = None
        recipient.otp_hash = None
    _step("anonymise:recipients")
    db.session.execute(delete(FieldValue).where(FieldValue.envelope_id == envelope.id))
    if recipient_ids:
        db.session.execute(delete(RetiredLink).where(RetiredLink.recipient_id.in_(recipient_ids)))
    _step("anonymise:values")
    envelope.merge_data = {}
    settings = dict(envelope.settings or {})
    settings.pop("message", None)
    envelope.settings = settings
    envelope.void_reason = None
    envelope.ticket_id = None
    envelope.ticket_url = None
    message_filter = mail.Message.envelope_id == envelope.id
    if recipient_ids:
        message_filter = or_(message_filter, mail.Message.recipient_id.in_(recipient_ids))
    db.session.execute(delete(mail.Message).where(message_filter))
    webhooks.forget_envelope(envelope.id)  # payloads carry the ticket reference
    _step("anonymise:outbox")
    row = _bulk_rows()
    db.session.execute(
        update(row)
        .where(row.envelope_id == envelope.id)
        .values(
            merge_data={},
            people=[],
            name=None,
            email=None,
            problems=[],
            ticket_id=None,
            ticket_url=None,
            error=None,
        )
    )
    db.session.execute(delete(LinkHandover).where(LinkHandover.envelope_id == envelope.id))
    db.session.execute(delete(SendKey).where(SendKey.envelope_id == envelope.id))
    db.session.execute(delete(RetentionReview).where(RetentionReview.envelope_id == envelope.id))
    _step("anonymise:rows")
    keys.shred(envelope.id)
    _step("anonymise:audit_key")
    # (the search text is made again from the emptied values by a flush hook)
    return len(recipients)


def purge_envelope(
    envelope: Envelope, *, reason: str, actor: User | None, action: str | None = None
) -> None:
    """Purge the envelope under its policy's action (or ``action``), and commit.

    Refused (``PurgeRefused``) when ``protection`` says it may not be purged now. ``actor``
    None is the retention sweep. ``reason`` is said in the ``envelope.purged`` event.
    """
    envelope = _lock(envelope)
    why = protection(envelope)
    if why is not None:
        db.session.rollback()
        raise PurgeRefused(why)
    policy = db.session.get(RetentionPolicy, envelope.retention_policy_id or 0)
    chosen = action or (policy.action if policy is not None else Action.BOTH.value)
    if chosen not in {a.value for a in Action}:
        db.session.rollback()
        raise PurgeRefused(f"Unknown purge action {chosen!r}.")
    _step("locked")
    blobs = people = 0
    if chosen in (Action.PURGE_DOCUMENTS.value, Action.BOTH.value):
        blobs = _purge_documents(envelope)
    if chosen in (Action.ANONYMISE.value, Action.BOTH.value):
        people = _anonymise(envelope)
    else:
        db.session.execute(
            delete(RetentionReview).where(RetentionReview.envelope_id == envelope.id)
        )
    envelope.purged_at = clock.utcnow()
    envelope.purge_action = chosen
    audit.record(
        "envelope.purged",
        actor=actor,
        subject=("envelope", str(envelope.id), envelope.title),
        data={
            "kind": chosen,
            "policy": policy.summary if policy is not None else None,
            "reason": reason[:200],
            "template": envelope.title,
            "version": envelope.template_version_id,
            "sealed_sha256": envelope.sealed_sha256,
            "original_sha256": envelope.original_sha256,
            "count": people,
            "size": blobs,
        },
    )
    _step("recorded")
    db.session.commit()
    forget_on_disk()


def forget_on_disk() -> None:
    """On SQLite, copy the write-ahead log into the database file and empty it: until then the
    log still holds the pages as they were before the purge (with ``secure_delete`` on, freed
    pages of the file itself are overwritten). Waits at most 2 s for readers; a later purge or
    SQLite's own checkpoint finishes it otherwise. (PostgreSQL: old row versions go at the
    next VACUUM, which autovacuum runs.)"""
    if db.engine.dialect.name != "sqlite":
        return
    raw = db.engine.raw_connection()  # the driver's: no transaction around the pragma
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA busy_timeout=2000")
        try:
            busy, _log_pages, _copied = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
        if busy:
            log.info("The write-ahead log is still in use; it is emptied at a later checkpoint")
    except sqlite3.Error:
        log.warning("Could not checkpoint the write-ahead log after a purge", exc_info=True)
    finally:
        raw.close()
