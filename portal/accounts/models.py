"""Staff accounts: teams, users, recovery codes and server-side sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.extensions import Model


class Role(enum.StrEnum):
    """What a staff member may do."""

    AGENT = "agent"
    COMPLIANCE = "compliance"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return {"agent": "Agent", "compliance": "Compliance", "admin": "Admin"}[self.value]


class Team(Model):
    """A group of staff whose envelopes and templates are shared among them."""

    __tablename__ = "team"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("team", str(self.id), self.name)


class User(UserMixin, Model):
    """A staff member: agent, compliance manager or admin."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default=Role.AGENT.value)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str] = mapped_column(Text)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    totp_pending_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blob.id"))
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)  # no longer counted
    # Until when only the places the user signed in from recently may try: set when the
    # account reaches LOCKOUT_ACCOUNT_HOURLY failures (see ``signin_throttle``).
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    # An API key's service user (portal.integrations.keys): it acts for the key, never signs in.
    service: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    team: Mapped[Team | None] = relationship(lazy="joined")

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        # An API key's user is named by the key ("API key: CRM sync"), its address is made up.
        return ("user", str(self.id), self.name if self.service else self.email)

    @property
    def is_active(self) -> bool:  # Flask-Login asks this
        return bool(self.active)

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    @property
    def mfa_enrolled(self) -> bool:
        return self.totp_blob_id is not None and self.totp_confirmed_at is not None

    def is_locked(self) -> bool:
        return self.locked_until is not None and clock.as_utc(self.locked_until) > clock.utcnow()

    def has_role(self, *roles: Role | str) -> bool:
        return self.role in {str(r) for r in roles}


class RecoveryCode(Model):
    """A single-use code that stands in for the authenticator app; only its hash is kept."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)


class StaffSession(Model):
    """A signed-in staff session; the cookie holds a random id, the table only its hash."""

    __tablename__ = "staff_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    user: Mapped[User] = relationship()

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("staff_session", self.id[:16], "")


class SigninThrottle(Model):
    """Failed sign-in attempts on one account from one source (an IP address, IPv6 per /64).

    Failures lock the source out of the account, not the account itself: whoever guesses
    from one place cannot keep the real user out from another (OWASP ASVS 2.2.1).
    """

    __tablename__ = "signin_throttle"
    __table_args__ = (UniqueConstraint("user_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since the last success or lock
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def is_locked(self) -> bool:
        return self.locked_until is not None and clock.as_utc(self.locked_until) > clock.utcnow()
