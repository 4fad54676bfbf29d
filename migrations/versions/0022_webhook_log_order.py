"""webhook log in index order

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 07:10:00

An endpoint's message log (newest first) and a replay (oldest first) read
``webhook_message`` by ``endpoint_id`` in ``id`` order. PostgreSQL's index on
``endpoint_id`` alone keeps equal keys in heap order, so it had to sort all of a busy
endpoint's messages; (endpoint_id, id) gives them in order and replaces it.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_webhook_message_endpoint_order", "webhook_message", ["endpoint_id", "id"])
    op.drop_index("ix_webhook_message_endpoint_id", table_name="webhook_message")


def downgrade():
    op.create_index("ix_webhook_message_endpoint_id", "webhook_message", ["endpoint_id"])
    op.drop_index("ix_webhook_message_endpoint_order", table_name="webhook_message")
