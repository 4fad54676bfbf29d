"""A 10,000-row batch on PostgreSQL whose real RQ worker is SIGKILLed in the middle of a chunk,
then resumed by the sweeper on a restarted worker: every row sent once, none skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, update

from portal import audit, clock, jobs
from portal.bulk import drafts, sending
from portal.bulk.columns import columns_for
from portal.bulk.models import BulkBatch, BulkRow
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.library.models import TemplateVersion
from portal.mail import Message
from tests.bulk_helpers import approved_pdf_template, to_csv
from tests.conftest import audit_events, demo_agent

ROOT = Path(__file__).resolve().parents[1]
ROWS = 10_000
CHUNKS_BEFORE_KILL = 4  # of ten (sending.CHUNK rows each)

WORKER = """
import sys, time
from pathlib import Path
from redis import Redis
from rq import Queue, SimpleWorker
from portal import create_app
from portal.bulk import creating
from tests.conftest import base_config

uri, redis_url, marker, stall_after = sys.argv[1:5]
app = create_app(base_config(uri, REDIS_URL=redis_url, JOBS_INLINE=False, BULK_MAIL_PER_MINUTE=0))
real = creating.ChunkCreator.create
calls = [0]

def create(self, rows, codes):
    calls[0] += 1
    outcome = real(self, rows, codes)
    if stall_after and calls[0] > int(stall_after):
        Path(marker).write_text("written, not committed")
        time.sleep(600)  # SIGKILLed here: this chunk's rows are written but never committed
    return outcome

creating.ChunkCreator.create = create
conn = Redis.from_url(redis_url)
with app.app_context():
    SimpleWorker([Queue("default", connection=conn)], connection=conn).work(burst=True)
"""


def _worker(script: Path, database_url: str, redis_url: str, marker: Path, stall: str):
    return subprocess.Popen(
        [sys.executable, str(script), database_url, redis_url, str(marker), stall],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _count(model, *where) -> int:
    value = db.session.scalar(select(func.count()).select_from(model).where(*where))
    db.session.rollback()
    return int(value or 0)


@pytest.mark.postgresql_only
def test_a_worker_killed_mid_batch_resumes_with_no_row_sent_twice_or_skipped(
    make_app, redis_server, database_url, runner_for, tmp_path
):
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False, BULK_MAIL_PER_MINUTE=0)
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    version_id = approved_pdf_template(app)
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        headings = [c.heading for c in columns_for(version)]
        rows = [
            {"customer.name": f"Customer {n}", "Customer: email": f"c{n}@example.com",
             "plan": "basic" if n % 2 else "premium"}
            for n in range(1, ROWS + 1)
        ]  # fmt: skip
        batch = drafts.upload(version, "10000.csv", to_csv(headings, rows).encode(), demo_agent())
        assert batch.ready_rows == ROWS
        assert drafts.start(batch, demo_agent(), exclude_problems=False) == ROWS
        batch_id = batch.id
    assert Queue("default", connection=conn).count == 1, "the batch job is queued"

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    marker = tmp_path / "stalled"
    worker = _worker(script, database_url, redis_server.url, marker, str(CHUNKS_BEFORE_KILL))
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert worker.poll() is None, "the worker ended before the kill"
            assert time.monotonic() < deadline, "the worker never reached the chunk to kill"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()

    with app.app_context():
        created = _count(BulkRow, BulkRow.batch_id == batch_id, BulkRow.state == "created")
        assert created == CHUNKS_BEFORE_KILL * sending.CHUNK, created  # whole chunks only
        assert _count(Envelope) == created and _count(Message) == created
        batch = db.session.get(BulkBatch, batch_id)
        assert batch.state == "sending" and batch.runner and batch.created_count == created
        # the sweeper leaves a batch whose job beats...
        assert jobs.execute("portal.bulk.sending:resume_stuck_batches").startswith("0 batches")
        # ...and resumes it once the heartbeat is older than the lease (minutes pass)
        db.session.execute(
            update(BulkBatch)
            .where(BulkBatch.id == batch_id)
            .values(heartbeat_at=clock.utcnow() - timedelta(minutes=5))
        )
        db.session.commit()
        assert jobs.execute("portal.bulk.sending:resume_stuck_batches").startswith("1 batches")

    restarted = _worker(script, database_url, redis_server.url, marker, "")
    assert restarted.wait(600) == 0

    with app.app_context():
        batch = db.session.get(BulkBatch, batch_id)
        assert batch.state == "finished" and batch.created_count == ROWS and not batch.failed_count
        assert _count(Envelope) == ROWS
        assert _count(Message, Message.kind == "signing_request") == ROWS
        assert _count(BulkRow, BulkRow.state == "created") == ROWS
        distinct = db.session.scalar(select(func.count(func.distinct(Recipient.email))))
        linked = db.session.scalar(select(func.count(func.distinct(BulkRow.envelope_id))))
        emailed = db.session.scalar(select(func.count(func.distinct(Message.recipient_id))))
        assert distinct == linked == emailed == ROWS, "no duplicates"
        assert audit.verify().ok
    assert len(audit_events(app, "envelope.created")) == ROWS
    assert len(audit_events(app, "bulk.finished")) == 1
    conn.flushdb()
    conn.close()
