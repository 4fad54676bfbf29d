"""Server-side staff sessions: started at sign-in, ended by logout, admins or timeouts."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select

from portal import audit, clock, jobs
from portal.accounts.models import StaffSession, User
from portal.extensions import db, write_lock

TOUCH_EVERY = timedelta(seconds=60)


def _digest(raw_sid: str) -> str:
    return hashlib.sha256(raw_sid.encode()).hexdigest()


def _limits() -> tuple[timedelta, timedelta]:
    cfg = current_app.config
    return (
        timedelta(minutes=int(cfg["SESSION_IDLE_MINUTES"])),
        timedelta(hours=int(cfg["SESSION_ABSOLUTE_HOURS"])),
    )


def start(user: User) -> str:
    """Open a new session for the user (in the caller's transaction); return the cookie id."""
    raw = secrets.token_urlsafe(32)
    now = clock.utcnow()
    ip, agent = audit.request_origin()
    db.session.add(
        StaffSession(
            id=_digest(raw), user=user, created_at=now, last_seen_at=now, ip=ip, user_agent=agent
        )
    )
    return raw


def expiry_reason(staff_session: StaffSession) -> str | None:
    """'idle' or 'absolute' when the session has run out, else None."""
    idle, absolute = _limits()
    now = clock.utcnow()
    if now - clock.as_utc(staff_session.created_at) >= absolute:
        return "absolute"
    if now - clock.as_utc(staff_session.last_seen_at) >= idle:
        return "idle"
    return None


def _end(staff_session: StaffSession, reason: str) -> None:
    staff_session.ended_at = clock.utcnow()
    staff_session.end_reason = reason


def resume(raw_sid: str | None, user_id: int) -> tuple[User | None, str | None]:
    """The user of a live session, or (None, why it is not live). Commits timeouts."""
    if not raw_sid:
        return None, "missing"
    staff_session = db.session.get(StaffSession, _digest(raw_sid))
    if staff_session is None or staff_session.user_id != user_id:
        return None, "missing"
    if staff_session.ended_at is not None:
        return None, staff_session.end_reason or "ended"
    user = staff_session.user
    reason = expiry_reason(staff_session)
    if reason is not None:
        return _time_out(staff_session.id, reason)
    if not user.active:
        return None, "inactive"
    now = clock.utcnow()
    if now - clock.as_utc(staff_session.last_seen_at) >= TOUCH_EVERY:  # at most once a minute
        write_lock()
        staff_session.last_seen_at = now
        db.session.commit()
    return user, None


def _time_out(session_id: str, reason: str) -> tuple[None, str]:
    """End a session that ran out, once (another request may have ended it a moment ago)."""
    write_lock()
    staff_session = db.session.execute(
        select(StaffSession)
        .where(StaffSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if staff_session.ended_at is not None:
        return None, staff_session.end_reason or "ended"
    user = staff_session.user
    _end(staff_session, f"{reason}_timeout")
    audit.record("auth.session.timed_out", actor=user, subject=user, data={"timeout": reason})
    db.session.commit()
    return None, f"{reason}_timeout"


def end(raw_sid: str | None, reason: str) -> StaffSession | None:
    """End one session by its cookie id (in the caller's transaction)."""
    if not raw_sid:
        return None
    staff_session = db.session.get(StaffSession, _digest(raw_sid))
    if staff_session is not None and staff_session.ended_at is None:
        _end(staff_session, reason)
    return staff_session


def end_all(user: User, reason: str) -> int:
    """End every live session of a user (in the caller's transaction); return how many."""
    live = db.session.execute(
        select(StaffSession).where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
    ).scalars()
    count = 0
    for staff_session in live:
        _end(staff_session, reason)
        count += 1
    return count


def live_sessions(user: User) -> list[StaffSession]:
    """The user's sessions that have not ended, newest first."""
    return list(
        db.session.execute(
            select(StaffSession)
            .where(StaffSession.user_id == user.id, StaffSession.ended_at.is_(None))
            .order_by(StaffSession.created_at.desc())
        ).scalars()
    )


@jobs.periodic(every=300)
def expire_sessions() -> str:
    """End sessions that ran out, so the audit trail shows the timeout even if nobody returns."""
    idle, absolute = _limits()
    now = clock.utcnow()
    stale = db.session.execute(
        select(StaffSession).where(
            StaffSession.ended_at.is_(None),
            or_(
                StaffSession.last_seen_at <= now - idle,
                StaffSession.created_at <= now - absolute,
            ),
        )
    ).scalars()
    count = 0
    for staff_session in stale:
        reason = expiry_reason(staff_session) or "idle"
        _end(staff_session, f"{reason}_timeout")
        audit.record(
            "auth.session.timed_out",
            actor="system",
            subject=staff_session.user,
            data={"timeout": reason},
        )
        count += 1
    db.session.commit()
    return f"{count} sessions ended"
