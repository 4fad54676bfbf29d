"""The API's marshmallow schemas: what goes in and out of ``/api/v1`` (and the OpenAPI doc)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from portal import clock
from portal.envelopes import checks
from portal.envelopes.models import EnvelopeStatus

PREFIX = "/api/v1"
MAX_ID = 2_147_483_647  # ids are 32-bit integers (PostgreSQL refuses a larger one)


def utc_text(value: datetime | None) -> str | None:
    """A moment as the API and webhooks write every time: ISO 8601 in UTC, whole seconds,
    ``Z`` (``2026-12-05T03:00:00Z``)."""
    return None if value is None else clock.as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class UtcDateTime(fields.DateTime):
    """The API's one time field: written by ``utc_text``; input must say its offset."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return utc_text(value)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            raise ma.ValidationError("Give the time with its offset, e.g. 2026-12-05T03:00:00Z.")
        return clock.as_utc(moment)


class Strict(ma.Schema):
    """Unknown fields are refused (and named)."""

    class Meta:
        unknown = ma.RAISE


# ---------------------------------------------------------------- templates


class RoleSchema(Strict):
    key = fields.String(metadata={"description": "Use as `role` of a recipient"})
    name = fields.String()
    kind = fields.String(metadata={"description": "signer, approver or cc"})
    order = fields.Integer()


class MergeKeySchema(Strict):
    key = fields.String(metadata={"description": "Use as a key of `merge_data`"})
    label = fields.String()
    required = fields.Boolean()
    options = fields.List(fields.String(), metadata={"description": "Allowed values, if limited"})


class FieldSchema(Strict):
    key = fields.String()
    type = fields.String()
    role = fields.String()
    page = fields.Integer()
    label = fields.String()
    required = fields.Boolean()
    merge_key = fields.String(allow_none=True)
    options = fields.List(fields.String())


class SendSettingsSchema(Strict):
    expiry_days = fields.Integer(metadata={"description": "The most (and default) days"})
    reminder_every_hours = fields.Integer()
    reminder_max = fields.Integer()
    default_auth = fields.String()
    routing = fields.String()


class TemplateSummarySchema(Strict):
    id = fields.Integer()
    name = fields.String()
    document_type = fields.String()
    version = fields.Integer(metadata={"description": "The approved version's number"})
    approved_at = UtcDateTime(allow_none=True)


class TemplateSchema(TemplateSummarySchema):
    roles = fields.List(fields.Nested(RoleSchema))
    merge_keys = fields.List(fields.Nested(MergeKeySchema))
    fields_ = fields.List(fields.Nested(FieldSchema), data_key="fields")
    settings = fields.Nested(SendSettingsSchema)
    languages = fields.List(fields.String(), metadata={"description": "Document languages"})


class TemplateListSchema(Strict):
    items = fields.List(fields.Nested(TemplateSummarySchema))


# ---------------------------------------------------------------- envelopes

_max = checks.MAX_LENGTH


class RecipientInputSchema(Strict):
    role = fields.String(required=True, validate=validate.Length(1, 40))
    name = fields.String(required=True, validate=validate.Length(1, _max["name"]))
    email = fields.String(required=True, validate=validate.Length(1, _max["email"]))
    phone = fields.String(load_default="", validate=validate.Length(max=_max["phone"]))
    locale = fields.String(load_default="en", validate=validate.OneOf(checks.LOCALES))
    auth_method = fields.String(
        load_default="",
        validate=validate.OneOf(["", "link", "email_otp", "access_code"]),
        metadata={"description": "Never weaker than the template's; empty: the template's"},
    )
    access_code = fields.String(
        load_default="",
        load_only=True,
        validate=validate.Length(max=100),
        metadata={"description": "For auth_method access_code; tell it to the recipient"},
    )


class EnvelopeCreateSchema(Strict):
    template_id = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_ID))
    merge_data = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 80)),
        values=fields.String(validate=validate.Length(max=_max["merge"])),
        load_default=dict,
        metadata={"description": "A value for every merge key of the template"},
    )
    recipients = fields.List(
        fields.Nested(RecipientInputSchema),
        required=True,
        validate=validate.Length(1, 20),
        metadata={"description": "One per role of the template"},
    )
    ticket_id = fields.String(load_default="", validate=validate.Length(max=_max["ticket_id"]))
    ticket_url = fields.String(load_default="", validate=validate.Length(max=_max["ticket_url"]))
    message = fields.String(load_default="", validate=validate.Length(max=_max["message"]))
    cc = fields.List(
        fields.String(validate=validate.Length(1, _max["email"])),
        load_default=list,
        validate=validate.Length(max=checks.MAX_CC),
    )
    expiry_days = fields.Integer(strict=True, allow_none=True, load_default=None)
    reminder_every_hours = fields.Integer(strict=True, allow_none=True, load_default=None)
    reminder_max = fields.Integer(strict=True, allow_none=True, load_default=None)
    language = fields.String(load_default="", validate=validate.Length(max=10))


class RecipientSchema(Strict):
    id = fields.Integer()
    role = fields.String()
    role_name = fields.String()
    kind = fields.String()
    order = fields.Integer()
    name = fields.String()
    email = fields.String()
    phone = fields.String(allow_none=True)
    locale = fields.String()
    auth_method = fields.String()
    status = fields.String()
    sent_at = UtcDateTime(allow_none=True)
    viewed_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    decline_reason = fields.String(allow_none=True)


class SealSchema(Strict):
    status = fields.String(allow_none=True, metadata={"description": "pending, sealed, failed"})
    sealed_at = UtcDateTime(allow_none=True)
    sha256 = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class TemplateRefSchema(Strict):
    id = fields.Integer()
    name = fields.String()
    version = fields.Integer()


class EnvelopeLinksSchema(Strict):
    self = fields.String()
    original = fields.String()
    sealed = fields.String()
    audit_report = fields.String()
    timeline = fields.String()


class EnvelopeSchema(Strict):
    id = fields.String(metadata={"description": "The envelope's public id"})
    title = fields.String()
    status = fields.String(metadata={"description": "sent, completed, declined, voided, expired"})
    template = fields.Nested(TemplateRefSchema)
    ticket_id = fields.String(allow_none=True)
    ticket_url = fields.String(allow_none=True)
    document_language = fields.String()
    routing = fields.String()
    original_sha256 = fields.String()
    created_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)
    expires_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    void_reason = fields.String(allow_none=True)
    seal = fields.Nested(SealSchema)
    recipients = fields.List(fields.Nested(RecipientSchema))
    links = fields.Nested(EnvelopeLinksSchema)

    @ma.pre_dump
    def _flatten(self, envelope: Any, **_kwargs: Any) -> dict[str, Any]:
        version = envelope.version
        return {
            "id": envelope.public_id,
            "title": envelope.title,
            "status": envelope.status,
            "template": {
                "id": version.template_id,
                "name": version.template.name,
                "version": version.number,
            },
            "ticket_id": envelope.ticket_id,
            "ticket_url": envelope.ticket_url,
            "document_language": envelope.document_locale,
            "routing": envelope.routing,
            "original_sha256": envelope.original_sha256,
            "created_at": envelope.created_at,
            "sent_at": envelope.sent_at,
            "expires_at": envelope.expires_at,
            "finished_at": envelope.finished_at,
            "void_reason": envelope.void_reason,
            "seal": {
                "status": envelope.seal_status,
                "sealed_at": envelope.sealed_at,
                "sha256": envelope.sealed_sha256,
                "error": envelope.seal_error if envelope.seal_status == "failed" else None,
            },
            "recipients": sorted(envelope.recipients, key=lambda r: (r.order, r.id)),
            "links": envelope_links(envelope.public_id),
        }


def envelope_links(public_id: str) -> dict[str, str]:
    """Where an envelope's resources are (the downloads and timeline: ``api_actions``)."""
    base = f"{PREFIX}/envelopes/{public_id}"
    return {
        "self": base,
        "original": f"{base}/document",
        "sealed": f"{base}/sealed",
        "audit_report": f"{base}/audit-report",
        "timeline": f"{base}/events",
    }


class PageArgs(Strict):
    """``limit`` and ``cursor`` of a list (``api.paginate``)."""

    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = fields.String(
        validate=validate.Length(1, 1000),
        metadata={"description": "The next_cursor of the previous page"},
    )


class EnvelopeListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf([s.value for s in EnvelopeStatus]))
    ticket_id = fields.String(validate=validate.Length(1, _max["ticket_id"]))
    template_id = fields.Integer(validate=validate.Range(1, MAX_ID))
    created_since = UtcDateTime(metadata={"description": "Created at or after (ISO 8601)"})
    created_until = UtcDateTime(metadata={"description": "Created before (ISO 8601)"})
    recipient_email = fields.String(validate=validate.Length(1, _max["email"]))


class EnvelopePageSchema(Strict):
    items = fields.List(fields.Nested(EnvelopeSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "null: the last page"})
