"""``/api/v1/envelopes``: send from a template, list with filters, read one.

Sending runs the console's own checks and sending code (``checks.options``,
``sending.send_new``) with the key's service user as ``by``; lists use the console's filters
(``console.matching``) in cursor pages.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload, load_only, selectinload

from portal.envelopes import checks, console
from portal.envelopes.checks import EnvelopeError, RecipientInput
from portal.envelopes.models import Envelope, Recipient
from portal.envelopes.sending import send_new
from portal.extensions import db, write_lock
from portal.integrations.api import current_key, paginate, problem, requires, send_limited
from portal.integrations.schemas import (
    EnvelopeCreateSchema,
    EnvelopeListArgs,
    EnvelopePageSchema,
    EnvelopeSchema,
    RecipientSchema,
)
from portal.library import queries as library
from portal.library.models import Template, TemplateVersion

blp = flask_smorest.Blueprint(
    "envelopes",
    __name__,
    url_prefix="/api/v1/envelopes",
    description="Envelopes: send one from a template, list them, read one.",
)


# What ``EnvelopeSchema`` shows with an envelope is loaded with it, not by a lazy query for
# each relation while the answer is written: its version and template joined, its recipients
# joined for one envelope or in one more query for a page. A page loads only the columns the
# answer shows: the console's and the sealing's own columns, their JSON and long texts, are
# neither read nor decoded for 25 envelopes and their recipients.
_VERSION = joinedload(Envelope.version).joinedload(TemplateVersion.template)
_ONE = (_VERSION, joinedload(Envelope.recipients))
_SHOWN_ENVELOPE = [
    getattr(Envelope, name)
    for name in (
        "id", "public_id", "team_id", "template_version_id", "title", "status", "ticket_id",
        "ticket_url", "document_locale", "routing", "original_sha256", "created_at", "sent_at",
        "expires_at", "finished_at", "void_reason", "seal_status", "sealed_at", "sealed_sha256",
        "seal_error",
    )
]  # fmt: skip
_SHOWN_RECIPIENT = [
    getattr(Recipient, name) for name in ("envelope_id", *RecipientSchema._declared_fields)
]
_SHOWN_VERSION = (
    joinedload(Envelope.version)
    .load_only(TemplateVersion.template_id, TemplateVersion.number)
    .joinedload(TemplateVersion.template)
    .load_only(Template.name)
)
_PAGE = (
    load_only(*_SHOWN_ENVELOPE),
    _SHOWN_VERSION,
    selectinload(Envelope.recipients).load_only(*_SHOWN_RECIPIENT),
)


def envelope_or_404(public_id: str) -> Envelope:
    """The key's team's envelope with this public id (another team's is not found either)."""
    envelope = (
        db.session.execute(
            select(Envelope).where(Envelope.public_id == public_id[:32]).options(*_ONE)
        )
        .unique()
        .scalar_one_or_none()
    )
    if envelope is None or envelope.team_id != current_key().team_id:
        problem(404, "not-found", "No such envelope", "No envelope with this id.")
    return envelope


def _sendable(template_id: int) -> TemplateVersion:
    template = db.session.get(Template, template_id)
    version = library.approved_version(template) if template is not None else None
    if template is None or version is None or template.team_id != current_key().team_id:
        problem(
            422,
            "validation-failed",
            "Invalid request",
            errors={"template_id": ["No approved template with this id."]},
        )
    return version


def _recipients(version: TemplateVersion, given: list[dict[str, Any]]) -> list[RecipientInput]:
    roles = {str(role["key"]) for role in version.roles}
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    for n, person in enumerate(given):
        if person["role"] not in roles:
            errors[str(n)] = {"role": [f"Not a role of this template: {', '.join(sorted(roles))}."]}
        elif person["role"] in seen:
            errors[str(n)] = {"role": ["Given twice."]}
        seen.add(person["role"])
    if errors:
        problem(422, "validation-failed", "Invalid request", errors={"recipients": errors})
    return [RecipientInput(**person) for person in given]


@blp.route("", methods=["POST"])
@requires("envelopes:write")
@send_limited
@blp.arguments(EnvelopeCreateSchema)
@blp.response(201, EnvelopeSchema)
def create_envelope(body: dict[str, Any]) -> Any:
    """Send an envelope from an approved template (merge data, one recipient per role)."""
    write_lock()
    actor = current_key().actor
    version = _sendable(body["template_id"])
    people = _recipients(version, body["recipients"])
    try:
        options = checks.options(
            version,
            message=body["message"],
            cc=", ".join(body["cc"]),
            expiry_days=body["expiry_days"],
            reminder_every_hours=body["reminder_every_hours"],
            reminder_max=body["reminder_max"],
            language=body["language"],
        )
        envelope, _links = send_new(
            version,
            body["merge_data"],
            people,
            actor,
            ticket_id=body["ticket_id"],
            ticket_url=body["ticket_url"],
            options=options,
        )
    except EnvelopeError as exc:
        db.session.rollback()
        problem(422, "refused", "Envelope not sent", str(exc))
    db.session.commit()
    location = url_for("envelopes.get_envelope", envelope_id=envelope.public_id)
    return envelope, 201, {"Location": location}


@blp.route("")
@requires("envelopes:read")
@blp.arguments(EnvelopeListArgs, location="query")
@blp.response(200, EnvelopePageSchema)
def list_envelopes(args: dict[str, Any]) -> dict[str, Any]:
    """The team's envelopes, newest first, in cursor pages (filters combine)."""
    actor = current_key().actor
    query = console.ListQuery(status=args.get("status", ""), template=args.get("template_id"))
    stmt = console.matching(select(Envelope), query, actor)
    if args.get("ticket_id"):
        stmt = stmt.where(Envelope.ticket_id == args["ticket_id"])
    if args.get("created_since"):
        stmt = stmt.where(Envelope.created_at >= args["created_since"])
    if args.get("created_until"):
        stmt = stmt.where(Envelope.created_at < args["created_until"])
    if args.get("recipient_email"):
        try:
            email = checks.email_address(args["recipient_email"], "recipient_email")
        except EnvelopeError as exc:
            problem(
                422, "validation-failed", "Invalid request", errors={"recipient_email": [str(exc)]}
            )
        people = select(Recipient.envelope_id).where(Recipient.email == email)
        stmt = stmt.where(Envelope.id.in_(people))
    stmt = stmt.options(*_PAGE)
    page = paginate(stmt, (Envelope.created_at, Envelope.id), args["limit"], args.get("cursor"))
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/<envelope_id>")
@requires("envelopes:read")
@blp.response(200, EnvelopeSchema)
def get_envelope(envelope_id: str) -> Envelope:
    """One envelope: recipients and their status, ticket, seal, links to its documents."""
    return envelope_or_404(envelope_id)
