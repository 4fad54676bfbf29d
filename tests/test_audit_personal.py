"""Customers' personal data in the audit chain: sealed under a key per envelope, readable
through ``audit.reveal`` while the key exists, erased for good by ``keys.shred`` (the chain
still verifies), re-wrapped by rotate-data-key, and sealed in existing chains by migration 0013.
"""

from __future__ import annotations

import itertools
import os
import shutil

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text

from portal import audit
from portal.accounts.models import User
from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db, dispose_engines
from portal.records import keys
from tests.conftest import Portal, base_config
from tests.test_signing import _csrf, _path, sent  # noqa: F401
from tests.test_signing_rules import _data_url, _png

CUSTOMER_IP = "203.0.113.77"
CUSTOMER_AGENT = "ZoeBrowser/9.1 (personal)"
STAFF_IP = "198.51.100.5"
# What must never be stored in clear in the chain for the customer of the demo refund.
PERSONAL = ("zoe@example.com", "z***@example.com", "Zoë", "Łukasiewicz", CUSTOMER_IP,
            CUSTOMER_AGENT, "@example.com")  # fmt: skip
COLUMNS = ("actor_label", "ip", "user_agent", "data", "actor_id", "subject_id", "event")


def _customer_signs(app, link, public_id):
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=CUSTOMER_IP, HTTP_USER_AGENT=CUSTOMER_AGENT)
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    data = {"csrf_token": token, "adoption": "drawn", "agree": "yes"}
    data["drawing"] = _data_url(_png())
    done = client.post(f"/sign/{public_id}/sign", data=data)
    assert done.status_code == 302, done.get_data(as_text=True)


def _stored_rows(envelope_id: int) -> list[tuple]:
    """Every stored column of the envelope's events, as the database holds them."""
    return list(
        db.session.execute(
            text(
                f"SELECT {', '.join(COLUMNS)} FROM audit_event "
                "WHERE subject_type = 'envelope' AND subject_id = :id ORDER BY seq"
            ),
            {"id": str(envelope_id)},
        ).all()
    )


def _plain_hits(rows) -> list[tuple[str, str]]:
    return [(word, str(v)) for row in rows for v in row for word in PERSONAL if word in str(v)]


@pytest.fixture
def signed(app, sent, signed_in):  # noqa: F811
    """The demo refund sent by an agent (from STAFF_IP) and signed by the customer."""
    portal, _agent = signed_in("agent")
    envelope_id, public_id, link = sent()
    _customer_signs(app, link, public_id)
    return envelope_id, public_id, portal


def test_a_signed_envelope_keeps_no_personal_data_in_clear_in_the_chain(app, signed):
    envelope_id, public_id, portal = signed
    with app.app_context():
        rows = _stored_rows(envelope_id)
        names = [r[-1] for r in rows]
        assert {
            "envelope.created",
            "recipient.consented",
            "recipient.signed",
            "envelope.link_sent",
        } <= set(names)
        assert _plain_hits(rows) == []
        # the customer's events are sealed, their columns empty
        consented = next(r for r in rows if r[-1] == "recipient.consented")
        assert consented[:3] == (None, None, None) and '"personal":"v1:' in consented[3]
        # the clear part stays searchable: ids, hashes, kinds
        signed_row = next(r for r in rows if r[-1] == "recipient.signed")
        assert '"document_sha256":' in signed_row[3] and '"adoption":"drawn"' in signed_row[3]
        # reveal gives everything back, one key for the whole envelope
        events = sealing.envelope_events(db.session.get(Envelope, envelope_id))
        by_name = {e.name: e for e in events}
        assert by_name["recipient.consented"].ip == CUSTOMER_IP
        assert by_name["recipient.consented"].user_agent == CUSTOMER_AGENT
        assert by_name["recipient.consented"].actor_label == "zoe@example.com"
        assert by_name["envelope.link_sent"].data["email"] == "z***@example.com"
        assert not any(e.erased for e in events)
        # the side index has the envelope, its team and the IP for searching
        refs = db.session.execute(
            select(keys.AuditRef).where(keys.AuditRef.envelope_id == envelope_id)
        ).scalars()
        envelope = db.session.get(Envelope, envelope_id)
        refs = list(refs)
        assert len(refs) == len(rows) and {r.team_id for r in refs} == {envelope.team_id}
        assert CUSTOMER_IP in {r.ip for r in refs}
        # the certificate of completion still names the customer and their IP
        facts = sealing.evidence(envelope)
        assert any(t.ip == CUSTOMER_IP and t.actor == "zoe@example.com" for t in facts.timeline)
        key_row = db.session.get(keys.PersonalKey, envelope_id)
        assert key_row.wrapped and key_row.shredded_at is None
        assert b"zoe" not in key_row.wrapped
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert CUSTOMER_IP in page and "Signed" in page


def test_after_shredding_the_events_read_erased_and_the_chain_verifies(app, signed, runner_for):
    envelope_id, public_id, portal = signed
    with app.app_context():
        keys.shred(envelope_id)
        keys.shred(envelope_id)  # idempotent
        db.session.commit()
        assert keys.shredded(envelope_id)
        events = sealing.envelope_events(db.session.get(Envelope, envelope_id))
        consented = next(e for e in events if e.name == "recipient.consented")
        assert consented.erased and consented.ip == keys.ERASED
        assert consented.actor_label == keys.ERASED and consented.user_agent == keys.ERASED
        assert set(consented.data) == {"disclosure"}
        # events without personal fields are not erased
        assert any(not e.erased for e in events)
        # the certificate's evidence still renders, with placeholders
        facts = sealing.evidence(db.session.get(Envelope, envelope_id))
        erased = [t for t in facts.timeline if t.detail == "personal data erased"]
        assert erased and {t.ip for t in erased} == {keys.ERASED}
        assert not any(t.ip == CUSTOMER_IP for t in facts.timeline)
        assert db.session.get(keys.PersonalKey, envelope_id).wrapped is None
        refs = db.session.execute(
            select(keys.AuditRef.ip).where(keys.AuditRef.envelope_id == envelope_id)
        ).scalars()
        assert set(refs) == {None}
        # an event recorded afterwards keeps no personal part at all
        audit.record(
            "envelope.test_late",
            actor=("recipient", "1", "zoe@example.com"),
            subject=("envelope", str(envelope_id), None),
            data={"email": "zoe@example.com", "recipient": 1},
            ip=CUSTOMER_IP,
        )
        db.session.commit()
        rows = _stored_rows(envelope_id)
        assert _plain_hits(rows) == []
        assert '"personal":"erased"' in rows[-1][3]
        result = runner_for(app).invoke(args=["portal", "verify-audit"])
        assert result.exit_code == 0, result.output
        assert "Audit chain intact" in result.output
    page = portal.client.get(f"/envelopes/{public_id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "personal data erased" in body and CUSTOMER_IP not in body


def test_staff_events_keep_their_ip_readable(app, make_staff):
    staff = make_staff("agent")
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=STAFF_IP)
    Portal(app, client).sign_in(staff)
    with app.app_context():
        row = db.session.execute(
            select(audit.AuditEvent).where(audit.AuditEvent.event == "auth.login.succeeded")
        ).scalar_one()
        assert row.ip == STAFF_IP and '"personal"' not in row.data_json
        ref = db.session.get(keys.AuditRef, row.seq)
        assert ref.ip == STAFF_IP and ref.envelope_id is None
        assert ref.team_id == db.session.get(User, staff.id).team_id
        assert db.session.execute(select(keys.PersonalKey)).first() is None


def test_record_many_seals_like_record(ctx):
    items = [
        audit.Pending(
            "envelope.link_sent",
            ("user", "1", "agent@demo.example"),
            ("envelope", str(envelope_id), "Refund"),
            {"recipient": n, "email": f"person{n}@example.com"},
        )
        for n, envelope_id in enumerate([41, 42, 41, 43])
    ]
    assert audit.record_many(items) == 4
    db.session.commit()
    stored = list(
        db.session.execute(select(audit.AuditEvent).order_by(audit.AuditEvent.seq)).scalars()
    )
    assert all("example.com" not in e.data_json for e in stored)
    assert {k.envelope_id for k in db.session.execute(select(keys.PersonalKey)).scalars()} == {
        41,
        42,
        43,
    }
    shown = audit.reveal(stored)
    assert [s.data["email"] for s in shown] == [f"person{n}@example.com" for n in range(4)]
    assert [s.data["recipient"] for s in shown] == [0, 1, 2, 3]
    assert audit.verify().ok
    keys.shred(42)
    db.session.commit()
    assert [s.erased for s in audit.reveal(stored)] == [False, True, False, False]


def test_a_sealed_part_cannot_be_moved_to_another_event(ctx):
    for n in range(2):
        audit.record(
            "envelope.test", subject=("envelope", "7", None), data={"email": f"p{n}@x.org"}
        )
    db.session.commit()
    first, second = db.session.execute(
        select(audit.AuditEvent).order_by(audit.AuditEvent.seq)
    ).scalars()
    token = first.data["personal"]
    key = keys.Ring().key(7)
    assert keys.open_sealed(key, first.seq, token)["data"] == {"email": "p0@x.org"}
    with pytest.raises(Exception, match="do not decrypt"):
        keys.open_sealed(key, second.seq, token)


def test_rotate_data_key_rewraps_the_envelope_keys(ctx, runner_for):
    audit.record("envelope.test", subject=("envelope", "9", None), data={"email": "a@b.org"})
    db.session.commit()
    old_key = ctx.config["DATA_KEY"]
    ctx.config["DATA_KEY"] = os.urandom(32)
    result = runner_for(ctx).invoke(args=["portal", "rotate-data-key", "--old-key", old_key.hex()])
    assert result.exit_code == 0, result.output
    assert "Re-wrapped 1 envelope keys" in result.output
    db.session.expire_all()
    event = db.session.execute(select(audit.AuditEvent)).scalar_one()
    assert audit.reveal([event])[0].data["email"] == "a@b.org"
    assert keys.unreadable_key_ids() == []


# ---------------------------------------------------------------- migration 0013

_names = itertools.count()


@pytest.fixture
def empty_url(backend, postgres_server, tmp_path):
    """An empty database (no migrations run)."""
    if postgres_server is not None:
        name = f"portal_mig_{os.getpid()}_{next(_names)}"
        postgres_server.execute(f"CREATE DATABASE {name}")
        yield postgres_server.url(name)
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    yield f"sqlite:///{tmp_path / 'old.db'}"
    shutil.rmtree(tmp_path, ignore_errors=True)


def _old_record(seq_prev, event, actor, subject, ip, agent, data):
    """Append an event as the chain stored them before 0013 (everything in clear)."""
    seq, prev = seq_prev
    fields = {
        "seq": seq + 1,
        "occurred_at": "2026-11-01T10:00:00.000000Z",
        "event": event,
        "actor_type": actor[0],
        "actor_id": actor[1],
        "actor_label": actor[2],
        "subject_type": subject[0] if subject else None,
        "subject_id": subject[1] if subject else None,
        "ip": ip,
        "user_agent": agent,
        "data_json": audit.encode_data(data),
    }
    digest = audit.chain_hash(prev, audit.canonical(**fields))
    db.session.execute(
        text(
            "INSERT INTO audit_event (seq, occurred_at, event, actor_type, actor_id, actor_label, "
            "subject_type, subject_id, ip, user_agent, data, prev_hash, hash) VALUES (:seq, "
            ":occurred_at, :event, :actor_type, :actor_id, :actor_label, :subject_type, "
            ":subject_id, :ip, :user_agent, :data_json, :prev_hash, :hash)"
        ),
        {**fields, "prev_hash": prev, "hash": digest},
    )
    db.session.execute(
        text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
        {"seq": seq + 1, "hash": digest},
    )
    return seq + 1, digest


def _old_chain():
    head = (0, audit.GENESIS)
    head = _old_record(head, "auth.login.succeeded", ("user", "1", "agent@demo.example"),
                       ("user", "1"), STAFF_IP, "StaffBrowser", {"method": "totp"})  # fmt: skip
    head = _old_record(head, "envelope.link_sent", ("user", "1", "agent@demo.example"),
                       ("envelope", "5"), STAFF_IP, "StaffBrowser",
                       {"recipient": 3, "email": "z***@example.com"})  # fmt: skip
    head = _old_record(head, "recipient.consented", ("recipient", "3", "zoe@example.com"),
                       ("envelope", "5"), CUSTOMER_IP, CUSTOMER_AGENT,
                       {"disclosure": 1})  # fmt: skip
    head = _old_record(head, "recipient.declined", ("recipient", "3", "zoe@example.com"),
                       ("envelope", "5"), CUSTOMER_IP, CUSTOMER_AGENT,
                       {"reason": "Zoë Łukasiewicz does not agree"})  # fmt: skip
    head = _old_record(head, "auth.logout", ("user", "1", "agent@demo.example"), ("user", "1"),
                       STAFF_IP, "StaffBrowser", {})  # fmt: skip
    db.session.commit()
    return head


def test_migration_0013_seals_an_existing_chain_and_records_the_rewrite(empty_url, runner_for):
    from portal import create_app

    app = create_app(base_config(empty_url))
    try:
        with app.app_context():
            upgrade(revision="0012")
            old_seq, old_hash = _old_chain()
            db.session.remove()
            upgrade()
            db.session.remove()
            result = runner_for(app).invoke(args=["portal", "verify-audit"])
            assert result.exit_code == 0, result.output
            assert "6 events" in result.output
            stored = list(
                db.session.execute(
                    select(audit.AuditEvent).order_by(audit.AuditEvent.seq)
                ).scalars()
            )
            raw = [
                (e.actor_label, e.ip, e.user_agent, e.data_json)
                for e in stored
                if e.subject_type == "envelope"
            ]
            assert _plain_hits(raw) == []
            # staff events untouched
            assert stored[0].ip == STAFF_IP and stored[4].ip == STAFF_IP
            last = stored[-1]
            assert last.event == "audit.personal_data_encrypted"
            assert last.data["previous_head_seq"] == old_seq
            assert last.data["previous_head_hash"] == old_hash
            assert last.data["reencrypted"] == 3 and last.data["rehashed"] == 4
            shown = audit.reveal(stored)
            assert shown[2].ip == CUSTOMER_IP and shown[2].user_agent == CUSTOMER_AGENT
            assert shown[2].actor_label == "zoe@example.com"
            assert shown[3].data["reason"] == "Zoë Łukasiewicz does not agree"
            assert shown[1].data == {"recipient": 3, "email": "z***@example.com"}
            refs = {r.seq: r for r in db.session.execute(select(keys.AuditRef)).scalars()}
            assert sorted(refs) == [1, 2, 3, 4, 5, 6]
            assert refs[3].envelope_id == 5 and refs[3].ip == CUSTOMER_IP
            # the append-only triggers are back
            with pytest.raises(Exception, match="append-only"):
                db.session.execute(text("UPDATE audit_event SET event = 'x' WHERE seq = 1"))
                db.session.flush()
            db.session.rollback()
    finally:
        with app.app_context():
            db.session.remove()
            dispose_engines()


def test_migration_0013_refuses_to_rehash_a_broken_chain(empty_url, capsys):
    from portal import create_app

    app = create_app(base_config(empty_url))
    try:
        with app.app_context():
            upgrade(revision="0012")
            _old_chain()
            if db.engine.dialect.name == "sqlite":
                db.session.execute(text("DROP TRIGGER audit_event_no_update"))
            else:
                db.session.execute(text("DROP TRIGGER audit_event_no_update_delete ON audit_event"))
            db.session.execute(text("UPDATE audit_event SET ip = '10.0.0.1' WHERE seq = 2"))
            db.session.commit()
            db.session.remove()
            with pytest.raises(SystemExit):
                upgrade()
            assert "The audit chain is broken at event 2" in capsys.readouterr().err
            db.session.remove()
            version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert version == "0012"
            assert db.session.execute(
                text("SELECT ip FROM audit_event WHERE seq = 3")
            ).scalar() == (CUSTOMER_IP)
    finally:
        with app.app_context():
            db.session.remove()
            dispose_engines()


def test_a_purge_recorded_after_shredding_keeps_its_reason_but_no_ip(ctx):
    audit.record("envelope.test", subject=("envelope", "8", None), data={"email": "a@b.org"})
    keys.shred(8)
    audit.record(
        "envelope.purged",
        actor=("user", "1", "officer@demo.example"),
        subject=("envelope", "8", None),
        data={"reason": "Retention period ended", "kind": "both", "email": "a@b.org"},
        ip=STAFF_IP,
    )
    db.session.commit()
    first, purged = db.session.execute(
        select(audit.AuditEvent).order_by(audit.AuditEvent.seq)
    ).scalars()
    assert "a@b.org" not in first.data_json + purged.data_json
    assert purged.ip is None and STAFF_IP not in purged.data_json
    shown = audit.reveal([first, purged])
    assert shown[0].erased and "email" not in shown[0].data
    assert shown[1].erased and shown[1].ip == keys.ERASED
    assert shown[1].data == {"reason": "Retention period ended", "kind": "both"}
    assert shown[1].actor_label == "officer@demo.example"


def test_a_key_shredded_by_another_process_is_not_read_from_a_cache(ctx):
    audit.record("envelope.test", subject=("envelope", "11", None), data={"email": "a@b.org"})
    db.session.commit()
    event = db.session.execute(select(audit.AuditEvent)).scalar_one()
    assert audit.reveal([event])[0].data["email"] == "a@b.org"
    db.session.commit()
    with db.engine.begin() as other:  # another process shreds it meanwhile
        other.execute(text("UPDATE personal_key SET wrapped = NULL WHERE envelope_id = 11"))
    assert audit.reveal([event])[0].erased
