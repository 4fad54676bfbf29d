"""hardening: page-image retries and failures, when a signer first saw the document

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("template_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("images_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("images_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.add_column(sa.Column("images_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("images_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("images_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("document_viewed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("document_viewed_at")
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_column("images_requested_at")
        batch_op.drop_column("images_attempts")
        batch_op.drop_column("images_error")
    with op.batch_alter_table("template_version", schema=None) as batch_op:
        batch_op.drop_column("images_requested_at")
        batch_op.drop_column("images_attempts")
