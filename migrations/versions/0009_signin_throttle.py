"""signin_throttle: failed sign-ins counted per account and source together

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "signin_throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_signin_throttle_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_throttle")),
        sa.UniqueConstraint("user_id", "source", name=op.f("uq_signin_throttle_user_id")),
    )
    with op.batch_alter_table("signin_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signin_throttle_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("signin_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signin_throttle_user_id"))
    op.drop_table("signin_throttle")
