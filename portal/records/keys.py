"""Customers' personal data in the audit chain, encrypted under a key per envelope
(crypto-shredding).

The chain is append-only and hashed, so nothing in it can be erased. The personal fields of
an envelope's events are therefore stored encrypted: the IP address, the browser, the actor's
label when the actor is a recipient (their email), and every data value whose key is not in
``CLEAR_KEYS`` (ids, counts, codes, hashes...). The event keeps the clear values and
``"personal": "v1:<envelope id>:<base64 nonce + ciphertext>"`` (AES-256-GCM of the JSON of
the personal part under the envelope's key, the event's sequence number as associated
data); its IP, browser and a recipient's label columns are NULL. The hash covers what is
stored, so verification is unchanged.

Each envelope's key (32 random bytes) is a ``personal_key`` row, wrapped under DATA_KEY with
the envelope id as associated data, made when the envelope's first event with personal data
is recorded. ``shred`` destroys it (a purge): from then on its events read as ``erased``,
and an event recorded later for the envelope keeps no personal part at all.

``audit_ref`` is the chain's mutable side index, one row per event: the envelope it
concerns, the team, and the IP in clear for searching (cleared by ``shred``).

Unwrapped keys are cached for one transaction of one session only (another process may
shred a key at any time).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    column,
    event,
    select,
    table,
    update,
)
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from portal import clock, inserts, storage
from portal.extensions import Model, db

VERSION = "v1"
PERSONAL = "personal"  # the data key that holds the sealed personal part
ERASED = "erased"  # the personal part's place once the key is gone; and what readers show
KEY_BYTES = 32

# Data values kept in clear: ids, counts, codes, kinds, hashes, versions, times. Every other
# value of an envelope's event is personal (the default), e.g. emails (even masked), names,
# reasons and comments typed by people, ticket references, recipients' lists, errors.
CLEAR_KEYS = frozenset(
    {
        "adoption", "attempt", "attempts", "certificate_sha256", "changed", "count", "created",
        "disclosure", "document_sha256", "dsn_id", "earlier", "envelope", "envelope_id",
        "envelopes", "expires_at", "failed", "field", "fields", "final", "interim", "kind",
        "message_id", "method", "not_created", "original_sha256", "outbox_id", "recipient",
        "recipient_id", "row", "rows", "sealed_sha256", "sha256", "size", "status", "status_code",
        "template", "timestamped", "values", "version", "via", "what",
    }
)  # fmt: skip


# Values that are not personal in one kind of event only (a purge's reason and policy are
# the record of why it was purged: they must outlive the key).
CLEAR_BY_EVENT: dict[str, frozenset[str]] = {
    "envelope.purged": frozenset({"reason", "policy", "template"}),
}


def clear_fields(event: str, names: Iterable[str]) -> None:
    """Declare data values of one kind of envelope event as not personal (kept in clear,
    and readable after the envelope's key is shredded). Call it at import, next to
    ``audit.add_labels``."""
    CLEAR_BY_EVENT[event] = CLEAR_BY_EVENT.get(event, frozenset()) | frozenset(names)


class PersonalKey(Model):
    """One envelope's key for the personal fields of its audit events, wrapped under DATA_KEY.

    After ``shred`` the row stays with no key (``wrapped`` NULL, ``shredded_at`` set): later
    events of the envelope then keep no personal part."""

    __tablename__ = "personal_key"

    envelope_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key_id: Mapped[str | None] = mapped_column(String(16), index=True)  # DATA_KEY fingerprint
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary(storage.NONCE_BYTES))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    shredded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRef(Model):
    """The audit chain's mutable side index: what searches filter on, one row per event."""

    __tablename__ = "audit_ref"

    # The event's sequence number (no foreign key: the chain's rows are never deleted, and a
    # tampering drill that deletes one must find the chain broken, not this index in the way).
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    envelope_id: Mapped[int | None] = mapped_column(Integer, index=True)
    team_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))


_KEYS = cast(Table, PersonalKey.__table__)
_REFS = cast(Table, AuditRef.__table__)
_ENVELOPES = table("envelope", column("id"), column("team_id"))
_CACHE = "portal.personal_keys"


@event.listens_for(Session, "after_transaction_end")
def _forget_keys(session: Session, transaction: SessionTransaction) -> None:
    # Unwrapped keys live as long as the transaction that read them, no longer.
    if transaction.parent is None:
        session.info.pop(_CACHE, None)


def envelope_of(subject_type: str | None, subject_id: str | None) -> int | None:
    """The envelope whose key seals an event's personal fields (None: the event has none)."""
    if subject_type == "envelope" and subject_id and subject_id.isdigit():
        return int(subject_id)
    return None


def _key_aad(envelope_id: int) -> str:
    return f"personal-key:{envelope_id}"


def _event_aad(seq: int) -> bytes:
    return f"audit-event:{seq}".encode("ascii")


# (``json.dumps`` with these options builds an encoder per call; one is enough)
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encode(value: Mapping[str, Any]) -> bytes:
    return _JSON.encode(value).encode()


class Ring:
    """The envelope keys one operation uses: each read (and unwrapped) once, new ones made
    for envelopes that have none, written with the events (``flush``).

    ``conn`` is what runs the statements (the session by default; the migration passes its
    connection) and ``cache`` where unwrapped keys are kept (by default the session's, for
    the current transaction).
    """

    def __init__(self, conn: Any = None, cache: dict[int, bytes | None] | None = None) -> None:
        self.conn = conn if conn is not None else db.session
        if cache is None:
            cache = db.session.info.setdefault(_CACHE, {})
        self.cache: dict[int, bytes | None] = cache
        self.data_key = storage.current_key()
        self.key_id = storage.key_fingerprint(self.data_key)
        self.new_keys: list[dict[str, Any]] = []
        self.absent: set[int] = set()  # looked up: no key yet
        self.teams: dict[int, int | None] = {}
        self.ciphers: dict[int, AESGCM] = {}  # one per envelope key used here
        self.allowed: dict[str, frozenset[str]] = {}  # clear data keys, by event

    # ------------------------------------------------------------ keys

    def load(self, envelope_ids: Iterable[int]) -> None:
        """Read (one query) and unwrap the keys of these envelopes not read yet."""
        wanted = sorted({e for e in envelope_ids if e not in self.cache and e not in self.absent})
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            found = self.conn.execute(
                select(_KEYS.c.envelope_id, _KEYS.c.nonce, _KEYS.c.wrapped).where(
                    _KEYS.c.envelope_id.in_(part)
                )
            ).all()
            self.absent.update(part)
            for envelope_id, nonce, wrapped in found:
                self.absent.discard(envelope_id)
                self.cache[envelope_id] = (
                    None
                    if wrapped is None
                    else storage.unwrap(self.data_key, _key_aad(envelope_id), nonce, wrapped)
                )

    def created(self, teams: Mapping[int, int | None]) -> None:
        """Envelopes this transaction has just inserted (id -> team): none has a key yet
        (envelope rows are never deleted, so their ids are new), so neither their keys nor
        their teams are looked up."""
        for envelope_id, team in teams.items():
            if envelope_id not in self.cache:
                self.absent.add(envelope_id)
            self.teams[envelope_id] = team

    def key(self, envelope_id: int) -> bytes | None:
        """The envelope's key, made now if it has none; None once shredded."""
        if envelope_id not in self.cache and envelope_id not in self.absent:
            self.load([envelope_id])
        if envelope_id not in self.cache:
            raw = os.urandom(KEY_BYTES)
            nonce, wrapped = storage.wrap(self.data_key, _key_aad(envelope_id), raw)
            self.new_keys.append(
                {
                    "envelope_id": envelope_id,
                    "key_id": self.key_id,
                    "nonce": nonce,
                    "wrapped": wrapped,
                    "created_at": clock.utcnow(),
                    "shredded_at": None,
                }
            )
            self.cache[envelope_id] = raw
        return self.cache[envelope_id]

    # ------------------------------------------------------------ teams

    def load_teams(self, envelope_ids: Iterable[int]) -> None:
        """The teams of these envelopes (one query), for ``audit_ref``."""
        wanted = sorted({e for e in envelope_ids if e not in self.teams})
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            self.teams.update(
                dict.fromkeys(part)
                | dict(
                    self.conn.execute(
                        select(_ENVELOPES.c.id, _ENVELOPES.c.team_id).where(
                            _ENVELOPES.c.id.in_(part)
                        )
                    ).all()
                )
            )

    def team(self, subject: Any, actor: Any, envelope_id: int | None) -> int | None:
        """The team an event belongs to: its envelope's, else its staff actor's."""
        if envelope_id is not None:
            own = getattr(subject, "team_id", None)
            if own is not None or hasattr(subject, "team_id"):
                return cast(int | None, own)
            if envelope_id not in self.teams:
                self.load_teams([envelope_id])
            return self.teams.get(envelope_id)
        found = getattr(subject, "team_id", None)
        if found is None:
            found = getattr(actor, "team_id", None)
        return cast(int | None, found)

    # ------------------------------------------------------------ events

    def seal(self, envelope_id: int, row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Move an event's personal fields out of ``row`` (its columns: ``actor_type``,
        ``actor_label``, ``ip``, ``user_agent``, ``seq``) and ``data`` into the sealed
        ``personal`` value; returns the data as stored."""
        personal: dict[str, Any] = {}
        if row["actor_type"] == "recipient" and row["actor_label"]:
            personal["actor_label"] = row["actor_label"]
            row["actor_label"] = None
        for name in ("ip", "user_agent"):
            if row[name]:
                personal[name] = row[name]
                row[name] = None
        allowed = self.allowed.get(row["event"])
        if allowed is None:
            allowed = CLEAR_KEYS | CLEAR_BY_EVENT.get(row["event"], frozenset())
            self.allowed[row["event"]] = allowed
        clear = {k: v for k, v in data.items() if k in allowed}
        if len(clear) < len(data):
            personal["data"] = {k: v for k, v in data.items() if k not in allowed}
        if personal:
            key = self.key(envelope_id)
            if key is None:
                clear[PERSONAL] = ERASED
            else:
                cipher = self.ciphers.get(envelope_id)
                if cipher is None:
                    cipher = self.ciphers[envelope_id] = AESGCM(key)
                clear[PERSONAL] = _sealed(cipher, envelope_id, row["seq"], personal)
        return clear

    def flush(self, refs: list[dict[str, Any]]) -> None:
        """Write the keys made so far and the events' ``audit_ref`` rows."""
        if self.new_keys:
            inserts.insert_rows(self.conn, _KEYS, self.new_keys)
            self.new_keys = []
        if refs:
            inserts.insert_rows(self.conn, _REFS, refs)


def seal(key: bytes, envelope_id: int, seq: int, personal: Mapping[str, Any]) -> str:
    """The stored form of an event's personal part: ``v1:<envelope id>:<base64>``."""
    return _sealed(AESGCM(key), envelope_id, seq, personal)


def _sealed(cipher: AESGCM, envelope_id: int, seq: int, personal: Mapping[str, Any]) -> str:
    # ``seal`` with the key's cipher object made once (a bulk send seals thousands)
    nonce = os.urandom(storage.NONCE_BYTES)
    sealed = nonce + cipher.encrypt(nonce, _encode(personal), _event_aad(seq))
    return f"{VERSION}:{envelope_id}:{base64.b64encode(sealed).decode('ascii')}"


def token_envelope(token: Any) -> int | None:
    """The envelope whose key opens a stored personal part (None: not a sealed part)."""
    if not isinstance(token, str):
        return None
    version, _, rest = token.partition(":")
    envelope, _, _ = rest.partition(":")
    return int(envelope) if version == VERSION and envelope.isdigit() else None


def open_sealed(key: bytes, seq: int, token: str) -> dict[str, Any]:
    """The personal part a ``seal`` value holds."""
    return open_with(AESGCM(key), seq, token)


_DECODE = json.JSONDecoder().decode


def open_with(cipher: AESGCM, seq: int, token: str) -> dict[str, Any]:
    """``open_sealed`` with the key's cipher object made once (an export opens thousands)."""
    raw = binascii.a2b_base64(token[token.rindex(":") + 1 :])
    try:
        plain = cipher.decrypt(
            raw[: storage.NONCE_BYTES], raw[storage.NONCE_BYTES :], b"audit-event:%d" % seq
        )
    except InvalidTag as exc:
        raise storage.BlobError(
            f"The personal fields of audit event {seq} do not decrypt."
        ) from exc
    value = _DECODE(plain.decode())
    return value if isinstance(value, dict) else {}


# Keys' rows of a list of envelopes, the list as one parameter (see ``Opener._rows``).
_KEY_ROWS: dict[str, tuple[str, Callable[[list[int]], Any]]] = {
    "postgresql": (
        "SELECT envelope_id, nonce, wrapped FROM personal_key"
        " WHERE envelope_id = ANY(%s) AND wrapped IS NOT NULL",
        list,
    ),
    "sqlite": (
        "SELECT envelope_id, nonce, wrapped FROM personal_key"
        " WHERE envelope_id IN (SELECT value FROM json_each(?)) AND wrapped IS NOT NULL",
        json.dumps,
    ),
}


class Opener:
    """The envelope keys of a long read (an export of many batches), as cipher objects.

    ``ciphers`` reads the keys' rows in the caller's transaction every time it is asked (a
    key shredded meanwhile is seen at once, as with ``Ring``) and unwraps them with one
    cipher of DATA_KEY; nothing is kept between calls (an unwrap costs less than a micro-
    second, and a cipher object about 2.4 KB of memory)."""

    def __init__(self) -> None:
        self.wrapping = AESGCM(storage.current_key())

    def ciphers(self, conn: Any, envelope_ids: Iterable[int]) -> dict[int, AESGCM]:
        """The cipher of each of these envelopes that has a key (absent: none, or shredded)."""
        out: dict[int, AESGCM] = {}
        unwrap = self.wrapping.decrypt
        for envelope_id, nonce, wrapped in self._rows(conn, sorted(set(envelope_ids))):
            aad = _key_aad(envelope_id)
            try:
                out[envelope_id] = AESGCM(unwrap(bytes(nonce), bytes(wrapped), aad.encode()))
            except InvalidTag as exc:  # (as ``storage.unwrap`` says it)
                raise storage.BlobError(
                    f"{aad} could not be decrypted: the DATA_KEY is wrong or the stored bytes"
                    " were changed."
                ) from exc
        return out

    @staticmethod
    def _rows(conn: Any, wanted: list[int]) -> list[Any]:
        # One statement with the ids as one parameter on the driver's cursor (an IN list of
        # hundreds of parameters, built and parsed again for each batch, cost more than the
        # batch's decryption); other databases through SQLAlchemy, 500 ids a statement.
        statement = _KEY_ROWS.get(conn.dialect.name)
        if statement is not None:
            sql, as_parameter = statement
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                cursor.execute(sql, (as_parameter(wanted),))
                return list(cursor.fetchall())
            finally:
                cursor.close()
        found: list[Any] = []
        for start in range(0, len(wanted), 500):
            found += conn.execute(
                select(_KEYS.c.envelope_id, _KEYS.c.nonce, _KEYS.c.wrapped).where(
                    _KEYS.c.envelope_id.in_(wanted[start : start + 500]),
                    _KEYS.c.wrapped.is_not(None),
                )
            ).all()
        return found


def shred(envelope_id: int) -> None:
    """Destroy the envelope's key (its events' personal fields become unreadable for good)
    and clear its ``audit_ref`` IPs, in the caller's transaction; idempotent.

    The row stays, without the key, so that later events of the envelope keep no personal
    part. Takes the chain's head lock first, like ``audit.record``: no event is being
    sealed under the key meanwhile.
    """
    from portal import audit

    audit.lock_head()
    now = clock.utcnow()
    done = db.session.execute(
        update(_KEYS)
        .where(_KEYS.c.envelope_id == envelope_id)
        .values(key_id=None, nonce=None, wrapped=None)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        db.session.execute(
            _KEYS.insert().values(envelope_id=envelope_id, created_at=now, shredded_at=now)
        )
    db.session.execute(
        update(_KEYS)
        .where(_KEYS.c.envelope_id == envelope_id, _KEYS.c.shredded_at.is_(None))
        .values(shredded_at=now)
    )
    db.session.execute(update(_REFS).where(_REFS.c.envelope_id == envelope_id).values(ip=None))
    db.session.info.setdefault(_CACHE, {})[envelope_id] = None


def shredded(envelope_id: int) -> bool:
    """Whether the envelope's key was destroyed."""
    return (
        db.session.execute(
            select(_KEYS.c.shredded_at).where(_KEYS.c.envelope_id == envelope_id)
        ).scalar()
        is not None
    )


def rotate(old_key: bytes, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Re-wrap every envelope key wrapped under ``old_key`` with the current DATA_KEY,
    committing after each batch (an interrupted rotation resumes); returns how many."""
    new_key = storage.current_key()
    old_id, new_id = storage.key_fingerprint(old_key), storage.key_fingerprint(new_key)
    if old_id == new_id:
        raise storage.BlobError("The old key is the same as DATA_KEY; nothing to rotate.")
    done = 0
    while True:
        rows = db.session.execute(
            select(_KEYS.c.envelope_id, _KEYS.c.nonce, _KEYS.c.wrapped)
            .where(_KEYS.c.key_id == old_id, _KEYS.c.wrapped.is_not(None))
            .order_by(_KEYS.c.envelope_id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        for envelope_id, nonce, wrapped in rows:
            aad = _key_aad(envelope_id)
            raw = storage.unwrap(old_key, aad, nonce, wrapped)
            new_nonce, new_wrapped = storage.wrap(new_key, aad, raw)
            db.session.execute(
                update(_KEYS)
                .where(_KEYS.c.envelope_id == envelope_id)
                .values(key_id=new_id, nonce=new_nonce, wrapped=new_wrapped)
            )
        db.session.commit()
        done += len(rows)
        if progress:
            progress(done)


def unreadable_key_ids() -> list[str]:
    """Fingerprints of keys, other than the current DATA_KEY, that still wrap envelope keys."""
    current = storage.key_fingerprint(storage.current_key())
    return [
        key_id
        for key_id in db.session.execute(
            select(_KEYS.c.key_id).where(_KEYS.c.key_id.is_not(None)).distinct()
        ).scalars()
        if key_id != current
    ]
