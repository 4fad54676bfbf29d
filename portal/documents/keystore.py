"""The organisation's sealing certificate: where it comes from, and what the portal knows of it.

Production configures a PKCS#12 file (``SEAL_PKCS12_PATH`` + ``SEAL_PKCS12_PASSWORD``), checked
when the application starts: a missing, unreadable, expired or mismatched certificate stops the
start with a sentence saying what is wrong. Development generates a self-signed certificate the
first time one is needed and keeps it as an encrypted blob, so every process seals with the same
one. Every certificate the portal ever sealed with is listed in ``sealing_certificate`` (public
part only for configured ones), which lets the verify page recognise the portal's seals.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock, storage
from portal.config import ConfigError
from portal.documents.seal import (
    SealingCertError,
    SealingIdentity,
    check_identity,
    generate_self_signed,
    load_pkcs12,
    to_pkcs12,
)
from portal.extensions import Model, db

log = logging.getLogger(__name__)

EXPIRY_WARNING_DAYS = 30
# The generated development certificate's PKCS#12 is itself stored AES-GCM-encrypted (blob).
_GENERATED_P12_PASSWORD = b"portal-development-seal"


class SealingCertificate(Model):
    """A certificate the portal seals (or sealed) documents with."""

    __tablename__ = "sealing_certificate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    issuer: Mapped[str] = mapped_column(String(500))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    self_signed: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(20))  # generated | pkcs12
    # Only for generated certificates: the key and certificate as an encrypted PKCS#12 blob.
    blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)


@dataclass(frozen=True)
class CertificateStatus:
    """What the admin page says about the sealing certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    self_signed: bool
    source: str
    fingerprint: str
    days_left: int
    problems: list[str]
    warnings: list[str]


def configured_path(app: Flask | None = None) -> str:
    return str((app or current_app).config.get("SEAL_PKCS12_PATH") or "")


def load_configured(app: Flask) -> SealingIdentity:
    """The PKCS#12 named by the configuration, read and checked; plain errors otherwise."""
    path = configured_path(app)
    password = str(app.config.get("SEAL_PKCS12_PASSWORD") or "").encode() or None
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise SealingCertError(
            f"SEAL_PKCS12_PATH points to {path!r}, which cannot be read ({exc.strerror}). "
            "Give the path of the organisation's PKCS#12 (.p12/.pfx) sealing certificate."
        ) from exc
    cache = app.extensions.setdefault("portal_sealing", {})
    cached = cache.get("identity")
    if cached is not None and cached[0] == (path, stat.st_mtime_ns, stat.st_size):
        identity: SealingIdentity = cached[1]
        return identity
    with open(path, "rb") as handle:
        identity = load_pkcs12(handle.read(), password)
    cache["identity"] = ((path, stat.st_mtime_ns, stat.st_size), identity)
    return identity


def startup_check(app: Flask) -> None:
    """Refuse to start with a sealing certificate that cannot seal; warn when it expires soon."""
    if not configured_path(app):
        return
    try:
        identity = load_configured(app)
    except SealingCertError as exc:
        raise ConfigError(f"The sealing certificate cannot be loaded: {exc}") from exc
    problems, warnings = check_identity(identity, now=clock.utcnow())
    if problems:
        raise ConfigError(
            "The sealing certificate in SEAL_PKCS12_PATH cannot be used: " + " ".join(problems)
        )
    for warning in warnings:
        log.warning("Sealing certificate: %s", warning)


def _register(identity: SealingIdentity, source: str, blob_id: str | None = None) -> None:
    known = db.session.execute(
        select(SealingCertificate.id).where(SealingCertificate.fingerprint == identity.fingerprint)
    ).first()
    if known is not None:
        return
    db.session.add(
        SealingCertificate(
            fingerprint=identity.fingerprint,
            subject=identity.subject,
            issuer=identity.cert.issuer.rfc4514_string(),
            not_before=identity.not_before,
            not_after=identity.not_after,
            self_signed=identity.self_signed,
            source=source,
            blob_id=blob_id,
            created_at=clock.utcnow(),
        )
    )
    db.session.flush()


def _generated() -> SealingIdentity | None:
    row = db.session.execute(
        select(SealingCertificate)
        .where(SealingCertificate.source == "generated", SealingCertificate.blob_id.is_not(None))
        .order_by(SealingCertificate.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None or row.blob_id is None:
        return None
    cache = current_app.extensions.setdefault("portal_sealing", {})
    cached = cache.get("generated")
    if cached is not None and cached[0] == row.blob_id:
        identity: SealingIdentity = cached[1]
        return identity
    identity = load_pkcs12(storage.get(row.blob_id), _GENERATED_P12_PASSWORD)
    cache["generated"] = (row.blob_id, identity)
    return identity


def identity() -> SealingIdentity:
    """The identity to seal with now (in the caller's transaction: it may add rows).

    Configured PKCS#12 first; otherwise the generated development certificate, made on first
    use (and made again when the previous one has expired).
    """
    if configured_path():
        configured = load_configured(current_app)
        _register(configured, "pkcs12")
        return configured
    now = clock.utcnow()
    existing = _generated()
    if existing is not None and not check_identity(existing, now=now)[0]:
        return existing
    made = generate_self_signed(str(current_app.config.get("ORG_NAME") or "Portal"), now=now)
    blob_id = storage.put(to_pkcs12(made, _GENERATED_P12_PASSWORD), kind="sealing_key")
    _register(made, "generated", blob_id)
    log.info("Generated a self-signed development sealing certificate: %s", made.subject)
    return made


def known_fingerprints() -> set[str]:
    """Every certificate the portal has sealed with."""
    return set(db.session.execute(select(SealingCertificate.fingerprint)).scalars())


def status() -> CertificateStatus:
    """The current sealing certificate as the admin page shows it (made if none yet)."""
    current = identity()
    row = db.session.execute(
        select(SealingCertificate).where(SealingCertificate.fingerprint == current.fingerprint)
    ).scalar_one()
    db.session.commit()
    now = clock.utcnow()
    problems, warnings = check_identity(current, now=now)
    return CertificateStatus(
        subject=current.subject,
        issuer=row.issuer,
        not_before=current.not_before,
        not_after=current.not_after,
        self_signed=current.self_signed,
        source=row.source,
        fingerprint=current.fingerprint,
        days_left=(current.not_after - now).days,
        problems=problems,
        warnings=warnings,
    )
