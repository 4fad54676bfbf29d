"""legal holds

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 00:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "legal_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("case_ref", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("email_sha256", sa.String(length=64), nullable=True),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("placed_by_id", sa.Integer(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["placed_by_id"],
            ["user_account.id"],
            name=op.f("fk_legal_hold_placed_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"],
            ["user_account.id"],
            name=op.f("fk_legal_hold_released_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["template.id"], name=op.f("fk_legal_hold_template_id_template")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_hold")),
    )
    with op.batch_alter_table("legal_hold", schema=None) as batch_op:
        batch_op.create_index("ix_legal_hold_active", ["released_at", "scope"], unique=False)
        batch_op.create_index(batch_op.f("ix_legal_hold_email"), ["email"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_legal_hold_template_id"), ["template_id"], unique=False
        )

    op.create_table(
        "legal_hold_envelope",
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["legal_hold.id"], name=op.f("fk_legal_hold_envelope_hold_id_legal_hold")
        ),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelope.id"],
            name=op.f("fk_legal_hold_envelope_envelope_id_envelope"),
        ),
        sa.PrimaryKeyConstraint("hold_id", "envelope_id", name=op.f("pk_legal_hold_envelope")),
    )
    with op.batch_alter_table("legal_hold_envelope", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_hold_envelope_envelope_id"), ["envelope_id"], unique=False
        )

    op.create_table(
        "hold_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=32), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["legal_hold.id"], name=op.f("fk_hold_export_hold_id_legal_hold")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["user_account.id"],
            name=op.f("fk_hold_export_requested_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold_export")),
    )
    with op.batch_alter_table("hold_export", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hold_export_hold_id"), ["hold_id"], unique=False)

    # A built ZIP, stored encrypted in parts (portal.storage blobs), never as a plain file.
    op.create_table(
        "hold_export_part",
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["hold_export.id"],
            name=op.f("fk_hold_export_part_export_id_hold_export"),
        ),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blob.id"], name=op.f("fk_hold_export_part_blob_id_blob")
        ),
        sa.PrimaryKeyConstraint("export_id", "number", name=op.f("pk_hold_export_part")),
    )


def downgrade():
    op.drop_table("hold_export_part")
    with op.batch_alter_table("hold_export", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hold_export_hold_id"))
    op.drop_table("hold_export")
    with op.batch_alter_table("legal_hold_envelope", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_hold_envelope_envelope_id"))
    op.drop_table("legal_hold_envelope")
    with op.batch_alter_table("legal_hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_hold_template_id"))
        batch_op.drop_index(batch_op.f("ix_legal_hold_email"))
        batch_op.drop_index("ix_legal_hold_active")
    op.drop_table("legal_hold")
