"""API keys and the stored answers of ``Idempotency-Key`` requests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.accounts.models import Team, User
from portal.extensions import Model

SCOPES: dict[str, str] = {
    "templates:read": "Read approved templates",
    "envelopes:read": "Read envelopes, their documents and timelines",
    "envelopes:write": "Send, void, resend and remind envelopes",
    "bulk:write": "Create bulk batches",
    "records:read": "Reserved for the records endpoints (no endpoint yet)",
}


class ApiKey(Model):
    """A team's key for the REST API. Only the SHA-256 of the secret is kept; the key acts
    through its own service user (``user``), so every operation and audit event names it."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists: "psk_AbCd1234"
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated, sorted
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_ip: Mapped[str | None] = mapped_column(String(64))

    team: Mapped[Team] = relationship(lazy="joined")
    actor: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("api_key", str(self.id), self.name)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope_list

    def expired(self, now: datetime | None = None) -> bool:
        now = now or clock.utcnow()
        return self.expires_at is not None and clock.as_utc(self.expires_at) <= now

    def usable(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and not self.expired(now)


class IdempotentRequest(Model):
    """One ``Idempotency-Key`` of one API key: the request's hash and, once answered, the
    answer, kept for 24 hours. No answer yet: the request is still in flight."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
