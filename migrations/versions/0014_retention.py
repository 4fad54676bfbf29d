"""retention policies, envelope retention dates, purge tombstones

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 00:00:00

Creates the policies and the review list, gives template versions and envelopes their policy
(every existing one the default policy, whose period is RETENTION_DEFAULT_YEARS), computes the
retention date of envelopes that ended already from their end time, and lets a purged
envelope lose its document (``document_blob_id`` may be NULL).
"""

import calendar
import os
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TERMINAL = ("completed", "declined", "voided", "expired")


def _default_years() -> int:
    try:
        from flask import current_app

        value = current_app.config.get("RETENTION_DEFAULT_YEARS")
    except RuntimeError:  # (no application: plain alembic)
        value = None
    value = value or os.environ.get("RETENTION_DEFAULT_YEARS") or "7"
    try:
        return min(max(int(value), 1), 15)
    except ValueError:
        return 7


def _add_years(moment: datetime, years: int) -> datetime:
    year = moment.year + years
    day = min(moment.day, calendar.monthrange(year, moment.month)[1])
    return moment.replace(year=year, day=day)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _add_policy_column(table: str) -> None:
    """``retention_policy_id`` with its foreign key, in place (SQLite adds a column with a
    REFERENCES clause without copying the table, which rows of other tables point at)."""
    name = f"fk_{table}_retention_policy_id_retention_policy"
    if _sqlite():
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN retention_policy_id INTEGER "
            f"CONSTRAINT {name} REFERENCES retention_policy (id)"
        )
        return
    op.add_column(table, sa.Column("retention_policy_id", sa.Integer(), nullable=True))
    op.create_foreign_key(name, table, "retention_policy", ["retention_policy_id"], ["id"])


def _document_may_be_null() -> None:
    """``envelope.document_blob_id`` NULL-able (a purged envelope has no document).

    SQLite cannot drop a NOT NULL in place, and copying the table (batch mode) fails once
    recipients and values point at envelopes. Dropping NOT NULL changes nothing stored, so
    SQLite's documented way for such changes is used: the table's schema text is edited
    under ``writable_schema`` and the schema version bumped, in this transaction."""
    if not _sqlite():
        op.alter_column("envelope", "document_blob_id", existing_type=sa.String(32), nullable=True)
        return
    conn = op.get_bind()
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'envelope'"
    ).scalar_one()
    changed = re.sub(
        r"(document_blob_id\s+VARCHAR\(32\))\s+NOT NULL", r"\1", sql, count=1, flags=re.I
    )
    if changed == sql:
        return  # (NULL-able already)
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema=ON")
    conn.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'envelope'", (changed,)
    )
    conn.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema=OFF")


def upgrade():
    op.create_table(
        "retention_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("clock_start", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_retention_policy_created_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_policy")),
        sa.UniqueConstraint("name", name=op.f("uq_retention_policy_name")),
    )
    _add_policy_column("template_version")
    _add_policy_column("envelope")
    op.add_column("envelope", sa.Column("retention_until", sa.DateTime(timezone=True)))
    op.add_column("envelope", sa.Column("purged_at", sa.DateTime(timezone=True)))
    op.add_column("envelope", sa.Column("purge_action", sa.String(length=20)))
    op.create_index(op.f("ix_envelope_retention_until"), "envelope", ["retention_until"])
    _document_may_be_null()
    op.create_table(
        "retention_review",
        sa.Column("envelope_id", sa.Integer(), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("postponed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("postponed_by_id", sa.Integer(), nullable=True),
        sa.Column("postpone_reason", sa.Text(), nullable=True),
        sa.Column("skipped", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelope.id"], name=op.f("fk_retention_review_envelope_id_envelope")
        ),
        sa.ForeignKeyConstraint(
            ["postponed_by_id"],
            ["user_account.id"],
            name=op.f("fk_retention_review_postponed_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("envelope_id", name=op.f("pk_retention_review")),
    )
    with op.batch_alter_table("retention_review", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_review_purge_after"), ["purge_after"], unique=False
        )

    # The default policy, and every existing row under it.
    years = _default_years()
    policy = sa.table(
        "retention_policy",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("years", sa.Integer),
        sa.column("clock_start", sa.String),
        sa.column("action", sa.String),
        sa.column("is_default", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    conn = op.get_bind()
    conn.execute(
        policy.insert().values(
            name="Standard",
            years=years,
            clock_start="any_end",
            action="both",
            is_default=True,
            created_at=datetime.now(UTC),
        )
    )
    policy_id = conn.execute(sa.select(policy.c.id).where(policy.c.is_default.is_(True))).scalar()
    conn.execute(sa.text("UPDATE template_version SET retention_policy_id = :p"), {"p": policy_id})
    conn.execute(sa.text("UPDATE envelope SET retention_policy_id = :p"), {"p": policy_id})
    envelope = sa.table(
        "envelope",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("sent_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("retention_until", sa.DateTime(timezone=True)),
    )
    ended = conn.execute(
        sa.select(envelope.c.id, envelope.c.finished_at, envelope.c.sent_at, envelope.c.created_at)
        .where(envelope.c.status.in_(TERMINAL))
        .order_by(envelope.c.id)
    ).all()
    for envelope_id, finished, sent, created in ended:
        end = finished or sent or created
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        conn.execute(
            envelope.update()
            .where(envelope.c.id == envelope_id)
            .values(retention_until=_add_years(end, years))
        )


def downgrade():
    op.drop_index(op.f("ix_retention_review_purge_after"), table_name="retention_review")
    op.drop_table("retention_review")
    op.drop_index(op.f("ix_envelope_retention_until"), table_name="envelope")
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_column("purge_action")
        batch_op.drop_column("purged_at")
        batch_op.drop_column("retention_until")
        batch_op.drop_column("retention_policy_id")
    with op.batch_alter_table("template_version", schema=None) as batch_op:
        batch_op.drop_column("retention_policy_id")
    op.drop_table("retention_policy")
