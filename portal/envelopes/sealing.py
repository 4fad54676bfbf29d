"""Sealing a completed envelope: stamped pages + certificate of completion + PAdES seal.

``seal_envelope`` (queue ``pdf``) reads what it needs, ends that transaction, does the PDF work
with no lock held, and then, in one short transaction under the envelope's row lock, stores the
sealed blob, records its SHA-256 on the envelope and in the audit chain, and queues the copies.
Until that commit nothing is visible, so a worker killed mid-job leaves nothing half done; a
second job for the same envelope (double enqueue, RQ retry, sweeper) finds it sealed and stops.
A failure is recorded on the envelope with its reason (``seal_status=failed``); the sweeper asks
again for envelopes still unsealed ``SEAL_SWEEP_MINUTES`` after the last request, up to
``MAX_AUTOMATIC_ATTEMPTS`` tries, and staff can always ask again with "retry sealing".
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import or_, select

from portal import audit, clock, jobs, mail, storage
from portal.accounts import contacts
from portal.accounts.models import User
from portal.documents import keystore, ltv, pdfmeta, sandbox
from portal.documents.certificate import (
    AttachmentEvidence,
    CertificateData,
    PartyEvidence,
    RecipientEvidence,
    TimelineEntry,
    render_certificate,
)
from portal.documents.geometry import Rect
from portal.documents.inspect import PageBox
from portal.documents.seal import SealingCertError, SealingError, seal_pdf
from portal.documents.stamp import Stamp, stamp_pdf
from portal.envelopes import disclosure, renewal, viewing
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.extensions import db, write_lock
from portal.library import languages, queries

log = logging.getLogger(__name__)

SEAL_FIELD = "PortalSeal"
MAX_AUTOMATIC_ATTEMPTS = 5
SWEEP_BATCH = 50
_COPY_SALT = "signed-copy"
# Who receives the sealed copy (by email, and on their done page): everyone who acted on the
# document or was copied in; approvers too, since they vouched for what it says.
COPY_KINDS = frozenset({"signer", "approver", "cc"})
_AUTH_RESULTS = {
    "link": "Link only (no further check)",
    "email_otp": "Email code",
    "access_code": "Access code given by the agent",
    "sms_otp": "Text-message code",
}


class SealingProblem(RuntimeError):
    """Sealing cannot finish; the message is shown on the envelope."""


# ---------------------------------------------------------------- evidence


def envelope_events(envelope: Envelope) -> list[audit.Revealed]:
    """The envelope's events in the audit chain (its mail's too), oldest first, with their
    personal fields revealed (``erased`` once the envelope's key is shredded)."""
    return audit.reveal(
        db.session.execute(
            select(audit.AuditEvent)
            .where(
                audit.AuditEvent.subject_type == "envelope",
                audit.AuditEvent.subject_id == str(envelope.id),
            )
            .order_by(audit.AuditEvent.seq)
        ).scalars()
    )


def _values(envelope: Envelope) -> list[FieldValue]:
    return list(
        db.session.execute(
            select(FieldValue).where(FieldValue.envelope_id == envelope.id).order_by(FieldValue.id)
        ).scalars()
    )


def _auth_result(recipient: Recipient) -> str:
    method = _AUTH_RESULTS.get(recipient.auth_method, recipient.auth_method)
    if recipient.locked_at is not None:
        return f"{method}: locked after too many wrong codes"
    if recipient.auth_method == "link":
        return method
    if recipient.authenticated_at is not None:
        return f"{method}: verified"
    return f"{method}: not verified"


def _detail(event: audit.Revealed) -> str:
    data = event.data
    for key in ("reason", "comment", "field", "adoption", "to", "kind"):
        value = data.get(key)
        if value:
            return f"{key}: {value}"
    return "personal data erased" if event.erased else ""


def _sender_evidence(sender: User, shown: str, ip: str | None) -> PartyEvidence:
    """The sender as the certificate states it: an API key's service user is named as the
    signers saw it (its team), without its made-up address, sent through the key made by an
    admin (who answers for it)."""
    if not sender.service:
        return PartyEvidence(name=shown, email=sender.email, ip=ip)
    creator = contacts.notify(sender)
    made_by = f", made by {creator.name} <{creator.email}>" if creator is not sender else ""
    return PartyEvidence(name=shown, email="", ip=ip, via=f"{sender.name}{made_by}")


def evidence(
    envelope: Envelope,
    *,
    sealed_sha256: str | None = None,
    values: list[FieldValue] | None = None,
    images: dict[str, bytes] | None = None,
) -> CertificateData:
    """Everything the certificate of completion states about an envelope, from the database."""
    events = envelope_events(envelope)
    values = _values(envelope) if values is None else values
    images = {} if images is None else images
    sender: User = envelope.created_by
    sender_ip = next(
        (e.ip for e in events if e.name in ("envelope.created", "envelope.sent") and e.ip), None
    )
    comments = {
        e.actor_id: str(e.data.get("comment") or "")
        for e in events
        if e.name == "recipient.approved" and e.data.get("comment")
    }
    fields = {f.key: f for f in envelope.version.fields}
    recipients: list[RecipientEvidence] = []
    attachments: list[AttachmentEvidence] = []
    for recipient in envelope.recipients:
        mine = [v for v in values if v.recipient_id == recipient.id]
        drawn = next(
            (v for v in mine if v.value == "drawn" and v.blob_id and _is_signature(fields, v)),
            None,
        )
        typed = next(
            (v.value for v in mine if v.value and v.value != "drawn" and _is_signature(fields, v)),
            None,
        )
        for value in mine:
            item = fields.get(value.field_key)
            if item is not None and item.type == "attachment" and value.blob_id:
                content = storage.get(value.blob_id)
                attachments.append(
                    AttachmentEvidence(
                        field_label=item.label or item.key,
                        filename=value.value or "",
                        sha256=hashlib.sha256(content).hexdigest(),
                        size=len(content),
                    )
                )
        recipients.append(
            RecipientEvidence(
                name=recipient.name,
                email=recipient.email,
                role_name=recipient.role_name,
                kind=recipient.kind,
                order=recipient.order,
                status=recipient.status,
                auth_method=recipient.auth_method,
                auth_result=_auth_result(recipient),
                adoption=recipient.adoption,
                signature_png=_image(images, drawn.blob_id) if drawn and drawn.blob_id else None,
                typed_signature=typed if recipient.adoption == "typed" else None,
                ip=recipient.finished_ip,
                user_agent=recipient.finished_user_agent,
                sent_at=recipient.sent_at,
                viewed_at=recipient.viewed_at,
                consented_at=recipient.consented_at,
                consent_version=recipient.consent_version,
                authenticated_at=recipient.authenticated_at,
                finished_at=recipient.finished_at,
                decline_reason=recipient.decline_reason,
                comment=comments.get(str(recipient.id)),
                consent_language=languages.label(recipient.consent_locale)
                if recipient.consent_locale
                else None,
            )
        )
    org = str(current_app.config.get("ORG_NAME") or "")
    # Named as the signers saw it on the consent page: an API key's team, never the key.
    asker = contacts.shown_name(sender)
    consent = " ".join(
        f"{head}. {body}" for head, body in disclosure.paragraphs("en", org=org, sender=asker)
    )
    # The full disclosure in each language a recipient accepted it in (English when none did).
    shown = sorted({r.consent_locale for r in envelope.recipients if r.consent_locale}) or ["en"]
    consent_texts = [
        (languages.label(code), disclosure.full_text(code, org=org, sender=asker)) for code in shown
    ]
    delivered = {
        str(e.data.get("recipient_id")): e.occurred
        for e in events
        if e.name == "mail.sent" and e.data.get("kind") == "completed"
    }
    return CertificateData(
        envelope_id=envelope.public_id,
        title=envelope.title,
        page_count=envelope.page_count,
        template_name=envelope.version.template.name,
        template_version=envelope.version.number,
        status=envelope.status,
        created_at=envelope.created_at,
        completed_at=envelope.finished_at if envelope.status == "completed" else None,
        original_sha256=envelope.original_sha256,
        sealed_sha256=sealed_sha256,
        sender=_sender_evidence(sender, asker, sender_ip),
        recipients=recipients,
        consent_text=consent,
        consent_version=disclosure.VERSION,
        consent_texts=consent_texts,
        document_language=languages.label(envelope.document_locale),
        cc_deliveries=[
            (r.name, r.email, delivered.get(str(r.id)))
            for r in envelope.recipients
            if r.kind == "cc"
        ],
        attachments=attachments,
        timeline=[
            TimelineEntry(
                at=e.occurred,
                event=audit.label(e.name),
                actor="The portal" if e.actor_type == "system" else e.actor_label or e.actor_type,
                ip=e.ip,
                detail=_detail(e),
            )
            for e in events
        ],
        generated_at=clock.utcnow(),
        organisation=org,
        interim=envelope.status != "completed",
    )


def _is_signature(fields: dict[str, Any], value: FieldValue) -> bool:
    item = fields.get(value.field_key)
    return item is not None and item.type in ("signature", "initials")


def _image(images: dict[str, bytes], blob_id: str) -> bytes:
    if blob_id not in images:
        images[blob_id] = storage.get(blob_id)
    return images[blob_id]


def stamps(
    envelope: Envelope,
    values: list[FieldValue] | None = None,
    images: dict[str, bytes] | None = None,
) -> list[Stamp]:
    """One stamp per filled field, where the template placed it (on the document's language)."""
    placed = queries.sent_fields(envelope.template_version_id, envelope.document_locale)
    fields = {f.key: f for f in placed}
    images = {} if images is None else images
    out: list[Stamp] = []
    for value in _values(envelope) if values is None else values:
        item = fields.get(value.field_key)
        if item is None or not value.value:
            continue
        rect = Rect(item.x, item.y, item.w, item.h)
        if item.type in ("signature", "initials"):
            if value.value == "drawn" and value.blob_id:
                out.append(Stamp(item.page, rect, "image", image=_image(images, value.blob_id)))
            else:
                text = value.value if item.type == "signature" else _initials(value.value)
                out.append(Stamp(item.page, rect, "signature_text", text=text))
        elif item.type == "checkbox":
            if value.value == "true":
                out.append(Stamp(item.page, rect, "check"))
        elif item.type == "attachment":
            out.append(Stamp(item.page, rect, "text", text=f"Attached: {value.value}"))
        else:
            out.append(Stamp(item.page, rect, "text", text=value.value))
    return out


def _initials(name: str) -> str:
    return "".join(part[0] for part in name.split() if part).upper()[:4] or name[:4]


def filing_path(envelope: Envelope) -> str:
    """Where the sealed file is filed: the template's folder, the year, id and title."""
    folder = str(envelope.settings.get("folder") or "Documents").strip("/ ") or "Documents"
    year = (envelope.finished_at or clock.utcnow()).year
    title = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", " ", envelope.title).strip()[:120] or "document"
    return f"{folder}/{year}/{envelope.public_id[:12]} {title}.pdf"


def download_name(envelope: Envelope, suffix: str = "signed") -> str:
    """An ASCII file name for the sealed copy: accented letters lose their accents
    ("Autorización" -> "Autorizacion"), other characters outside ASCII are dropped."""
    folded = unicodedata.normalize("NFKD", envelope.title)
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    title = re.sub(r"[^A-Za-z0-9._ -]+", "", plain).strip().replace(" ", "-")[:80]
    return f"{title or 'document'}-{suffix}-{envelope.public_id[:8]}.pdf"


# ---------------------------------------------------------------- the job


def request(envelope: Envelope) -> None:
    """Ask for sealing after the caller's commit (completion, sweeper, retry)."""
    if envelope.seal_status != "failed":  # a failure stays visible until a try succeeds
        envelope.seal_status = "pending"
    envelope.seal_requested_at = clock.utcnow()
    jobs.enqueue(seal_envelope, envelope.id)


def _note_failure(envelope_id: int, reason: str) -> None:
    db.session.rollback()
    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None or envelope.seal_status == "sealed":
        db.session.rollback()
        return
    envelope.seal_status = "failed"
    envelope.seal_error = reason[:1000]
    audit.record("envelope.seal_failed", actor="system", subject=envelope,
                 data={"reason": reason[:500], "attempt": envelope.seal_attempts})  # fmt: skip
    db.session.commit()


@jobs.job(queue="pdf", retry=(30, 120, 600), timeout=600)
def seal_envelope(envelope_id: int) -> str:
    """Seal a completed envelope once (see the module docstring)."""
    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None or envelope.status != "completed" or envelope.seal_status == "sealed":
        db.session.rollback()
        return "nothing to do"
    envelope.seal_attempts = (envelope.seal_attempts or 0) + 1
    try:
        identity = keystore.identity()
        db.session.commit()  # the attempt count (and a newly made development certificate)
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope is not None
        original = storage.get(envelope.document_blob_id)
        pages = [PageBox.from_record(p) for p in envelope.pages]
        values = _values(envelope)
        images: dict[str, bytes] = {}
        marks = stamps(envelope, values, images)
        facts = evidence(envelope, values=values, images=images)
        metadata = {
            "/Title": envelope.title,
            "/Subject": f"Signed and sealed; envelope {envelope.public_id}",
            "/Producer": "Signing Portal",
            "/PortalEnvelope": envelope.public_id,
        }
        reason = f"Sealed by {current_app.config.get('ORG_NAME')}: envelope {envelope.public_id}"
        tsa_url = str(current_app.config.get("SEAL_TSA_URL") or "") or None
        db.session.rollback()  # no transaction (and no SQLite lock) during the PDF work
        # The original and the signers' drawings came from outside: they are stamped in the
        # sandbox, while the certificate of completion is rendered here (on another core).
        stamped = sandbox.run(
            stamp_pdf, original, pages, marks, metadata=metadata, created=clock.utcnow(),
            appendix=sandbox.Later(lambda: render_certificate(facts)),
        )  # fmt: skip
        sealed = seal_pdf(
            stamped,
            identity,
            field_name=SEAL_FIELD,
            reason=reason,
            location=None,
            tsa_url=tsa_url,
            long_term=True,  # with a TSA: PAdES B-LTA (renewal: ``renewal``)
        )
    except sandbox.Busy:
        db.session.rollback()
        raise  # still pending: RQ tries again, and the sweeper
    except sandbox.Overrun as exc:
        log.warning("Sealing envelope %s went over the sandbox's limits: %s", envelope_id, exc)
        _note_failure(
            envelope_id,
            f"Stamping the document went over the limits of the PDF sandbox ({exc}): the "
            "document or a signature image is damaged or too complex.",
        )
        return "failed"
    except (SealingCertError, SealingError, storage.BlobError, ValueError) as exc:
        log.warning("Sealing envelope %s failed: %s", envelope_id, exc)
        _note_failure(envelope_id, str(exc))
        return "failed"
    except Exception as exc:
        log.exception("Sealing envelope %s failed unexpectedly", envelope_id)
        _note_failure(envelope_id, f"Unexpected error ({type(exc).__name__}): {exc}")
        raise
    return _store(envelope_id, sealed, identity.fingerprint, timestamped=tsa_url is not None)


def _store(envelope_id: int, sealed: bytes, cert_sha256: str, *, timestamped: bool) -> str:
    envelope = db.session.execute(
        select(Envelope).where(Envelope.id == envelope_id).with_for_update()
    ).scalar_one()
    if envelope.seal_status == "sealed":
        db.session.rollback()  # another job finished first
        return "already sealed"
    digest = hashlib.sha256(sealed).hexdigest()
    envelope.sealed_blob_id = storage.put(sealed, kind="sealed_pdf")
    envelope.sealed_sha256 = digest
    envelope.sealed_size = len(sealed)
    envelope.sealed_at = clock.utcnow()
    envelope.sealed_path = filing_path(envelope)
    envelope.seal_cert_sha256 = cert_sha256
    envelope.seal_status = "sealed"
    envelope.seal_error = None
    level = renewal.record_level(envelope, sealed)
    audit.record(
        "envelope.sealed",
        actor="system",
        subject=envelope,
        data={
            "original_sha256": envelope.original_sha256,
            "sealed_sha256": digest,
            "size": len(sealed),
            "certificate_sha256": cert_sha256,
            "timestamped": timestamped,
            "level": level.level,
            "path": envelope.sealed_path,
        },
    )
    _send_copies(envelope)
    db.session.commit()
    return "sealed"


# ---------------------------------------------------------------- copies


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(str(current_app.config["SECRET_KEY"]), salt=_COPY_SALT)


def copy_link(recipient: Recipient) -> str:
    """A download link for one recipient's signed copy (works ``COPY_LINK_DAYS`` days)."""
    days = int(current_app.config.get("COPY_LINK_DAYS", 7))
    until = int((clock.utcnow() + timedelta(days=days)).timestamp())
    token = _serializer().dumps({"r": recipient.id, "e": recipient.envelope.public_id, "u": until})
    base = str(current_app.config["PUBLIC_BASE_URL"])
    return f"{base}/copy/{token}"


def recipient_for_copy_link(token: str) -> Recipient | None:
    """The recipient a copy link was made for, while it is valid; None otherwise."""
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or int(data.get("u", 0)) < clock.utcnow().timestamp():
        return None
    recipient = db.session.get(Recipient, int(data.get("r", 0)))
    if recipient is None or recipient.envelope.public_id != data.get("e"):
        return None
    return recipient


def _send_copies(envelope: Envelope) -> None:
    limit = float(current_app.config.get("COPY_ATTACH_MAX_MB", 5)) * 1024 * 1024
    attach = (envelope.sealed_size or 0) <= limit
    base = str(current_app.config["PUBLIC_BASE_URL"])
    days = int(current_app.config.get("COPY_LINK_DAYS", 7))
    filename = download_name(envelope)
    for recipient in envelope.recipients:
        if recipient.kind not in COPY_KINDS:
            continue
        subject, text, html = mail.render(
            "envelope_completed",
            recipient.locale,
            recipient_name=recipient.name,
            title=envelope.title,
            sender_name=contacts.shown_name(envelope.created_by),
            filename=filename,
            link=None if attach else copy_link(recipient),
            link_until=clock.utcnow() + timedelta(days=days),
            verify_url=f"{base}/verify",
        )
        assert envelope.sealed_blob_id is not None
        mail.queue(
            recipient.email, recipient.name, subject, text, html, kind="completed",
            locale=recipient.locale, envelope_id=envelope.id, recipient_id=recipient.id,
            attachment=(envelope.sealed_blob_id, filename) if attach else None,
        )  # fmt: skip
    sender = contacts.notify(envelope.created_by)  # an API key's: its creator
    subject, text, html = mail.render(
        "envelope_sealed",
        "en",
        recipient_name=sender.name,
        title=envelope.title,
        link=f"{base}/envelopes/{envelope.public_id}",
    )
    mail.queue(sender.email, sender.name, subject, text, html, kind="notice",
               envelope_id=envelope.id)  # fmt: skip


def copy_until(envelope: Envelope) -> datetime | None:
    """Until when signers can download the sealed copy from their pages."""
    if envelope.finished_at is None:
        return None
    days = int(current_app.config.get("SIGNER_COPY_DAYS", 30))
    return clock.as_utc(envelope.finished_at) + timedelta(days=days)


def signer_copy_available(recipient: Recipient) -> bool:
    """Whether a recipient (signer, approver or cc) may still download the sealed copy from
    their pages."""
    envelope = recipient.envelope
    until = copy_until(envelope)
    if envelope.seal_status != "sealed" or until is None:
        return False
    return recipient.kind in COPY_KINDS and clock.utcnow() <= until


# Reports (the audit report of an envelope, the records centre's compliance report) are sealed
# like the signed documents, in a signature field of their own: the verify page tells them
# from sealed documents by it, and names the report by the seal's reason (both covered by the
# seal, so only the portal's key can have written them).
REPORT_SEAL_FIELD = "PortalReportSeal"
# Staff views of an envelope are access, not its story: they stay out of its reports' timeline.
_ACCESS_ONLY = frozenset({viewing.LABEL, viewing.EVENT})


def seal_report(pdf: bytes, reason: str) -> bytes:
    """``pdf`` sealed with the portal's seal (``reason``: plain ASCII naming the report).

    In a request that reads first, the sealing identity is looked up in a short writing
    transaction of its own (the first seal of a new installation makes the certificate);
    the sealing itself holds no lock. Raises ``SealingError`` / ``SealingCertError``.
    """
    restarted = write_lock()
    identity = keystore.identity()
    if restarted:
        db.session.commit()
    tsa_url = str(current_app.config.get("SEAL_TSA_URL") or "") or None
    dated = pdfmeta.dated(pdf, created=clock.utcnow())  # (rendered in invariant mode)
    return seal_pdf(dated, identity, field_name=REPORT_SEAL_FIELD, reason=reason,
                    tsa_url=tsa_url, long_term=True)  # fmt: skip


def report_level(sealed: bytes) -> str | None:
    """The PAdES level of a sealed report (for its audit event)."""
    try:
        return ltv.describe(sealed).level
    except ltv.LongTermError:
        return None


def audit_report(envelope: Envelope) -> bytes:
    """The envelope's audit report (interim before completion), sealed."""
    facts = evidence(envelope, sealed_sha256=envelope.sealed_sha256)
    facts = dataclasses.replace(
        facts, timeline=[e for e in facts.timeline if e.event not in _ACCESS_ONLY]
    )
    kind = "Audit report" if envelope.status == "completed" else "Interim audit report"
    return seal_report(render_certificate(facts), f"{kind} of envelope {envelope.public_id}")


def record_download(envelope: Envelope, event: str, actor: Any, what: str) -> bytes:
    """The bytes of a sealed copy or report, with the view recorded ("who viewed records")."""
    if what == "document":
        if envelope.sealed_blob_id is None:
            raise SealingProblem("The document is not sealed yet.")
        content = storage.get(envelope.sealed_blob_id)
        data: dict[str, Any] = {"sealed_sha256": envelope.sealed_sha256}
    else:
        interim = envelope.status != "completed"
        content = audit_report(envelope)
        data = {"interim": interim, "sha256": hashlib.sha256(content).hexdigest(),
                "seal_level": report_level(content)}  # fmt: skip
    # Read and rendered without locking; the lock only for the event (it says what was sent).
    write_lock()
    audit.record(event, actor=actor, subject=envelope, data=data)
    db.session.commit()
    return content


# ---------------------------------------------------------------- sweeper and retry


@jobs.periodic(every=60)
def sweep_unsealed() -> str:
    """Ask again for completed envelopes that are still not sealed a while after asking."""
    minutes = int(current_app.config.get("SEAL_SWEEP_MINUTES", 5))
    cutoff = clock.utcnow() - timedelta(minutes=minutes)
    due = list(
        db.session.execute(
            select(Envelope)
            .where(
                Envelope.status == "completed",
                Envelope.seal_status.in_(("pending", "failed")),
                Envelope.seal_attempts < MAX_AUTOMATIC_ATTEMPTS,
                or_(Envelope.seal_requested_at.is_(None), Envelope.seal_requested_at < cutoff),
            )
            .order_by(Envelope.id)
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    for envelope in due:
        request(envelope)
    db.session.commit()
    return f"{len(due)} asked again"


def retry(envelope: Envelope, actor: User) -> None:
    """Staff ask for sealing again (after a failure, or when it seems stuck)."""
    if envelope.status != "completed" or envelope.seal_status == "sealed":
        raise SealingProblem("Only a completed envelope that is not sealed can be sealed again.")
    envelope.seal_attempts = 0
    audit.record("envelope.seal_retried", actor=actor, subject=envelope,
                 data={"previous_error": envelope.seal_error})  # fmt: skip
    request(envelope)
    db.session.commit()
