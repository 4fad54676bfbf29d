"""A bulk send batch and its rows (one per customer row of the uploaded file)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.accounts.models import Team, User
from portal.extensions import Model, db
from portal.library.models import TemplateVersion


class BatchState(enum.StrEnum):
    """Where a batch is: a draft until it is sent, then sending until it ends."""

    DRAFT = "draft"  # uploaded and checked; nothing sent yet
    SENDING = "sending"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"  # a draft thrown away


class RowState(enum.StrEnum):
    """One row: checked (ready / invalid / excluded), then pending until its envelope exists."""

    READY = "ready"
    INVALID = "invalid"
    EXCLUDED = "excluded"
    PENDING = "pending"
    CREATED = "created"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BulkBatch(Model):
    """One uploaded file sent (or about to be sent) with one template version."""

    __tablename__ = "bulk_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    template_version_id: Mapped[int] = mapped_column(ForeignKey("template_version.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default=BatchState.DRAFT.value, index=True)
    # The file as uploaded: kept encrypted while the batch may still need it (it can hold
    # access codes), then deleted; its name, size and SHA-256 stay here and in the audit chain.
    file_name: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(Integer)
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_kind: Mapped[str] = mapped_column(String(10))  # csv | xlsx
    file_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    notice: Mapped[str | None] = mapped_column(Text)  # e.g. read as Windows-1252
    headers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Expected column key -> index of the file's column (absent: not in the file).
    mapping: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    ready_rows: Mapped[int] = mapped_column(Integer, default=0)
    invalid_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=clock.utcnow, index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The job that is sending it says it is alive; a stale heartbeat lets another take over.
    runner: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A chunk that could not be written: why, and how many tries in a row failed.
    error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Voiding what it created (one reason for all), done by a job.
    void_reason: Mapped[str | None] = mapped_column(Text)
    voided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    voiding: Mapped[bool] = mapped_column(Boolean, default=False)

    version: Mapped[TemplateVersion] = relationship()
    team: Mapped[Team | None] = relationship()
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    voided_by: Mapped[User | None] = relationship(foreign_keys=[voided_by_id])

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("bulk_batch", str(self.id), self.file_name)

    @property
    def ended(self) -> bool:
        return self.state in (BatchState.FINISHED, BatchState.CANCELLED, BatchState.DISCARDED)


class BulkRow(Model):
    """One customer row of a batch: what was read, its problems, and what became of it."""

    __tablename__ = "bulk_row"
    __table_args__ = (
        UniqueConstraint("batch_id", "number"),
        Index("ix_bulk_row_batch_id_state", "batch_id", "state", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("bulk_batch.id"))
    number: Mapped[int] = mapped_column(Integer)  # the row number a spreadsheet shows
    state: Mapped[str] = mapped_column(String(12))
    problems: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    merge_data: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Each role's recipient as read (role, name, email, phone, locale, auth); never a code.
    people: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    ticket_id: Mapped[str | None] = mapped_column(String(120))
    ticket_url: Mapped[str | None] = mapped_column(String(500))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    envelope_id: Mapped[int | None] = mapped_column(ForeignKey("envelope.id"), unique=True)
    error: Mapped[str | None] = mapped_column(Text)
    emails: Mapped[int] = mapped_column(Integer, default=0)
    # When its envelope was created and its emails queued (the mail pace counts these).
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    batch: Mapped[BulkBatch] = relationship()


def lock_batch(batch_id: int) -> BulkBatch:
    """The batch read afresh under a row lock (PostgreSQL; SQLite writers hold the lock):
    every change of a batch's state, and each chunk of its sending, takes it first."""
    return db.session.execute(
        select(BulkBatch)
        .where(BulkBatch.id == batch_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def mark_rows(changes: list[dict[str, Any]]) -> None:
    """Set rows' columns by id in one executemany: each change has ``row_id`` and the same
    other keys (columns)."""
    if not changes:
        return
    table = cast(Table, BulkRow.__table__)
    columns: dict[str, Any] = {key: bindparam(key) for key in changes[0] if key != "row_id"}
    db.session.execute(
        update(table).where(table.c.id == bindparam("row_id")).values(**columns), changes
    )
