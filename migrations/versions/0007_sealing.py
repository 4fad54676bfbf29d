"""sealing: sealed copy on the envelope, mail attachments, sealing certificates

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 12:50:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sealing_certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("self_signed", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blob.id"], name=op.f("fk_sealing_certificate_blob_id_blob")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealing_certificate")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_sealing_certificate_fingerprint")),
    )
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seal_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("seal_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sealed_blob_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("sealed_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sealed_size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sealed_path", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("seal_cert_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_envelope_sealed_sha256"), ["sealed_sha256"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_envelope_sealed_blob_id_blob"), "blob", ["sealed_blob_id"], ["id"]
        )

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachment_blob_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("attachment_name", sa.String(length=200), nullable=True))


def downgrade():
    op.drop_table("sealing_certificate")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("attachment_name")
        batch_op.drop_column("attachment_blob_id")

    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_envelope_sealed_blob_id_blob"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_envelope_sealed_sha256"))
        batch_op.drop_column("seal_cert_sha256")
        batch_op.drop_column("sealed_path")
        batch_op.drop_column("sealed_size")
        batch_op.drop_column("sealed_sha256")
        batch_op.drop_column("sealed_blob_id")
        batch_op.drop_column("sealed_at")
        batch_op.drop_column("seal_attempts")
        batch_op.drop_column("seal_requested_at")
