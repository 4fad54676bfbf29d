"""document languages

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 03:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "template_variant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("authored_body", sa.Text(), nullable=True),
        sa.Column("source_blob_id", sa.String(length=32), nullable=True),
        sa.Column("source_filename", sa.String(length=255), nullable=True),
        sa.Column("source_sha256", sa.String(length=64), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("pages", sa.JSON(), nullable=False),
        sa.Column("placements", sa.JSON(), nullable=False),
        sa.Column("base_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("saved_by_id", sa.Integer(), nullable=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["saved_by_id"],
            ["user_account.id"],
            name=op.f("fk_template_variant_saved_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["source_blob_id"], ["blob.id"], name=op.f("fk_template_variant_source_blob_id_blob")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["template_version.id"],
            name=op.f("fk_template_variant_version_id_template_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_variant")),
        sa.UniqueConstraint("version_id", "locale", name=op.f("uq_template_variant_version_id")),
    )
    with op.batch_alter_table("template_variant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_template_variant_version_id"), ["version_id"], unique=False
        )
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("document_locale", sa.String(length=10), server_default="en", nullable=False)
        )
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_locale", sa.String(length=10), nullable=True))


def downgrade():
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("consent_locale")
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_column("document_locale")
    with op.batch_alter_table("template_variant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_template_variant_version_id"))
    op.drop_table("template_variant")
