"""Stopping a batch: cancel what is not created yet, void what was, with one reason.

``cancel`` takes the batch's lock, which each chunk also takes first: a chunk being created
finishes (its rows are created), then the cancel marks every row still pending cancelled, and
the job stops at its next chunk. ``void_created`` voids the batch's envelopes still out for
signature, each through ``envelopes.operations.void`` (its row locks, its audit event), in a
job, since a batch can hold thousands.
"""

from __future__ import annotations

from sqlalchemy import select, update

from portal import audit, clock, jobs
from portal.accounts.models import User
from portal.bulk import sending
from portal.bulk.drafts import BulkError
from portal.bulk.models import BatchState, BulkBatch, BulkRow, RowState
from portal.bulk.models import lock_batch as lock
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, EnvelopeStatus
from portal.extensions import db

VOID_CHUNK = 100


def cancel(batch: BulkBatch, by: User) -> int:
    """Stop sending: rows not created yet never will be; returns how many were left out."""
    batch = lock(batch.id)
    if batch.state != BatchState.SENDING.value:
        raise BulkError(f"This batch is {batch.state}; only a batch being sent can be cancelled.")
    result = db.session.execute(
        update(BulkRow)
        .where(BulkRow.batch_id == batch.id, BulkRow.state == RowState.PENDING.value)
        .values(state=RowState.CANCELLED.value)
    )
    left = int(result.rowcount or 0)  # type: ignore[attr-defined]
    batch.state = BatchState.CANCELLED.value
    batch.cancelled_count = left
    batch.finished_at = clock.utcnow()
    batch.runner = None
    sending.forget_file(batch)
    audit.record(
        "bulk.cancelled",
        actor=by,
        subject=batch,
        data={"not_created": left, "created": batch.created_count, "failed": batch.failed_count},
    )
    sending.tell_sender(batch, "cancelled")
    db.session.commit()
    return left


def _live_envelopes(batch_id: int, limit: int) -> list[int]:
    return list(
        db.session.scalars(
            select(Envelope.id)
            .join(BulkRow, BulkRow.envelope_id == Envelope.id)
            .where(BulkRow.batch_id == batch_id, Envelope.status == EnvelopeStatus.SENT.value)
            .order_by(Envelope.id)
            .limit(limit)
        )
    )


def void_created(batch: BulkBatch, reason: str, by: User) -> int:
    """Void every envelope of the batch still out for signature (by a job); returns how many."""
    batch = lock(batch.id)
    if batch.state == BatchState.SENDING.value:
        raise BulkError("Cancel the batch first, then void what it created.")
    reason = " ".join(reason.split())[:500]
    if not reason:
        raise BulkError("Give the reason; recipients will see it.")
    if batch.voiding:
        raise BulkError("The batch's envelopes are being voided already.")
    count = len(_live_envelopes(batch.id, 100_000))
    if not count:
        raise BulkError("None of the batch's envelopes is still out for signature.")
    batch.voiding = True
    batch.void_reason = reason
    batch.voided_by_id = by.id
    batch.heartbeat_at = clock.utcnow()
    audit.record(
        "bulk.voided", actor=by, subject=batch, data={"reason": reason, "envelopes": count}
    )
    sending.ask(void_batch, batch.id)
    db.session.commit()
    return count


@jobs.job(queue="default", retry=(10, 60, 300), timeout=1800)
def void_batch(batch_id: int) -> str:
    """Void the batch's envelopes still out, a few at a time (idempotent: voided ones are done)."""
    batch = db.session.get(BulkBatch, batch_id)
    if batch is None or not batch.voiding or batch.voided_by is None:
        db.session.rollback()
        return "nothing to do"
    reason, by = batch.void_reason or "", batch.voided_by
    voided = 0
    while ids := _live_envelopes(batch_id, VOID_CHUNK):
        for envelope_id in ids:
            envelope = db.session.get(Envelope, envelope_id)
            try:
                envelopes.void(envelope, reason, by=by)  # type: ignore[arg-type]  # commits
                voided += 1
            except envelopes.EnvelopeError:
                db.session.rollback()  # finished meanwhile: nothing to void
        batch = lock(batch_id)
        batch.heartbeat_at = clock.utcnow()
        db.session.commit()
    batch = lock(batch_id)
    batch.voiding = False
    db.session.commit()
    return f"{voided} voided"
