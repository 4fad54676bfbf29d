"""Verbs of a batch before it is sent: upload, map columns, exclude rows, send, discard.

Nothing here sends anything; ``start`` hands the batch to the job (``sending``). Every change
records an audit event in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from portal import audit, clock, storage
from portal.accounts.models import User
from portal.bulk import columns as cols
from portal.bulk import reading, sending
from portal.bulk.checking import check_table
from portal.bulk.models import BatchState, BulkBatch, BulkRow, RowState
from portal.bulk.models import lock_batch as lock
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import TemplateVersion


class BulkError(ValueError):
    """A request about a batch that cannot be carried out; the message says why."""


def _sendable(version: TemplateVersion) -> None:
    try:
        library.ensure_sendable(version)
    except library.LibraryError as exc:
        raise BulkError(str(exc)) from exc


def _refused(version: TemplateVersion, file_name: str, data: bytes, reason: str, by: User) -> None:
    """``bulk.upload_refused`` in a transaction of its own (nothing else was kept)."""
    db.session.rollback()
    audit.record(
        "bulk.upload_refused",
        actor=by,
        subject=version,
        data={
            "file": file_name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "reason": reason,
        },
    )
    db.session.commit()


def upload(version: TemplateVersion, file_name: str, data: bytes, by: User) -> BulkBatch:
    """Read and check an uploaded file for the version; a draft batch, or ``BulkError``."""
    _sendable(version)
    file_name = " ".join(file_name.split())[:255] or "upload"
    try:
        table = reading.read_table(data, file_name)
    except reading.FileProblem as exc:
        _refused(version, file_name, data, str(exc), by)
        raise BulkError(str(exc)) from exc
    batch = BulkBatch(
        public_id=uuid.uuid4().hex,
        version=version,
        team_id=version.template.team_id if by.team_id is None else by.team_id,
        created_by=by,
        state=BatchState.DRAFT.value,
        file_name=file_name,
        file_size=len(data),
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_kind=table.kind,
        file_blob_id=storage.put(data, kind="bulk_upload"),
        notice=table.notice,
        headers=table.header,
        mapping=cols.auto_mapping(cols.columns_for(version), table.header),
    )
    db.session.add(batch)
    db.session.flush()
    audit.record(
        "bulk.created",
        actor=by,
        subject=batch,
        data={
            "template": version.template.name,
            "version": version.number,
            "file": file_name,
            "kind": table.kind,
            "size": len(data),
            "sha256": batch.file_sha256,
            "rows": len(table.rows),
        },
    )
    _check(batch, table, by)
    db.session.commit()
    return batch


JSON_ROWS_FILE = "rows-from-api.csv"  # the name of a batch made from JSON rows


def from_rows(version: TemplateVersion, rows: list[Mapping[str, Any]], by: User) -> BulkBatch:
    """A draft batch from JSON rows (the API): written as the CSV file an upload would be
    (``columns.rows_csv``) and taken in by ``upload``, so it is checked, kept and sent the same."""
    _sendable(version)
    try:
        data = cols.rows_csv(version, rows)
    except cols.RowsProblem as exc:
        raise BulkError(str(exc)) from exc
    return upload(version, JSON_ROWS_FILE, data, by)


def _table(batch: BulkBatch) -> reading.Table:
    if not batch.file_blob_id:
        raise BulkError("The uploaded file is no longer kept; upload it again.")
    try:
        return reading.read_table(storage.get(batch.file_blob_id), batch.file_name)
    except reading.FileProblem as exc:  # it was read once: only a changed limit gets here
        raise BulkError(str(exc)) from exc


def _check(batch: BulkBatch, table: reading.Table, by: User) -> None:
    """Check every row with the batch's mapping and keep the outcome as its rows."""
    version = batch.version
    columns = cols.columns_for(version)
    checked = check_table(version, columns, batch.mapping, table)
    db.session.execute(delete(BulkRow).where(BulkRow.batch_id == batch.id))
    rows: list[dict[str, Any]] = []
    for row in checked:
        signer = row.signer or (row.people[0] if row.people else {})
        rows.append(
            {
                "batch_id": batch.id,
                "number": row.number,
                "state": (RowState.INVALID if row.problems else RowState.READY).value,
                "problems": row.problems,
                "merge_data": row.merge_data,
                "people": row.people,
                "ticket_id": row.ticket_id or None,
                "ticket_url": row.ticket_url or None,
                "name": (signer.get("name") or "")[:200] or None,
                "email": (signer.get("email") or "")[:254] or None,
                "emails": 0,
            }
        )
    db.session.execute(insert(BulkRow), rows)
    invalid = sum(1 for row in checked if row.problems)
    batch.total_rows, batch.invalid_rows = len(checked), invalid
    batch.ready_rows = len(checked) - invalid
    audit.record(
        "bulk.validated",
        actor=by,
        subject=batch,
        data={
            "rows": len(checked),
            "ready": batch.ready_rows,
            "with_problems": invalid,
            "columns": {
                c.heading: table.header[batch.mapping[c.key]]
                for c in columns
                if c.key in batch.mapping
            },
            "missing": [c.heading for c in cols.missing(columns, batch.mapping)],
            "unused": cols.unused(table.header, batch.mapping),
        },
    )


def _draft(batch_id: int) -> BulkBatch:
    batch = lock(batch_id)
    if batch.state != BatchState.DRAFT.value:
        raise BulkError(f"This batch is {batch.state}; it can no longer be changed.")
    return batch


def remap(batch: BulkBatch, chosen: Mapping[str, Any], by: User) -> None:
    """Match the file's columns by hand, and check every row again."""
    batch = _draft(batch.id)
    table = _table(batch)
    batch.mapping = cols.clean_mapping(cols.columns_for(batch.version), table.header, chosen)
    _check(batch, table, by)
    db.session.commit()


def exclude(batch: BulkBatch, numbers: Iterable[int], excluded: bool, by: User) -> int:
    """Leave ready rows out of the sending (or take them back); returns how many changed."""
    batch = _draft(batch.id)
    wanted = sorted(set(numbers))
    before, after = (
        (RowState.READY, RowState.EXCLUDED)
        if excluded
        else (
            RowState.EXCLUDED,
            RowState.READY,
        )
    )
    result = db.session.execute(
        update(BulkRow)
        .where(
            BulkRow.batch_id == batch.id,
            BulkRow.state == before.value,
            BulkRow.number.in_(wanted),
        )
        .values(state=after.value)
    )
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if changed:
        batch.ready_rows += -changed if excluded else changed
        audit.record(
            "bulk.rows_excluded" if excluded else "bulk.rows_included",
            actor=by,
            subject=batch,
            data={"rows": wanted[:200], "changed": changed},
        )
    db.session.commit()
    return changed


def start(batch: BulkBatch, by: User, *, exclude_problems: bool) -> int:
    """Send the batch's ready rows (the job creates them); returns how many will be sent."""
    batch = _draft(batch.id)
    _sendable(batch.version)
    missing = cols.missing(cols.columns_for(batch.version), batch.mapping)
    if missing:
        raise BulkError("Match these columns first: " + ", ".join(c.heading for c in missing) + ".")
    if batch.invalid_rows and not exclude_problems:
        raise BulkError(
            f"{batch.invalid_rows:,} rows have problems. Exclude them, or fix the file and "
            "upload it again."
        )
    result = db.session.execute(
        update(BulkRow)
        .where(BulkRow.batch_id == batch.id, BulkRow.state == RowState.READY.value)
        .values(state=RowState.PENDING.value)
    )
    sending_rows = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if not sending_rows:
        raise BulkError("No rows are left to send.")
    batch.state = BatchState.SENDING.value
    batch.started_at = clock.utcnow()
    audit.record(
        "bulk.started",
        actor=by,
        subject=batch,
        data={
            "rows": sending_rows,
            "left_out": batch.total_rows - sending_rows,
            "mail_per_minute": sending.mail_per_minute(),
        },
    )
    sending.ask(sending.run_batch, batch.id)
    db.session.commit()
    return sending_rows


def discard(batch: BulkBatch, by: User) -> None:
    """Throw a draft away (and the uploaded file with it)."""
    batch = _draft(batch.id)
    batch.state = BatchState.DISCARDED.value
    batch.finished_at = clock.utcnow()
    sending.forget_file(batch)
    audit.record("bulk.discarded", actor=by, subject=batch, data={"rows": batch.total_rows})
    db.session.commit()


def row_counts(batch: BulkBatch) -> dict[str, int]:
    """How many of the batch's rows are in each state."""
    found = db.session.execute(
        select(BulkRow.state, func.count())
        .where(BulkRow.batch_id == batch.id)
        .group_by(BulkRow.state)
    ).all()
    return {str(state): int(count) for state, count in found}
