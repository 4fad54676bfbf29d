"""Retention policies, the retention date envelopes keep, the daily sweep with its review
window (driven by ``flask portal tick --now``), postponements, held envelopes, the editor's
policy choice, and officers-only pages."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.accounts.models import User
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import lifecycle
from portal.library import operations as library
from portal.library.models import TemplateVersion
from portal.records import holds, retention
from portal.records.retention import RetentionPolicy, RetentionReview
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_purge import KAI, ZOE, scan_database, send_refund, signed


@pytest.fixture
def seeded(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.reset()


def tick(app, runner_for, when) -> str:
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "tick", "--now", when.isoformat()])
    assert result.exit_code == 0, result.output
    assert "retention_sweep" in result.output
    return result.output


def state(app, envelope_id: int) -> tuple[bool, RetentionReview | None]:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        review = db.session.get(RetentionReview, envelope_id)
        if review is not None:
            db.session.expunge(review)
        return envelope.purged_at is not None, review


def test_the_default_policy_exists_and_envelopes_keep_policy_and_date(seeded, signed_in):
    app = seeded
    with app.app_context():
        policy = retention.default_policy()
        assert policy is not None and policy.years == 7 and policy.action == "both"
        assert policy.clock_start == "any_end"
    envelope_id, _ = signed(app, ZOE)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.retention_policy_id == policy.id
        finished = clock.as_utc(envelope.finished_at)
        assert clock.as_utc(envelope.retention_until) == finished.replace(year=finished.year + 7)
        public_id, until = envelope.public_id, envelope.retention_until.strftime("%Y-%m-%d")
    portal, _ = signed_in("agent")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert f"Standard (7 years): kept until {until}, then delete the documents and remove" in page


def test_a_completed_only_policy_starts_no_clock_on_void(seeded):
    app = seeded
    with app.app_context():
        completed_only = RetentionPolicy(
            name="Completed only", years=3, clock_start="completed", action="both"
        )
        db.session.add(completed_only)
        db.session.flush()
        version = library.approved_version(demo_template("Refund authorization"))
        version.retention_policy_id = completed_only.id
        policy_id = completed_only.id
        db.session.commit()
    envelope_id, _, _ = send_refund(app, ZOE)
    with app.app_context():
        envelopes.void(db.session.get(Envelope, envelope_id), "Wrong person", by=demo_agent())
        db.session.commit()
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.retention_policy_id == policy_id
        assert envelope.status == "voided" and envelope.retention_until is None


def test_the_sweep_lists_waits_the_review_window_postpones_and_skips_held(
    seeded, runner_for, signed_in, make_staff, monkeypatch
):
    app = seeded
    monkeypatch.setattr(retention, "SWEEP_BATCH", 1)  # (so the sweep goes on batch by batch)
    zoe_id, zoe_public = signed(app, ZOE)
    kai_id, _ = signed(app, KAI)
    officer_id = make_staff("compliance").id
    with app.app_context():
        officer = db.session.get(User, officer_id)
        holds.place(
            name="Case Rivera v Shop",
            case_ref="CV-2026-1",
            reason="Litigation",
            scope="email",
            email=KAI["email"],
            by=officer,
        )
        db.session.commit()
        until = max(
            clock.as_utc(db.session.get(Envelope, i).retention_until) for i in (zoe_id, kai_id)
        )

    tick(app, runner_for, until - timedelta(days=1))
    assert state(app, zoe_id) == (False, None)

    listed_at = until + timedelta(days=1)
    tick(app, runner_for, listed_at)
    purged, review = state(app, zoe_id)
    assert not purged and review is not None
    assert clock.as_utc(review.purge_after) - listed_at < timedelta(days=14, seconds=5)
    assert clock.as_utc(review.purge_after) - listed_at >= timedelta(days=14)
    [finished] = audit_events(app, "retention.sweep_finished")
    assert finished.data["listed"] == 2 and finished.data["purged"] == 0

    portal, _ = signed_in("compliance")
    page = portal.client.get("/records/retention/due").get_data(as_text=True)
    assert "2 envelopes due" in page and f'id="due-{zoe_id}"' in page
    assert review.purge_after.strftime("%Y-%m-%d") in page
    assert "Case Rivera v Shop" in page and "Kept: on legal hold" in page
    with app.app_context():  # the list goes on page by page (keyset)
        first, total, after = retention.due(limit=1)
        second, _, last = retention.due(after, limit=1)
        assert total == 2 and after == first[0].envelope.id and last is None
        assert {first[0].envelope.id, second[0].envelope.id} == {zoe_id, kai_id}
    for odd in ("x'--", "9" * 40, "-1"):
        again = portal.client.get("/records/retention/due", query_string={"after": odd})
        assert again.status_code == 200 and f'id="due-{zoe_id}"' in again.get_data(as_text=True)

    tick(app, runner_for, listed_at + timedelta(days=13))
    assert state(app, zoe_id)[0] is False  # still in its review window
    portal, _ = signed_in("compliance")  # (the tick years ahead ended the sessions)

    url = f"/records/retention/due/{zoe_id}/postpone"
    new_date = (listed_at + timedelta(days=30)).strftime("%Y-%m-%d")
    refused = portal.post(url, {"until": new_date, "reason": "  "})
    assert refused.status_code == 422 and "Say why the purge is postponed." in refused.get_data(
        as_text=True
    )
    nonsense = portal.post(url, {"until": "31/02/2040", "reason": "Audit"})
    assert nonsense.status_code == 422 and "is not a date" in nonsense.get_data(as_text=True)
    past = portal.post(url, {"until": "2001-01-01", "reason": "Audit"})
    assert past.status_code == 422 and "in the future" in past.get_data(as_text=True)
    moved = portal.post(url, {"until": new_date, "reason": "Tax audit of 2026 pending"})
    assert moved.status_code == 303
    [postponed] = audit_events(app, "retention.postponed")
    assert postponed.data["reason"] == "Tax audit of 2026 pending"
    assert postponed.data["to"].startswith(new_date)
    assert state(app, zoe_id)[1].postpone_reason == "Tax audit of 2026 pending"

    tick(app, runner_for, listed_at + timedelta(days=15))
    assert state(app, zoe_id)[0] is False  # postponed
    assert state(app, kai_id)[0] is False  # held
    last = audit_events(app, "retention.sweep_finished")[-1]
    assert last.data["skipped_held"] == 1 and last.data["purged"] == 0
    assert last.data["skipped"] == [
        {"envelope": kai_id, "why": "On legal hold: Case Rivera v Shop."}
    ]
    portal, _ = signed_in("compliance")
    page = portal.client.get("/records/retention/due").get_data(as_text=True)
    with app.app_context():
        kai = db.session.get(Envelope, kai_id)
        assert kai is not None
        link = f'<a href="/envelopes/{kai.public_id}">{kai.title}</a>'
        kai_link = f'{link} <span class="muted">#{kai_id}</span>'
    assert f"{kai_link}: On legal hold: Case Rivera v Shop." in page, "named, linked"
    assert "0 newly listed as due" in page, "not read as 'nothing is due'"

    tick(app, runner_for, listed_at + timedelta(days=31))
    assert state(app, zoe_id)[0] is True
    assert state(app, kai_id)[0] is False
    last = audit_events(app, "retention.sweep_finished")[-1]
    assert last.data["purged"] == 1 and last.data["skipped_held"] == 1
    [purged_event] = audit_events(app, "envelope.purged")
    assert purged_event.subject_id == str(zoe_id) and purged_event.actor_type == "system"
    with app.app_context():
        assert scan_database([ZOE["email"], ZOE["name"]]) == []
        kai = db.session.get(Envelope, kai_id)
        assert kai.recipients[0].email == KAI["email"]
        assert runner_for(app).invoke(args=["portal", "verify-audit"]).exit_code == 0
    portal, _ = signed_in("compliance")
    page = portal.client.get("/records/retention/due").get_data(as_text=True)
    assert f'id="due-{zoe_id}"' not in page and f'id="due-{kai_id}"' in page
    tomb = portal.client.get(f"/envelopes/{zoe_public}").get_data(as_text=True)
    assert "Purged" in tomb and ZOE["email"] not in tomb


def test_tick_now_is_checked_and_refused_in_production(app, make_app, runner_for):
    with app.app_context():
        bad = runner_for(app).invoke(args=["portal", "tick", "--now", "next tuesday"])
    assert bad.exit_code != 0 and "is not a date and time" in bad.output
    production = make_app(PRODUCTION=True)
    with production.app_context():
        refused = runner_for(production).invoke(
            args=["portal", "tick", "--now", "2033-12-05T00:00:00Z"]
        )
    assert refused.exit_code != 0 and "not in production" in refused.output
    assert abs(clock.utcnow() - clock.parse_moment("2033-12-05")) > timedelta(days=300)


def test_policies_page_creates_checks_and_locks_a_policy_in_use(seeded, signed_in):
    app = seeded
    portal, _ = signed_in("compliance")
    page = portal.client.get("/records/retention").get_data(as_text=True)
    assert "Standard" in page and "Default" in page
    for data, message in (
        ({"name": "Too long", "years": "9"}, "The period is 2 to 7 years."),
        ({"name": "", "years": "3"}, "Give the policy a name."),
        ({"name": "Words", "years": "three"}, "The period is a whole number of years"),
        ({"name": "standard", "years": "3"}, "exists already"),
    ):
        answer = portal.post(
            "/records/retention", {"clock_start": "any_end", "action": "both", **data}
        )
        assert answer.status_code == 422 and message in answer.get_data(as_text=True)
    bad_choice = portal.post(
        "/records/retention",
        {"name": "X", "years": "3", "clock_start": "whenever", "action": "both"},
    )
    assert bad_choice.status_code == 422
    created = portal.post(
        "/records/retention",
        {"name": "=HYPERLINK(1)", "years": "3", "clock_start": "completed", "action": "anonymise"},
    )
    assert created.status_code == 303
    [event] = audit_events(app, "retention.policy_created")
    assert event.data == {
        "name": "=HYPERLINK(1)",
        "years": 3,
        "clock_start": "completed",
        "action": "anonymise",
    }
    with app.app_context():
        policy = db.session.execute(
            select(RetentionPolicy).where(RetentionPolicy.name == "=HYPERLINK(1)")
        ).scalar_one()
        policy_id = policy.id
    edit = f"/records/retention/policies/{policy_id}"
    changed = portal.post(
        edit, {"name": "Warranty", "years": "4", "clock_start": "any_end", "action": "both"}
    )
    assert changed.status_code == 303
    # the editor chooses it for a draft version: in use from then on
    with app.app_context():
        draft = lifecycle.new_draft(demo_template("Refund authorization"), by=demo_agent())
        db.session.commit()
        draft_id = draft.id
    editor = portal.client.get(f"/library/versions/{draft_id}").get_data(as_text=True)
    assert 'name="policy"' in editor and "Warranty (4 years)" in editor
    chosen = portal.post(
        f"/records/retention/versions/{draft_id}/policy", {"policy": str(policy_id)}
    )
    assert chosen.status_code == 302
    with app.app_context():
        assert db.session.get(TemplateVersion, draft_id).retention_policy_id == policy_id
    [picked] = audit_events(app, "retention.version_policy_set")
    assert picked.data["policy"] == "Warranty"
    locked = portal.client.get(edit).get_data(as_text=True)
    assert "only its name can change" in locked
    renamed = portal.post(
        edit,
        {
            "name": "Warranty claims",
            "years": "7",
            "clock_start": "completed",
            "action": "anonymise",
        },
    )
    assert renamed.status_code == 303
    with app.app_context():
        policy = db.session.get(RetentionPolicy, policy_id)
        assert (policy.name, policy.years, policy.clock_start, policy.action) == (
            "Warranty claims",
            4,
            "any_end",
            "both",
        )
    changes = [e.data["changes"] for e in audit_events(app, "retention.policy_changed")]
    assert changes[-1] == {"name": ["Warranty", "Warranty claims"]}
    unknown = portal.post(f"/records/retention/versions/{draft_id}/policy", {"policy": "x'; --"})
    assert unknown.status_code == 302
    assert portal.client.get("/records/retention/policies/999999").status_code == 404


def test_admins_may_widen_the_range(make_app, signed_in):
    app = make_app(RETENTION_YEARS_RANGE="1-15")
    with app.app_context():
        assert retention.years_range() == (1, 15)
    wider = make_app(RETENTION_YEARS_RANGE="0-40")
    with wider.app_context():
        assert retention.years_range() == (1, 15)


def test_agents_get_403_on_every_retention_page(seeded, signed_in):
    app = seeded
    envelope_id, _, _ = send_refund(app, ZOE)
    portal, _ = signed_in("agent")
    for url in ("/records/retention", "/records/retention/due", "/records/retention/policies/1",
                f"/records/retention/due/{envelope_id}/postpone"):  # fmt: skip
        assert portal.client.get(url).status_code == 403, url
    posted = (
        "/records/retention",
        f"/records/retention/due/{envelope_id}/postpone",
        "/records/retention/versions/1/policy",
        "/records/retention/policies/1",
    )
    for url in posted:
        assert portal.post(url, {"name": "x", "reason": "x"}).status_code == 403, url


# ---------------------------------------------------------------- migration 0014 on existing rows


def _filler(column, now):
    from sqlalchemy import JSON, Boolean, DateTime, Integer, LargeBinary, Numeric

    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer | Numeric):
        return 1
    if isinstance(kind, DateTime):
        return now
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, LargeBinary):
        return b"x"
    return "x"


def _insert(conn, table, now, **values):
    row = {
        c.name: _filler(c, now)
        for c in table.columns
        if not c.nullable and c.server_default is None and c.name not in values
    }
    conn.execute(table.insert().values(**row, **values))


def test_migration_0014_gives_existing_rows_the_default_policy_and_dates(
    backend, postgres_server, tmp_path
):
    from datetime import UTC, datetime

    from flask_migrate import upgrade
    from sqlalchemy import MetaData, create_engine

    from portal import create_app
    from portal.extensions import dispose_engines
    from tests.conftest import base_config

    if postgres_server is not None:
        name = f"portal_mig_{os.getpid()}"
        postgres_server.execute(f"CREATE DATABASE {name}")
        url = postgres_server.url(name)
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app(base_config(url))
    with app.app_context():
        upgrade(revision="0013")
        dispose_engines()
    ended = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        t = meta.tables
        now = datetime(2024, 1, 1, tzinfo=UTC)
        with engine.begin() as conn:
            _insert(conn, t["user_account"], now, id=1, email="a@x.test", team_id=None)
            _insert(conn, t["template"], now, id=1, team_id=None, created_by_id=None)
            _insert(conn, t["template_version"], now, id=1, template_id=1, number=1,
                    created_by_id=None, submitted_by_id=None, reviewed_by_id=None,
                    source_blob_id=None)  # fmt: skip
            _insert(conn, t["blob"], now, id="b1")
            for eid, status, finished in ((1, "completed", ended), (2, "sent", None)):
                _insert(conn, t["envelope"], now, id=eid, public_id=f"p{eid}", status=status,
                        template_version_id=1, created_by_id=1, team_id=None,
                        document_blob_id="b1", sealed_blob_id=None,
                        finished_at=finished)  # fmt: skip
    finally:
        engine.dispose()
    with app.app_context():
        upgrade()
        policy = retention.default_policy()
        assert policy is not None and policy.years == 7
        assert db.session.get(TemplateVersion, 1).retention_policy_id == policy.id
        done, open_ = db.session.get(Envelope, 1), db.session.get(Envelope, 2)
        assert done.retention_policy_id == open_.retention_policy_id == policy.id
        assert clock.as_utc(done.retention_until) == datetime(2031, 2, 28, 12, 0, tzinfo=UTC)
        assert open_.retention_until is None
        db.session.remove()
        dispose_engines()
    if postgres_server is not None:
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
