"""console at scale: search text, listing indexes (pg_trgm on PostgreSQL)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:00:00

"""

import sqlalchemy as sa
from alembic import op

from portal.envelopes.search import search_text_for

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 2000

# (name, columns) of the console's list indexes; they replace single-column ones that are
# their prefixes (team, status, sender, creation time).
LIST_INDEXES = (
    ("ix_envelope_team_created", ["team_id", "created_at", "id"]),
    ("ix_envelope_team_status", ["team_id", "status", "created_at", "id"]),
    ("ix_envelope_team_title", ["team_id", "title", "id"]),
    ("ix_envelope_created", ["created_at", "id"]),
    ("ix_envelope_status_created", ["status", "created_at", "id"]),
    ("ix_envelope_title", ["title", "id"]),
    ("ix_envelope_sender_created", ["created_by_id", "team_id", "created_at", "id"]),
    ("ix_envelope_status_finished", ["status", "finished_at"]),
)
REPLACED = (
    ("ix_envelope_team_id", ["team_id"]),
    ("ix_envelope_status", ["status"]),
    ("ix_envelope_created_by_id", ["created_by_id"]),
    ("ix_envelope_created_at", ["created_at"]),
)
# Recipients locked after wrong codes, for the console's "needs attention" view (few rows).
LOCKED_INDEX = "ix_recipient_locked"


def _backfill(bind):
    envelope = sa.table(
        "envelope",
        sa.column("id", sa.Integer),
        sa.column("title", sa.String),
        sa.column("ticket_id", sa.String),
        sa.column("merge_data", sa.JSON),
        sa.column("search_text", sa.Text),
    )
    recipient = sa.table(
        "recipient",
        sa.column("id", sa.Integer),
        sa.column("envelope_id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("email", sa.String),
        sa.column("phone", sa.String),
    )
    update = (
        sa.update(envelope)
        .where(envelope.c.id == sa.bindparam("envelope_id"))
        .values(search_text=sa.bindparam("text"))
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(envelope.c.id, envelope.c.title, envelope.c.ticket_id, envelope.c.merge_data)
            .where(envelope.c.id > last)
            .order_by(envelope.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        people: dict[int, list[tuple[str, str, str]]] = {row.id: [] for row in rows}
        for person in bind.execute(
            sa.select(
                recipient.c.envelope_id, recipient.c.name, recipient.c.email, recipient.c.phone
            )
            .where(recipient.c.envelope_id.in_(list(people)))
            .order_by(recipient.c.id)
        ):
            people[person.envelope_id].append((person.name, person.email, person.phone))
        bind.execute(
            update,
            [
                {
                    "envelope_id": row.id,
                    "text": search_text_for(
                        row.title, row.ticket_id, row.merge_data, people[row.id]
                    ),
                }
                for row in rows
            ],
        )
        last = rows[-1].id


def upgrade():
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    op.add_column(
        "envelope", sa.Column("search_text", sa.Text(), server_default="", nullable=False)
    )
    _backfill(bind)
    for name, _columns in REPLACED:
        op.drop_index(name, table_name="envelope")
    for name, columns in LIST_INDEXES:
        op.create_index(name, "envelope", columns, unique=False)
    if postgresql:
        # Trusted since PostgreSQL 13 (the database owner may create it); Debian's
        # postgresql-15 package ships it (postgresql-contrib).
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_envelope_search_text",
            "envelope",
            ["search_text"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )
        # The planner guesses how many rows hold '%term%' from the column's histogram: with
        # 100 samples a surname in 3% of the envelopes showed in 1 to 6 of them, and the plan
        # flipped between walking the team's newest envelopes (fast for such a word) and the
        # trigram index (fast for a rare one); 1,000 samples keep it steady.
        op.execute("ALTER TABLE envelope ALTER COLUMN search_text SET STATISTICS 1000")
    else:
        # SQLite scans for '%term%'; the empty index keeps the schema the models describe.
        op.create_index(
            "ix_envelope_search_text",
            "envelope",
            ["search_text"],
            unique=False,
            sqlite_where=sa.text("0"),
        )
    op.create_index(
        LOCKED_INDEX,
        "recipient",
        ["envelope_id"],
        unique=False,
        postgresql_where=sa.text("locked_at IS NOT NULL"),
        sqlite_where=sa.text("locked_at IS NOT NULL"),
    )


def downgrade():
    op.drop_index(LOCKED_INDEX, table_name="recipient")
    op.drop_index("ix_envelope_search_text", table_name="envelope")
    for name, _columns in LIST_INDEXES:
        op.drop_index(name, table_name="envelope")
    for name, columns in REPLACED:
        op.create_index(name, "envelope", columns, unique=False)
    # (pg_trgm stays: other objects may use it by now.)
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_column("search_text")
