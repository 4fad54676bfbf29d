"""Signing in: password, then always a TOTP code (or a recovery code); enrolment; lockout."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from portal import audit, clock, storage
from portal.accounts import credentials, sessions
from portal.accounts.models import RecoveryCode, User
from portal.extensions import db

GENERIC_FAILURE = "That email and password do not match an active account."
WRONG_CODE = "That code is not right. Check your authenticator app and try again."
REPLAYED_CODE = "That code was already used. Wait for the next code in your app."


@dataclass
class Outcome:
    """What a sign-in step decided, and what to tell the person."""

    ok: bool
    user: User | None = None
    message: str = ""
    target: str = ""
    recovery_codes: list[str] = field(default_factory=list)


def _lock_message(user: User) -> str:
    assert user.locked_until is not None
    left = clock.as_utc(user.locked_until) - clock.utcnow()
    minutes = max(1, int(left.total_seconds() // 60) + 1)
    return (
        f"This account is locked after too many failed attempts. Try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}, or ask an admin to unlock it."
    )


def _fail(user: User, event: str, reason: str) -> Outcome:
    """Count a failed password or code attempt; lock the account at the threshold."""
    cfg = current_app.config
    user.failed_attempts = (user.failed_attempts or 0) + 1
    audit.record(
        event, actor=user, subject=user, data={"reason": reason, "attempt": user.failed_attempts}
    )
    if user.failed_attempts >= int(cfg["LOCKOUT_THRESHOLD"]):
        user.locked_until = clock.utcnow() + timedelta(minutes=int(cfg["LOCKOUT_MINUTES"]))
        audit.record(
            "auth.account.locked",
            actor=user,
            subject=user,
            data={"failed_attempts": user.failed_attempts, "minutes": int(cfg["LOCKOUT_MINUTES"])},
        )
        user.failed_attempts = 0
        db.session.commit()
        return Outcome(False, user, _lock_message(user))
    db.session.commit()
    message = GENERIC_FAILURE if event == "auth.login.failed" else WRONG_CODE
    if reason == "replayed_code":
        message = REPLAYED_CODE
    return Outcome(False, user, message)


def check_password(email: str, password: str) -> Outcome:
    """First step: email and password. Success means "now ask for a code"."""
    address = email.strip().lower()
    user = db.session.execute(select(User).where(User.email == address)).scalar_one_or_none()
    matches = credentials.check_password(user.password_hash if user else None, password)
    if user is None:
        audit.record(
            "auth.login.failed",
            actor=("anonymous", None, address[:254]),
            data={"reason": "unknown_email"},
        )
        db.session.commit()
        return Outcome(False, None, GENERIC_FAILURE)
    if user.is_locked():
        audit.record("auth.login.failed", actor=user, subject=user, data={"reason": "locked"})
        db.session.commit()
        return Outcome(False, user, _lock_message(user))
    if not user.active:
        audit.record("auth.login.failed", actor=user, subject=user, data={"reason": "inactive"})
        db.session.commit()
        return Outcome(False, None, GENERIC_FAILURE)
    if not matches:
        return _fail(user, "auth.login.failed", "wrong_password")
    audit.record("auth.login.password_ok", actor=user, subject=user)
    db.session.commit()
    return Outcome(True, user)


def _usable(user: User) -> Outcome | None:
    if not user.active:
        return Outcome(False, None, GENERIC_FAILURE)
    if user.is_locked():
        audit.record("auth.mfa.failed", actor=user, subject=user, data={"reason": "locked"})
        db.session.commit()
        return Outcome(False, user, _lock_message(user))
    return None


def _accept_totp(user: User, secret: str, code: str) -> str | None:
    """None when the code is good and fresh (and marks its step used), else the reason."""
    step = credentials.match_totp(secret, code, clock.utcnow())
    if step is None:
        return "wrong_code"
    if user.totp_last_step is not None and step <= user.totp_last_step:
        return "replayed_code"
    user.totp_last_step = step
    return None


def _use_recovery_code(user: User, code: str) -> bool:
    digest = credentials.hash_recovery_code(code)
    row = db.session.execute(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == digest,
            RecoveryCode.used_at.is_(None),
        )
    ).scalar_one_or_none()
    if row is None:
        return False
    row.used_at = clock.utcnow()
    return True


def remaining_recovery_codes(user: User) -> int:
    """How many unused recovery codes the user has."""
    return int(
        db.session.execute(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).scalar_one()
    )


def check_code(user: User, code: str) -> tuple[Outcome, str | None]:
    """Second step: a TOTP code or a recovery code. On success, returns the new session id."""
    blocked = _usable(user)
    if blocked:
        return blocked, None
    if not user.mfa_enrolled or user.totp_blob_id is None:
        return Outcome(False, user, "Set up your authenticator app first."), None
    if credentials.looks_like_recovery_code(code):
        if not _use_recovery_code(user, code):
            return _fail(user, "auth.mfa.failed", "wrong_recovery_code"), None
        left = remaining_recovery_codes(user)
        audit.record("auth.recovery_code.used", actor=user, subject=user, data={"remaining": left})
        return Outcome(True, user), _complete(user, "recovery_code")
    secret = storage.get(user.totp_blob_id).decode()
    reason = _accept_totp(user, secret, code)
    if reason:
        return _fail(user, "auth.mfa.failed", reason), None
    return Outcome(True, user), _complete(user, "totp")


def _complete(user: User, method: str) -> str:
    """Open the session, reset counters, record the sign-in, commit; return the cookie id."""
    user.failed_attempts = 0
    user.last_login_at = clock.utcnow()
    raw_sid = sessions.start(user)
    audit.record("auth.login.succeeded", actor=user, subject=user, data={"method": method})
    db.session.commit()
    return raw_sid


def enrolment_secret(user: User) -> str:
    """The pending TOTP secret shown at enrolment, created on first ask."""
    if user.totp_pending_blob_id is not None:
        return storage.get(user.totp_pending_blob_id).decode()
    secret = credentials.new_totp_secret()
    user.totp_pending_blob_id = storage.put(secret.encode(), kind="totp_secret")
    audit.record("auth.mfa.enrolment_started", actor=user, subject=user)
    db.session.commit()
    return secret


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = credentials.new_recovery_codes()
    for code in codes:
        db.session.add(
            RecoveryCode(user_id=user.id, code_hash=credentials.hash_recovery_code(code))
        )
    return codes


def confirm_enrolment(user: User, code: str) -> tuple[Outcome, str | None]:
    """Check the first code from the app; on success enrol, sign in and issue recovery codes."""
    blocked = _usable(user)
    if blocked:
        return blocked, None
    if user.totp_pending_blob_id is None:
        return Outcome(False, user, "Start the set-up again: the key has changed."), None
    secret = storage.get(user.totp_pending_blob_id).decode()
    reason = _accept_totp(user, secret, code)
    if reason:
        return _fail(user, "auth.mfa.failed", f"enrolment_{reason}"), None
    old = user.totp_blob_id
    user.totp_blob_id, user.totp_pending_blob_id = user.totp_pending_blob_id, None
    if old:
        storage.delete(old)
    user.totp_confirmed_at = clock.utcnow()
    codes = _replace_recovery_codes(user)
    audit.record("auth.mfa.enrolled", actor=user, subject=user, data={"recovery_codes": len(codes)})
    return Outcome(True, user, recovery_codes=codes), _complete(user, "enrolment")


def regenerate_recovery_codes(user: User, password: str) -> Outcome:
    """New recovery codes after the password is entered again; the old ones stop working."""
    if not credentials.check_password(user.password_hash, password):
        outcome = _fail(user, "auth.reauth.failed", "wrong_password")
        outcome.message = outcome.message if user.is_locked() else "That password is not right."
        return outcome
    codes = _replace_recovery_codes(user)
    audit.record("auth.recovery_codes.regenerated", actor=user, subject=user)
    db.session.commit()
    return Outcome(True, user, recovery_codes=codes)


def change_password(user: User, current: str, new: str) -> Outcome:
    """Change one's own password after entering the current one."""
    if not credentials.check_password(user.password_hash, current):
        outcome = _fail(user, "auth.reauth.failed", "wrong_password")
        outcome.message = (
            outcome.message if user.is_locked() else "Your current password is not right."
        )
        outcome.target = "current"
        return outcome
    problem = credentials.password_problem(new, user.email)
    if problem:
        return Outcome(False, user, problem, target="new")
    if credentials.check_password(user.password_hash, new):
        return Outcome(
            False, user, "Choose a password different from the current one.", target="new"
        )
    user.password_hash = credentials.hash_password(new)
    user.must_change_password = False
    audit.record("auth.password.changed", actor=user, subject=user)
    db.session.commit()
    return Outcome(True, user, "Your password has been changed.")


def logout(user: User | None, raw_sid: str | None) -> None:
    """End the current session on the server and record it."""
    staff_session = sessions.end(raw_sid, "logout")
    if user is not None and staff_session is not None:
        audit.record("auth.logout", actor=user, subject=user)
    db.session.commit()
