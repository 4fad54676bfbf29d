"""Envelopes (one sending of one template version), their recipients and filled values."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal import clock
from portal.accounts.models import Team, User
from portal.envelopes.search import search_text_for
from portal.extensions import Model
from portal.library import languages
from portal.library.models import TemplateVersion


class EnvelopeStatus(enum.StrEnum):
    """Envelope lifecycle; the last four are terminal and never change."""

    DRAFT = "draft"
    SENT = "sent"
    COMPLETED = "completed"
    DECLINED = "declined"
    VOIDED = "voided"
    EXPIRED = "expired"


TERMINAL = frozenset({"completed", "declined", "voided", "expired"})


class RecipientStatus(enum.StrEnum):
    """Where one recipient stands."""

    WAITING = "waiting"  # not their turn yet (sequential routing)
    SENT = "sent"
    VIEWED = "viewed"
    SIGNED = "signed"
    APPROVED = "approved"
    DECLINED = "declined"
    COPIED = "copied"  # cc recipients, once they received the completed copy


FINISHED = frozenset({"signed", "approved", "declined", "copied"})


class Envelope(Model):
    """One template version sent to one customer (and whoever else the roles need)."""

    __tablename__ = "envelope"
    # The console's lists (``portal.envelopes.console``): keyset pages in each sort order
    # (newest first, by document, by status), within a team or across all of them, and
    # "sent by me"; chosen from EXPLAIN at a million envelopes (migration 0010). The search
    # text has a pg_trgm GIN index on PostgreSQL, which serves LIKE '%term%'; SQLite has no
    # index that does (it scans), so there the index of that name is empty (WHERE 0) and
    # costs nothing: the schema stays the one the models describe on both databases.
    __table_args__ = (
        Index("ix_envelope_team_created", "team_id", "created_at", "id"),
        Index("ix_envelope_team_status", "team_id", "status", "created_at", "id"),
        Index("ix_envelope_team_title", "team_id", "title", "id"),
        Index("ix_envelope_created", "created_at", "id"),
        Index("ix_envelope_status_created", "status", "created_at", "id"),
        Index("ix_envelope_title", "title", "id"),
        Index("ix_envelope_sender_created", "created_by_id", "team_id", "created_at", "id"),
        Index("ix_envelope_status_finished", "status", "finished_at"),  # declined today
        Index(
            "ix_envelope_search_text",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
            sqlite_where=sql_text("0"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    template_version_id: Mapped[int] = mapped_column(ForeignKey("template_version.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=EnvelopeStatus.DRAFT.value)
    merge_data: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    ticket_id: Mapped[str | None] = mapped_column(String(120), index=True)
    ticket_url: Mapped[str | None] = mapped_column(String(500))
    routing: Mapped[str] = mapped_column(String(20), default="sequential")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # NULL only once a retention purge deleted the document (``purged_at`` is set then).
    document_blob_id: Mapped[str] = mapped_column(ForeignKey("blob.id"), nullable=True)
    original_sha256: Mapped[str] = mapped_column(String(64))
    page_count: Mapped[int] = mapped_column(Integer)
    # The language of the document sent (the template's base language or one of its variants).
    document_locale: Mapped[str] = mapped_column(String(10), default="en", server_default="en")
    # Page geometry and rendered images of the document as sent (see library pages).
    pages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    images_status: Mapped[str] = mapped_column(String(20), default="pending")
    images_error: Mapped[str | None] = mapped_column(Text)
    images_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    images_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    void_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expiry_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seal_status: Mapped[str | None] = mapped_column(String(20), index=True)  # pending|sealed|failed
    seal_error: Mapped[str | None] = mapped_column(Text)
    # Sealing: asked for (and re-asked by the sweeper), tries, and the result.
    seal_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sealed_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    sealed_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    sealed_size: Mapped[int | None] = mapped_column(Integer)
    sealed_path: Mapped[str | None] = mapped_column(String(500))  # filed in the template's folder
    seal_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    # Long-term seal (migration 0020, ``portal.envelopes.renewal``): the PAdES level, when the
    # latest document timestamp's TSA certificate expires, and when to add a fresh one.
    seal_level: Mapped[str | None] = mapped_column(String(8))  # B-B | B-T | B-LT | B-LTA
    seal_timestamp_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seal_renew_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    seal_renewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seal_renewal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    seal_renewal_error: Mapped[str | None] = mapped_column(Text)
    # Lower-cased title, ticket, merge values and recipients, kept by ``refresh_search_text``
    # (see ``portal.envelopes.search``).
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Retention (``portal.records.retention``): the policy it was sent with, the date its
    # period ends (set when its clock starts) and, once purged, when and what was purged
    # (``both``, ``purge_documents`` or ``anonymise``): the row is a tombstone from then on.
    retention_policy_id: Mapped[int | None] = mapped_column(ForeignKey("retention_policy.id"))
    retention_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purge_action: Mapped[str | None] = mapped_column(String(20))

    version: Mapped[TemplateVersion] = relationship()
    team: Mapped[Team | None] = relationship()
    created_by: Mapped[User] = relationship()
    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="envelope", order_by="Recipient.order, Recipient.id"
    )
    retention_policy: Mapped[Any] = relationship("RetentionPolicy")  # (records, by name)

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("envelope", str(self.id), self.title)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def document_language(self) -> str:
        """The document's language by name, for staff pages (e.g. "Spanish")."""
        return languages.label(self.document_locale)


class Recipient(Model):
    """Someone who signs, approves or receives a copy of an envelope."""

    __tablename__ = "recipient"
    # The few recipients locked after wrong codes (the console's "needs attention" view).
    __table_args__ = (
        Index(
            "ix_recipient_locked",
            "envelope_id",
            postgresql_where=sql_text("locked_at IS NOT NULL"),
            sqlite_where=sql_text("locked_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelope.id"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    role_name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20))  # signer | approver | cc
    order: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str] = mapped_column(String(10), default="en")
    auth_method: Mapped[str] = mapped_column(String(20), default="link")
    status: Mapped[str] = mapped_column(String(20), default=RecipientStatus.WAITING.value)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    access_code_hash: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    viewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # First time the document itself (page, page image or PDF) was shown past the signer gate.
    document_viewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decline_reason: Mapped[str | None] = mapped_column(Text)
    # Evidence of consent, authentication and signing (also in the audit chain).
    consent_version: Mapped[str | None] = mapped_column(String(20))
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consent_locale: Mapped[str | None] = mapped_column(String(10))  # language of the text accepted
    otp_hash: Mapped[str | None] = mapped_column(String(64))
    otp_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    auth_attempts: Mapped[int] = mapped_column(Integer, default=0)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    authenticated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    adoption: Mapped[str | None] = mapped_column(String(10))  # drawn | typed
    finished_ip: Mapped[str | None] = mapped_column(String(64))
    finished_user_agent: Mapped[str | None] = mapped_column(String(512))

    envelope: Mapped[Envelope] = relationship(back_populates="recipients")

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("recipient", str(self.id), self.email)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class RetiredLink(Model):
    """A link token that was replaced, so its page can say why it no longer works."""

    __tablename__ = "retired_link"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"), index=True)
    reason: Mapped[str] = mapped_column(String(20))  # replaced | reassigned
    retired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)


class FieldValue(Model):
    """What a recipient entered for one field (signature images and files live in blobs)."""

    __tablename__ = "field_value"
    __table_args__ = (UniqueConstraint("recipient_id", "field_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelope.id"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"), index=True)
    field_key: Mapped[str] = mapped_column(String(60))
    value: Mapped[str | None] = mapped_column(Text)
    blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    filled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)


_SEARCHED: dict[type, tuple[str, ...]] = {
    Envelope: ("title", "ticket_id", "merge_data"),
    Recipient: ("name", "email", "phone", "envelope"),
}


def _searched_change(session: Session, obj: object) -> bool:
    names = _SEARCHED.get(type(obj), ())
    if not names:
        return False
    if obj in session.new:
        return True
    state = inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in names)


def _envelope_of(session: Session, obj: object) -> Envelope | None:
    if isinstance(obj, Envelope):
        return obj
    assert isinstance(obj, Recipient)
    if obj.envelope is None and obj.envelope_id is not None:
        return session.get(Envelope, obj.envelope_id)
    return obj.envelope


@event.listens_for(Session, "before_flush")
def refresh_search_text(session: Session, _context: object, _instances: object) -> None:
    """Give every envelope whose searched values changed in this flush its search text again
    (the one place it is kept for ORM changes; see ``portal.envelopes.search``)."""
    envelopes = {
        envelope
        for obj in (*session.new, *session.dirty)
        if _searched_change(session, obj) and (envelope := _envelope_of(session, obj)) is not None
    }
    for envelope in envelopes:
        people = [(r.name, r.email, r.phone) for r in envelope.recipients]
        value = search_text_for(envelope.title, envelope.ticket_id, envelope.merge_data, people)
        if envelope.search_text != value:
            envelope.search_text = value
