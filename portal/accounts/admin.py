"""Administration of staff accounts and teams. Every change is in the audit chain."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from portal import audit, storage
from portal.accounts import credentials, sessions, throttle
from portal.accounts.models import RecoveryCode, Role, Team, User
from portal.extensions import db


class AccountError(ValueError):
    """A change that cannot be made; the message says why."""


def find_team(name: str) -> Team | None:
    """A team by its exact name."""
    return db.session.execute(select(Team).where(Team.name == name.strip())).scalar_one_or_none()


def create_team(name: str, by: User | str) -> Team:
    """Create a team; names are unique."""
    clean = name.strip()
    if not clean:
        raise AccountError("Give the team a name.")
    if find_team(clean):
        raise AccountError(f"A team called {clean!r} already exists.")
    team = Team(name=clean)
    db.session.add(team)
    db.session.flush()
    audit.record("team.created", actor=by, subject=team, data={"name": clean})
    db.session.commit()
    return team


def email_taken(email: str) -> bool:
    """Whether a staff account already uses this email."""
    address = email.strip().lower()
    return db.session.execute(select(User.id).where(User.email == address)).first() is not None


def create_user(
    email: str,
    name: str,
    role: Role | str,
    team: Team | None,
    by: User | str,
    password: str | None = None,
) -> tuple[User, str]:
    """Create an account; returns it and its password (one-time unless given)."""
    address = email.strip().lower()
    if email_taken(address):
        raise AccountError(f"An account with {address} already exists.")
    one_time = password is None
    secret = password or credentials.generate_password()
    user = User(
        email=address,
        name=name.strip() or address,
        role=Role(role).value,
        team=team,
        password_hash=credentials.hash_password(secret),
        must_change_password=one_time,
        active=True,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created",
        actor=by,
        subject=user,
        data={"email": address, "role": user.role, "team": team.name if team else None},
    )
    db.session.commit()
    return user, secret


def _active_admins() -> int:
    return int(
        db.session.execute(
            select(func.count(User.id)).where(User.role == Role.ADMIN.value, User.active.is_(True))
        ).scalar_one()
    )


def _guard_last_admin(user: User) -> None:
    if user.role == Role.ADMIN.value and user.active and _active_admins() <= 1:
        raise AccountError("This is the last active admin; make someone else an admin first.")


def set_role(user: User, role: Role | str, by: User) -> None:
    """Change a user's role."""
    new = Role(role).value
    if new == user.role:
        return
    if new != Role.ADMIN.value:
        _guard_last_admin(user)
    old, user.role = user.role, new
    audit.record("user.role_changed", actor=by, subject=user, data={"from": old, "to": new})
    db.session.commit()


def set_team(user: User, team: Team | None, by: User) -> None:
    """Move a user to another team (or none)."""
    if (team.id if team else None) == user.team_id:
        return
    old = user.team.name if user.team else None
    user.team = team
    audit.record(
        "user.team_changed",
        actor=by,
        subject=user,
        data={"from": old, "to": team.name if team else None},
    )
    db.session.commit()


def deactivate(user: User, by: User) -> None:
    """Stop a user from signing in and end their sessions; their records stay."""
    if not user.active:
        return
    if user.id == by.id:
        raise AccountError("You cannot deactivate your own account.")
    _guard_last_admin(user)
    user.active = False
    ended = sessions.end_all(user, "deactivated")
    audit.record("user.deactivated", actor=by, subject=user, data={"sessions_ended": ended})
    db.session.commit()


def reactivate(user: User, by: User) -> None:
    """Let a deactivated user sign in again."""
    if user.active:
        return
    user.active = True
    throttle.unlock(user)
    audit.record("user.reactivated", actor=by, subject=user)
    db.session.commit()


def unlock(user: User, by: User) -> None:
    """Lift every lockout of the account (from any source) before it runs out."""
    if not throttle.is_locked(user):
        return
    throttle.unlock(user)
    audit.record("user.unlocked", actor=by, subject=user)
    db.session.commit()


def reset_mfa(user: User, by: User) -> None:
    """Forget the user's authenticator and recovery codes; they enrol again at next sign-in."""
    blob_ids = [b for b in (user.totp_blob_id, user.totp_pending_blob_id) if b]
    user.totp_blob_id = None
    user.totp_pending_blob_id = None
    for blob_id in blob_ids:
        storage.delete(blob_id)
    user.totp_confirmed_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    ended = sessions.end_all(user, "mfa_reset")
    audit.record("user.mfa_reset", actor=by, subject=user, data={"sessions_ended": ended})
    db.session.commit()


def end_sessions(user: User, by: User) -> int:
    """End every live session of the user; they must sign in again."""
    ended = sessions.end_all(user, "ended_by_admin")
    audit.record("user.sessions_ended", actor=by, subject=user, data={"count": ended})
    db.session.commit()
    return ended


def reset_password(user: User, by: User) -> str:
    """Give the user a new one-time password and end their sessions."""
    secret = credentials.generate_password()
    user.password_hash = credentials.hash_password(secret)
    user.must_change_password = True
    throttle.unlock(user)
    ended = sessions.end_all(user, "password_reset")
    audit.record("user.password_reset", actor=by, subject=user, data={"sessions_ended": ended})
    db.session.commit()
    return secret
