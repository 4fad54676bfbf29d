"""Creating and sending one envelope, in blocks that every sender reuses.

``checks`` cleans what was given (merge values, recipients, ticket, send-time options),
``store_document`` stores the document as the recipients will see it, ``send_new`` creates and
sends one envelope in the caller's transaction, and ``create_and_send`` is that and the commit.
The console's send form (``idempotency.send_once``), bulk send and the API all end in
``send_new``, so an envelope is made and audited the same way wherever it comes from.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from portal import audit, clock, mail, storage
from portal.accounts.models import User
from portal.documents import authoring
from portal.documents.inspect import inspect_generated_pdf
from portal.envelopes import checks, images
from portal.envelopes.checks import EnvelopeError, RecipientInput, SendOptions
from portal.envelopes.links import active_now, invite
from portal.envelopes.models import Envelope, EnvelopeStatus
from portal.extensions import db
from portal.library import languages, variants
from portal.library import operations as library
from portal.library.models import TemplateVersion


@dataclass(frozen=True)
class StoredDocument:
    """The document as the recipients will see it, stored: its blob and SHA-256."""

    blob_id: str
    sha256: str


def document_for(
    version: TemplateVersion, values: Mapping[str, str], locale: str = languages.BASE
) -> bytes:
    """The exact bytes the recipients will see: the PDF, or the authored text merged, in the
    language given (the version's own document when it has no such variant)."""
    variant = version.variant(locale)
    if version.source_kind == "authored":
        try:
            pdf = variants.render(version, locale, values)
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
    blob_id = variant.source_blob_id if variant is not None else version.source_blob_id
    if not blob_id:
        raise EnvelopeError("This template has no document.")
    return storage.get(blob_id)


def _attach_pages(envelope: Envelope, version: TemplateVersion) -> None:
    """An uploaded PDF is sent as it is, so its page images are the template's; an authored
    document is merged with the customer's values, and a language variant is another PDF:
    those get their own."""
    variant = version.variant(envelope.document_locale)
    envelope.pages = [dict(page) for page in (variant or version).pages]
    if version.source_kind == "authored" or variant is not None:
        for page in envelope.pages:
            page["image_blob_id"] = None
        images.ENVELOPES.request(envelope)
    else:
        envelope.images_status = version.images_status


def preview(
    version: TemplateVersion, merge_data: Mapping[str, str], locale: str = languages.BASE
) -> bytes:
    """The document exactly as the customer would get it with these values (nothing stored)."""
    try:
        library.ensure_sendable(version)
    except library.LibraryError as exc:
        raise EnvelopeError(str(exc)) from exc
    return document_for(version, checks.merge_data(version, merge_data), locale)


def store_document(
    version: TemplateVersion, values: Mapping[str, str], locale: str = languages.BASE
) -> StoredDocument:
    """Store the document for these (checked) merge values, as the recipients will see it.

    For an uploaded PDF the bytes are the same for every envelope of the version; a sender
    of many envelopes may store it once and give the result to each ``send_new``.
    """
    document = document_for(version, values, locale)
    return StoredDocument(
        storage.put(document, kind="envelope_document"), hashlib.sha256(document).hexdigest()
    )


def _settings(version: TemplateVersion, options: SendOptions) -> dict[str, Any]:
    """The template's workflow settings with the send-time options laid over them."""
    settings = dict(version.settings or {})
    for name in ("expiry_days", "reminder_every_hours", "reminder_max"):
        chosen = getattr(options, name)
        if chosen is not None:
            settings[name] = chosen
    if options.message:
        settings["message"] = options.message
    return settings


def _created(envelope: Envelope, by: User, options: SendOptions) -> None:
    version = envelope.version
    settings = envelope.settings
    audit.record(
        "envelope.created",
        actor=by,
        subject=envelope,
        data={
            "template": version.template.name,
            "version": version.number,
            "sha256": envelope.original_sha256,
            "language": envelope.document_locale,
            "ticket": envelope.ticket_id,
            "recipients": [
                {
                    "role": p.role,
                    "kind": p.kind,
                    "email": mail.mask_address(p.email),
                    "auth": p.auth_method,
                }
                for p in envelope.recipients
            ],
            "options": {
                "expiry_days": settings.get("expiry_days"),
                "reminder_every_hours": settings.get("reminder_every_hours"),
                "reminder_max": settings.get("reminder_max"),
                "personal_message": bool(options.message),
                "cc": len(options.cc),
            },
        },
    )


def send_new(
    version: TemplateVersion,
    merge_data: Mapping[str, str],
    recipients: Sequence[RecipientInput],
    by: User,
    ticket_id: str = "",
    ticket_url: str = "",
    options: SendOptions | None = None,
    document: StoredDocument | None = None,
) -> tuple[Envelope, dict[int, str]]:
    """Create an envelope from the approved version and send it, in the caller's transaction
    (nothing is committed); returns it and the new links by recipient id.

    ``merge_data``, ``recipients`` and the ticket are checked here (``checks``); ``options``
    must come from ``checks.options`` for this version. ``document`` is what
    ``store_document`` returned for these values and the envelope's document language
    (``checks.document_language``; stored now when not given).
    """
    try:
        library.ensure_sendable(version)
    except library.LibraryError as exc:
        raise EnvelopeError(str(exc)) from exc
    options = options or SendOptions()
    values = checks.merge_data(version, merge_data)
    people = checks.recipients(version, list(recipients))
    reference, url = checks.ticket(ticket_id, ticket_url)
    last_order = max((p.order for p in people), default=0)
    people += checks.cc_recipients(options.cc, after=last_order)
    locale = checks.document_language(
        version, [(p.kind, p.locale) for p in people], options.language
    )
    document = document or store_document(version, values, locale)
    settings = _settings(version, options)
    now = clock.utcnow()
    expires_at = now + timedelta(days=int(settings.get("expiry_days") or 30))
    envelope = Envelope(
        public_id=uuid.uuid4().hex,
        version=version,
        team_id=version.template.team_id if by.team_id is None else by.team_id,
        created_by=by,
        title=variants.document_title(version, locale),  # the document's own, in its language
        status=EnvelopeStatus.SENT.value,
        merge_data=values,
        ticket_id=reference,
        ticket_url=url,
        routing=str(settings.get("routing") or "sequential"),
        settings=settings,
        document_blob_id=document.blob_id,
        original_sha256=document.sha256,
        page_count=version.page_count,
        document_locale=locale,
        sent_at=now,
        expires_at=expires_at,
    )
    db.session.add(envelope)
    for person in people:
        envelope.recipients.append(person)
    db.session.flush()
    _attach_pages(envelope, version)
    _created(envelope, by, options)
    links = {r.id: invite(r, by) for r in active_now(envelope)}
    audit.record(
        "envelope.sent",
        actor=by,
        subject=envelope,
        data={"expires_at": audit.iso_time(expires_at)},
    )
    return envelope, links


def create_and_send(
    version: TemplateVersion,
    merge_data: Mapping[str, str],
    recipients: Sequence[RecipientInput],
    by: User,
    ticket_id: str = "",
    ticket_url: str = "",
    options: SendOptions | None = None,
) -> tuple[Envelope, dict[int, str]]:
    """Create an envelope from the approved version and send it; returns it and the new links."""
    envelope, links = send_new(
        version, merge_data, recipients, by, ticket_id, ticket_url, options=options
    )
    db.session.commit()
    return envelope, links
