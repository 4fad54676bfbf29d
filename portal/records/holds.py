"""Legal holds: while a hold covers an envelope, nothing purges, deletes or anonymises it.

A hold's scope is one of

- ``envelopes``: a list of envelopes chosen from a search (``legal_hold_envelope`` rows);
- ``email``: everything of one customer email, matched case-insensitively, including envelopes
  sent after the hold was placed (the scope is evaluated whenever it is checked, never frozen);
- ``template``: every envelope sent from any version of one template.

``hold_reasons`` is what every purge, deletion and anonymisation asks first.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    union_all,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.selectable import CompoundSelect

from portal import clock
from portal.accounts.models import User
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import Model, db
from portal.library.models import Template, TemplateVersion


class HoldScope(enum.StrEnum):
    """What a hold covers."""

    ENVELOPES = "envelopes"
    EMAIL = "email"
    TEMPLATE = "template"


class LegalHold(Model):
    """One legal hold (active until released)."""

    __tablename__ = "legal_hold"
    __table_args__ = (Index("ix_legal_hold_active", "released_at", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    case_ref: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(20))
    # The customer's email, lower-cased (scope ``email``).
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("template.id"), index=True)
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    release_reason: Mapped[str | None] = mapped_column(Text)

    placed_by: Mapped[User] = relationship(foreign_keys=[placed_by_id])
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id])
    template: Mapped[Template | None] = relationship()

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("legal_hold", str(self.id), self.name)

    @property
    def active(self) -> bool:
        return self.released_at is None


class LegalHoldEnvelope(Model):
    """One envelope chosen for a hold of scope ``envelopes``."""

    __tablename__ = "legal_hold_envelope"

    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_hold.id"), primary_key=True)
    envelope_id: Mapped[int] = mapped_column(
        ForeignKey("envelope.id"), primary_key=True, index=True
    )


# Ids per statement: well under SQLite's bound-parameter limit.
CHUNK = 500


def normalise_email(value: str) -> str:
    """The form a hold stores and compares an email in."""
    return value.strip().lower()


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    batch: list[int] = []
    for value in ids:
        batch.append(int(value))
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _covering(ids: list[int]) -> CompoundSelect:
    """One statement: (envelope id, hold name) for each active hold covering one of ``ids``."""
    active = LegalHold.released_at.is_(None)
    chosen = (
        select(LegalHoldEnvelope.envelope_id.label("envelope_id"), LegalHold.name.label("name"))
        .join(LegalHold, LegalHold.id == LegalHoldEnvelope.hold_id)
        .where(active, LegalHoldEnvelope.envelope_id.in_(ids))
    )
    by_template = (
        select(Envelope.id.label("envelope_id"), LegalHold.name.label("name"))
        .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
        .join(LegalHold, LegalHold.template_id == TemplateVersion.template_id)
        .where(active, LegalHold.scope == HoldScope.TEMPLATE.value, Envelope.id.in_(ids))
    )
    by_email = (
        select(Recipient.envelope_id.label("envelope_id"), LegalHold.name.label("name"))
        .join(LegalHold, LegalHold.email == func.lower(Recipient.email))
        .where(
            active,
            LegalHold.scope == HoldScope.EMAIL.value,
            Recipient.envelope_id.in_(ids),
        )
    )
    return union_all(chosen, by_template, by_email)


def hold_reasons(envelope_ids: Collection[int]) -> dict[int, list[str]]:
    """Envelope id -> names of the active holds covering it (envelopes no hold covers are left
    out). One query per 500 ids, whatever the holds' scopes."""
    found: dict[int, set[str]] = {}
    if not envelope_ids:
        return {}
    if (
        db.session.scalar(select(LegalHold.id).where(LegalHold.released_at.is_(None)).limit(1))
        is None
    ):
        return {}
    for ids in _chunks(sorted(set(envelope_ids))):
        for envelope_id, name in db.session.execute(_covering(ids)):
            found.setdefault(int(envelope_id), set()).add(name)
    return {key: sorted(names) for key, names in found.items()}


def is_held(envelope_id: int) -> bool:
    """Whether any active hold covers the envelope."""
    return bool(hold_reasons([envelope_id]))
