"""API keys: made, shown once, found by their hash, revoked; each acts through a service user.

A key is ``psk_`` and 43 characters of base64url: 256 bits from ``secrets``. Only its SHA-256
is stored. A slow password hash (argon2) protects secrets people choose, which are guessable
and so must be expensive to try; a 256-bit random key cannot be guessed or brute-forced from
its hash at any speed, so a fast hash loses nothing and lets every request find its key by
one indexed lookup of the hash. The first 12 characters (``psk_`` and 8 more) are kept in the
clear as the key's visible prefix, so admins can tell keys apart.

Every key has its own service ``User`` of the key's team (``User.service``: it can never sign
in and is not listed among staff), named "API key: <name>": the operations modules take it
as ``by=``, so every envelope and audit event made through the API names the key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update

from portal import audit, clock
from portal.accounts.models import Role, Team, User
from portal.extensions import db, read_row, write_lock
from portal.integrations.models import SCOPES, ApiKey

__all__ = [
    "EXPIRY_DAYS",
    "SCOPES",
    "Caller",
    "KeyError_",
    "Made",
    "create",
    "find",
    "note_use",
    "revoke",
]

TOKEN_PREFIX = "psk_"  # noqa: S105 (a marker, not a secret)
SHOWN_PREFIX = 12  # characters of a key kept in the clear
EXPIRY_DAYS: dict[str, int | None] = {"never": None, "30": 30, "90": 90, "365": 365}
LAST_USE_EVERY = timedelta(minutes=1)  # last-used time and IP are written at most this often

audit.add_labels(
    {
        "api_key.created": "API key created",
        "api_key.revoked": "API key revoked",
    }
)


class KeyError_(ValueError):
    """A key that cannot be made as asked (the message says why)."""


@dataclass(frozen=True)
class Made:
    """A new key and its secret, which is shown once and never again."""

    key: ApiKey
    secret: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(team: Team, name: str, scopes: list[str], expiry: str, by: User) -> Made:
    """Make a key for ``team`` (and its service user); the caller commits."""
    name = " ".join(name.split())
    if not name or len(name) > 80:
        raise KeyError_("Give the key a name of 1 to 80 characters.")
    chosen = sorted(set(scopes))
    if not chosen or any(scope not in SCOPES for scope in chosen):
        raise KeyError_("Choose at least one of the listed scopes.")
    if expiry not in EXPIRY_DAYS:
        raise KeyError_("Choose when the key expires.")
    write_lock()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.utcnow()
    days = EXPIRY_DAYS[expiry]
    actor = User(
        email=f"api-key-{secrets.token_hex(8)}@api-keys.invalid",
        name=f"API key: {name}"[:200],
        role=Role.AGENT.value,
        team_id=team.id,
        active=True,
        password_hash="!",  # noqa: S106 never matches: the user cannot sign in (and sign-in skips it)
        service=True,
    )
    db.session.add(actor)
    db.session.flush()
    key = ApiKey(
        team_id=team.id,
        name=name,
        prefix=secret[:SHOWN_PREFIX],
        secret_hash=digest(secret),
        scopes=" ".join(chosen),
        user_id=actor.id,
        created_by_id=by.id,
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        "api_key.created",
        actor=by,
        subject=key,
        data={
            "name": name,
            "team": team.name,
            "prefix": key.prefix,
            "scopes": chosen,
            "expires_at": audit.iso_time(key.expires_at) if key.expires_at else None,
        },
    )
    return Made(key, secret)


def revoke(key: ApiKey, by: User) -> bool:
    """Revoke a key (and stop its service user); False when it was revoked already."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = clock.utcnow()
    key.revoked_by_id = by.id
    key.actor.active = False
    audit.record(
        "api_key.revoked", actor=by, subject=key, data={"name": key.name, "prefix": key.prefix}
    )
    return True


@dataclass(frozen=True)
class Caller:
    """The key a request came with, read without the ORM (``find``): what every call needs
    (its id, team and scopes). ``actor`` loads the user an operation acts as."""

    id: int
    team_id: int
    user_id: int
    scopes: str
    last_used_at: datetime | None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes.split()

    @property
    def actor(self) -> User:
        """The key's service user, whom the operations take as ``by``."""
        return db.session.get_one(User, self.user_id)


_KEYS = ApiKey.__table__
_FIND = select(
    _KEYS.c.id,
    _KEYS.c.team_id,
    _KEYS.c.user_id,
    _KEYS.c.scopes,
    _KEYS.c.last_used_at,
    _KEYS.c.expires_at,
).where(_KEYS.c.secret_hash == bindparam("hash"), _KEYS.c.revoked_at.is_(None))


def find(secret: str) -> Caller | None:
    """The usable key with this secret, or None (unknown, malformed, expired or revoked).

    Every API call asks this, so it is one indexed read of committed rows (``read_row``),
    not an ORM load of the key, its team and its user."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    row = read_row(_FIND, {"hash": digest(secret)})
    if row is None:
        return None
    key_id, team_id, user_id, scopes, last_used_at, expires_at = row
    if expires_at is not None and clock.as_utc(expires_at) <= clock.utcnow():
        return None
    return Caller(key_id, team_id, user_id, scopes, last_used_at)


def note_use(key: Caller, ip: str) -> None:
    """Remember when and from where the key was last used, at most once a minute (not a
    write per request). Called before the view changes anything: it commits on its own."""
    now = clock.utcnow()
    last = key.last_used_at
    if last is not None and now - clock.as_utc(last) < LAST_USE_EVERY:
        return
    key_id = key.id
    write_lock()  # (a request that reads ends its read-only transaction here)
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USE_EVERY),
        )
        .values(last_used_at=now, last_used_ip=ip[:64] or None)
        # (not evaluated against the loaded key: SQLite gives it a naive time, ``now`` is aware)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def team_keys(team_ids: list[int] | None) -> list[ApiKey]:
    """Keys, newest first: of the given teams, or all (None)."""
    stmt = select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
    if team_ids is not None:
        stmt = stmt.where(ApiKey.team_id.in_(team_ids))
    return list(db.session.execute(stmt).scalars())


def expires_label(expires_at: datetime | None) -> str:
    return "Never" if expires_at is None else clock.as_utc(expires_at).strftime("%Y-%m-%d")
