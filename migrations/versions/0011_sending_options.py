"""faster sending: idempotency keys of send forms, links handed over once after a send

Send-time options (personal message, expiry, reminders) live in the envelope's JSON settings
and extra cc recipients are recipients: no column changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "send_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelope.id"], name=op.f("fk_send_key_envelope_id_envelope")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_send_key_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_key")),
        sa.UniqueConstraint("envelope_id", name=op.f("uq_send_key_envelope_id")),
        sa.UniqueConstraint("key", name=op.f("uq_send_key_key")),
    )
    with op.batch_alter_table("send_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_send_key_user_id"), ["user_id"], unique=False)

    op.create_table(
        "link_handover",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("heading", sa.String(length=80), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelope.id"], name=op.f("fk_link_handover_envelope_id_envelope")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_handover")),
    )
    with op.batch_alter_table("link_handover", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_link_handover_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_link_handover_envelope_id"), ["envelope_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_link_handover_session_id"), ["session_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("link_handover", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_handover_session_id"))
        batch_op.drop_index(batch_op.f("ix_link_handover_envelope_id"))
        batch_op.drop_index(batch_op.f("ix_link_handover_created_at"))
    op.drop_table("link_handover")
    with op.batch_alter_table("send_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_send_key_user_id"))
    op.drop_table("send_key")
