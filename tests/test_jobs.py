"""Jobs are enqueued only after the commit: inline in embedded mode, on RQ with Redis."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from portal import audit, jobs
from portal.extensions import db
from tests import jobs_probe
from tests.conftest import audit_events


@pytest.fixture
def rq_app(make_app, redis_server):
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False)
    yield app, conn
    conn.flushdb()
    conn.close()


def _work(app, conn, *names: str) -> None:
    queues = [Queue(name, connection=conn) for name in names or jobs.QUEUES]
    with app.app_context():
        SimpleWorker(queues, connection=conn).work(burst=True)


def test_job_waits_for_the_commit_then_runs_on_a_real_rq_worker(rq_app):
    app, conn = rq_app
    with app.app_context():
        audit.record("test.operation")
        jobs.enqueue(jobs_probe.note, "after commit")
        assert Queue("default", connection=conn).count == 0, "nothing before the commit"
        db.session.commit()
        assert Queue("default", connection=conn).count == 1
    _work(app, conn)
    ran = audit_events(app, "test.job_ran")
    assert [e.data for e in ran] == [{"text": "after commit"}]


def test_rolled_back_transaction_enqueues_nothing(rq_app):
    app, conn = rq_app
    with app.app_context():
        audit.record("test.operation")
        jobs.enqueue(jobs_probe.note, "never")
        db.session.rollback()
        db.session.commit()
    assert Queue("default", connection=conn).count == 0
    _work(app, conn)
    assert audit_events(app, "test.job_ran") == []


def test_jobs_go_to_their_named_queue(rq_app):
    app, conn = rq_app
    with app.app_context():
        jobs.enqueue(jobs_probe.note_pdf, "seal me")
        db.session.commit()
    assert Queue("pdf", connection=conn).count == 1
    assert Queue("default", connection=conn).count == 0
    _work(app, conn, "pdf")
    assert [e.data["text"] for e in audit_events(app, "test.pdf_job_ran")] == ["seal me"]


def test_inline_mode_runs_the_job_right_after_the_commit(ctx):
    jobs.enqueue(jobs_probe.note, "inline")
    assert audit_events(ctx, "test.job_ran") == []
    db.session.commit()
    assert [e.data for e in audit_events(ctx, "test.job_ran")] == [{"text": "inline"}]


def test_inline_mode_rollback_runs_nothing(ctx):
    jobs.enqueue(jobs_probe.note, "never")
    db.session.rollback()
    db.session.commit()
    assert audit_events(ctx, "test.job_ran") == []


def test_unregistered_functions_are_refused(ctx):
    with pytest.raises(ValueError, match="not a registered job"):
        jobs.enqueue(print, "x")


def test_redis_down_does_not_lose_the_committed_work(make_app, redis_server):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", JOBS_INLINE=False)
    with app.app_context():
        audit.record("test.operation")
        jobs.enqueue(jobs_probe.note, "nudge lost")
        db.session.commit()
    # the row is the truth; the queue was only a nudge for it
    assert [e.event for e in audit_events(app)] == ["test.operation"]


def test_tick_runs_every_periodic_task_once(ctx, runner_for):
    result = runner_for(ctx).invoke(args=["portal", "tick"])
    assert result.exit_code == 0
    assert "portal.accounts.sessions:expire_sessions: 0 sessions ended" in result.output


def test_rq_cron_config_registers_every_periodic_task(app):
    import importlib
    import sys

    from rq import cron

    cron._job_data_registry.clear()
    sys.modules.pop("portal.cron_config", None)
    importlib.import_module("portal.cron_config")
    registered = {entry["name"]: entry for entry in cron._job_data_registry}
    cron._job_data_registry.clear()
    assert set(registered) == {task.name for task in jobs.periodic_tasks()}
    entry = registered["portal.accounts.sessions:expire_sessions"]
    assert entry["interval"] == 300 and entry["func"] is jobs.execute
