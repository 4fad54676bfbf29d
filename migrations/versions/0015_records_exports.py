"""records exports (jobs) and audit search indexes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 00:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The audit trail search's indexes (portal.records.search), chosen from EXPLAIN at five
# million events: an event type's events newest first (a rare type is otherwise a walk back
# through every event), and the events of an IP address in the chain's side index.
AUDIT_INDEXES = (
    ("ix_audit_event_event_seq", "audit_event", ["event", "seq"]),
    ("ix_audit_ref_ip", "audit_ref", ["ip", "seq"]),
)


def upgrade():
    op.create_table(
        "records_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["user_account.id"],
            name=op.f("fk_records_export_requested_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records_export")),
        sa.UniqueConstraint("public_id", name=op.f("uq_records_export_public_id")),
    )
    op.create_index(
        "ix_records_export_requester", "records_export", ["requested_by_id", "created_at"]
    )
    op.create_index(op.f("ix_records_export_expires_at"), "records_export", ["expires_at"])
    op.create_table(
        "records_export_part",
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["records_export.id"],
            name=op.f("fk_records_export_part_export_id_records_export"),
        ),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blob.id"], name=op.f("fk_records_export_part_blob_id_blob")
        ),
        sa.PrimaryKeyConstraint("export_id", "number", name=op.f("pk_records_export_part")),
    )
    for name, table, columns in AUDIT_INDEXES:
        op.create_index(name, table, columns)


def downgrade():
    for name, table, _columns in AUDIT_INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("records_export_part")
    op.drop_index(op.f("ix_records_export_expires_at"), table_name="records_export")
    op.drop_index("ix_records_export_requester", table_name="records_export")
    op.drop_table("records_export")
