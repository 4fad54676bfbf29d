"""audit.record_many: many events under one head lock, the same chain as record() makes."""

from __future__ import annotations

from sqlalchemy import select, text

from portal import audit
from portal.extensions import db
from tests.conftest import audit_events
from tests.test_audit import _drop_triggers


def _events(n: int, start: int = 0) -> list[audit.Pending]:
    return [
        audit.Pending(
            "envelope.created",
            actor=("user", "7", "Alex Agent"),
            subject=("envelope", str(start + i), "Refund"),
            data={"row": start + i, "email": "c***@example.com", "access_code": "1234"},
        )
        for i in range(n)
    ]


def test_record_many_extends_the_chain_like_record_and_verifies(ctx):
    audit.record("bulk.started", actor="system", data={"rows": 3})
    assert audit.record_many(_events(1000)) == 1000
    audit.record("bulk.finished", actor="system")
    assert audit.record_many([]) == 0
    db.session.commit()
    result = audit.verify()
    assert result.ok and result.count == 1002, result
    events = audit_events(ctx)
    assert [e.seq for e in events] == list(range(1, 1003))
    assert events[1].data == {"row": 0, "email": "c***@example.com", "access_code": "***"}
    assert events[1].actor_label == "Alex Agent" and events[1].subject_id == "0"
    head = db.session.execute(select(audit.AuditHead)).scalar_one()
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)


def test_record_many_hashes_exactly_what_record_would(ctx):
    one = audit.record(**_kwargs(_events(1)[0]))
    db.session.rollback()
    many = audit.record_many(_events(1))
    db.session.commit()
    shown = audit_events(ctx)[0]
    stored = shown.revealed.event  # as stored: the personal fields sealed (random nonces)
    assert many == 1 and stored.hash == audit.chain_hash(
        audit.GENESIS,
        audit.canonical(
            stored.seq, stored.occurred_at, stored.event, stored.actor_type, stored.actor_id,
            stored.actor_label, stored.subject_type, stored.subject_id, stored.ip,
            stored.user_agent, stored.data_json,
        ),
    )  # fmt: skip
    assert stored.actor_label == one.actor_label
    # the same clear part; the same personal part sealed under the envelope's key
    clear = {k: v for k, v in stored.data.items() if k != "personal"}
    assert clear == {k: v for k, v in one.data.items() if k != "personal"} == {"row": 0}
    assert shown.data == {"row": 0, "email": "c***@example.com", "access_code": "***"}


def test_a_tampered_event_written_by_record_many_is_found(ctx):
    audit.record_many(_events(50))
    db.session.commit()
    _drop_triggers()
    db.session.execute(text("UPDATE audit_event SET subject_id = '99' WHERE seq = 20"))
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.first_bad_seq == 20


def _kwargs(item: audit.Pending) -> dict:
    return {"event": item.event, "actor": item.actor, "subject": item.subject, "data": item.data}
