"""Signing in: password, then always a TOTP code (or a recovery code); enrolment; lockout.

Failures are counted per account and source together (``throttle``). The password step
answers unknown, inactive and locked accounts exactly as it answers a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import delete, func, select

from portal import audit, clock, storage
from portal.accounts import credentials, sessions, throttle
from portal.accounts.models import RecoveryCode, User
from portal.extensions import db, write_lock

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
    locked: bool = False  # this source may not try again for a while


def generic_failure() -> str:
    """The password step's one answer to every failure: wrong password, unknown, inactive
    or locked account alike, so that it tells nobody which accounts exist or are locked."""
    cfg = current_app.config
    return (
        "That email and password do not match an active account. After "
        f"{cfg['LOCKOUT_THRESHOLD']} failed attempts, sign-in from your network pauses for "
        f"{cfg['LOCKOUT_MINUTES']} minutes; an admin can end the pause sooner."
    )


def locked_message() -> str:
    """What someone who already gave the right password is told when their source is locked."""
    return (
        "Too many failed attempts: sign-in from your network is paused for up to "
        f"{current_app.config['LOCKOUT_MINUTES']} minutes. Sign in again later, or ask an admin "
        "to end the pause."
    )


def _fail(user: User, event: str, reason: str) -> Outcome:
    """Count a failed password or code from this source; it may lock the source out."""
    locked = throttle.failed(user, throttle.source(), event, reason)
    db.session.commit()
    if event == "auth.login.failed":
        return Outcome(False, None, generic_failure(), locked=locked)
    if locked:
        return Outcome(False, user, locked_message(), locked=True)
    return Outcome(False, user, REPLAYED_CODE if reason == "replayed_code" else WRONG_CODE)


def check_password(email: str, password: str) -> Outcome:
    """First step: email and password. Success means "now ask for a code"."""
    write_lock()
    address = email.strip().lower()
    user = db.session.execute(
        select(User).where(User.email == address, User.service.is_(False))
    ).scalar_one_or_none()
    matches = credentials.check_password(user.password_hash if user else None, password)
    if user is None:
        audit.record(
            "auth.login.failed",
            actor=("anonymous", None, address[:254]),
            data={"reason": "unknown_email", "source": throttle.source()},
        )
        db.session.commit()
        return Outcome(False, None, generic_failure())
    refusal = _refusal(user)
    if refusal:
        audit.record("auth.login.failed", actor=user, subject=user,
                     data={"reason": refusal, "source": throttle.source()})  # fmt: skip
        db.session.commit()
        return Outcome(False, None, generic_failure(), locked=refusal == "locked")
    if not matches:
        return _fail(user, "auth.login.failed", "wrong_password")
    audit.record("auth.login.password_ok", actor=user, subject=user)
    db.session.commit()
    return Outcome(True, user)


def _refusal(user: User) -> str | None:
    """Why the account may not even try from here: "inactive", "locked" or None."""
    if not user.active:
        return "inactive"
    if throttle.refused(user, throttle.source()):
        return "locked"
    return None


def _usable(user: User) -> Outcome | None:
    write_lock()
    refusal = _refusal(user)
    if refusal is None:
        return None
    if refusal == "inactive":
        return Outcome(False, None, generic_failure())
    audit.record("auth.mfa.failed", actor=user, subject=user,
                 data={"reason": "locked", "source": throttle.source()})  # fmt: skip
    db.session.commit()
    return Outcome(False, user, locked_message(), locked=True)


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
    throttle.succeeded(user, throttle.source())
    user.last_login_at = clock.utcnow()
    raw_sid = sessions.start(user)
    audit.record("auth.login.succeeded", actor=user, subject=user, data={"method": method})
    db.session.commit()
    return raw_sid


def enrolment_secret(user: User) -> str:
    """The pending TOTP secret shown at enrolment, created on first ask."""
    if user.totp_pending_blob_id is None:
        # Made once: ask again under the lock (another tab may have made it a moment ago).
        write_lock()
        db.session.refresh(user, ["totp_pending_blob_id"], with_for_update=True)
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
    blocked = _usable(user)
    if blocked:
        return blocked
    if not credentials.check_password(user.password_hash, password):
        outcome = _fail(user, "auth.reauth.failed", "wrong_password")
        outcome.message = outcome.message if outcome.locked else "That password is not right."
        return outcome
    codes = _replace_recovery_codes(user)
    audit.record("auth.recovery_codes.regenerated", actor=user, subject=user)
    db.session.commit()
    return Outcome(True, user, recovery_codes=codes)


def change_password(user: User, current: str, new: str) -> Outcome:
    """Change one's own password after entering the current one."""
    blocked = _usable(user)
    if blocked:
        blocked.target = "current"
        return blocked
    if not credentials.check_password(user.password_hash, current):
        outcome = _fail(user, "auth.reauth.failed", "wrong_password")
        outcome.message = (
            outcome.message if outcome.locked else "Your current password is not right."
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
