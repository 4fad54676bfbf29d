"""API actions on one envelope: void, resend, remind, correct an email, an embedded signing
link; downloads (the document as sent, the sealed PDF, the audit report) and the timeline.

Each is the console's own operation (``portal.envelopes.operations``, ``sealing``,
``timeline``, ``viewing``) with the key's service user as ``by``, so the audit events name
the key; downloads are recorded exactly as the console's are. A refusal of the operation
(the envelope already voided, the recipient finished, not their turn, reminded too recently)
is a 409 problem whose ``detail`` is the operation's own sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

import flask_smorest
import marshmallow as ma
from flask import Response

from portal import storage, web
from portal.envelopes import operations as envelopes
from portal.envelopes import sealing, timeline, viewing
from portal.envelopes.checks import EnvelopeError, email_address
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.integrations import embedded
from portal.integrations.api import current_key, problem, requires
from portal.integrations.api_envelopes import envelope_or_404
from portal.integrations.schemas import EnvelopeSchema, RecipientSchema, Strict, UtcDateTime

blp = flask_smorest.Blueprint(
    "api_actions",
    __name__,
    url_prefix="/api/v1/envelopes",
    description="Act on an envelope: void, resend, remind, correct an email, embedded "
    "signing links; download its documents and read its timeline.",
)

PDF = "application/pdf"
_PDF_DOC = {"content": {PDF: {"schema": {"type": "string", "format": "binary"}}}}


def _not_blank(value: str) -> bool:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")
    return True


class VoidSchema(Strict):
    reason = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=500), _not_blank],
        metadata={"description": "Why it is voided; recipients see it"},
    )


class EmailSchema(Strict):
    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=254),
        metadata={"description": "The corrected address; the old link stops working"},
    )


class EmbeddedLinkSchema(Strict):
    url = ma.fields.String(
        required=True, metadata={"description": "Open once, within 5 minutes, in the browser"}
    )
    expires_at = UtcDateTime(required=True)


class EventSchema(Strict):
    at = UtcDateTime(required=True)
    event = ma.fields.String(required=True, metadata={"description": "e.g. recipient.signed"})
    label = ma.fields.String(required=True)
    who = ma.fields.String(required=True)
    ip = ma.fields.String(allow_none=True)
    detail = ma.fields.String(required=True)


class EventsSchema(Strict):
    items = ma.fields.List(ma.fields.Nested(EventSchema), required=True)


def _recipient(envelope_id: str, recipient_id: int) -> Recipient:
    envelope = envelope_or_404(envelope_id)
    for recipient in envelope.recipients:
        if recipient.id == recipient_id:
            return recipient
    problem(
        404, "not-found", "Recipient not found", f"This envelope has no recipient {recipient_id}."
    )


def _refused(exc: EnvelopeError) -> NoReturn:
    db.session.rollback()
    problem(409, "conflict", "Not possible now", str(exc))


def _recipient_now(recipient_id: int) -> Recipient:
    recipient = db.session.get(Recipient, recipient_id)
    assert recipient is not None
    return recipient


def _acted(recipient: Recipient, act: Callable[..., object]) -> Recipient:
    """Run a console operation on a recipient as the key (a refusal is a 409 problem) and
    answer the recipient as it is now."""
    recipient_id = recipient.id
    try:
        act(recipient, by=current_key().actor)
    except EnvelopeError as exc:
        _refused(exc)
    return _recipient_now(recipient_id)


@blp.route("/<envelope_id>/void", methods=["POST"])
@requires("envelopes:write")
@blp.arguments(VoidSchema)
@blp.response(200, EnvelopeSchema)
def void(body: dict[str, Any], envelope_id: str) -> Envelope:
    """Void a sent envelope: every link stops at once; recipients see the reason."""
    envelope = envelope_or_404(envelope_id)
    try:
        envelopes.void(envelope, body["reason"], by=current_key().actor)
    except EnvelopeError as exc:
        _refused(exc)
    return envelope_or_404(envelope_id)


@blp.route("/<envelope_id>/recipients/<int:recipient_id>/resend", methods=["POST"])
@requires("envelopes:write")
@blp.response(200, RecipientSchema)
def resend(envelope_id: str, recipient_id: int) -> Recipient:
    """Email the recipient a new link (the old one stops working)."""
    return _acted(_recipient(envelope_id, recipient_id), envelopes.resend)


@blp.route("/<envelope_id>/recipients/<int:recipient_id>/remind", methods=["POST"])
@requires("envelopes:write")
@blp.response(200, RecipientSchema)
def remind(envelope_id: str, recipient_id: int) -> Recipient:
    """Remind the recipient now (at most once every 30 minutes after their last email)."""
    return _acted(_recipient(envelope_id, recipient_id), envelopes.remind_now)


@blp.route("/<envelope_id>/recipients/<int:recipient_id>/email", methods=["POST"])
@requires("envelopes:write")
@blp.arguments(EmailSchema)
@blp.response(200, RecipientSchema)
def correct_email(body: dict[str, Any], envelope_id: str, recipient_id: int) -> Recipient:
    """Correct a recipient's email: the old link dies; a new one goes out if it is their turn."""
    recipient = _recipient(envelope_id, recipient_id)
    try:
        email_address(body["email"], "That email")
    except EnvelopeError as exc:
        problem(422, "validation-failed", "Invalid email", str(exc), {"email": [str(exc)]})
    return _acted(recipient, partial(envelopes.correct_email, email=body["email"]))


@blp.route("/<envelope_id>/recipients/<int:recipient_id>/embedded-link", methods=["POST"])
@requires("envelopes:write")
@blp.response(201, EmbeddedLinkSchema)
def embedded_link(envelope_id: str, recipient_id: int) -> embedded.EmbeddedLink:
    """A signing link for a chat or kiosk hand-off.

    Single use, valid 5 minutes; the recipient's emailed link keeps working, and their
    authentication (access code, email code) is still asked for.
    """
    recipient = _recipient(envelope_id, recipient_id)
    try:
        return embedded.issue(recipient, by=current_key().actor)
    except EnvelopeError as exc:
        _refused(exc)


def _pdf(content: bytes, name: str) -> Response:
    response = web.pdf_response(content, name)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _kept(envelope: Envelope) -> None:
    if envelope.purged_at is not None:
        problem(409, "conflict", "Purged", "Its retention period ended: the documents were purged.")


@blp.route("/<envelope_id>/document")
@requires("envelopes:read")
@blp.doc(responses={"200": {"description": "The document as sent (PDF)", **_PDF_DOC}})
def document(envelope_id: str) -> Response:
    """The document exactly as sent (its SHA-256 is in the audit trail); recorded as a view."""
    envelope = envelope_or_404(envelope_id)
    _kept(envelope)
    content = storage.get(envelope.document_blob_id)
    name = sealing.download_name(envelope, "as-sent")
    viewing.record_view(envelope, "original", current_key().actor)
    return _pdf(content, name)


@blp.route("/<envelope_id>/sealed")
@requires("envelopes:read")
@blp.doc(responses={"200": {"description": "The sealed PDF", **_PDF_DOC}})
def sealed(envelope_id: str) -> Response:
    """The sealed PDF (stamped pages, certificate of completion, digital seal).

    409 until the envelope is completed and sealed.
    """
    envelope = envelope_or_404(envelope_id)
    _kept(envelope)
    if envelope.seal_status != "sealed" or envelope.sealed_blob_id is None:
        problem(
            409,
            "conflict",
            "Not sealed yet",
            f"The envelope is {envelope.status}; its sealed PDF exists once it is completed "
            f"and sealed (seal status: {envelope.seal_status or 'none'}).",
        )
    content = sealing.record_download(
        envelope, "envelope.document_downloaded", current_key().actor, "document"
    )
    return _pdf(content, sealing.download_name(envelope))


@blp.route("/<envelope_id>/audit-report")
@requires("envelopes:read")
@blp.doc(responses={"200": {"description": "The sealed audit report (PDF)", **_PDF_DOC}})
def audit_report(envelope_id: str) -> Response:
    """The certificate of completion alone, sealed (an interim report before completion)."""
    envelope = envelope_or_404(envelope_id)
    suffix = "audit-report" if envelope.status == "completed" else "interim-report"
    name = sealing.download_name(envelope, suffix)
    try:
        content = sealing.record_download(
            envelope, "envelope.report_downloaded", current_key().actor, "report"
        )
    except sealing.SealingError as exc:  # the report is sealed: a certificate problem
        db.session.rollback()
        problem(503, "server-error", "The report could not be sealed", str(exc))
    return _pdf(content, name)


@blp.route("/<envelope_id>/events")
@requires("envelopes:read")
@blp.response(200, EventsSchema)
def events(envelope_id: str) -> dict[str, Any]:
    """The envelope's timeline from the audit chain, oldest first (the console's)."""
    envelope = envelope_or_404(envelope_id)
    entries, _comments = timeline.story(envelope)
    return {"items": entries}
