"""bulk send: batches and their rows

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bulk_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("template_version_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_size", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_kind", sa.String(length=10), nullable=False),
        sa.Column("file_blob_id", sa.String(length=32), nullable=True),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("ready_rows", sa.Integer(), nullable=False),
        sa.Column("invalid_rows", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("cancelled_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=32), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("voided_by_id", sa.Integer(), nullable=True),
        sa.Column("voiding", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_bulk_batch_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["file_blob_id"], ["blob.id"], name=op.f("fk_bulk_batch_file_blob_id_blob")
        ),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_bulk_batch_team_id_team")),
        sa.ForeignKeyConstraint(
            ["voided_by_id"],
            ["user_account.id"],
            name=op.f("fk_bulk_batch_voided_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["template_version_id"],
            ["template_version.id"],
            name=op.f("fk_bulk_batch_template_version_id_template_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_batch")),
        sa.UniqueConstraint("public_id", name=op.f("uq_bulk_batch_public_id")),
    )
    with op.batch_alter_table("bulk_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bulk_batch_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_bulk_batch_created_by_id"), ["created_by_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_bulk_batch_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulk_batch_team_id"), ["team_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_bulk_batch_template_version_id"), ["template_version_id"], unique=False
        )

    op.create_table(
        "bulk_row",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("merge_data", sa.JSON(), nullable=False),
        sa.Column("people", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.String(length=120), nullable=True),
        sa.Column("ticket_url", sa.String(length=500), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("envelope_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("emails", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["bulk_batch.id"], name=op.f("fk_bulk_row_batch_id_bulk_batch")
        ),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelope.id"], name=op.f("fk_bulk_row_envelope_id_envelope")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_row")),
        sa.UniqueConstraint("batch_id", "number", name=op.f("uq_bulk_row_batch_id")),
        sa.UniqueConstraint("envelope_id", name=op.f("uq_bulk_row_envelope_id")),
    )
    with op.batch_alter_table("bulk_row", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bulk_row_batch_id_state", ["batch_id", "state", "number"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_bulk_row_created_at"), ["created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("bulk_row", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_row_created_at"))
        batch_op.drop_index("ix_bulk_row_batch_id_state")
    op.drop_table("bulk_row")
    with op.batch_alter_table("bulk_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_batch_template_version_id"))
        batch_op.drop_index(batch_op.f("ix_bulk_batch_team_id"))
        batch_op.drop_index(batch_op.f("ix_bulk_batch_state"))
        batch_op.drop_index(batch_op.f("ix_bulk_batch_created_by_id"))
        batch_op.drop_index(batch_op.f("ix_bulk_batch_created_at"))
    op.drop_table("bulk_batch")
