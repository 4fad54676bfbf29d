"""field labels per language variant

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 04:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("template_variant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("template_variant", schema=None) as batch_op:
        batch_op.drop_column("labels")
