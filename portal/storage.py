"""Encrypted blob store: AES-256-GCM, a random 96-bit nonce per blob, the blob id as AAD.

Blobs live in the database so that every web and worker machine shares them. Each row
records which key sealed it (a short fingerprint), so a key rotation can run in batches
and resume where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import DateTime, Integer, LargeBinary, String, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import Model, db

NONCE_BYTES = 12


class BlobError(RuntimeError):
    """A blob is missing, or could not be decrypted (wrong key or changed bytes)."""


class Blob(Model):
    """One encrypted piece of content."""

    __tablename__ = "blob"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    size: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(16), index=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(NONCE_BYTES))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def key_fingerprint(key: bytes) -> str:
    """A short public name for a key; it reveals nothing useful about the key."""
    return hashlib.sha256(b"portal-data-key:" + key).hexdigest()[:16]


def _current_key() -> bytes:
    key = current_app.config["DATA_KEY"]
    assert isinstance(key, bytes) and len(key) == 32
    return key


def _seal(key: bytes, blob_id: str, content: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, content, blob_id.encode("ascii"))


def _open(key: bytes, blob: Blob) -> bytes:
    try:
        return AESGCM(key).decrypt(blob.nonce, blob.ciphertext, blob.id.encode("ascii"))
    except InvalidTag as exc:
        raise BlobError(
            f"Blob {blob.id} could not be decrypted: the DATA_KEY is wrong "
            "or the stored bytes were changed."
        ) from exc


def put(content: bytes, kind: str) -> str:
    """Encrypt and store bytes in the caller's transaction; return the new blob id."""
    key = _current_key()
    blob_id = uuid.uuid4().hex
    nonce, ciphertext = _seal(key, blob_id, content)
    db.session.add(
        Blob(
            id=blob_id,
            kind=kind,
            size=len(content),
            key_id=key_fingerprint(key),
            nonce=nonce,
            ciphertext=ciphertext,
            created_at=clock.utcnow(),
        )
    )
    db.session.flush()
    return blob_id


def get(blob_id: str) -> bytes:
    """Return a blob's plaintext; raise ``BlobError`` if it is missing or does not verify."""
    blob = db.session.get(Blob, blob_id)
    if blob is None:
        raise BlobError(f"Blob {blob_id} does not exist.")
    return _open(_current_key(), blob)


def delete(blob_id: str) -> None:
    """Remove a blob (retention and MFA resets use this); drop references to it first."""
    db.session.flush()
    db.session.execute(sa_delete(Blob).where(Blob.id == blob_id))


def rotate(old_key: bytes, batch: int = 200, progress: Callable[[int], None] | None = None) -> int:
    """Re-encrypt every blob sealed under ``old_key`` with the current key.

    Commits after each batch, so an interrupted rotation resumes where it stopped.
    Returns how many blobs were re-encrypted.
    """
    new_key = _current_key()
    old_id, new_id = key_fingerprint(old_key), key_fingerprint(new_key)
    if old_id == new_id:
        raise BlobError("The old key is the same as DATA_KEY; nothing to rotate.")
    done = 0
    while True:
        blobs = list(
            db.session.execute(
                select(Blob).where(Blob.key_id == old_id).order_by(Blob.id).limit(batch)
            ).scalars()
        )
        if not blobs:
            return done
        for blob in blobs:
            content = _open(old_key, blob)
            blob.nonce, blob.ciphertext = _seal(new_key, blob.id, content)
            blob.key_id = new_id
        db.session.commit()
        done += len(blobs)
        if progress:
            progress(done)


def unreadable_key_ids() -> list[str]:
    """Fingerprints of keys, other than the current one, that still seal some blobs."""
    current = key_fingerprint(_current_key())
    return [
        key_id
        for key_id in db.session.execute(select(Blob.key_id).distinct()).scalars()
        if key_id != current
    ]


# ---------------------------------------------------------------- small secrets under DATA_KEY


def current_key() -> bytes:
    """The current DATA_KEY, for other small secrets kept encrypted at rest like the blobs
    (the audit chain's per-envelope keys, ``portal.records.keys``)."""
    return _current_key()


def wrap(key: bytes, aad: str, content: bytes) -> tuple[bytes, bytes]:
    """``content`` under ``key`` as a blob is sealed (AES-256-GCM, random nonce, ``aad`` as
    associated data): ``(nonce, ciphertext)``."""
    return _seal(key, aad, content)


def unwrap(key: bytes, aad: str, nonce: bytes, ciphertext: bytes) -> bytes:
    """What ``wrap`` sealed; ``BlobError`` when the key is wrong or the bytes were changed."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad.encode("ascii"))
    except InvalidTag as exc:
        raise BlobError(
            f"{aad} could not be decrypted: the DATA_KEY is wrong or the stored bytes were changed."
        ) from exc
