"""Templates, their versions and the fields placed on them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.accounts.models import Team, User
from portal.extensions import Model


class DocumentType(enum.StrEnum):
    """Kinds of customer-service documents; retention rules attach to these later."""

    REFUND = "refund_authorization"
    RETURN = "return_acknowledgement"
    WARRANTY = "warranty_acknowledgement"
    CONSENT = "consent_form"
    SERVICE_CHANGE = "service_change_addendum"
    NDA = "nda"
    OTHER = "other"

    @property
    def label(self) -> str:
        return DOCUMENT_TYPE_LABELS[self.value]


DOCUMENT_TYPE_LABELS = {
    "refund_authorization": "Refund authorization",
    "return_acknowledgement": "Return acknowledgement",
    "warranty_acknowledgement": "Warranty acknowledgement",
    "consent_form": "Consent or authorization form",
    "service_change_addendum": "Service-change addendum",
    "nda": "Non-disclosure agreement",
    "other": "Other",
}


class VersionStatus(enum.StrEnum):
    """Lifecycle of a template version."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    SUPERSEDED = "superseded"  # approved once, replaced by a newer approved version
    RETIRED = "retired"

    @property
    def label(self) -> str:
        return {
            "draft": "Draft",
            "in_review": "In review",
            "approved": "Approved",
            "superseded": "Superseded",
            "retired": "Retired",
        }[self.value]


class FieldType(enum.StrEnum):
    """What a recipient fills in."""

    SIGNATURE = "signature"
    INITIALS = "initials"
    DATE_SIGNED = "date_signed"
    FULL_NAME = "full_name"
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHECKBOX = "checkbox"
    RADIO = "radio"
    SELECT = "select"
    ATTACHMENT = "attachment"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


FIELD_DEFAULT_SIZE: dict[str, tuple[float, float]] = {
    "signature": (180, 50),
    "initials": (60, 40),
    "date_signed": (110, 22),
    "full_name": (180, 22),
    "text": (180, 22),
    "number": (100, 22),
    "date": (110, 22),
    "checkbox": (16, 16),
    "radio": (120, 60),
    "select": (150, 22),
    "attachment": (150, 30),
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "reminder_every_hours": 48,
    "reminder_max": 3,
    "expiry_days": 30,
    "routing": "sequential",
    "folder": "Customer Documents",
    "attachments": "optional",
    "default_auth": "link",
}

DEFAULT_ROLES: list[dict[str, Any]] = [
    {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
]


class Template(Model):
    """A document an organisation sends again and again, in successive versions."""

    __tablename__ = "template"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    document_type: Mapped[str] = mapped_column(String(40), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    last_reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    team: Mapped[Team | None] = relationship()
    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", order_by="TemplateVersion.number"
    )

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("template", str(self.id), self.name)

    @property
    def type_label(self) -> str:
        return DOCUMENT_TYPE_LABELS.get(self.document_type, self.document_type)


class TemplateVersion(Model):
    """One version of a template: its source document, fields, roles and settings."""

    __tablename__ = "template_version"
    __table_args__ = (UniqueConstraint("template_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("template.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=VersionStatus.DRAFT.value, index=True)
    source_kind: Mapped[str] = mapped_column(String(10))  # "pdf" | "authored"
    source_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    source_filename: Mapped[str | None] = mapped_column(String(255))
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    authored_body: Mapped[str | None] = mapped_column(Text)
    merge_keys: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    images_status: Mapped[str] = mapped_column(String(20), default="pending")
    images_error: Mapped[str | None] = mapped_column(Text)
    images_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    images_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_comment: Mapped[str | None] = mapped_column(Text)
    # The retention policy its envelopes are kept under (``portal.records.retention``; the
    # default policy when none is named).
    retention_policy_id: Mapped[int | None] = mapped_column(ForeignKey("retention_policy.id"))

    template: Mapped[Template] = relationship(back_populates="versions")
    fields: Mapped[list[Field]] = relationship(
        back_populates="version", order_by="Field.position", cascade="all, delete-orphan"
    )
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    variants: Mapped[list[TemplateVariant]] = relationship(
        back_populates="version", order_by="TemplateVariant.locale", cascade="all, delete-orphan"
    )

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("template_version", str(self.id), f"{self.template.name} v{self.number}")

    def variant(self, locale: str) -> TemplateVariant | None:
        """The version's document in another language, if it has one."""
        return next((v for v in self.variants if v.locale == locale), None)

    @property
    def status_enum(self) -> VersionStatus:
        return VersionStatus(self.status)

    @property
    def editable(self) -> bool:
        return self.status == VersionStatus.DRAFT.value

    def page(self, number: int) -> dict[str, Any] | None:
        for page in self.pages or []:
            if int(page["number"]) == number:
                return page
        return None


class Field(Model):
    """Something a recipient fills in, placed on a page in PDF points."""

    __tablename__ = "template_field"
    __table_args__ = (UniqueConstraint("version_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("template_version.id"), index=True)
    key: Mapped[str] = mapped_column(String(60))
    type: Mapped[str] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(40))
    page: Mapped[int] = mapped_column(Integer)
    # Lower-left corner and size in PDF user space of the unrotated page (points).
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    merge_key: Mapped[str | None] = mapped_column(String(80))
    readonly_when_prefilled: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)

    version: Mapped[TemplateVersion] = relationship(back_populates="fields")

    COMPARED = (
        "type", "role", "required", "label", "merge_key", "readonly_when_prefilled",
        "options", "validation", "condition",
    )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """Everything about the field, for copying to a new version and for diffs."""
        return {
            "key": self.key,
            "page": self.page,
            "x": self.x,
            "y": self.y,
            "w": self.w,
            "h": self.h,
            **{name: getattr(self, name) for name in self.COMPARED},
            "position": self.position,
        }


class TemplateVariant(Model):
    """A version's document in another language: the same merge keys and fields, its own text
    (authored) or its own PDF with its own field placement (uploaded). Approved with the
    version and as fixed as it once submitted."""

    __tablename__ = "template_variant"
    __table_args__ = (UniqueConstraint("version_id", "locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("template_version.id"), index=True)
    locale: Mapped[str] = mapped_column(String(10))
    authored_body: Mapped[str | None] = mapped_column(Text)
    source_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    source_filename: Mapped[str | None] = mapped_column(String(255))
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Uploaded PDFs: field key -> {"page", "x", "y", "w", "h"} in PDF points on this PDF.
    placements: Mapped[dict[str, dict[str, Any]]] = mapped_column(JSON, default=dict)
    # Field key -> the field's label in this language (``variants.save_labels``); a field
    # without one shows its base label.
    labels: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # What the base document looked like when this variant was last saved
    # (``variants.base_fingerprint``): a different one now means the variant is out of date.
    base_fingerprint: Mapped[str] = mapped_column(String(64))
    saved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)

    version: Mapped[TemplateVersion] = relationship(back_populates="variants")
    saved_by: Mapped[User | None] = relationship()

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("template_version", str(self.version_id), f"{self.locale} variant")
