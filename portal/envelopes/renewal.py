"""Long-term seals: the level each sealed envelope has, and renewing its archive timestamp.

A B-LTA seal stays verifiable as long as its latest document timestamp can be validated, that
is until the TSA certificate that made it expires. ``SEAL_RENEWAL_DAYS`` before that date the
periodic ``sweep_renewals`` (also run by ``flask portal tick``) asks for ``renew_seal``, which
adds a fresh document timestamp with the validation data of the previous one
(``ltv.renew``) and stores the result as a new sealed blob. The earlier file is kept
(``SealedVersion``): copies already sent stay verifiable on the verify page, which recognises
every hash the envelope's seal ever had. Admins can also "Renew now".

A renewal that fails is recorded on the envelope (reason, tries), audited
(``envelope.seal_renewal_failed``) and tried again later: after an hour, doubling up to a day.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import DateTime, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import audit, clock, jobs, storage
from portal.accounts.models import User
from portal.documents import ltv
from portal.documents.seal import DEFAULT_TSA_TIMEOUT
from portal.envelopes.models import Envelope
from portal.extensions import Model, db

log = logging.getLogger(__name__)

RENEWED = "envelope.seal_renewed"
RENEWAL_FAILED = "envelope.seal_renewal_failed"
RENEWAL_ASKED = "envelope.seal_renewal_asked"
BATCH = 20
_FIRST_RETRY = timedelta(hours=1)
_LONGEST_RETRY = timedelta(days=1)

audit.add_labels(
    {
        RENEWED: "Seal renewed (fresh archive timestamp)",
        RENEWAL_FAILED: "Seal renewal failed",
        RENEWAL_ASKED: "Seal renewal asked for",
    }
)

# What each level means, in the words of the envelope page.
LEVEL_TEXT = {
    "B-B": "Basic seal (PAdES B-B): proves the file is unchanged, but once the sealing "
    "certificate expires or is revoked a reader can no longer validate it. Set SEAL_TSA_URL "
    "for long-term seals.",
    "B-T": "Time-stamped seal (PAdES B-T): proves when it was sealed; no validation data "
    "embedded, so it cannot be validated once the certificate expires.",
    "B-LT": "Long-term seal (PAdES B-LT): certificates and revocation data embedded.",
    "B-LTA": "Long-term archival seal (PAdES B-LTA): certificates and revocation data "
    "embedded and covered by a document timestamp, renewed before that timestamp expires.",
}


class RenewalProblem(RuntimeError):
    """A renewal cannot be asked for; the message is shown on the envelope."""


class SealedVersion(Model):
    """An earlier sealed file of an envelope, replaced by a renewal (kept: copies sent out
    before the renewal must still verify)."""

    __tablename__ = "sealed_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelope.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))  # NULL once purged
    size: Mapped[int] = mapped_column(Integer)
    level: Mapped[str | None] = mapped_column(String(8))
    sealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- level and schedule


def _margin() -> timedelta:
    return timedelta(days=int(current_app.config.get("SEAL_RENEWAL_DAYS", 90)))


def next_renewal(expires: datetime | None, now: datetime) -> datetime | None:
    """When to add a fresh timestamp: ``SEAL_RENEWAL_DAYS`` before ``expires``; a day from
    now when that is already past (the TSA still answers with a certificate that expires
    within the margin: each day's try may get its next one)."""
    if expires is None:
        return None
    due = clock.as_utc(expires) - _margin()
    return due if due > now else now + timedelta(days=1)


def record_level(envelope: Envelope, sealed: bytes) -> ltv.SealLevel:
    """Read the sealed file's level and latest timestamp onto the envelope."""
    try:
        found = ltv.describe(sealed)
    except ltv.LongTermError as exc:  # our own file: should not happen; say so, do not fail
        log.warning("Envelope %s: the sealed file's level could not be read: %s", envelope.id, exc)
        found = ltv.SealLevel(None, 0, None, None)
    envelope.seal_level = found.level
    envelope.seal_timestamp_expires = found.timestamp_expires
    envelope.seal_renew_after = (
        next_renewal(found.timestamp_expires, clock.utcnow()) if found.level == "B-LTA" else None
    )
    return found


def renewal_warning(envelope: Envelope) -> str | None:
    """A sentence for the envelope page when the seal is not on a safe renewal schedule."""
    if envelope.seal_level != "B-LTA":
        return None
    expires = envelope.seal_timestamp_expires
    if expires is not None and clock.as_utc(expires) - _margin() <= clock.utcnow():
        return (
            "The time-stamp service's certificate expires within "
            f"{current_app.config.get('SEAL_RENEWAL_DAYS', 90)} days and its latest timestamp "
            "was made with it: renewal is tried again every day until the service answers "
            "with a newer certificate."
        )
    return None


@dataclass(frozen=True)
class PageFacts:
    """The envelope page's long-term seal block."""

    level: str | None
    explained: str
    next_renewal: datetime | None
    timestamp_expires: datetime | None
    renewed_at: datetime | None
    error: str | None
    attempts: int
    warning: str | None
    earlier: int
    can_renew: bool


def page_facts(envelope: Envelope, *, admin: bool) -> PageFacts:
    """What the envelope page says about its seal's level and renewal."""
    level = envelope.seal_level
    explained = LEVEL_TEXT.get(level or "", "Level not recorded (sealed before levels were kept).")
    if level in ("B-B", "B-T") and not _tsa_url():
        explained += " No time-stamp service is configured (SEAL_TSA_URL is empty)."
    return PageFacts(
        level=level,
        explained=explained,
        next_renewal=envelope.seal_renew_after if level == "B-LTA" else None,
        timestamp_expires=envelope.seal_timestamp_expires,
        renewed_at=envelope.seal_renewed_at,
        error=envelope.seal_renewal_error,
        attempts=envelope.seal_renewal_attempts or 0,
        warning=renewal_warning(envelope),
        earlier=len(versions(envelope)),
        can_renew=admin and level == "B-LTA" and bool(_tsa_url()),
    )


@dataclass(frozen=True)
class Summary:
    """The admin sealing page's long-term block."""

    tsa_url: str
    renewal_days: int
    levels: dict[str, int]
    due: int
    failing: int
    next_renewal: datetime | None


def summary() -> Summary:
    """Seals by level, renewals due and failing, and the next renewal, for admins."""
    now = clock.utcnow()
    levels = {
        str(level or "not recorded"): count
        for level, count in db.session.execute(
            select(Envelope.seal_level, func.count())
            .where(Envelope.seal_status == "sealed", Envelope.sealed_blob_id.is_not(None))
            .group_by(Envelope.seal_level)
        ).all()
    }
    lta = (Envelope.seal_level == "B-LTA", Envelope.sealed_blob_id.is_not(None))
    due = db.session.scalar(select(func.count()).where(*lta, Envelope.seal_renew_after <= now))
    failing = db.session.scalar(
        select(func.count()).where(*lta, Envelope.seal_renewal_error.is_not(None))
    )
    upcoming = db.session.scalar(
        select(func.min(Envelope.seal_renew_after)).where(*lta, Envelope.seal_renew_after > now)
    )
    return Summary(
        tsa_url=_tsa_url(),
        renewal_days=_margin().days,
        levels=levels,
        due=int(due or 0),
        failing=int(failing or 0),
        next_renewal=upcoming,
    )


# ---------------------------------------------------------------- renewing


def _tsa_url() -> str:
    return str(current_app.config.get("SEAL_TSA_URL") or "")


def renew_now(envelope: Envelope, actor: User) -> None:
    """An admin asks for a fresh archive timestamp now."""
    if envelope.seal_status != "sealed" or envelope.sealed_blob_id is None:
        raise RenewalProblem("Only a sealed document can have its seal renewed.")
    if envelope.seal_level != "B-LTA":
        raise RenewalProblem(
            "Only a long-term archival seal (PAdES B-LTA) can be renewed; this one is "
            f"{envelope.seal_level or 'of an unrecorded level'}."
        )
    if not _tsa_url():
        raise RenewalProblem("Renewing needs a time-stamp service: set SEAL_TSA_URL and try again.")
    audit.record(RENEWAL_ASKED, actor=actor, subject=envelope,
                 data={"sealed_sha256": envelope.sealed_sha256})  # fmt: skip
    envelope.seal_renew_after = clock.utcnow()
    jobs.enqueue(renew_seal, envelope.id, force=True)
    db.session.commit()


@jobs.job(queue="pdf", retry=(60, 600), timeout=600)
def renew_seal(envelope_id: int, force: bool = False) -> str:
    """Add a fresh archive timestamp to an envelope's sealed file when it is due."""
    envelope = db.session.get(Envelope, envelope_id)
    now = clock.utcnow()
    if (
        envelope is None
        or envelope.sealed_blob_id is None
        or envelope.seal_level != "B-LTA"
        or (not force and (envelope.seal_renew_after is None
                           or clock.as_utc(envelope.seal_renew_after) > now))
    ):  # fmt: skip
        db.session.rollback()
        return "nothing to do"
    previous_sha256 = envelope.sealed_sha256
    tsa_url = _tsa_url()
    timeout = DEFAULT_TSA_TIMEOUT
    try:
        if not tsa_url:
            raise ltv.LongTermError("SEAL_TSA_URL is not set: there is no time-stamp service.")
        current = storage.get(envelope.sealed_blob_id)
        db.session.rollback()  # no transaction (and no SQLite lock) while the TSA answers
        renewed = ltv.renew(current, ltv.timestamp_client(tsa_url, timeout=timeout),
                            timeout=timeout)  # fmt: skip
        found = ltv.describe(renewed)
    except (ltv.LongTermError, storage.BlobError) as exc:
        log.warning("Renewing the seal of envelope %s failed: %s", envelope_id, exc)
        _note_failure(envelope_id, str(exc))
        return "failed"
    except Exception as exc:
        log.exception("Renewing the seal of envelope %s failed unexpectedly", envelope_id)
        _note_failure(envelope_id, f"Unexpected error ({type(exc).__name__}): {exc}")
        raise
    return _store(envelope_id, previous_sha256, renewed, found)


def _store(
    envelope_id: int, previous_sha256: str | None, renewed: bytes, found: ltv.SealLevel
) -> str:
    envelope = db.session.execute(
        select(Envelope).where(Envelope.id == envelope_id).with_for_update()
    ).scalar_one()
    if envelope.sealed_sha256 != previous_sha256 or envelope.sealed_blob_id is None:
        db.session.rollback()  # renewed (or purged) meanwhile
        return "changed meanwhile"
    now = clock.utcnow()
    db.session.add(
        SealedVersion(
            envelope_id=envelope.id,
            sha256=envelope.sealed_sha256,
            blob_id=envelope.sealed_blob_id,
            size=envelope.sealed_size or 0,
            level=envelope.seal_level,
            sealed_at=envelope.seal_renewed_at or envelope.sealed_at,
            replaced_at=now,
        )
    )
    digest = hashlib.sha256(renewed).hexdigest()
    envelope.sealed_blob_id = storage.put(renewed, kind="sealed_pdf")
    envelope.sealed_sha256 = digest
    envelope.sealed_size = len(renewed)
    envelope.seal_renewed_at = now
    envelope.seal_renewal_attempts = 0
    envelope.seal_renewal_error = None
    envelope.seal_level = found.level
    envelope.seal_timestamp_expires = found.timestamp_expires
    envelope.seal_renew_after = next_renewal(found.timestamp_expires, now)
    audit.record(
        RENEWED,
        actor="system",
        subject=envelope,
        data={
            "previous_sha256": previous_sha256,
            "sealed_sha256": digest,
            "size": len(renewed),
            "timestamps": found.document_timestamps,
            "timestamp_expires": found.timestamp_expires.isoformat()
            if found.timestamp_expires
            else None,
        },
    )
    db.session.commit()
    return "renewed"


def _note_failure(envelope_id: int, reason: str) -> None:
    db.session.rollback()
    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None:
        return
    envelope.seal_renewal_attempts = (envelope.seal_renewal_attempts or 0) + 1
    envelope.seal_renewal_error = reason[:1000]
    wait = min(_FIRST_RETRY * 2 ** (envelope.seal_renewal_attempts - 1), _LONGEST_RETRY)
    envelope.seal_renew_after = clock.utcnow() + wait
    data = {"reason": reason[:500], "attempt": envelope.seal_renewal_attempts}
    audit.record(RENEWAL_FAILED, actor="system", subject=envelope, data=data)
    db.session.commit()


@jobs.periodic(every=3600)
def sweep_renewals() -> str:
    """Ask for a fresh archive timestamp on the sealed files that are due one (and read the
    level of a few files sealed before levels were recorded)."""
    read = _record_missing_levels()
    due = list(
        db.session.execute(
            select(Envelope.id)
            .where(
                Envelope.seal_level == "B-LTA",
                Envelope.sealed_blob_id.is_not(None),
                Envelope.seal_renew_after <= clock.utcnow(),
            )
            .order_by(Envelope.seal_renew_after)
            .limit(BATCH)
        ).scalars()
    )
    db.session.rollback()
    for envelope_id in due:
        jobs.enqueue(renew_seal, envelope_id)
    db.session.commit()
    return f"{len(due)} due" + (f", {read} levels read" if read else "")


def _record_missing_levels() -> int:
    """The level of up to ``BATCH`` files sealed before migration 0020, read from the files."""
    ids = list(
        db.session.execute(
            select(Envelope.id)
            .where(
                Envelope.seal_status == "sealed",
                Envelope.sealed_blob_id.is_not(None),
                Envelope.seal_level.is_(None),
            )
            .limit(BATCH)
        ).scalars()
    )
    for envelope_id in ids:
        envelope = db.session.get(Envelope, envelope_id)
        if envelope is None or envelope.sealed_blob_id is None:
            continue
        try:
            record_level(envelope, storage.get(envelope.sealed_blob_id))
        except storage.BlobError as exc:
            log.warning("Envelope %s: sealed file unreadable: %s", envelope_id, exc)
    db.session.commit()
    return len(ids)


# ---------------------------------------------------------------- earlier files


def envelope_of_earlier(digest: str) -> Envelope | None:
    """The envelope whose sealed file had this SHA-256 before a renewal replaced it."""
    return db.session.execute(
        select(Envelope)
        .join(SealedVersion, SealedVersion.envelope_id == Envelope.id)
        .where(SealedVersion.sha256 == digest)
        .limit(1)
    ).scalar_one_or_none()


def earlier_blob_ids(envelope: Envelope) -> set[str]:
    """The blobs of the envelope's earlier sealed files (for a purge), forgotten here."""
    versions = list(
        db.session.execute(
            select(SealedVersion).where(
                SealedVersion.envelope_id == envelope.id, SealedVersion.blob_id.is_not(None)
            )
        ).scalars()
    )
    ids = {v.blob_id for v in versions if v.blob_id}
    for version in versions:
        version.blob_id = None
    return ids


def versions(envelope: Envelope) -> list[SealedVersion]:
    """The envelope's earlier sealed files, newest first."""
    return list(
        db.session.execute(
            select(SealedVersion)
            .where(SealedVersion.envelope_id == envelope.id)
            .order_by(SealedVersion.id.desc())
        ).scalars()
    )
