"""Legal holds: while a hold covers an envelope, nothing purges, deletes or anonymises it.

A hold's scope is one of

- ``envelopes``: a list of envelopes chosen from a search (``legal_hold_envelope`` rows);
- ``email``: everything of one customer email, matched case-insensitively, including envelopes
  sent after the hold was placed (the scope is evaluated whenever it is checked, never frozen);
- ``template``: every envelope sent from any version of one template.

``hold_reasons`` is what every purge, deletion and anonymisation asks first.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload
from sqlalchemy.sql.selectable import CompoundSelect

from portal import audit, clock, exports, jobs, storage, text
from portal.accounts.models import User
from portal.envelopes import checks, console, sealing, search
from portal.envelopes.checks import EnvelopeError
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import Model, db, write_lock
from portal.library.models import Template, TemplateVersion


class HoldScope(enum.StrEnum):
    """What a hold covers."""

    ENVELOPES = "envelopes"
    EMAIL = "email"
    TEMPLATE = "template"


class LegalHold(Model):
    """One legal hold (active until released)."""

    __tablename__ = "legal_hold"
    __table_args__ = (Index("ix_legal_hold_active", "released_at", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    case_ref: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(20))
    # The customer's email, lower-cased (scope ``email``), while the hold is active; at release
    # only its SHA-256 stays (no customer's address outlives the records it protected).
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    email_sha256: Mapped[str | None] = mapped_column(String(64))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("template.id"), index=True)
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    release_reason: Mapped[str | None] = mapped_column(Text)

    placed_by: Mapped[User] = relationship(foreign_keys=[placed_by_id])
    released_by: Mapped[User | None] = relationship(foreign_keys=[released_by_id])
    template: Mapped[Template | None] = relationship()

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("legal_hold", str(self.id), self.name)

    @property
    def active(self) -> bool:
        return self.released_at is None


class LegalHoldEnvelope(Model):
    """One envelope chosen for a hold of scope ``envelopes``."""

    __tablename__ = "legal_hold_envelope"

    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_hold.id"), primary_key=True)
    envelope_id: Mapped[int] = mapped_column(
        ForeignKey("envelope.id"), primary_key=True, index=True
    )


# Ids per statement: well under SQLite's bound-parameter limit.
CHUNK = 500


def normalise_email(value: str) -> str:
    """The form a hold stores and compares an email in."""
    return value.strip().lower()


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    batch: list[int] = []
    for value in ids:
        batch.append(int(value))
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _covering(ids: list[int]) -> CompoundSelect:
    """One statement: (envelope id, hold name, hold id, case reference) for each active hold
    covering one of ``ids``."""
    active = LegalHold.released_at.is_(None)
    hold = (LegalHold.name.label("name"), LegalHold.id.label("hold_id"), LegalHold.case_ref)
    chosen = (
        select(LegalHoldEnvelope.envelope_id.label("envelope_id"), *hold)
        .join(LegalHold, LegalHold.id == LegalHoldEnvelope.hold_id)
        .where(active, LegalHoldEnvelope.envelope_id.in_(ids))
    )
    by_template = (
        select(Envelope.id.label("envelope_id"), *hold)
        .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
        .join(LegalHold, LegalHold.template_id == TemplateVersion.template_id)
        .where(active, LegalHold.scope == HoldScope.TEMPLATE.value, Envelope.id.in_(ids))
    )
    by_email = (
        select(Recipient.envelope_id.label("envelope_id"), *hold)
        .join(LegalHold, LegalHold.email == func.lower(Recipient.email))
        .where(
            active,
            LegalHold.scope == HoldScope.EMAIL.value,
            Recipient.envelope_id.in_(ids),
        )
    )
    return union_all(chosen, by_template, by_email)


def hold_reasons(envelope_ids: Collection[int]) -> dict[int, list[str]]:
    """Envelope id -> names of the active holds covering it (envelopes no hold covers are left
    out). One query per 500 ids, whatever the holds' scopes."""
    found: dict[int, set[str]] = {}
    if not envelope_ids:
        return {}
    if (
        db.session.scalar(select(LegalHold.id).where(LegalHold.released_at.is_(None)).limit(1))
        is None
    ):
        return {}
    for ids in _chunks(sorted(set(envelope_ids))):
        for row in db.session.execute(_covering(ids)):
            found.setdefault(int(row.envelope_id), set()).add(row.name)
    return {key: sorted(names) for key, names in found.items()}


@dataclass(frozen=True)
class Covering:
    """An active hold covering an envelope, as the envelope page names it."""

    id: int
    name: str
    case_ref: str


def covering(envelope_id: int) -> list[Covering]:
    """The active holds covering one envelope, by name (one statement)."""
    found = {(row.hold_id, row.name, row.case_ref) for row in db.session.execute(
        _covering([envelope_id]))}  # fmt: skip
    return [Covering(*item) for item in sorted(found, key=lambda item: (item[1], item[0]))]


def is_held(envelope_id: int) -> bool:
    """Whether any active hold covers the envelope."""
    return bool(hold_reasons([envelope_id]))


# ---------------------------------------------------------------- placing and releasing

audit.add_labels({"hold.placed": "Legal hold placed", "hold.released": "Legal hold released"})

MAX_NAME = 200
MAX_CASE_REF = 120
MAX_REASON = 2000
MAX_CHOSEN = 5000  # envelopes ticked for one hold of scope ``envelopes``


class HoldError(ValueError):
    """A hold cannot be placed or released; the message says why, for the officer."""


def _line(value: object, label: str, limit: int) -> str:
    clean = text.printable(" ".join(str(value or "").split()))
    if not clean:
        raise HoldError(f"{label} is required.")
    if len(clean) > limit:
        raise HoldError(f"{label} is longer than {limit:,} characters.")
    return clean


def reason_text(value: object, label: str) -> str:
    clean = text.printable(str(value or "")).strip()
    if not clean:
        raise HoldError(f"{label} is required.")
    if len(clean) > MAX_REASON:
        raise HoldError(f"{label} is longer than {MAX_REASON:,} characters.")
    return clean


def email_digest(email: str) -> str:
    """SHA-256 of a normalised email: what events and released holds keep instead of it."""
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()


def customer_email(value: object) -> str:
    """A customer's email as holds and data-subject requests take it (lower-cased)."""
    raw = str(value or "").strip()
    if not raw:
        raise HoldError("Enter the customer's email.")
    try:
        return normalise_email(checks.email_address(raw, "The email"))
    except EnvelopeError as exc:
        raise HoldError(str(exc)) from exc


def envelope_ids(values: Iterable[object]) -> list[int]:
    """Ticked envelope ids from a form (anything but a positive number is refused)."""
    ids: set[int] = set()
    for value in values:
        raw = str(value).strip()
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
            raise HoldError("The envelopes chosen are not valid; search and tick them again.")
        ids.add(int(raw))
    if len(ids) > MAX_CHOSEN:
        raise HoldError(f"Choose at most {MAX_CHOSEN:,} envelopes for one hold.")
    return sorted(ids)


def place(
    *,
    name: object,
    case_ref: object,
    reason: object,
    scope: object,
    by: User,
    email: object = None,
    template_id: object = None,
    chosen: Iterable[object] = (),
) -> LegalHold:
    """Place a hold (checked, recorded as ``hold.placed``) in the caller's transaction."""
    hold = LegalHold(
        name=_line(name, "The name", MAX_NAME),
        case_ref=_line(case_ref, "The case reference", MAX_CASE_REF),
        reason=reason_text(reason, "The reason"),
        scope=str(scope or ""),
        placed_by_id=by.id,
        placed_at=clock.utcnow(),
    )
    ids: list[int] = []
    data: dict[str, object] = {}
    if hold.scope == HoldScope.EMAIL:
        hold.email = customer_email(email)
        hold.email_sha256 = email_digest(hold.email)
        data["email_sha256"] = hold.email_sha256
    elif hold.scope == HoldScope.TEMPLATE:
        raw = str(template_id or "").strip()
        template = db.session.get(Template, int(raw)) if raw.isdigit() and len(raw) < 12 else None
        if template is None:
            raise HoldError("Choose the template the hold covers.")
        hold.template_id = template.id
        data["template"] = template.name
    elif hold.scope == HoldScope.ENVELOPES:
        ids = envelope_ids(chosen)
        if not ids:
            raise HoldError("Tick at least one envelope for the hold.")
        found: set[int] = set()
        for batch in _chunks(ids):
            found.update(db.session.scalars(select(Envelope.id).where(Envelope.id.in_(batch))))
        if len(found) != len(ids):
            raise HoldError("Some of the envelopes chosen no longer exist; search again.")
        data["envelopes"] = len(ids)
        data["envelope_ids"] = ids
    else:
        raise HoldError("Choose what the hold covers: envelopes, a customer's email or a template.")
    write_lock()
    db.session.add(hold)
    db.session.flush()
    if ids:
        db.session.execute(
            cast(Table, LegalHoldEnvelope.__table__).insert(),
            [{"hold_id": hold.id, "envelope_id": i} for i in ids],
        )
    audit.record(
        "hold.placed",
        actor=by,
        subject=hold,
        data={"name": hold.name, "case_ref": hold.case_ref, "reason": hold.reason,
              "scope": hold.scope, **data},
    )  # fmt: skip
    return hold


def release(hold: LegalHold, reason: object, by: User) -> None:
    """Release a hold (a reason is required; recorded as ``hold.released``)."""
    why = reason_text(reason, "The reason for releasing")
    if hold.released_at is not None:
        raise HoldError("This hold was already released.")
    hold.released_at = clock.utcnow()
    hold.released_by_id = by.id
    hold.release_reason = why
    hold.email = None  # the SHA-256 stays
    audit.record(
        "hold.released",
        actor=by,
        subject=hold,
        data={"name": hold.name, "case_ref": hold.case_ref, "reason": why},
    )


# ---------------------------------------------------------------- what a hold covers


def envelopes_of_email(email: str) -> Select[int]:
    """The ids of every envelope one of whose recipients has this email, whatever its case
    (the search text's index finds the candidates, the recipient rows decide)."""
    wanted = normalise_email(email)
    query = console.ListQuery(q=wanted)
    stmt = select(Envelope.id).where(
        exists().where(Recipient.envelope_id == Envelope.id, func.lower(Recipient.email) == wanted)
    )
    return _matching_text(stmt, query)


def _matching_text(stmt: Select[int], query: console.ListQuery) -> Select[int]:
    found = search.needles(query.q)
    return stmt.where(or_(*(console._finds(needle) for needle in found))) if found else stmt


def covered(hold: LegalHold) -> Select[int]:
    """The ids of the envelopes a hold covers now (for a released hold, what it covered)."""
    if hold.scope == HoldScope.ENVELOPES:
        return select(LegalHoldEnvelope.envelope_id.label("id")).where(
            LegalHoldEnvelope.hold_id == hold.id
        )
    if hold.scope == HoldScope.TEMPLATE:
        versions = select(TemplateVersion.id).where(TemplateVersion.template_id == hold.template_id)
        return select(Envelope.id).where(Envelope.template_version_id.in_(versions))
    if hold.email:
        return envelopes_of_email(hold.email)
    return select(Envelope.id).where(false())


def covered_count(hold: LegalHold) -> int:
    return int(db.session.scalar(select(func.count()).select_from(covered(hold).subquery())) or 0)


PAGE_SIZE = 50


def covered_page(hold: LegalHold, after: int | None = None) -> tuple[list[Envelope], int | None]:
    """One page of the envelopes a hold covers, newest (highest id) first, and the cursor of
    the next page."""
    ids = covered(hold).subquery()
    stmt = (
        select(Envelope)
        .where(Envelope.id.in_(select(ids.c[0])))
        .options(selectinload(Envelope.recipients))
        .order_by(Envelope.id.desc())
        .limit(PAGE_SIZE + 1)
    )
    if after is not None:
        stmt = stmt.where(Envelope.id < after)
    rows = list(db.session.scalars(stmt))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, (rows[-1].id if more and rows else None)


def all_holds() -> list[LegalHold]:
    """Every hold, active ones first, newest first."""
    return list(
        db.session.scalars(
            select(LegalHold)
            .options(selectinload(LegalHold.placed_by), selectinload(LegalHold.template))
            .order_by(LegalHold.released_at.is_not(None), LegalHold.placed_at.desc())
        )
    )


# ---------------------------------------------------------------- ZIP bundles

MANIFEST_HEADER = ("File", "Envelope id", "Kind", "SHA-256", "Bytes")
MANIFEST_NAME = "manifest.csv"


@dataclass
class Bundle:
    """A ZIP written into a file (never held in memory) and the manifest of what it holds: each
    file's name, envelope, kind, SHA-256 and size, written as ``manifest.csv`` when closed."""

    out: IO[bytes]
    files: int = 0
    _zip: zipfile.ZipFile = field(init=False)
    _rows: IO[str] = field(init=False)

    def __post_init__(self) -> None:
        self._zip = zipfile.ZipFile(self.out, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self._rows = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in close)

    def add(self, name: str, content: bytes, *, envelope_id: int | None, kind: str) -> None:
        """One file; PDFs are stored as they are (already compressed), the rest deflated."""
        method = zipfile.ZIP_STORED if name.endswith(".pdf") else zipfile.ZIP_DEFLATED
        info = zipfile.ZipInfo(name, date_time=clock.utcnow().timetuple()[:6])
        info.compress_type = method
        info.external_attr = 0o600 << 16
        self._zip.writestr(info, content)
        digest = hashlib.sha256(content).hexdigest()
        self._rows.write(json.dumps([name, envelope_id, kind, digest, len(content)]) + "\n")
        self.files += 1

    def _manifest(self) -> Iterator[list[Any]]:
        self._rows.seek(0)
        for line in self._rows:
            yield json.loads(line)

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        if kind is None:
            self.close()
        else:  # a failed export: let go of the files (the caller deletes the partial ZIP)
            self._zip.close()
            self._rows.close()

    def close(self) -> None:
        with self._zip.open(MANIFEST_NAME, "w", force_zip64=True) as manifest:
            for chunk in exports.csv_stream(MANIFEST_HEADER, self._manifest()):
                manifest.write(chunk)
        self._zip.close()
        self._rows.close()


def stream_sha256(handle: IO[bytes]) -> tuple[str, int]:
    """SHA-256 and size of what is left to read in an open file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def add_envelope(bundle: Bundle, envelope: Envelope) -> None:
    """An envelope's sealed PDF (when sealed) and its sealed audit report (interim before it
    completes) into a bundle."""
    stem = f"{envelope.id}-{envelope.public_id}"
    if envelope.seal_status == "sealed" and envelope.sealed_blob_id:
        bundle.add(f"documents/{stem}-signed.pdf", storage.get(envelope.sealed_blob_id),
                   envelope_id=envelope.id, kind="sealed_pdf")  # fmt: skip
    bundle.add(f"reports/{stem}-audit-report.pdf", sealing.audit_report(envelope),
               envelope_id=envelope.id, kind="audit_report")  # fmt: skip


def id_batches(stmt: Select[int], size: int = 50) -> Iterator[list[int]]:
    """The ids ``stmt`` selects, ascending, in keyset batches, each batch its own short read."""
    ids = stmt.subquery()
    column = ids.c[0]
    last = 0
    while True:
        batch = [int(i) for i in db.session.scalars(
            select(column).where(column > last).order_by(column).limit(size))]  # fmt: skip
        if not batch:
            return
        yield batch
        last = batch[-1]
        if len(batch) < size:
            return


def envelopes_by_id(ids: list[int]) -> list[Envelope]:
    return list(
        db.session.scalars(
            select(Envelope)
            .where(Envelope.id.in_(ids))
            .options(selectinload(Envelope.recipients))
            .order_by(Envelope.id)
        )
    )


def write_hold_zip(
    hold: LegalHold, out: IO[bytes], progress: Callable[[int], None] | None = None
) -> int:
    """Write the hold's ZIP (sealed PDFs, sealed audit reports, manifest) into ``out``;
    returns how many envelopes it holds. ``progress`` is told the count after each batch."""
    count = 0
    with Bundle(out) as bundle:
        for ids in id_batches(covered(hold)):
            for envelope in envelopes_by_id(ids):
                add_envelope(bundle, envelope)
                count += 1
            db.session.rollback()  # end the batch's read; nothing was changed
            if progress is not None:
                progress(count)
    return count


def record_export(
    kind: str, by: User, filters: dict[str, Any], rows: int, digest: str, size: int
) -> str:
    """``records.exported`` for a file made (its SHA-256 is returned)."""
    write_lock()
    audit.record(
        "records.exported",
        actor=by,
        subject=("records", kind, None),
        data={"kind": kind, "filters": filters, "rows": rows, "sha256": digest, "bytes": size},
    )
    return digest


# ---------------------------------------------------------------- the hold's ZIP as a job

# Holds of up to this many envelopes download at once; larger ones are built by a job (each
# envelope's audit report is rendered and sealed: about a tenth of a second).
INLINE_ENVELOPES = 25
EXPORT_KEEP_HOURS = 24
# A built ZIP is stored as encrypted blobs (``portal.storage``: AES-256-GCM under DATA_KEY,
# outside the database) of this size, written as it is made and read back one at a time.
PART_BYTES = 4 * 1024 * 1024
# The job holds a lease (``runner`` and a heartbeat renewed after each batch of envelopes and
# each stored part); a heartbeat older than this means its worker is gone.
STALE = timedelta(minutes=10)
MAX_ATTEMPTS = 3  # starts of one export (killed workers included) before it is marked failed
RUNNING = ("queued", "running")


class HoldExport(Model):
    """A hold's ZIP built by a job: its progress, its lease, and the file once ready (kept a
    day, as encrypted parts)."""

    __tablename__ = "hold_export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_hold.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    state: Mapped[str] = mapped_column(String(20), default="queued")  # running|done|failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    runner: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    requested_by: Mapped[User] = relationship()

    @property
    def percent(self) -> int:
        return (
            100 if self.state == "done" else int(100 * self.done / self.total) if self.total else 0
        )

    @property
    def stalled(self) -> bool:
        """Queued or running, but no job has shown a sign of life for ``STALE``: its worker was
        killed or no worker takes the queue (the sweeper retries it or marks it failed)."""
        if self.state not in RUNNING:
            return False
        seen = self.heartbeat_at or self.created_at
        return seen is None or clock.as_utc(seen) < clock.utcnow() - STALE


class HoldExportPart(Model):
    """One encrypted part of a built ZIP, in order."""

    __tablename__ = "hold_export_part"

    export_id: Mapped[int] = mapped_column(ForeignKey("hold_export.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blob.id"))


def zip_name(hold: LegalHold) -> str:
    return f"hold-{hold.id}-{clock.utcnow():%Y%m%d-%H%M}.zip"


def build_now(hold: LegalHold, by: User) -> tuple[IO[bytes], int]:
    """Build a (small) hold's ZIP at once into an anonymous temporary file (no name on disk,
    gone when closed), recorded as ``records.exported``; the caller sends and closes it."""
    handle = tempfile.TemporaryFile(prefix="hold-", suffix=".zip")  # noqa: SIM115 (caller closes)
    try:
        rows = write_hold_zip(hold, handle)
        handle.seek(0)
        digest, size = stream_sha256(handle)
        record_export("hold_zip", by, {"hold": hold.id, "name": hold.name}, rows, digest, size)
        db.session.commit()
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle, rows


def request_export(hold: LegalHold, by: User, total: int) -> HoldExport:
    """Ask for a hold's ZIP to be built by a job (in the caller's transaction)."""
    write_lock()
    for stuck in db.session.scalars(
        select(HoldExport).where(HoldExport.hold_id == hold.id, HoldExport.state.in_(RUNNING))
    ):
        if stuck.stalled:  # asked again: the new export replaces the one that stopped
            _drop_parts(stuck.id)
            stuck.state, stuck.runner, stuck.finished_at = "failed", None, clock.utcnow()
            stuck.error = "its job stopped; it was exported again"
    export = HoldExport(hold_id=hold.id, requested_by_id=by.id, state="queued", total=total)
    db.session.add(export)
    db.session.flush()
    jobs.enqueue(build_export, export.id)
    return export


class LeaseLost(RuntimeError):
    """Another job took the export over (this one was thought dead): stop, change nothing."""


def _locked_export(export_id: int) -> HoldExport | None:
    write_lock()
    return db.session.execute(
        select(HoldExport).where(HoldExport.id == export_id).with_for_update()
    ).scalar_one_or_none()


def _drop_parts(export_id: int) -> None:
    blob_ids = list(
        db.session.scalars(
            select(HoldExportPart.blob_id).where(HoldExportPart.export_id == export_id)
        )
    )
    db.session.execute(delete(HoldExportPart).where(HoldExportPart.export_id == export_id))
    for blob_id in blob_ids:
        storage.delete(blob_id)


def _claim(export_id: int, runner: str) -> bool:
    """Take the export's lease unless it is finished or another live job holds it; a new
    start drops what an earlier (killed) start stored."""
    export = _locked_export(export_id)
    now = clock.utcnow()
    if export is None or export.state not in (*RUNNING, "failed"):
        db.session.rollback()
        return False
    if export.runner and export.heartbeat_at and clock.as_utc(export.heartbeat_at) > now - STALE:
        db.session.rollback()
        return False
    _drop_parts(export_id)
    export.runner, export.heartbeat_at, export.state = runner, now, "running"
    export.attempts += 1
    export.done, export.error = 0, None
    db.session.commit()
    return True


def _beat(export_id: int, lease: str, **values: Any) -> HoldExport:
    """Renew the lease (and set ``values``) in a locked, not yet committed transaction."""
    export = _locked_export(export_id)
    if export is None or export.runner != lease:
        db.session.rollback()
        raise LeaseLost(f"Hold export {export_id} was taken over by another job.")
    export.heartbeat_at = clock.utcnow()
    for name, value in values.items():
        setattr(export, name, value)
    return export


class PartWriter(io.RawIOBase):
    """A write-only, unseekable file (``zipfile`` then writes data descriptors) that stores
    what is written as encrypted parts of ``PART_BYTES``, each in its own short transaction
    that also renews the lease, and keeps the SHA-256 and size of the whole."""

    def __init__(self, export_id: int, runner: str) -> None:
        super().__init__()
        self.export_id, self.runner = export_id, runner
        self.digest = hashlib.sha256()
        self.size = 0
        self.parts = 0
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        self.digest.update(chunk)
        self.size += len(chunk)
        while len(self._buffer) >= PART_BYTES:
            self._save(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]
        return len(chunk)

    def finish(self) -> None:
        if self._buffer:
            self._save(bytes(self._buffer))
            self._buffer.clear()

    def _save(self, content: bytes) -> None:
        db.session.rollback()  # end the batch's read (nothing was changed)
        _beat(self.export_id, self.runner)
        self.parts += 1
        blob_id = storage.put(content, kind="hold_export")
        db.session.add(HoldExportPart(export_id=self.export_id, number=self.parts, blob_id=blob_id))
        db.session.commit()


@jobs.job(queue="pdf", retry=(60, 300), timeout=6 * 3600)
def build_export(export_id: int) -> str:
    """Build a hold's ZIP as encrypted parts (never a plain file, never whole in memory),
    then record ``records.exported``. Takes the export's lease first: a finished export, or
    one a live job is building, is left alone; a rerun after a killed worker starts again."""
    runner = uuid.uuid4().hex
    if not _claim(export_id, runner):
        return "nothing to do"
    export = db.session.get(HoldExport, export_id)
    assert export is not None
    hold = db.session.get(LegalHold, export.hold_id)
    assert hold is not None
    by = db.session.get(User, export.requested_by_id)
    assert by is not None
    hold_id, hold_name = hold.id, hold.name
    out = PartWriter(export_id, runner)

    def progress(done: int) -> None:
        _beat(export_id, runner, done=done)
        db.session.commit()

    try:
        rows = write_hold_zip(hold, cast(IO[bytes], out), progress)
        out.finish()
        digest = out.digest.hexdigest()
        export = _beat(export_id, runner, state="done", done=rows, total=rows, sha256=digest,
                       size=out.size, finished_at=clock.utcnow(), runner=None)  # fmt: skip
        record_export("hold_zip", by, {"hold": hold_id, "name": hold_name}, rows, digest, out.size)
        db.session.commit()
    except LeaseLost:
        db.session.rollback()
        return "taken over by another job"
    except Exception as exc:
        db.session.rollback()
        export = _locked_export(export_id)
        if export is not None and export.runner == runner:
            _drop_parts(export_id)
            export.state, export.runner = "failed", None
            export.error = str(exc)[:500] or type(exc).__name__
            export.finished_at = clock.utcnow()
        db.session.commit()
        raise
    return f"{rows} envelopes"


def download(export: HoldExport) -> Iterator[bytes]:
    """A built ZIP's bytes, one decrypted part at a time (each part its own short read)."""
    blob_ids = list(
        db.session.scalars(
            select(HoldExportPart.blob_id)
            .where(HoldExportPart.export_id == export.id)
            .order_by(HoldExportPart.number)
        )
    )
    db.session.rollback()
    for blob_id in blob_ids:
        content = storage.get(blob_id)
        db.session.rollback()
        yield content


DOWNLOADED = "records.export_downloaded"  # (the records exports' event: access is access)


def record_download(export: HoldExport, by: User) -> None:
    """A built ZIP fetched: ``records.export_downloaded`` (the access audit counts it), in a
    writing transaction of its own; the caller commits, then streams the parts."""
    data = {"export": f"hold-{export.hold_id}-{export.id}", "kind": "hold_zip",
            "hold": export.hold_id, "sha256": export.sha256}  # fmt: skip
    hold_id = export.hold_id
    write_lock()
    hold = db.session.get(LegalHold, hold_id)
    audit.record(DOWNLOADED, actor=by, subject=hold, data=data)


def latest_export(hold: LegalHold) -> HoldExport | None:
    return db.session.scalar(
        select(HoldExport)
        .where(HoldExport.hold_id == hold.id)
        .order_by(HoldExport.id.desc())
        .limit(1)
    )


@jobs.periodic(every=3600)
def sweep_exports() -> str:
    """Delete hold ZIPs older than a day (they can be built again)."""
    cutoff = clock.utcnow() - timedelta(hours=EXPORT_KEEP_HOURS)
    old = list(
        db.session.scalars(
            select(HoldExport.id).where(HoldExport.state == "done", HoldExport.finished_at < cutoff)
        )
    )
    db.session.rollback()
    for export_id in old:
        export = _locked_export(export_id)
        if export is not None and export.state == "done":
            _drop_parts(export_id)
            export.state = "expired"
        db.session.commit()
    return f"{len(old)} deleted"


@jobs.periodic(every=60)
def resume_stuck_exports() -> str:
    """Exports whose job stopped (a killed worker, a lost queue): asked again while they have
    starts left, else failed with the reason, so the hold page stops waiting."""
    cutoff = clock.utcnow() - STALE
    stale = or_(
        HoldExport.heartbeat_at < cutoff,
        HoldExport.heartbeat_at.is_(None) & (HoldExport.created_at < cutoff),
    )
    ids = list(
        db.session.scalars(select(HoldExport.id).where(HoldExport.state.in_(RUNNING), stale))
    )
    db.session.rollback()
    retried = failed = 0
    for export_id in ids:
        export = _locked_export(export_id)
        if export is None or not export.stalled:
            db.session.rollback()
            continue
        seen = clock.as_utc(export.heartbeat_at or export.created_at)
        never_started = export.state == "queued"
        if never_started:  # no worker took it: asking again counts as a start
            export.attempts += 1
        export.runner = None
        if export.attempts >= MAX_ATTEMPTS:
            _drop_parts(export_id)
            export.state, export.finished_at = "failed", clock.utcnow()
            export.error = (
                f"no worker took the job in {export.attempts} tries (is the pdf queue's "
                f"worker running?)"
                if never_started
                else f"the job building it stopped {export.attempts} times without finishing "
                f"(last sign of life {seen:%Y-%m-%d %H:%M} UTC)"
            )
            failed += 1
        else:
            export.state, export.heartbeat_at = "queued", clock.utcnow()
            jobs.enqueue(build_export, export_id)
            retried += 1
        db.session.commit()
    return f"{retried} retried, {failed} failed"
