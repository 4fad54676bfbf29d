"""The hash-chained audit log: append-only, tamper-evident, never forked."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal import audit
from portal.extensions import db
from tests.conftest import audit_events


def _seed(count: int = 5) -> None:
    for n in range(count):
        audit.record("test.event", actor=("user", str(n), f"u{n}@example.test"), data={"n": n})
    db.session.commit()


def _drop_triggers() -> None:
    if db.engine.dialect.name == "sqlite":
        db.session.execute(text("DROP TRIGGER audit_event_no_update"))
        db.session.execute(text("DROP TRIGGER audit_event_no_delete"))
    else:
        db.session.execute(text("DROP TRIGGER audit_event_no_update_delete ON audit_event"))
    db.session.commit()


def test_events_chain_from_genesis_with_sequence_numbers(ctx):
    _seed(3)
    events = audit_events(ctx)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == audit.GENESIS
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    assert audit.verify().ok and audit.verify().count == 3


def test_event_is_part_of_the_callers_transaction(ctx):
    audit.record("test.rolled_back")
    db.session.rollback()
    assert audit_events(ctx) == []
    audit.record("test.kept")
    db.session.commit()
    assert [e.event for e in audit_events(ctx)] == ["test.kept"]
    assert audit.verify().ok


def test_secrets_in_event_data_are_masked(ctx):
    audit.record("test.masked", data={"code": "123456", "access_token": "abc", "reason": "x"})
    db.session.commit()
    (event,) = audit_events(ctx)
    assert event.data == {"code": "***", "access_token": "***", "reason": "x"}


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_event SET event = 'x'", "DELETE FROM audit_event"]
)
def test_database_refuses_update_and_delete(ctx, statement):
    _seed(2)
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
        db.session.flush()
    db.session.rollback()
    assert audit.verify().ok


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("UPDATE audit_event SET data = '{\"n\": 99}' WHERE seq = 3", 3),
        ("UPDATE audit_event SET event = 'test.other' WHERE seq = 2", 2),
        ("UPDATE audit_event SET ip = '10.0.0.9' WHERE seq = 4", 4),
        ("DELETE FROM audit_event WHERE seq = 2", 2),
        ("DELETE FROM audit_event WHERE seq = 5", 5),
    ],
    ids=["edited-data", "edited-name", "edited-ip", "removed-middle", "removed-last"],
)
def test_verify_audit_names_the_first_bad_event(ctx, runner_for, tamper, first_bad):
    _seed(5)
    _drop_triggers()
    db.session.execute(text(tamper))
    db.session.commit()
    result = runner_for(ctx).invoke(args=["portal", "verify-audit"])
    assert result.exit_code == 1
    assert f"BROKEN at sequence {first_bad}" in result.output


def test_reordered_events_are_detected(ctx, runner_for):
    _seed(4)
    _drop_triggers()
    # swap the contents of events 2 and 3 by renumbering them
    db.session.execute(text("UPDATE audit_event SET seq = 100 WHERE seq = 2"))
    db.session.execute(text("UPDATE audit_event SET seq = 2 WHERE seq = 3"))
    db.session.execute(text("UPDATE audit_event SET seq = 3 WHERE seq = 100"))
    db.session.commit()
    result = runner_for(ctx).invoke(args=["portal", "verify-audit"])
    assert result.exit_code == 1 and "BROKEN at sequence 2" in result.output


def test_verify_audit_prints_the_count_when_intact(ctx, runner_for):
    _seed(7)
    result = runner_for(ctx).invoke(args=["portal", "verify-audit"])
    assert result.exit_code == 0
    assert "Audit chain intact: 7 events." in result.output


def test_concurrent_writers_do_not_fork_the_chain(make_app):
    app = make_app()
    writers, each = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(worker: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for n in range(each):
                    audit.record("test.concurrent", data={"worker": worker, "n": n})
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with app.app_context():
        result = audit.verify()
    assert result.ok and result.count == writers * each
    events = audit_events(app)
    assert len({e.prev_hash for e in events}) == len(events), "two events share a parent"
