"""The batch job: envelopes created in chunks at the mail pace, resumable, then the agent told.

``run_batch`` (queue ``default``) takes the batch's lease (``runner`` and a heartbeat), then
repeats: lock the batch, take the next pending rows in row order, create their envelopes and
queue their emails (``creating``), mark the rows created with their envelope, commit. Each
chunk is one transaction, so a worker killed mid-chunk leaves its rows pending and nothing
else; the unique (batch, row) key and the row's state mean no row is created twice and none is
skipped. Between chunks it waits for the mail pace (``BULK_MAIL_PER_MINUTE``, counted over
every batch in the last ``WINDOW``) and keeps its heartbeat. After ``SLICE_SECONDS`` it hands
the batch to a fresh job, so no job runs for hours. ``resume_stuck_batches`` (every minute)
asks again for a batch whose heartbeat stopped: a killed worker's batch goes on from where
it was.

Embedded mode (no Redis) has no workers, and a batch can take many minutes: the job runs in
a background thread of the process that asked for it (``start_in_background``), so the page
that started it shows its progress at once. Should that process stop, the sweeper resumes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import func, or_, select, update

from portal import audit, clock, jobs, mail, storage
from portal.accounts import contacts
from portal.bulk import reading
from portal.bulk.creating import ChunkCreator
from portal.bulk.models import BatchState, BulkBatch, BulkRow, RowState, lock_batch
from portal.extensions import db
from portal.library import operations as library

log = logging.getLogger(__name__)

CHUNK = 1000  # rows per transaction when the mail pace allows
WINDOW = timedelta(seconds=10)  # the mail pace is kept over this window
STALE = timedelta(minutes=2)  # a heartbeat older than this: the job is gone
HEARTBEAT_SECONDS = 10.0
SLICE_SECONDS = 240.0
POLL_SECONDS = 0.5
MAX_FAILURES = 5  # tries in a row of a chunk that cannot be written


def mail_per_minute() -> int:
    """The signing emails bulk send may queue per minute, over all batches (0: no limit)."""
    return max(0, int(current_app.config.get("BULK_MAIL_PER_MINUTE") or 0))


def ask(job: Callable[[int], Any], batch_id: int) -> None:
    """Ask for ``job(batch_id)`` after the caller's commit: on RQ, or in a background thread."""
    if current_app.config.get("JOBS_INLINE", True):
        jobs.enqueue(start_in_background, f"{job.__module__}:{job.__qualname__}", batch_id)
    else:
        jobs.enqueue(job, batch_id)


@jobs.job(queue="default", timeout=60)
def start_in_background(name: str, batch_id: int) -> str:
    """Embedded mode: run a batch job in a thread of this process (see the module docstring)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=_in_background, args=(app, name, batch_id), name=f"bulk-{batch_id}", daemon=True
    )
    thread.start()
    return "started in the background"


def _in_background(app: Flask, name: str, batch_id: int) -> None:
    with app.app_context():
        try:
            jobs.execute(name, batch_id)
        except Exception:
            log.exception("Bulk job %s for batch %s failed; the sweeper asks again", name, batch_id)
        finally:
            db.session.remove()


def _claim(batch_id: int, runner: str) -> bool:
    """Take the batch's lease unless it is not sending or another live job holds it."""
    batch = lock_batch(batch_id)
    now = clock.utcnow()
    held = batch.runner and batch.heartbeat_at and clock.as_utc(batch.heartbeat_at) > now - STALE
    if batch.state != BatchState.SENDING.value or held:
        db.session.rollback()
        return False
    batch.runner, batch.heartbeat_at = runner, now
    db.session.commit()
    return True


def _release(batch_id: int, runner: str) -> None:
    batch = lock_batch(batch_id)
    if batch.runner == runner:
        batch.runner = None
    db.session.commit()


def emails_per_row(batch: BulkBatch) -> int:
    """Signing emails a row queues when it is created (whoever signs first)."""
    roles = [r for r in batch.version.roles if r["kind"] != "cc"]
    if (batch.version.settings or {}).get("routing") == "parallel":
        return max(1, len(roles))
    first = min((int(r["order"]) for r in roles), default=1)
    return max(1, sum(1 for r in roles if int(r["order"]) == first))


def chunk_size(batch: BulkBatch) -> int:
    """Rows per chunk: ``CHUNK``, or what the mail pace allows in one window."""
    rate = mail_per_minute()
    if not rate:
        return CHUNK
    per_window = rate * WINDOW.total_seconds() / 60
    return max(1, min(CHUNK, int(per_window // emails_per_row(batch))))


# What the job reads of a pending row (plain columns: no objects to build for 10,000 rows).
PENDING_COLUMNS = (
    BulkRow.id,
    BulkRow.number,
    BulkRow.merge_data,
    BulkRow.people,
    BulkRow.ticket_id,
    BulkRow.ticket_url,
)


def _access_codes(batch: BulkBatch, rows: list[Any]) -> dict[int, dict[str, str]]:
    """Access codes are never stored in rows: read them from the uploaded file when needed."""
    wanted = {r.number for r in rows if any(p.get("auth") == "access_code" for p in r.people)}
    if not wanted or not batch.file_blob_id:
        return {}
    from portal.bulk.checking import RowChecker
    from portal.bulk.columns import columns_for

    table = reading.read_table(storage.get(batch.file_blob_id), batch.file_name)
    checker = RowChecker(batch.version, columns_for(batch.version), batch.mapping)
    checker.width = len(table.header)
    return {n: checker.check(n, cells).codes for n, cells in table.rows if n in wanted}


def _chunk(batch_id: int, runner: str, codes: dict[int, dict[str, str]]) -> str:
    """Create the next chunk's envelopes; "more", "done" or "stopped"."""
    batch = lock_batch(batch_id)
    if batch.state != BatchState.SENDING.value or batch.runner != runner:
        db.session.rollback()
        return "stopped"
    rows = list(
        db.session.execute(
            select(*PENDING_COLUMNS)
            .where(BulkRow.batch_id == batch.id, BulkRow.state == RowState.PENDING.value)
            .order_by(BulkRow.number)
            .limit(chunk_size(batch))
            .with_for_update()
        )
    )
    if not rows:
        _finish(batch)
        db.session.commit()
        return "done"
    creator = ChunkCreator(batch, batch.version, batch.created_by)
    try:
        library.ensure_sendable(batch.version)
    except library.LibraryError as exc:
        outcome = creator.fail(rows, str(exc))
    else:
        if not codes:
            codes.update(_access_codes(batch, rows))
        outcome = creator.create(rows, codes)
    batch.created_count += outcome.created
    batch.failed_count += outcome.failed
    batch.heartbeat_at = clock.utcnow()
    batch.failures, batch.error = 0, None
    db.session.commit()
    return "more"


def _waiting(batch_id: int, runner: str, allowed: int) -> bool | None:
    """While pacing: None when the batch stopped or another job holds it, else whether the
    emails queued in the last ``WINDOW`` (every batch's) leave no room for the next chunk."""
    since = clock.utcnow() - WINDOW
    mine = db.session.execute(
        select(BulkBatch.state, BulkBatch.runner).where(BulkBatch.id == batch_id)
    ).one()
    queued = db.session.scalar(select(func.sum(BulkRow.emails)).where(BulkRow.created_at > since))
    db.session.rollback()
    if mine.state != BatchState.SENDING.value or mine.runner != runner:
        return None
    return int(queued or 0) >= allowed


def _pace(batch_id: int, runner: str) -> bool:
    """Wait until the mail pace allows the next chunk; False when the batch stopped meanwhile."""
    rate = mail_per_minute()
    if not rate:
        return True
    allowed = max(1, int(rate * WINDOW.total_seconds() / 60))
    beat = time.monotonic()
    while wait := _waiting(batch_id, runner, allowed):
        time.sleep(POLL_SECONDS)
        if time.monotonic() - beat >= HEARTBEAT_SECONDS:
            beat = time.monotonic()
            batch = lock_batch(batch_id)
            if batch.runner == runner:
                batch.heartbeat_at = clock.utcnow()
            db.session.commit()
    return wait is not None


@jobs.job(queue="default", retry=(10, 60, 300), timeout=int(SLICE_SECONDS) + 600)
def run_batch(batch_id: int) -> str:
    """Create the batch's envelopes chunk by chunk (idempotent; see the module docstring)."""
    runner = uuid.uuid4().hex
    if not _claim(batch_id, runner):
        return "nothing to do"
    started = time.monotonic()
    codes: dict[int, dict[str, str]] = {}
    try:
        while True:
            outcome = _chunk(batch_id, runner, codes)
            if outcome != "more":
                return outcome
            if time.monotonic() - started > SLICE_SECONDS:
                _release(batch_id, runner)
                ask(run_batch, batch_id)
                db.session.commit()
                return "handed over"
            if not _pace(batch_id, runner):
                return "stopped"
    except Exception as exc:
        db.session.rollback()
        _failed(batch_id, runner, exc)  # a retry (or the sweeper) takes over at once
        raise


def _failed(batch_id: int, runner: str, exc: Exception) -> None:
    """A chunk could not be written: say why on the batch and let go of it; after
    ``MAX_FAILURES`` tries in a row the rows still pending fail with that reason."""
    batch = lock_batch(batch_id)
    if batch.runner == runner:
        batch.runner = None
    batch.failures += 1
    batch.error = f"{type(exc).__name__}: {exc}"[:1000]
    if batch.failures >= MAX_FAILURES and batch.state == BatchState.SENDING.value:
        reason = f"Not sent: the batch stopped after {batch.failures} failed tries ({batch.error})"
        result = db.session.execute(
            update(BulkRow)
            .where(BulkRow.batch_id == batch.id, BulkRow.state == RowState.PENDING.value)
            .values(state=RowState.FAILED.value, error=reason[:1000])
        )
        batch.failed_count += int(result.rowcount or 0)  # type: ignore[attr-defined]
        _finish(batch)
    db.session.commit()


def forget_file(batch: BulkBatch) -> None:
    """Delete the uploaded file (it can hold access codes) once the batch no longer needs it."""
    blob_id, batch.file_blob_id = batch.file_blob_id, None
    if blob_id:
        db.session.flush()
        storage.delete(blob_id)


def _finish(batch: BulkBatch) -> None:
    """Every row is done: the batch is finished, and the agent who sent it is told."""
    batch.state = BatchState.FINISHED.value
    batch.finished_at = clock.utcnow()
    batch.runner = None
    forget_file(batch)
    counts = {
        "created": batch.created_count,
        "failed": batch.failed_count,
        "left_out": batch.total_rows - batch.created_count - batch.failed_count,
    }
    audit.record("bulk.finished", actor="system", subject=batch, data=counts)
    tell_sender(batch, "finished")


def tell_sender(batch: BulkBatch, how: str) -> None:
    """Email the agent who sent the batch how it ended."""
    agent = contacts.notify(batch.created_by)  # an API key's: its creator
    subject, text, html = mail.render(
        "bulk_finished",
        "en",
        agent_name=agent.name,
        title=batch.version.template.name,
        file_name=batch.file_name,
        how=how,
        created=batch.created_count,
        failed=batch.failed_count,
        cancelled=batch.cancelled_count,
        total=batch.total_rows,
        url=f"{current_app.config['PUBLIC_BASE_URL']}/bulk/{batch.public_id}",
    )
    mail.queue(agent.email, agent.name, subject, text, html, kind="notice")


@jobs.periodic(every=60)
def resume_stuck_batches() -> str:
    """Ask again for batches whose job stopped (a killed worker, a restarted process)."""
    cutoff = clock.utcnow() - STALE
    stale = or_(
        BulkBatch.heartbeat_at < cutoff,
        BulkBatch.heartbeat_at.is_(None) & (BulkBatch.started_at < cutoff),
    )
    sending_ids = db.session.scalars(
        select(BulkBatch.id).where(BulkBatch.state == BatchState.SENDING.value, stale)
    ).all()
    voiding_ids = db.session.scalars(
        select(BulkBatch.id).where(BulkBatch.voiding.is_(True), stale)
    ).all()
    from portal.bulk.stopping import void_batch

    for batch_id in sending_ids:
        ask(run_batch, batch_id)
    for batch_id in voiding_ids:
        ask(void_batch, batch_id)
    db.session.commit()
    return f"{len(sending_ids)} batches resumed, {len(voiding_ids)} voidings resumed"
