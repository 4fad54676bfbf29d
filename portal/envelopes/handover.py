"""Fresh signing links handed over to the agent once, on the page after sending.

A link is a secret: the database keeps only its SHA-256. Yet after a send (post/redirect/get)
the agent's browser asks for the result page in a new request, and a double submit can land
on that page from a request that did not make the links. So the links ride along encrypted
for one view: AES-256-GCM under a key derived from the staff session's random id, which only
the agent's cookie holds (the database keeps that id's hash too). Whoever reads the database,
even with ``DATA_KEY``, cannot read them; the page that shows them deletes them, and what is
not shown within ``KEEP`` is deleted by the next hand-over.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import session
from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.envelopes.links import token_digest
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import Model, db, write_lock

KEEP = timedelta(minutes=15)
_NONCE = 12
_INFO = b"portal link hand-over v1"


class LinkHandover(Model):
    """New links of one envelope, sealed for the staff session that made them."""

    __tablename__ = "link_handover"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelope.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)  # StaffSession.id
    heading: Mapped[str] = mapped_column(String(80))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=clock.utcnow, index=True
    )


@dataclass(frozen=True)
class HandedOver:
    """What the result page shows once: a heading and the live links by recipient."""

    heading: str
    links: dict[int, str]


def _session() -> tuple[str, bytes] | None:
    """The staff session's id as stored, and the key only its cookie can give."""
    raw = session.get("sid")
    if not isinstance(raw, str) or not raw:
        return None
    key = hmac.new(raw.encode(), _INFO, hashlib.sha256).digest()
    return hashlib.sha256(raw.encode()).hexdigest(), key


def _aad(envelope_id: int, session_id: str) -> bytes:
    return f"{envelope_id}:{session_id}".encode()


def keep(envelope: Envelope, links: dict[int, str], heading: str) -> None:
    """Keep the links for this session's next view of the result page (caller commits)."""
    current = _session()
    if current is None or not links:
        return
    session_id, key = current
    nonce = os.urandom(_NONCE)
    payload = json.dumps({str(rid): link for rid, link in links.items()}).encode()
    sealed = nonce + AESGCM(key).encrypt(nonce, payload, _aad(envelope.id, session_id))
    db.session.execute(delete(LinkHandover).where(LinkHandover.created_at < clock.utcnow() - KEEP))
    db.session.add(
        LinkHandover(envelope_id=envelope.id, session_id=session_id, heading=heading, sealed=sealed)
    )


def hand_over(envelope: Envelope, links: dict[int, str], heading: str) -> None:
    """``keep`` in a transaction of its own (after a verb that committed already)."""
    keep(envelope, links, heading)
    db.session.commit()


def _open(row: LinkHandover, key: bytes) -> dict[int, str]:
    nonce, box = row.sealed[:_NONCE], row.sealed[_NONCE:]
    try:
        payload = AESGCM(key).decrypt(nonce, box, _aad(row.envelope_id, row.session_id))
    except InvalidTag:
        return {}
    return {int(rid): str(link) for rid, link in json.loads(payload).items()}


def take(envelope: Envelope) -> HandedOver | None:
    """The links kept for this session, once: they are deleted as they are read. Links that
    died since (replaced, envelope stopped) are left out."""
    current = _session()
    if current is None:
        return None
    session_id, key = current
    mine = select(LinkHandover).where(
        LinkHandover.envelope_id == envelope.id, LinkHandover.session_id == session_id
    )
    if db.session.execute(mine.limit(1)).first() is None:
        return None  # (nothing to take: the page only read)
    envelope_id = envelope.id
    write_lock()
    rows = list(db.session.execute(mine.order_by(LinkHandover.id).with_for_update()).scalars())
    if not rows:
        db.session.rollback()  # another view took them a moment ago
        return None
    newest = rows[-1]
    fresh = clock.as_utc(newest.created_at) >= clock.utcnow() - KEEP
    links = _open(newest, key) if fresh else {}
    heading = newest.heading
    db.session.execute(delete(LinkHandover).where(LinkHandover.id.in_([r.id for r in rows])))
    live = _live(envelope_id, links)
    db.session.commit()
    return HandedOver(heading, live) if live else None


def _live(envelope_id: int, links: dict[int, str]) -> dict[int, str]:
    """The links that still open something: the recipient's current token, envelope sent."""
    if not links:
        return {}
    rows = db.session.execute(
        select(Recipient.id, Recipient.token_hash)
        .join(Envelope, Envelope.id == Recipient.envelope_id)
        .where(Recipient.envelope_id == envelope_id, Envelope.status == "sent")
    ).all()
    current: dict[int, str | None] = {row[0]: row[1] for row in rows}
    return {
        rid: link
        for rid, link in links.items()
        if current.get(rid) and current[rid] == token_digest(link.rsplit("/", 1)[-1])
    }
