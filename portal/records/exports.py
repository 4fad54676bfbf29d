"""The records centre's CSV exports: the audit events of a search, and its envelopes.

Both are streamed (``portal.exports``: UTF-8 with a BOM, formula cells neutralised) from keyset
batches, each batch its own short read (``reads_first``; a rollback ends each read, so writers
never wait and memory stays the same for ten rows or a million). Every cell a person or a
customer could have typed goes through the formula check; the audit events' personal fields
are read through ``audit.reveal`` (the chain keeps them encrypted per envelope).

Up to ``EXPORT_INLINE_ROWS`` rows download at once (``stream``). Larger exports are jobs
(``start`` -> ``run``): a ``records_export`` row holds the state, the progress, the filters,
who asked and until when the file is kept; the file itself is stored as encrypted blobs
(``portal.storage``) of ``PART_BYTES`` each (``records_export_part``), written as it is made
and read back one part at a time, so neither making nor downloading it holds the file in
memory. Old files are deleted by ``prune_exports`` (periodic).

Every export, at once or as a job, is the audit event ``records.exported`` (kind, filters,
rows, SHA-256 of the file as downloaded). Only whoever asked for a job's file (and admins)
may download it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import audit, clock, exports, jobs, storage
from portal.accounts.access import team_scope
from portal.accounts.models import Role, Team, User
from portal.audit import AuditEvent
from portal.envelopes.console import STATUS_LABELS
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import Model, db, reads_first, write_lock
from portal.library.models import Template, TemplateVersion
from portal.records import holds, keys
from portal.records.search import AuditQuery, envelope_ids, start_of
from portal.records.search import matching as audit_matching

log = logging.getLogger(__name__)

EVENT = "records.exported"
audit.add_labels({EVENT: "Records exported"})

BATCH = 1000  # rows read in one short transaction (memory: a few MB whatever the size)
PART_BYTES = 4 * 1024 * 1024  # a job's file is stored in encrypted parts of this size
KEEP_DAYS = 7  # a job's file can be downloaded for this long
STALE_QUEUED = timedelta(minutes=10)  # asked for, never started: the enqueue was lost
RUN_TIMEOUT = 3 * 3600  # seconds a job may run (RQ stops it then)
STATES = {
    "queued": "Waiting to start",
    "running": "Being made",
    "ready": "Ready",
    "failed": "Failed",
    "expired": "Deleted (kept for 7 days)",
}


# ---------------------------------------------------------------- the job's rows


class RecordsExport(Model):
    """An export made as a job: its progress, and the file once made."""

    __tablename__ = "records_export"
    __table_args__ = (Index("ix_records_export_requester", "requested_by_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # audit | envelopes
    filters: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    rows_total: Mapped[int | None] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    requested_by: Mapped[User] = relationship()

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("records_export", self.public_id, f"{self.kind} export")

    @property
    def percent(self) -> int:
        if self.state == "ready":
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_done / self.rows_total))

    @property
    def filename(self) -> str:
        return f"{self.kind}-{clock.as_utc(self.created_at):%Y%m%d-%H%M}.csv"


class RecordsExportPart(Model):
    """One encrypted part of a job's file, in order."""

    __tablename__ = "records_export_part"

    export_id: Mapped[int] = mapped_column(ForeignKey("records_export.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blob.id"))


# ---------------------------------------------------------------- audit events


AUDIT_HEADER = (
    "Sequence",
    "Time (UTC)",
    "Event",
    "Label",
    "Actor type",
    "Actor id",
    "Actor",
    "Subject type",
    "Subject id",
    "IP address",
    "User agent",
    "Data (JSON)",
    "Previous hash",
    "Hash",
)
_AUDIT_COLUMNS = (
    "seq", "occurred_at", "event", "actor_type", "actor_id", "actor_label", "subject_type",
    "subject_id", "ip", "user_agent", "data_json", "prev_hash", "hash",
)  # fmt: skip
_FORMULA = exports.FORMULA_STARTS
_FORMULA_FIRST = frozenset("".join(_FORMULA))


def _cell(value: str | None) -> str:
    """``exports.safe_cell`` for text (the common case written out: it runs per cell)."""
    if not value:
        return ""
    return "'" + value if value[0] in _FORMULA else value


def _audit_rows(
    rows: Sequence[Any], revealed: Sequence[tuple[str | None, ...] | None]
) -> list[str]:
    """The CSV lines of stored events, their personal fields as ``audit.reveal_rows`` gave
    them (None: nothing sealed, the stored columns as they are, the data JSON as its stored
    text).

    The formula check looks at the first character of each text cell (written out: a call
    per cell costs more than the check), and only a row where one may run goes through
    ``_cell`` cell by cell. Lines are written here rather than by ``csv.writer`` (a fifth of
    its time, measured on exported events): the browser and the data JSON quoted when they
    hold a comma, a quote or a line break, and a row any of whose other cells does is left
    to the CSV writer (``exports.csv_line``); the same bytes either way (tested)."""
    label, cell, f, line_of = audit.LABELS.get, _cell, _FORMULA_FIRST, exports.csv_line
    out = []
    for row, shown in zip(rows, revealed, strict=True):
        seq, at, event, a_type, a_id, actor, s_type, s_id, ip, agent, data, prev, digest = row
        if shown is not None:
            actor, ip, agent, data = shown
        name = label(event, event)
        if (
            (event and event[0] in f)
            or (name and name[0] in f)
            or (a_type and a_type[0] in f)
            or (a_id and a_id[0] in f)
            or (actor and actor[0] in f)
            or (s_type and s_type[0] in f)
            or (s_id and s_id[0] in f)
            or (ip and ip[0] in f)
            or (agent and agent[0] in f)
            or (data and data[0] in f)
        ):
            event, name, a_type, a_id, actor = (
                cell(event), cell(name), cell(a_type), cell(a_id), cell(actor)
            )  # fmt: skip
            s_type, s_id, ip, agent, data = (
                cell(s_type), cell(s_id), cell(ip), cell(agent), cell(data)
            )  # fmt: skip
        head = (
            f"{seq},{at},{event},{name},{a_type},{a_id or ''},{actor or ''},{s_type or ''},"
            f"{s_id or ''},{ip or ''}"
        )
        tail = f"{prev},{digest}"
        if (
            '"' in head
            or "\n" in head
            or "\r" in head
            or head.count(",") != 9
            or tail.count(",") != 1
            or '"' in tail
            or "\n" in tail
            or "\r" in tail
        ):
            whole = (seq, at, event, name, a_type, a_id, actor, s_type, s_id, ip, agent, data)
            out.append(line_of((*whole, prev, digest)))
            continue
        if agent and ('"' in agent or "," in agent or "\n" in agent or "\r" in agent):
            agent = '"' + agent.replace('"', '""') + '"'
        if data and ('"' in data or "," in data or "\n" in data or "\r" in data):
            data = '"' + data.replace('"', '""') + '"'
        out.append(f"{head},{agent or ''},{data or ''},{tail}\r\n")
    return out


def _driver_batches(
    stmt: Any, last: int, within: Callable[[Any, list[Any]], Any] | None = None
) -> Iterator[tuple[list[Any], Any]]:
    """``stmt`` (which selects the sequence number first and takes the bound parameter
    ``last``) again and again from ``last`` on, each batch its own short read: ``(rows,
    within(connection, rows))``, ``within`` run in the batch's read (e.g. the keys its rows
    need, read in the same snapshot).

    Executed on the driver's own cursor, compiled once: every column is text or an integer,
    which the driver gives as they are, and going through SQLAlchemy's results cost more per
    row than reading it (10 us a row at a million events on PostgreSQL)."""
    dialect = db.session.get_bind().dialect
    compiled = stmt.compile(dialect=dialect)
    positions = compiled.positiontup if compiled.positional else None
    while True:
        params = compiled.construct_params({"last": last})
        connection = db.session.connection()  # the batch's read begins (see reads_first)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(
                compiled.string,
                tuple(params[name] for name in positions) if positions else params,
            )
            rows = list(cursor.fetchall())
            extra = within(connection, rows) if within is not None and rows else None
        finally:
            cursor.close()
            db.session.rollback()  # ... and ends here
        if not rows:
            return
        yield rows, extra
        last = rows[-1][0]
        del rows, extra  # (not held while the next batch is read)


def audit_batches(query: AuditQuery, user: User) -> Iterator[list[str]]:
    """The CSV lines of every event the search matches, oldest first, a batch at a time."""
    table = cast(Table, AuditEvent.__table__)
    columns = [table.c.data if name == "data_json" else table.c[name] for name in _AUDIT_COLUMNS]
    stmt = (
        audit_matching(select(*columns), query, user)
        .where(table.c.seq > bindparam("last", type_=BigInteger))
        .order_by(table.c.seq)
        .limit(BATCH)
    )
    opener = keys.Opener()
    mark = audit.SEALED_MARK

    def reveal(connection: Any, rows: list[Any]) -> list[Any]:
        # (seq, actor_type, actor_label, ip, user_agent, data) of the rows with a sealed part
        sealed = [i for i, row in enumerate(rows) if mark in row[10]]
        shown = audit.reveal_rows(
            [(r[0], r[3], r[5], r[8], r[9], r[10]) for r in (rows[i] for i in sealed)],
            opener,
            connection,
        )
        revealed: list[Any] = [None] * len(rows)
        for i, one in zip(sealed, shown, strict=True):
            revealed[i] = one
        return revealed

    for rows, revealed in _driver_batches(stmt, 0, reveal):
        batch = _audit_rows(rows, revealed)
        del rows, revealed
        yield batch
        del batch


def audit_count(query: AuditQuery, user: User, cap: int | None = None) -> int:
    stmt = audit_matching(select(AuditEvent.seq), query, user)
    if cap is not None:
        stmt = stmt.limit(cap + 1)
    return int(db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


# ---------------------------------------------------------------- envelopes

ENVELOPE_HEADER = (
    "Envelope",
    "Title",
    "Template",
    "Template version",
    "Team",
    "Sender",
    "Sender email",
    "Recipient",
    "Recipient email",
    "Recipient role",
    "Recipient kind",
    "Recipient status",
    "Recipient sent (UTC)",
    "Recipient viewed (UTC)",
    "Recipient finished (UTC)",
    "Decline reason",
    "Status",
    "Created (UTC)",
    "Sent (UTC)",
    "Completed (UTC)",
    "Expired (UTC)",
    "Voided (UTC)",
    "Declined (UTC)",
    "Time to complete (hours)",
    "Seal status",
    "Sealed SHA-256",
    "Ticket",
    "Retention until (UTC)",
    "Legal hold",
)


def envelope_matching(stmt: Any, query: AuditQuery, user: User) -> Any:
    """The envelopes a search picks: its envelope, customer and ticket; the staff member as
    sender; the dates as the day it was created (event types and IPs are about events)."""
    if query.about_envelopes:
        stmt = stmt.where(Envelope.id.in_(envelope_ids(query, user)))
    stmt = team_scope(stmt, Envelope.team_id, user)
    if query.staff is not None:
        stmt = stmt.where(Envelope.created_by_id == query.staff)
    if query.date_from is not None:
        stmt = stmt.where(Envelope.created_at >= start_of(query.date_from))
    if query.date_to is not None:
        stmt = stmt.where(Envelope.created_at < start_of(query.date_to + timedelta(days=1)))
    return stmt


def _time(value: datetime | None) -> str:
    return exports.safe_cell(clock.as_utc(value)) if value is not None else ""


def _hours(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"{(clock.as_utc(end) - clock.as_utc(start)).total_seconds() / 3600:.2f}"


def _ended(row: Any, status: str) -> str:
    return _time(row.finished_at) if row.status == status else ""


def envelope_batches(query: AuditQuery, user: User) -> Iterator[list[tuple[Any, ...]]]:
    """A row per recipient of every envelope the search picks (the envelope's columns on each;
    one row without recipient columns for an envelope that has none), by envelope id."""
    retention = getattr(Envelope, "retention_until", None)  # (the retention migration, 0014)
    columns: list[Any] = [
        Envelope.id,
        Envelope.public_id,
        Envelope.title,
        Template.name.label("template"),
        TemplateVersion.number.label("version"),
        Team.name.label("team"),
        User.name.label("sender"),
        User.email.label("sender_email"),
        Envelope.status,
        Envelope.created_at,
        Envelope.sent_at,
        Envelope.finished_at,
        Envelope.seal_status,
        Envelope.sealed_sha256,
        Envelope.ticket_id,
    ]
    if retention is not None:
        columns.append(retention.label("retention_until"))
    stmt = (
        select(*columns)
        .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
        .join(Template, Template.id == TemplateVersion.template_id)
        .outerjoin(Team, Team.id == Envelope.team_id)
        .join(User, User.id == Envelope.created_by_id)
    )
    base = envelope_matching(stmt, query, user).order_by(Envelope.id).limit(BATCH // 5)
    cell, last = exports.safe_cell, 0
    while True:
        envelopes = db.session.execute(base.where(Envelope.id > last)).all()
        if not envelopes:
            db.session.rollback()
            return
        ids = [row.id for row in envelopes]
        people: dict[int, list[Any]] = {i: [] for i in ids}
        for person in db.session.execute(
            select(Recipient)
            .where(Recipient.envelope_id.in_(ids))
            .order_by(Recipient.envelope_id, Recipient.order, Recipient.id)
        ).scalars():
            people[person.envelope_id].append(person)
        held = holds.hold_reasons(ids)
        batch = []
        for row in envelopes:
            common = (
                (
                    cell(row.public_id),
                    cell(row.title),
                    cell(row.template),
                    row.version,
                    cell(row.team),
                    cell(row.sender),
                    cell(row.sender_email),
                ),
                (
                    STATUS_LABELS.get(row.status, row.status),
                    _time(row.created_at),
                    _time(row.sent_at),
                    _ended(row, "completed"),
                    _ended(row, "expired"),
                    _ended(row, "voided"),
                    _ended(row, "declined"),
                    _hours(row.sent_at or row.created_at, row.finished_at)
                    if row.status == "completed"
                    else "",
                    cell(row.seal_status),
                    cell(row.sealed_sha256),
                    cell(row.ticket_id),
                    _time(getattr(row, "retention_until", None)),
                    cell("; ".join(held.get(row.id, []))),
                ),
            )
            for person in people[row.id] or [None]:
                who: tuple[Any, ...] = ("",) * 9
                if person is not None:
                    who = (
                        cell(person.name),
                        cell(person.email),
                        cell(person.role_name),
                        cell(person.kind),
                        cell(person.status),
                        _time(person.sent_at),
                        _time(person.viewed_at),
                        _time(person.finished_at),
                        cell(person.decline_reason),
                    )
                batch.append((*common[0], *who, *common[1]))
        db.session.rollback()  # the batch's read ends here
        yield batch
        last = ids[-1]


def envelope_count(query: AuditQuery, user: User, cap: int | None = None) -> int:
    stmt = envelope_matching(select(Envelope.id), query, user)
    if cap is not None:
        stmt = stmt.limit(cap + 1)
    return int(db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


# ---------------------------------------------------------------- the two kinds


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    header: Sequence[str]
    batches: Callable[[AuditQuery, User], Iterator[list[tuple[Any, ...]]] | Iterator[list[str]]]
    count: Callable[..., int]


KINDS = {
    "audit": Kind("audit", "Audit events", AUDIT_HEADER, audit_batches, audit_count),
    "envelopes": Kind("envelopes", "Envelopes", ENVELOPE_HEADER, envelope_batches, envelope_count),
}


class ExportProblem(ValueError):
    """An export that cannot be made or downloaded, with the reason people see."""


def kind_of(name: str) -> Kind:
    found = KINDS.get(name)
    if found is None:
        raise ExportProblem("Choose what to export: the audit events or the envelopes.")
    return found


def inline_limit() -> int:
    return int(current_app.config.get("EXPORT_INLINE_ROWS", 5000))


def fits_inline(kind: Kind, query: AuditQuery, user: User) -> bool:
    """Whether the export is small enough to download at once (counted no further)."""
    limit = inline_limit()
    return kind.count(query, user, limit) <= limit


def _chunks(kind: Kind, query: AuditQuery, user: User, written: exports.Written) -> Iterator[bytes]:
    def batches() -> Iterator[Sequence[Sequence[Any]]]:
        for batch in kind.batches(query, user):
            written.rows += len(batch)
            yield batch
            del batch

    for chunk in exports.csv_stream_batches(kind.header, batches()):
        yield written.take(chunk)


def record(
    kind: Kind, query: AuditQuery, user: User, written: exports.Written, **extra: Any
) -> audit.AuditEvent:
    """The export as the audit event ``records.exported`` (takes the write lock first)."""
    write_lock()
    return audit.record(
        EVENT,
        actor=user,
        subject=("records", kind.name, None),
        data={
            "kind": kind.name,
            "filters": query.params(),
            "rows": written.rows,
            "sha256": written.digest.hexdigest(),
            "bytes": written.size,
            **extra,
        },
    )


def stream(kind: Kind, query: AuditQuery, user_id: int) -> Iterator[bytes]:
    """The CSV file at once, in chunks; recorded once the stream ends (``complete``: whether
    the whole file was sent, or the person stopped it). The user is read in the stream's own
    session (the request's is gone by the time a response streams)."""
    reads_first()
    user = db.session.get(User, user_id)
    if user is None:
        return
    written = exports.Written()
    complete = False
    try:
        yield from _chunks(kind, query, user, written)
        complete = True
    finally:
        db.session.rollback()
        record(kind, query, user, written, mode="download", complete=complete)
        db.session.commit()


# ---------------------------------------------------------------- as a job


def start(kind: Kind, query: AuditQuery, user: User) -> RecordsExport:
    """Ask for the export as a job (the caller commits; the job starts after the commit)."""
    write_lock()
    export = RecordsExport(
        public_id=uuid.uuid4().hex,
        kind=kind.name,
        filters=query.params(),
        state="queued",
        requested_by_id=user.id,
    )
    db.session.add(export)
    db.session.flush()
    jobs.enqueue(run, export.id)
    return export


def _drop_parts(export_id: int) -> None:
    parts = list(
        db.session.execute(
            select(RecordsExportPart.blob_id).where(RecordsExportPart.export_id == export_id)
        ).scalars()
    )
    db.session.execute(delete(RecordsExportPart).where(RecordsExportPart.export_id == export_id))
    for blob_id in parts:
        storage.delete(blob_id)


def _locked(export_id: int) -> RecordsExport | None:
    write_lock()
    return db.session.execute(
        select(RecordsExport).where(RecordsExport.id == export_id).with_for_update()
    ).scalar_one_or_none()


@jobs.job(queue="default", retry=(30, 300), timeout=RUN_TIMEOUT)
def run(export_id: int) -> None:
    """Make a job's file (idempotent: a rerun after a crash starts the file again)."""
    export = _locked(export_id)
    if export is None or export.state not in ("queued", "running", "failed"):
        db.session.rollback()
        return
    _drop_parts(export.id)
    user = db.session.get(User, export.requested_by_id)
    assert user is not None
    kind = KINDS[export.kind]
    query = AuditQuery.parse(export.filters)
    export.state, export.started_at, export.rows_done, export.error = (
        "running",
        clock.utcnow(),
        0,
        None,
    )
    db.session.commit()
    reads_first()
    total = kind.count(query, user)
    db.session.rollback()
    written = exports.Written()
    buffer: list[bytes] = []
    buffered = number = 0

    def save() -> None:
        nonlocal buffered, number
        current = _locked(export_id)
        assert current is not None
        number += 1
        blob = storage.put(b"".join(buffer), kind="records_export")
        db.session.add(RecordsExportPart(export_id=export_id, number=number, blob_id=blob))
        current.rows_total, current.rows_done, current.size = total, written.rows, written.size
        db.session.commit()
        buffer.clear()
        buffered = 0

    try:
        for chunk in _chunks(kind, query, user, written):
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= PART_BYTES:
                save()
        if buffer:
            save()
    except Exception as exc:
        db.session.rollback()
        current = _locked(export_id)
        if current is not None:
            current.state, current.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            current.finished_at = clock.utcnow()
            db.session.commit()
        raise
    current = _locked(export_id)
    assert current is not None
    current.state, current.sha256, current.size = "ready", written.digest.hexdigest(), written.size
    current.rows_total = current.rows_done = written.rows
    current.finished_at = clock.utcnow()
    current.expires_at = current.finished_at + timedelta(days=KEEP_DAYS)
    record(kind, query, user, written, mode="job", export=current.public_id)
    db.session.commit()


def find(public_id: str) -> RecordsExport | None:
    if not (len(public_id) == 32 and public_id.isalnum()):
        return None
    return db.session.execute(
        select(RecordsExport).where(RecordsExport.public_id == public_id)
    ).scalar_one_or_none()


def may_see(export: RecordsExport, user: User) -> bool:
    """Only whoever asked for it, and admins."""
    return export.requested_by_id == user.id or user.has_role(Role.ADMIN)


def download(export: RecordsExport) -> Iterator[bytes]:
    """A ready file's bytes, one decrypted part at a time (each part its own short read)."""
    if export.state != "ready":
        raise ExportProblem("This export is not ready to download.")
    number = 0
    export_id = export.id
    while True:
        blob_id = db.session.execute(
            select(RecordsExportPart.blob_id).where(
                RecordsExportPart.export_id == export_id, RecordsExportPart.number == number + 1
            )
        ).scalar_one_or_none()
        if blob_id is None:
            db.session.rollback()
            return
        content = storage.get(blob_id)
        db.session.rollback()
        yield content
        number += 1


def recent(user: User, limit: int = 20) -> list[RecordsExport]:
    """The user's latest exports made as jobs (an admin's are theirs too: each sees their own)."""
    return list(
        db.session.execute(
            select(RecordsExport)
            .where(RecordsExport.requested_by_id == user.id)
            .order_by(RecordsExport.created_at.desc(), RecordsExport.id.desc())
            .limit(limit)
        ).scalars()
    )


@jobs.periodic(every=300)
def sweep_exports() -> str:
    """Ask again for exports whose job was lost: queued for long (Redis was down when it was
    asked for) or running past the job's timeout (its worker died). The row is the truth;
    the queue only a nudge (``portal.jobs``)."""
    now = clock.utcnow()
    lost = list(
        db.session.execute(
            select(RecordsExport.id)
            .where(
                or_(
                    and_(
                        RecordsExport.state == "queued",
                        RecordsExport.created_at < now - STALE_QUEUED,
                    ),
                    and_(
                        RecordsExport.state == "running",
                        RecordsExport.started_at < now - timedelta(seconds=RUN_TIMEOUT + 60),
                    ),
                )
            )
            .order_by(RecordsExport.id)
            .limit(100)
        ).scalars()
    )
    for export_id in lost:
        jobs.enqueue(run, export_id)
    db.session.commit()
    return f"{len(lost)} asked for again"


@jobs.periodic(every=3600)
def prune_exports() -> str:
    """Delete the files of exports past their expiry (the rows stay, as ``expired``)."""
    now = clock.utcnow()
    due = list(
        db.session.execute(
            select(RecordsExport.id)
            .where(RecordsExport.state == "ready", RecordsExport.expires_at < now)
            .order_by(RecordsExport.id)
            .limit(100)
        ).scalars()
    )
    for export_id in due:
        export = _locked(export_id)
        if export is None or export.state != "ready":
            continue
        _drop_parts(export_id)
        export.state = "expired"
        db.session.commit()
    return f"{len(due)} pruned"
