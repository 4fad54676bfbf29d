"""long term seals

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 03:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seal_level", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("seal_timestamp_expires", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("seal_renew_after", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("seal_renewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("seal_renewal_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("seal_renewal_error", sa.Text(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_envelope_seal_renew_after"), ["seal_renew_after"], unique=False
        )
    # Envelopes sealed before this migration: B-B, or B-T when a time-stamp was asked for;
    # which one is read from the file the first time it matters (left NULL here).

    op.create_table(
        "sealed_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=True),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blob.id"], name=op.f("fk_sealed_version_blob_id_blob")
        ),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelope.id"], name=op.f("fk_sealed_version_envelope_id_envelope")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealed_version")),
    )
    with op.batch_alter_table("sealed_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sealed_version_envelope_id"), ["envelope_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sealed_version_sha256"), ["sha256"], unique=False)


def downgrade():
    with op.batch_alter_table("sealed_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sealed_version_sha256"))
        batch_op.drop_index(batch_op.f("ix_sealed_version_envelope_id"))
    op.drop_table("sealed_version")
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_envelope_seal_renew_after"))
        batch_op.drop_column("seal_renewal_error")
        batch_op.drop_column("seal_renewal_attempts")
        batch_op.drop_column("seal_renewed_at")
        batch_op.drop_column("seal_renew_after")
        batch_op.drop_column("seal_timestamp_expires")
        batch_op.drop_column("seal_level")
