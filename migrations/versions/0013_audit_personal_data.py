"""audit chain: personal fields encrypted under per-envelope keys, audit_ref side index

The existing envelope events are rewritten as ``audit.record`` now stores them (their
personal fields sealed under a new key per envelope, see ``portal.records.keys``): the
append-only triggers are dropped for the rewrite and put back, every hash from the first
changed event on is recomputed, and one event ``audit.personal_data_encrypted`` records the
old head (sequence number and hash) and how many events were re-encrypted. The old chain is
verified first: a broken chain is never re-hashed (the migration stops with the reason).
Needs DATA_KEY (it runs inside the app).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 00:00:00

"""

import importlib.util
import json
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BATCH = 1000
EVENT = "audit.personal_data_encrypted"
COLUMNS = (
    "seq", "occurred_at", "event", "actor_type", "actor_id", "actor_label", "subject_type",
    "subject_id", "ip", "user_agent", "data", "prev_hash", "hash",
)  # fmt: skip


def upgrade():
    conn = op.get_bind()
    events = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar()
    if events:
        _check_chain(conn)  # before anything changes: a broken chain is never re-hashed
    op.create_table(
        "personal_key",
        sa.Column("envelope_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("envelope_id", name=op.f("pk_personal_key")),
    )
    with op.batch_alter_table("personal_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_personal_key_key_id"), ["key_id"], unique=False)
    op.create_table(
        "audit_ref",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("envelope_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_ref")),
    )
    with op.batch_alter_table("audit_ref", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_ref_envelope_id"), ["envelope_id"], unique=False)
    if events:
        _drop_update_trigger(conn.dialect.name)
        rewrite(conn)
        _restore_update_trigger(conn.dialect.name)


def downgrade():
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT count(*) FROM personal_key")).scalar():
        raise RuntimeError(
            "The audit chain's personal fields are encrypted under the keys in personal_key: "
            "downgrading would destroy them. Refused."
        )
    with op.batch_alter_table("audit_ref", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_ref_envelope_id"))
    op.drop_table("audit_ref")
    with op.batch_alter_table("personal_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_personal_key_key_id"))
    op.drop_table("personal_key")


def _batches(conn):
    """The chain's rows in order, read in keyset batches."""
    last = 0
    while True:
        rows = conn.execute(
            sa.text(
                f"SELECT {', '.join(COLUMNS)} FROM audit_event "  # noqa: S608
                f"WHERE seq > {int(last)} ORDER BY seq LIMIT {BATCH}"
            )
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].seq


def _check_chain(conn):
    from portal import audit

    result = audit.verify_rows(row for rows in _batches(conn) for row in rows)
    if not result.ok:
        raise RuntimeError(
            f"The audit chain is broken at event {result.first_bad_seq} ({result.reason}): "
            "not migrated. Find out why (flask portal verify-audit) before upgrading."
        )
    head = conn.execute(sa.text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    if head.seq != result.count:
        raise RuntimeError("The audit chain's head does not match its last event: not migrated.")


def _foundation():
    path = Path(__file__).with_name("0001_foundation.py")
    spec = importlib.util.spec_from_file_location("portal_migration_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drop_update_trigger(dialect):
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_event")


def _restore_update_trigger(dialect):
    foundation = _foundation()
    if dialect == "sqlite":
        op.execute(foundation.SQLITE_TRIGGERS[0])  # no UPDATE
    else:
        op.execute(foundation.POSTGRES_TRIGGERS[1])  # no UPDATE or DELETE


def rewrite(conn):
    """Seal the personal fields of every envelope event not sealed yet, re-hash the chain
    from the first changed event on, fill ``audit_ref``, and record the rewrite."""
    from portal import audit, clock
    from portal.records import keys

    ring = keys.Ring(conn=conn, cache={})
    user_teams = dict(conn.execute(sa.text("SELECT id, team_id FROM user_account")).all())
    update = sa.text(
        "UPDATE audit_event SET actor_label = :actor_label, ip = :ip, user_agent = :user_agent, "
        "data = :data_json, prev_hash = :prev_hash, hash = :hash WHERE seq = :seq"
    )
    old_prev = new_prev = audit.GENESIS
    count = sealed = rehashed = 0
    for rows in _batches(conn):
        ring.load_teams(
            {e for r in rows if (e := keys.envelope_of(r.subject_type, r.subject_id)) is not None}
        )
        changes, refs = [], []
        for row in rows:
            fields = {name: row[i] for i, name in enumerate(COLUMNS[:10])}
            fields["data_json"] = row.data
            if row.seq != count + 1 or row.prev_hash != old_prev:
                raise RuntimeError(f"The audit chain is broken at event {count + 1}: not migrated.")
            if audit.chain_hash(old_prev, audit.canonical(**fields)) != row.hash:
                raise RuntimeError(f"The audit chain is broken at event {row.seq}: not migrated.")
            old_prev, count = row.hash, row.seq
            envelope_id = keys.envelope_of(row.subject_type, row.subject_id)
            if envelope_id is not None:
                data = json.loads(row.data or "{}")
                if isinstance(data, dict) and keys.PERSONAL not in data:
                    before = dict(fields)
                    stored = ring.seal(envelope_id, fields, data)
                    if _moved(before, fields, stored, data):
                        fields["data_json"] = audit.encode_data(stored)
                        sealed += 1
            digest = audit.chain_hash(new_prev, audit.canonical(**fields))
            if digest != row.hash:
                changes.append({**fields, "prev_hash": new_prev, "hash": digest})
            new_prev = digest
            team = ring.teams.get(envelope_id) if envelope_id is not None else None
            if envelope_id is None:
                for kind, ident in (
                    (row.subject_type, row.subject_id),
                    (row.actor_type, row.actor_id),
                ):
                    if team is None and kind == "user" and (ident or "").isdigit():
                        team = user_teams.get(int(ident))
            refs.append({"seq": row.seq, "envelope_id": envelope_id, "team_id": team, "ip": row.ip})
        if changes:
            conn.execute(update, changes)
            rehashed += len(changes)
        ring.flush(refs)
    head = conn.execute(sa.text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    if head.seq != count or head.hash != old_prev:
        raise RuntimeError("The audit chain's head does not match its last event: not migrated.")
    if not rehashed:
        return
    fields = {
        "seq": count + 1,
        "occurred_at": audit.iso_time(clock.utcnow()),
        "event": EVENT,
        "actor_type": "system",
        "actor_id": None,
        "actor_label": None,
        "subject_type": None,
        "subject_id": None,
        "ip": None,
        "user_agent": None,
        "data_json": audit.encode_data(
            {
                "previous_head_seq": count,
                "previous_head_hash": old_prev,
                "reencrypted": sealed,
                "rehashed": rehashed,
                "format": keys.VERSION,
            }
        ),
    }
    digest = audit.chain_hash(new_prev, audit.canonical(**fields))
    conn.execute(
        sa.text(
            f"INSERT INTO audit_event ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
            "(:seq, :occurred_at, :event, :actor_type, :actor_id, :actor_label, :subject_type, "
            ":subject_id, :ip, :user_agent, :data_json, :prev_hash, :hash)"
        ),
        {**fields, "prev_hash": new_prev, "hash": digest},
    )
    ring.flush([{"seq": count + 1, "envelope_id": None, "team_id": None, "ip": None}])
    conn.execute(
        sa.text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
        {"seq": count + 1, "hash": digest},
    )


def _moved(before, after, stored, data):
    """Whether sealing moved anything (else the event is kept byte for byte)."""
    return before != after or stored != data
