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
import json
import tempfile
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from flask import current_app
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    exists,
    false,
    func,
    or_,
    select,
    union_all,
    update,
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
    """One statement: (envelope id, hold name) for each active hold covering one of ``ids``."""
    active = LegalHold.released_at.is_(None)
    chosen = (
        select(LegalHoldEnvelope.envelope_id.label("envelope_id"), LegalHold.name.label("name"))
        .join(LegalHold, LegalHold.id == LegalHoldEnvelope.hold_id)
        .where(active, LegalHoldEnvelope.envelope_id.in_(ids))
    )
    by_template = (
        select(Envelope.id.label("envelope_id"), LegalHold.name.label("name"))
        .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
        .join(LegalHold, LegalHold.template_id == TemplateVersion.template_id)
        .where(active, LegalHold.scope == HoldScope.TEMPLATE.value, Envelope.id.in_(ids))
    )
    by_email = (
        select(Recipient.envelope_id.label("envelope_id"), LegalHold.name.label("name"))
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
        for envelope_id, name in db.session.execute(_covering(ids)):
            found.setdefault(int(envelope_id), set()).add(name)
    return {key: sorted(names) for key, names in found.items()}


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


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
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


def record_export(kind: str, by: User, filters: dict[str, Any], rows: int, path: Path) -> str:
    """``records.exported`` for a file made (its SHA-256 is returned)."""
    digest, size = file_sha256(path)
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


class HoldExport(Model):
    """A hold's ZIP built by a job: its progress, and the file once ready (kept a day)."""

    __tablename__ = "hold_export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("legal_hold.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    state: Mapped[str] = mapped_column(String(20), default="queued")  # running|done|failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    requested_by: Mapped[User] = relationship()

    @property
    def percent(self) -> int:
        return (
            100 if self.state == "done" else int(100 * self.done / self.total) if self.total else 0
        )


def export_dir() -> Path:
    path = Path(current_app.instance_path) / "exports"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def export_path(export: HoldExport) -> Path:
    return export_dir() / f"hold-{export.hold_id}-export-{export.id}.zip"


def zip_name(hold: LegalHold) -> str:
    return f"hold-{hold.id}-{clock.utcnow():%Y%m%d-%H%M}.zip"


def build_now(hold: LegalHold, by: User) -> tuple[Path, int]:
    """Build a (small) hold's ZIP into a temporary file at once, recorded as
    ``records.exported``; the caller sends and then deletes the file."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (the caller deletes it)
        prefix="hold-", suffix=".zip", dir=export_dir(), delete=False
    )
    path = Path(handle.name)
    try:
        with handle:
            rows = write_hold_zip(hold, handle)
        record_export("hold_zip", by, {"hold": hold.id, "name": hold.name}, rows, path)
        db.session.commit()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, rows


def request_export(hold: LegalHold, by: User, total: int) -> HoldExport:
    """Ask for a hold's ZIP to be built by a job (in the caller's transaction)."""
    write_lock()
    export = HoldExport(hold_id=hold.id, requested_by_id=by.id, state="queued", total=total)
    db.session.add(export)
    db.session.flush()
    jobs.enqueue(build_export, export.id)
    return export


def _progress(export_id: int, done: int) -> None:
    db.session.execute(
        update(HoldExport).where(HoldExport.id == export_id).values(done=done, state="running")
    )
    db.session.commit()


@jobs.job(queue="pdf", retry=(60, 300), timeout=6 * 3600)
def build_export(export_id: int) -> str:
    """Build a hold's ZIP into the instance's ``exports`` folder (a file, never in memory),
    then record ``records.exported``. Idempotent: a finished export is left as it is; a rerun
    after a crash starts the file again."""
    export = db.session.get(HoldExport, export_id)
    if export is None or export.state == "done":
        return "nothing to do"
    hold = db.session.get(LegalHold, export.hold_id)
    assert hold is not None
    by = db.session.get(User, export.requested_by_id)
    assert by is not None
    path = export_path(export)
    partial = path.with_suffix(".part")
    try:
        with partial.open("wb") as handle:
            rows = write_hold_zip(hold, handle, lambda done: _progress(export_id, done))
        partial.replace(path)
        digest = record_export("hold_zip", by, {"hold": hold.id, "name": hold.name}, rows, path)
        export = db.session.get(HoldExport, export_id)
        assert export is not None
        export.state, export.done, export.total = "done", rows, rows
        export.sha256, export.size = digest, path.stat().st_size
        export.finished_at = clock.utcnow()
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        partial.unlink(missing_ok=True)
        db.session.execute(
            update(HoldExport)
            .where(HoldExport.id == export_id)
            .values(state="failed", error=str(exc)[:500] or type(exc).__name__)
        )
        db.session.commit()
        raise
    return f"{rows} envelopes"


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
            select(HoldExport).where(HoldExport.state == "done", HoldExport.finished_at < cutoff)
        )
    )
    for export in old:
        export_path(export).unlink(missing_ok=True)
        export.state = "expired"
    db.session.commit()
    return f"{len(old)} deleted"
